// The badge page: ask every few seconds whether a new score, alert or handling has landed,
// and reload the (server-rendered) page when one has. A refused link stops the polling.
(function () {
  "use strict";
  var badge = document.getElementById("badge");
  if (!badge) { return; }
  var every = 1000 * Number(badge.dataset.refreshSeconds || 15);
  var version = badge.dataset.version;

  function poll() {
    fetch(badge.dataset.stateUrl, {credentials: "omit", cache: "no-store"})
      .then(function (response) {
        if (response.status === 403) { throw new Error("refused"); }
        return response.json();
      })
      .then(function (state) {
        if (state.version !== version) {
          document.getElementById("updated").hidden = false;
          window.location.reload();
          return;
        }
        window.setTimeout(poll, every);
      })
      .catch(function (problem) {
        if (problem.message !== "refused") { window.setTimeout(poll, every); }
      });
  }
  window.setTimeout(poll, every);
})();
