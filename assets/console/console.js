// The console works without this file; it only asks before a form with a
// data-confirm question is sent (revoke, retire, merge).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
