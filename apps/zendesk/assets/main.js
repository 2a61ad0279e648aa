// Zendesk ticket sidebar: read the ticket id and the agent's name through the ZAF client, then
// ask churnsignal for a signed badge link. The request goes through Zendesk's proxy
// (secure: true) so that the badge_key setting is filled in there and never reaches the browser.
(function () {
  "use strict";
  var client = ZAFClient.init();
  var frame = document.getElementById("badge");
  var waiting = document.getElementById("waiting");
  client.invoke("resize", {width: "100%", height: "560px"});

  Promise.all([client.get(["ticket.id", "currentUser.name"]), client.metadata()]).then(function (answers) {
    var ticket = answers[0]["ticket.id"];
    var agent = answers[0]["currentUser.name"] || "";
    var base = String(answers[1].settings.churnsignal_url).replace(/\/+$/, "");
    return client.request({
      url: base + "/badge/link",
      type: "POST",
      contentType: "application/json",
      dataType: "json",
      headers: {"X-Churnsignal-Badge-Key": "{{setting.badge_key}}"},
      data: JSON.stringify({source: "zendesk", ticket: String(ticket), by: agent}),
      secure: true,
      cors: false
    }).then(function (answer) {
      frame.src = base + answer.url;
      frame.hidden = false;
      waiting.hidden = true;
    });
  }).catch(function (problem) {
    var reason = (problem && problem.responseJSON && problem.responseJSON.error) || (problem && problem.statusText) || problem;
    waiting.textContent = "无法显示 / Cannot show the badge: " + reason;
  });
})();
