"""A generic helpdesk's alerts sent as its own API's requests (``helpdesks.generic.<name>.outbound``).

The stand-in is a helpdesk whose private notes are follow-ups: ``POST /api/followups/`` with
``{"ticket": <int>, "comment": ..., "public": false}`` under Basic auth, listed by
``GET /api/followups/?ticket=<id>``, and tags added by ``POST /api/tickets/<id>/tags/``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request
from pydantic import ValidationError

from churnsignal.config import TEMPLATE_FIELDS, GenericHelpdeskSettings, HelpdeskSettings
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks import AlertMessage, DeliveryError
from churnsignal.webhook.helpdesks.outbound import template_values, url

USER, PASSWORD = "churnsignal", "fu-pass-9f3k"
MAPPING = {"event_id": "id", "ticket_id": "ticket", "text": "comment", "created_at": "date",
           "author_role": "role", "requester_id": "user"}
NOTE = {"method": "POST", "url": "{base}/api/followups/",
        "auth": {"basic": {"username_env": "FU_USER", "password_env": "FU_PASSWORD"}},
        "body": '{"ticket": {{ ticket_number }}, "comment": {{ note | tojson }}, "public": false}',
        "expect": [201]}
TAG = {"method": "POST", "url": "{base}/api/tickets/{ticket_id}/tags/",
       "auth": {"header": "X-Api-Key", "value_env": "FU_KEY", "prefix": "Key "},
       "body": '{"tags": [{{ tag | tojson }}], "tier": {{ tier | tojson }}, "probability": {{ probability }}}'}
READ_BACK = {"url": "{base}/api/followups/?ticket={ticket_id}", "find": "[].comment"}
ALERT = AlertMessage(
    alert_id=42, idempotency_key="k42", ticket_id="1001", tier="red", churn_prob=0.85,
    reasons=[{"zh": "近期多次投诉物流", "en": "repeated delivery complaints"}], driver="service",
    action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"},
    due_at=datetime(2026, 5, 1, 16, 0), customer_id="c1001")


class FollowUps:
    """The stand-in helpdesk; ``answer_next`` scripts the status of the next write."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.followups: list[dict[str, Any]] = []
        self.answer_next: list[int | None] = []  # None: answer as usual
        app = Flask(__name__)
        app.add_url_rule("/api/followups/", view_func=self._followups, methods=["GET", "POST"])
        app.add_url_rule("/api/tickets/<ticket>/tags/", view_func=self._tags, methods=["POST"])
        app.add_url_rule("/api/v1/ticket_articles", view_func=self._zammad, methods=["POST"])
        app.add_url_rule("/api/v1/tags/add", view_func=self._zammad, methods=["POST"])
        self.app = app
        self.base = ""  # where the fixture serves it

    def _followups(self) -> Any:
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (USER, PASSWORD):
            return jsonify(detail="Authentication credentials were not provided."), 401
        if request.method == "GET":
            ticket = int(request.args["ticket"])
            return jsonify([f for f in self.followups if f["ticket"] == ticket])
        return self._write("followup")

    def _tags(self, ticket: str) -> Any:
        if request.headers.get("X-Api-Key") != "Key fu-key-77":
            return jsonify(detail="bad key"), 403
        return self._write("tags", ticket)

    def _zammad(self) -> Any:
        if request.headers.get("Authorization") != "Token token=zammad-77":
            return jsonify(error="authentication failed"), 401
        return self._write(request.path.rsplit("/", 1)[-1])

    def _write(self, kind: str, ticket: str | None = None) -> Any:
        body = request.get_json()
        self.received.append({"kind": kind, "path": request.path, "body": body,
                              "key": request.headers.get("Idempotency-Key")})
        status = self.answer_next.pop(0) if self.answer_next else None
        if status is not None:
            return jsonify(detail="scripted"), status
        if kind == "followup":
            if set(body) != {"ticket", "comment", "public"} or not isinstance(body["ticket"], int):
                return jsonify(detail="expected ticket (int), comment, public"), 400
            self.followups.append(body)
            return jsonify(id=len(self.followups)), 201
        return jsonify(ok=True, ticket=ticket), 201 if kind == "ticket_articles" else 200


@pytest.fixture
def helpdesk(serve) -> FollowUps:
    server = FollowUps()
    server.base = serve(server.app)
    return server


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"FU_USER": USER, "FU_PASSWORD": PASSWORD, "FU_KEY": "fu-key-77",
                        "ZAMMAD_TOKEN": "zammad-77"}.items():
        monkeypatch.setenv(name, value)


def settings(base: str, *calls: dict[str, Any]) -> HelpdeskSettings:
    outbound = [call | {"url": call["url"].replace("{base}", base)} for call in calls]
    for call in outbound:
        if "read_back" in call:
            call["read_back"] = call["read_back"] | {"url": call["read_back"]["url"].replace("{base}", base)}
    return HelpdeskSettings(generic={"fu": {"secret": "inbound-secret", "mapping": MAPPING, "outbound": outbound}},
                            timeout_seconds=2)


def deliver(helpdesk: FollowUps, http: requests.Session, *calls: dict[str, Any], alert: AlertMessage = ALERT) -> None:
    helpdesks.get("generic:fu", settings(helpdesk.base, *calls)).post_alert(alert, http)


def test_a_note_then_a_tag_are_sent_in_order_as_the_helpdesk_expects(helpdesk, http):
    deliver(helpdesk, http, NOTE, TAG)
    note, tag = helpdesk.received
    assert (note["path"], tag["path"]) == ("/api/followups/", "/api/tickets/1001/tags/")
    assert note["body"]["ticket"] == 1001 and note["body"]["public"] is False
    comment = note["body"]["comment"]
    for text in ("【流失风险 RED】概率 85%", "近期多次投诉物流", "arrange a dedicated agent callback",
                 "2026-05-01 16:00 UTC", "(churnsignal alert 42)"):
        assert text in comment
    assert tag["body"] == {"tags": ["churn-risk-red"], "tier": "red", "probability": 0.85}
    assert (note["key"], tag["key"]) == ("k42-1", "k42-2")


def test_zammad_takes_an_internal_article_then_a_tag(helpdesk, http):
    token = {"header": "Authorization", "prefix": "Token token=", "value_env": "ZAMMAD_TOKEN"}
    article = {"url": "{base}/api/v1/ticket_articles", "auth": token, "expect": [201],
               "body": '{"ticket_id": {{ ticket_number }}, "body": {{ note | tojson }}, "internal": true, '
                       '"type": "note", "content_type": "text/plain"}'}
    tag = {"url": "{base}/api/v1/tags/add", "auth": token,
           "body": '{"object": "Ticket", "o_id": {{ ticket_number }}, "item": {{ tag | tojson }}}'}
    deliver(helpdesk, http, article, tag)
    first, second = helpdesk.received
    assert first["body"]["ticket_id"] == 1001 and first["body"]["internal"] is True
    assert first["body"]["body"] == ALERT.note()
    assert second["body"] == {"object": "Ticket", "o_id": 1001, "item": "churn-risk-red"}


def test_every_alert_field_can_be_used_in_a_body():
    assert set(template_values(ALERT)) == TEMPLATE_FIELDS


def test_url_values_are_quoted_path_segments():
    odd = AlertMessage(**{**ALERT.__dict__, "ticket_id": "A/7 x"})
    assert url("https://x/api/tickets/{ticket_id}/tags/?c={customer_id}", odd) == \
        "https://x/api/tickets/A%2F7%20x/tags/?c=c1001"
    with pytest.raises(DeliveryError, match="cannot be a URL path segment") as error:
        url("https://x/api/tickets/{ticket_id}/tags/", AlertMessage(**{**ALERT.__dict__, "ticket_id": ".."}))
    assert error.value.permanent


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (429, False), (404, True), (200, True)])
def test_an_unexpected_status_fails_the_attempt(helpdesk, http, status, permanent):
    helpdesk.answer_next = [status]
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as error:
        deliver(helpdesk, http, NOTE, TAG)
    assert error.value.permanent is permanent
    assert len(helpdesk.received) == 1  # the tag waits for the note


def test_a_failed_tag_is_retried_without_posting_the_note_twice(helpdesk, http):
    calls = (NOTE | {"read_back": READ_BACK}, TAG)
    helpdesk.answer_next = [None, 503]
    with pytest.raises(DeliveryError, match="HTTP 503") as error:
        deliver(helpdesk, http, *calls)
    assert not error.value.permanent
    deliver(helpdesk, http, *calls, alert=AlertMessage(**{**ALERT.__dict__, "attempt": 2}))
    assert len(helpdesk.followups) == 1
    assert [r["kind"] for r in helpdesk.received] == ["followup", "tags", "tags"]


def test_a_read_back_that_finds_no_note_posts_it(helpdesk, http):
    retry = AlertMessage(**{**ALERT.__dict__, "attempt": 2})
    deliver(helpdesk, http, NOTE | {"read_back": READ_BACK}, alert=retry)
    assert len(helpdesk.followups) == 1


def test_a_body_that_is_not_json_fails_clearly(helpdesk, http):
    raw = NOTE | {"body": '{"ticket": {{ ticket_number }}, "comment": "{{ note }}", "public": false}'}
    with pytest.raises(DeliveryError, match=r"helpdesks\.generic\.fu\.outbound\[0\]\.body: the template did "
                                            r"not render JSON") as error:
        deliver(helpdesk, http, raw)
    assert error.value.permanent and helpdesk.received == []


def test_ticket_number_of_a_ticket_id_that_is_not_one_fails_clearly(helpdesk, http):
    with pytest.raises(DeliveryError, match="ticket_number is defined only") as error:
        deliver(helpdesk, http, NOTE, alert=AlertMessage(**{**ALERT.__dict__, "ticket_id": "T-9"}))
    assert error.value.permanent


def test_secrets_come_from_the_environment_and_are_never_shown(helpdesk, http, caplog):
    configured = settings(helpdesk.base, NOTE, TAG)
    for shown in (repr(configured), str(configured), configured.model_dump_json()):
        assert PASSWORD not in shown and "fu-key-77" not in shown
    helpdesk.answer_next = [500]
    with pytest.raises(DeliveryError) as error:
        helpdesks.get("generic:fu", configured).post_alert(ALERT, http)
    assert PASSWORD not in str(error.value) and PASSWORD not in caplog.text


@pytest.mark.parametrize(("change", "message"), [
    ({"auth": {"basic": {"username_env": "FU_USER", "password_env": "FU_NOPE"}}},
     "outbound.0.auth\n.*basic.password_env: environment variable FU_NOPE is not set"),
    ({"body": '{"ticket": {{ ticket_number }'}, "outbound.0.body\n|outbound.0\n.*body: not a Jinja2 template"),
    ({"body": '{"t": {{ tikcet_id }}}'}, "body: unknown variable tikcet_id"),
    ({"url": "https://x/{ticket}"}, r"url: unknown placeholder \{ticket\}"),
    ({"auth": {"bearer_env": "FU_KEY", "header": "X", "value_env": "FU_KEY"}}, "exactly one of"),
    ({"read_back": {"url": "https://x/", "find": "[?"}}, "find: not a JMESPath expression"),
])
def test_bad_outbound_settings_are_refused_at_load_naming_the_setting(change, message):
    with pytest.raises(ValidationError, match=message) as error:
        settings("https://helpdesk.example.com", NOTE | change)
    assert "generic.fu.outbound.0" in str(error.value)
    assert PASSWORD not in str(error.value)


def test_alert_url_and_outbound_are_not_both_set():
    with pytest.raises(ValidationError, match="set alert_url or outbound, not both"):
        GenericHelpdeskSettings(secret="s", mapping=MAPPING, alert_url="https://x/hook",
                                outbound=[NOTE | {"url": "https://x/"}])


@pytest.mark.parametrize("body", ['{"r": {{ reasons.append(1) }}}', '{"c": {{ note.__class__ | tojson }}}'])
def test_a_body_template_cannot_leave_its_sandbox(helpdesk, http, body):
    with pytest.raises(DeliveryError, match=r"outbound\[0\]\.body: cannot render") as error:
        deliver(helpdesk, http, NOTE | {"body": body})
    assert error.value.permanent and helpdesk.received == []
