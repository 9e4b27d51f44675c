// Light progressive enhancement only; every page works without scripts.
// Filter forms submit themselves when a select changes.
document.addEventListener("change", function (ev) {
  var el = ev.target;
  if (el && el.matches && el.matches("form.filters select")) { el.form.submit(); }
});
