// Behaviour every page shares, here and not in the markup: the Content-Security-Policy
// (agentloop/security_headers.py) runs no inline script, on* handler or hx-on.
(function () {
  "use strict";

  // <form data-confirm="…"> or <button data-confirm="…">: ask before submitting.
  document.addEventListener(
    "submit",
    function (event) {
      var asker = (event.submitter && event.submitter.closest("[data-confirm]")) || event.target;
      var question = asker && asker.dataset ? asker.dataset.confirm : "";
      if (question && !window.confirm(question)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true
  );

  // Trace waterfall: the row whose span the panel shows is the selected one.
  document.addEventListener("htmx:afterRequest", function (event) {
    var row = event.detail.elt;
    if (!row.classList || !row.classList.contains("wf-row")) return;
    document.querySelectorAll(".wf-row.is-selected").forEach(function (other) {
      other.classList.remove("is-selected");
    });
    row.classList.add("is-selected");
  });
})();
