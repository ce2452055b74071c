// The live session page (studio/templates/studio/session.html).
// Reconnects resume after the last event on the page, not the seq the page
// loaded with, and an event already shown is never appended twice.
(function () {
  function lastSeq() {
    const events = document.querySelectorAll("#transcript [data-seq]");
    return events.length ? events[events.length - 1].dataset.seq : "0";
  }
  // Runs after the deferred htmx scripts and before htmx connects the socket.
  document.addEventListener("DOMContentLoaded", function () {
    const open = htmx.createWebSocket || function (url) { return new WebSocket(url); };
    htmx.createWebSocket = function (url) {
      return open(url.replace(/after=\d+/, "after=" + lastSeq()));
    };
  });
  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    if (evt.detail.target.id !== "transcript") return;
    for (const child of Array.from(evt.detail.fragment.children || [])) {
      if (child.id && document.getElementById(child.id)) child.remove();
    }
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    const transcript = document.getElementById("transcript");
    transcript.scrollTop = transcript.scrollHeight;
  });
})();
