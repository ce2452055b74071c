// The preset form (agentloop/presets/templates/presets/form.html).
// Offer the repository fields only while a GitHub skill is ticked; the server checks it too.
(function () {
  var fields = document.getElementById("preset-repo-fields");
  var hint = document.getElementById("preset-repo-hint");
  if (!fields) return;
  var url = document.getElementById("id_repository_url");
  function update() {
    var github = document.querySelector('input[name="skills"][data-kind="github"]:checked');
    var show = Boolean(github) || Boolean(url && url.value);
    fields.hidden = !show;
    hint.hidden = show;
  }
  document.querySelectorAll('input[name="skills"]').forEach(function (box) {
    box.addEventListener("change", update);
  });
  update();
})();
