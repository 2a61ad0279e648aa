// Chatwoot dashboard app. Chatwoot posts the string JSON.stringify({event: "appContext",
// data: {conversation, contact, currentAgent}}) to this frame when it loads, and again when
// the frame posts "chatwoot-dashboard-app:fetch-info" to it. Only messages from the configured
// Chatwoot origins are believed; the conversation id and the agent's name then buy a signed
// badge link (POST /badge/link with this app's key), shown in the inner frame.
(function () {
  "use strict";
  var app = document.getElementById("chatwoot-app");
  var frame = document.getElementById("badge-frame");
  var origins = app.dataset.origins.split(" ").filter(Boolean);
  var shown = null;

  function ask() {
    origins.forEach(function (origin) {
      window.parent.postMessage("chatwoot-dashboard-app:fetch-info", origin);
    });
  }

  function show(conversationId, agentName) {
    var wanted = conversationId + "\n" + agentName;
    if (wanted === shown) { return; }
    shown = wanted;
    fetch(app.dataset.linkUrl, {
      method: "POST",
      credentials: "omit",
      headers: {"Content-Type": "application/json", "X-Churnsignal-Badge-Key": app.dataset.key},
      body: JSON.stringify({source: "chatwoot", ticket: String(conversationId), by: agentName})
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) { throw new Error(answer.error || response.statusText); }
        frame.src = answer.url;
        frame.hidden = false;
        document.getElementById("waiting").hidden = true;
      });
    }).catch(function (problem) {
      shown = null;
      document.getElementById("waiting").textContent = "无法显示 / Cannot show the badge: " + problem.message;
    });
  }

  window.addEventListener("message", function (event) {
    if (origins.indexOf(event.origin) < 0 || typeof event.data !== "string") { return; }
    var message;
    try { message = JSON.parse(event.data); } catch (ignored) { return; }
    if (!message || message.event !== "appContext" || !message.data || !message.data.conversation) { return; }
    var agent = message.data.currentAgent || {};
    show(message.data.conversation.id, agent.name || "");
  });
  // Chatwoot keeps the app's frame when the agent opens another conversation: ask again
  // whenever the agent comes back to it. The link minted last also expires; a new ask renews it.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { shown = null; ask(); }
  });
  window.addEventListener("focus", function () { shown = null; ask(); });
  ask();
})();
