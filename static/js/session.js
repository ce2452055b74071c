// The live session page (studio/templates/studio/session.html). A file, not an
// inline script: the pages' Content-Security-Policy allows scripts from 'self' only.
//
// Reconnects resume after the last event on the page, not the seq the page
// loaded with, and an event already shown is never appended twice.
(function () {
  "use strict";
  function lastSeq() {
    const events = document.querySelectorAll("#transcript [data-seq]");
    return events.length ? events[events.length - 1].dataset.seq : "0";
  }
  function controlsShown() {
    const controls = document.getElementById("run-controls");
    return controls ? controls.dataset.controls || "" : "";
  }
  // Runs after the deferred htmx scripts and before htmx connects the socket.
  document.addEventListener("DOMContentLoaded", function () {
    const open = htmx.createWebSocket || function (url) { return new WebSocket(url); };
    htmx.createWebSocket = function (url) {
      // What the page shows now, so the server pushes the controls when that changes.
      return open(
        url.replace(/after=\d+/, "after=" + lastSeq())
           .replace(/controls=[a-z]*/, "controls=" + controlsShown())
      );
    };
  });
  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    if (evt.detail.target.id !== "transcript") return;
    for (const child of Array.from(evt.detail.fragment.children || [])) {
      if (child.id && document.getElementById(child.id)) child.remove();
    }
  });
  // Panels pushed over the websocket are rendered once for every watcher,
  // without a request, so their plain forms carry no CSRF token: add the
  // page's own (the one htmx sends as X-CSRFToken) before they are sent.
  document.addEventListener("submit", function (evt) {
    const form = evt.target;
    if (!(form instanceof HTMLFormElement) || (form.method || "").toLowerCase() !== "post") return;
    let token = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (token && token.value) return;
    const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    if (!token) {
      token = document.createElement("input");
      token.type = "hidden";
      token.name = "csrfmiddlewaretoken";
      form.appendChild(token);
    }
    token.value = headers["X-CSRFToken"] || "";
  }, true);
  document.addEventListener("htmx:wsAfterMessage", function () {
    const transcript = document.getElementById("transcript");
    if (transcript) transcript.scrollTop = transcript.scrollHeight;
  });
})();
