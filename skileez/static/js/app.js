// Small progressive enhancements. No inline scripts anywhere: CSP forbids them.
(function () {
  "use strict";

  // Preselect the browser's own time zone on fresh forms. A value the person
  // chose, or one the server sent back with errors, is left alone.
  function detectTimezone(root) {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone) { return; }
    root.querySelectorAll("select[data-detect-timezone]").forEach(function (select) {
      if (select.dataset.detected || select.closest("form.was-submitted")) { return; }
      var wasDefault = select.value === "UTC";
      var option = select.querySelector('option[value="' + zone.replace(/"/g, "") + '"]');
      if (wasDefault && option) { select.value = zone; }
      select.dataset.detected = "1";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { detectTimezone(document); });
  document.addEventListener("htmx:load", function (event) { detectTimezone(event.target); });

  // A 401 from an htmx request means the session ended: go to the sign-in page.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status === 401 && xhr.getResponseHeader("HX-Redirect")) {
      window.location = xhr.getResponseHeader("HX-Redirect");
    }
  });
})();

// Print buttons (receipts) without inline handlers.
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) { window.print(); }
});
