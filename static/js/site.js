/* What every page does with JavaScript (a file, never inline: strict CSP).
   - The viewer's time zone goes to the server in a cookie, so dates are shown in it.
   - The menu button opens and closes the navigation on a phone.
   - A form with data-confirm asks before it submits (e.g. withdrawing an offer). */
(function () {
  "use strict";
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + encodeURIComponent(zone)) === -1) {
      document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* an old browser: the exchange's time zone is used */ }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest ? event.target.closest(".nav-toggle") : null;
    if (!toggle) { return; }
    var bar = toggle.closest(".topbar");
    var open = bar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
