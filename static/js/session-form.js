// The Studio's new-session form (studio/templates/studio/new_session.html).
// The analyst is built in and calls no model: while it is the harness, the model
// and model provider fields mean nothing for it, so they are hidden.
(function () {
  var harness = document.getElementById("id_harness");
  if (!harness) return;
  function update() {
    var analyst = harness.value === "analyst";
    document.querySelectorAll("[data-needs-model]").forEach(function (field) {
      field.hidden = analyst;
    });
  }
  harness.addEventListener("change", update);
  update();
})();
