// Live statuses: the entries on the page are watched over Server-Sent Events and their
// status, attempts and last result are updated in place (no reload, no inline script).
(function () {
  "use strict";
  function start() {
    var table = document.querySelector("[data-live]");
    if (!table || !window.EventSource) { return; }
    var codes = table.getAttribute("data-live");
    if (!codes) { return; }
    var source = new EventSource("/events?codes=" + encodeURIComponent(codes));
    source.addEventListener("entries", function (event) {
      var changed = JSON.parse(event.data);
      Object.keys(changed).forEach(function (code) {
        var row = table.querySelector('tr[data-code="' + CSS.escape(code) + '"]');
        if (!row) { return; }
        ["status", "attempts", "last_result"].forEach(function (name) {
          var cell = row.querySelector("." + name);
          if (cell) { cell.textContent = String(changed[code][name]); }
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
