// Print buttons ([data-print]) and pages printed as they open (<body data-print-on-load>),
// wired here rather than in inline handlers, which the Content-Security-Policy refuses.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-print]")) {
    button.addEventListener("click", () => window.print());
  }
  if ("printOnLoad" in document.body.dataset && window.print) {
    window.print();
  }
});
