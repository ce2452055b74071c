// Forms with data-confirm ask before they are sent (destructive actions). A file,
// not inline onsubmit handlers: the pages' Content-Security-Policy allows no inline script.
document.addEventListener("submit", function (evt) {
  const form = evt.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : null;
  if (question && !window.confirm(question)) evt.preventDefault();
}, true);
