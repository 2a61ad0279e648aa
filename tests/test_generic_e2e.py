"""Two helpdesks wired by YAML alone, both ways, through the web app, the store and the worker.

Each stand-in is written from the helpdesk's public documentation:

- a Zammad-shaped one: its webhook posts ``{"ticket": {...}, "article": {...}}`` signed with
  ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>``; an internal note is
  ``POST /api/v1/ticket_articles`` under ``Authorization: Token token=...``, and a ticket's
  articles are listed by ``GET /api/v1/ticket_articles/by_ticket/<id>``;
- one that cannot sign (only its webhook URL is configurable), whose webhook carries the whole
  ticket with every follow-up and the id of the new one, and which takes a private note as
  ``POST /api/followups/`` with ``{"ticket": <int>, "comment": ..., "public": false}`` under Basic auth.

The configuration is a YAML file read by the normal settings loader (``CHURNSIGNAL_CONFIG``),
with every secret in the environment; no adapter code is written for either helpdesk. The
worker's tasks run in this process (tests/conftest.py ``worker``) on the real Redis queue, the
store is SQLite and the real PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from churnsignal.config import Settings
from churnsignal.store import Alert, Event, Store, utcnow
from churnsignal.webhook.app import create_app

ZAMMAD_SECRET = "zammad-webhook-secret"
ZAMMAD_TOKEN = "zammad-api-token-77"
FU_TOKEN = "Vq3r7wQy0LkP2xZs9bNcT4mHd8Fj1aUe6GiRoYpX"
FU_USER, FU_PASSWORD = "churnsignal", "fu-pass-9f3k"
API_TOKEN = "e2e-api-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

# The two recipes of docs/deploy.md, with the stand-ins' addresses for the helpdesks'.
ZAMMAD_YAML = """
auth:
  scheme: hmac
  algorithm: sha1
  signature: {header: X-Hub-Signature, prefix: "sha1="}
mapping:
  message_when: "article != null"
  event_id: article.id
  ticket_id: ticket.id
  text: article.body
  created_at: article.created_at
  author_role: article.sender
  requester_id: ticket.customer_id
  requester_email: ticket.customer.email
  customer_roles: [Customer]
  agent_roles: [Agent]
outbound:
  - url: "{zammad}/api/v1/ticket_articles"
    auth: {header: Authorization, prefix: "Token token=", value_env: ZAMMAD_API_TOKEN}
    body: '{"ticket_id": {{ ticket_number }}, "body": {{ note | tojson }}, "internal": true, "type": "note"}'
    expect: [201]
    read_back:
      url: "{zammad}/api/v1/ticket_articles/by_ticket/{ticket_id}"
      find: "[].body"
"""
FOLLOWUPS_YAML = """
auth:
  scheme: url_token
mapping:
  select:
    followup: {list: ticket.followup_set, where: id, equals: followup_id}
  event_id: followup.id
  ticket_id: ticket.id
  text: followup.comment
  created_at: followup.date
  author_role: "followup.user && 'agent' || 'customer'"
  requester_email: ticket.submitter_email
outbound:
  - url: "{helpdesk}/api/followups/"
    auth:
      basic: {username_env: HELPDESK_API_USER, password_env: HELPDESK_API_PASSWORD}
    body: '{"ticket": {{ ticket_number }}, "comment": {{ note | tojson }}, "public": false}'
    expect: [201]
    read_back:
      url: "{helpdesk}/api/followups/?ticket={ticket_id}"
      find: "[].comment"
"""


class DocumentedHelpdesk:
    """A helpdesk API on a free local port; :meth:`fail_next` scripts its next write's answer."""

    def __init__(self) -> None:
        self.app = Flask(type(self).__name__)
        self.writes: list[dict[str, Any]] = []
        self.reads: list[str] = []
        self._failures: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"

    def fail_next(self, status: int, *, applied: bool = False) -> None:
        """Answer the next write with ``status``; ``applied``: keep it all the same, as a server
        whose answer is lost on the way back (a gateway timeout) does."""
        self._failures.append((status, applied))

    def _write(self, record: dict[str, Any], store: list[dict[str, Any]]) -> tuple[int, bool]:
        """Record a write; (status to answer, whether it was kept)."""
        with self._lock:
            self.writes.append({"path": request.path, "body": request.get_json(),
                                "authorization": request.headers.get("Authorization")})
            status, applied = self._failures.pop(0) if self._failures else (201, True)
            if applied:
                store.append(record)
            return status, applied

    def __enter__(self) -> DocumentedHelpdesk:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Zammad(DocumentedHelpdesk):
    """Zammad's REST API as documented (docs.zammad.org, API > Ticket > Articles), articles only."""

    def __init__(self) -> None:
        super().__init__()
        self.articles: list[dict[str, Any]] = []
        self.app.add_url_rule("/api/v1/ticket_articles", view_func=self._create, methods=["POST"])
        self.app.add_url_rule("/api/v1/ticket_articles/by_ticket/<int:ticket_id>", view_func=self._by_ticket)

    def _authorised(self) -> bool:
        return request.headers.get("Authorization") == f"Token token={ZAMMAD_TOKEN}"

    def _create(self) -> Any:
        if not self._authorised():
            return jsonify(error="authentication failed"), 401
        body = request.get_json()
        article = {"id": 900 + len(self.articles), "ticket_id": body.get("ticket_id"), "body": body.get("body"),
                   "internal": body.get("internal"), "type": body.get("type"), "sender": "Agent"}
        status, applied = self._write(article, self.articles)
        return jsonify(article if applied else {"error": "scripted"}), status

    def _by_ticket(self, ticket_id: int) -> Any:
        if not self._authorised():
            return jsonify(error="authentication failed"), 401
        self.reads.append(request.path)
        return jsonify([a for a in self.articles if a["ticket_id"] == ticket_id])


class FollowUps(DocumentedHelpdesk):
    """A helpdesk whose private notes are follow-ups (django-helpdesk's ``/api/followups/``)."""

    def __init__(self) -> None:
        super().__init__()
        self.followups: list[dict[str, Any]] = []
        self.app.add_url_rule("/api/followups/", view_func=self._followups, methods=["GET", "POST"])

    def _followups(self) -> Any:
        auth = request.authorization
        if auth is None or (auth.type, auth.username, auth.password) != ("basic", FU_USER, FU_PASSWORD):
            return jsonify(detail="Authentication credentials were not provided."), 401
        if request.method == "GET":
            self.reads.append(request.full_path)
            return jsonify([f for f in self.followups if str(f["ticket"]) == request.args.get("ticket")])
        body = request.get_json()
        if set(body) != {"ticket", "comment", "public"} or not isinstance(body["ticket"], int):
            return jsonify(detail="expected ticket (an integer), comment and public"), 400
        status, applied = self._write(body, self.followups)
        return jsonify(body if applied else {"detail": "scripted"}), status


@dataclass
class Stack:
    settings: Settings
    store: Store
    client: FlaskClient
    worker: Any
    zammad: Zammad
    followups: FollowUps

    def customer(self, customer_id: str, email: str) -> None:
        """The shop's customer: a few orders, and the email their helpdesk requester is known by."""
        now = utcnow()
        orders = [{"order_id": f"{customer_id}-{n}", "customer_id": customer_id, "amount": 99.0 + n,
                   "ordered_at": (now - timedelta(days=40 * n + 3)).isoformat() + "Z"} for n in range(4)]
        assert self.client.post("/api/orders", headers=AUTH, json={"orders": orders}).status_code == 200
        linked = self.client.post("/api/identities", headers=AUTH,
                                  json={"identities": [{"customer_id": customer_id, "email": email}]})
        assert linked.status_code == 200, linked.json

    def events(self) -> list[Event]:
        with self.store.session() as session:
            return list(session.scalars(select(Event).order_by(Event.id)))

    def alerts(self) -> list[Alert]:
        with self.store.session() as session:
            return list(session.scalars(select(Alert).order_by(Alert.id)))


@pytest.fixture
def stack(tmp_path, monkeypatch, database_url, store, redis_url, fusion_model_path, worker) -> Iterator[Stack]:
    with Zammad() as zammad, FollowUps() as followups:
        generic = {"zammad": yaml.safe_load(ZAMMAD_YAML.replace("{zammad}", zammad.base)),
                   "helpdesk": yaml.safe_load(FOLLOWUPS_YAML.replace("{helpdesk}", followups.base))}
        config = {
            "service": {"data_dir": str(tmp_path), "database_url": database_url, "broker_url": redis_url},
            "alerts": {"model_path": str(fusion_model_path), "require_service_signal": False},
            # One tier from 0: every scored customer is alerted, so the test checks the plumbing.
            "fusion": {"cache_dir": str(tmp_path / "cache"),
                       "tiers": [{"name": "red", "above": 0.0, "response_hours": 4}]},
            "helpdesks": {"generic": generic, "timeout_seconds": 2.0, "max_attempts": 4},
        }
        path = tmp_path / "churnsignal.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        for name, value in {
            "CHURNSIGNAL_CONFIG": str(path), "CHURNSIGNAL_SERVICE__API_TOKEN": API_TOKEN,
            "CHURNSIGNAL_IDENTITY__PEPPER": "e2e-pepper",
            "CHURNSIGNAL_HELPDESKS__GENERIC__ZAMMAD__SECRET": ZAMMAD_SECRET, "ZAMMAD_API_TOKEN": ZAMMAD_TOKEN,
            # A helpdesk that cannot sign still has a secret: the one alert_url would sign with.
            "CHURNSIGNAL_HELPDESKS__GENERIC__HELPDESK__SECRET": "unused-outbound-secret",
            "CHURNSIGNAL_HELPDESKS__GENERIC__HELPDESK__AUTH__TOKEN": FU_TOKEN,
            "HELPDESK_API_USER": FU_USER, "HELPDESK_API_PASSWORD": FU_PASSWORD,
        }.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        yield Stack(settings, store, create_app(settings, store=store).test_client(), worker(settings, store),
                    zammad, followups)


# ---------------------------------------------------------------- the Zammad-shaped helpdesk

ZAMMAD_CUSTOMER = "wang.fang@example.com"


def zammad_webhook(article_id: int, text: str, *, sender: str = "Customer", ticket_id: int = 31) -> bytes:
    """Zammad's trigger webhook: the ticket and the article that fired it (expanded attributes)."""
    return json.dumps({
        "ticket": {"id": ticket_id, "number": "31001", "title": "快递没到", "state": "open", "customer_id": 7,
                   "customer": {"id": 7, "login": ZAMMAD_CUSTOMER, "email": ZAMMAD_CUSTOMER, "firstname": "芳"}},
        "article": {"id": article_id, "ticket_id": ticket_id, "type": "web", "sender": sender, "internal": False,
                    "from": ZAMMAD_CUSTOMER, "body": text, "content_type": "text/plain",
                    "created_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()},
    }, ensure_ascii=False).encode()


def zammad_post(client: FlaskClient, body: bytes, secret: str | None = ZAMMAD_SECRET):
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return client.post("/webhooks/generic/zammad", data=body, headers=headers)


def refused(response, status: int, reason: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert reason in response.get_json()["error"]


def test_zammad_in_signed_and_out_as_an_internal_article(stack):
    stack.customer("shop-z", ZAMMAD_CUSTOMER)
    body = zammad_webhook(101, "快递一个星期都没到，我要退款")
    assert zammad_post(stack.client, body).status_code == 202
    duplicate = zammad_post(stack.client, body)
    assert duplicate.status_code == 200 and duplicate.json["status"] == "duplicate"
    refused(zammad_post(stack.client, zammad_webhook(102, "伪造"), secret="not-the-secret"), 401,
            "X-Hub-Signature does not match")
    refused(zammad_post(stack.client, zammad_webhook(103, "没签名"), secret=None), 401, "X-Hub-Signature is required")
    [event] = stack.events()
    assert (event.source, event.external_id, event.ticket_id, event.customer_id, event.author) == (
        "generic:zammad", "101", "31", "shop-z", "customer")

    stack.worker.run()
    [alert] = stack.alerts()
    assert alert.status == "delivered"
    [write] = stack.zammad.writes
    assert write["path"] == "/api/v1/ticket_articles"
    assert write["authorization"] == f"Token token={ZAMMAD_TOKEN}"
    note = write["body"].pop("body")
    assert write["body"] == {"ticket_id": 31, "internal": True, "type": "note"}
    assert note.startswith("【流失风险 RED】") and note.endswith(f"(churnsignal alert {alert.id})")
    assert stack.zammad.reads == []  # a first attempt does not look for an earlier one

    # Zammad sends our own note back as an article: stored as the bot's, never the customer's.
    echoed = zammad_webhook(904, note, sender="Agent")
    assert zammad_post(stack.client, echoed).status_code == 202
    assert stack.events()[-1].author == "bot"


@pytest.mark.parametrize("applied", [False, True], ids=["refused", "kept-but-answered-503"])
def test_zammad_retry_after_a_503_posts_exactly_one_note(stack, applied):
    stack.customer("shop-z", ZAMMAD_CUSTOMER)
    stack.zammad.fail_next(503, applied=applied)
    assert zammad_post(stack.client, zammad_webhook(101, "客服三天不回消息")).status_code == 202
    stack.worker.run()  # attempt 1 answered 503; attempt 2 reads the ticket's articles back first
    [alert] = stack.alerts()
    assert (alert.status, alert.attempts) == ("delivered", 2)
    assert len(stack.zammad.articles) == 1
    assert stack.zammad.reads == ["/api/v1/ticket_articles/by_ticket/31"]
    assert len(stack.zammad.writes) == (1 if applied else 2)


# ---------------------------------------------------------------- the helpdesk that cannot sign

FU_CUSTOMER = "li.lei@example.com"


def followup_webhook(new: int, count: int = 1, ticket_id: int = 9) -> dict[str, Any]:
    """The whole ticket with every follow-up so far, and which one is new."""
    followups = [{"id": 500 + n, "ticket": ticket_id, "comment": f"第{n + 1}次追问：退款呢？",
                  "date": (datetime.now(UTC) - timedelta(minutes=30 - n)).isoformat(), "public": True,
                  "user": None} for n in range(count)]
    return {"followup_id": 500 + new, "ticket": {"id": ticket_id, "title": "退款", "status": 1,
                                                 "submitter_email": FU_CUSTOMER, "followup_set": followups}}


def followup_post(client: FlaskClient, payload: dict[str, Any], token: str = FU_TOKEN):
    return client.post(f"/webhooks/generic/helpdesk/{token}", json=payload)


def test_a_helpdesk_that_cannot_sign_in_by_url_token_and_out_as_its_own_followup(stack):
    stack.customer("shop-f", FU_CUSTOMER)
    payload = followup_webhook(0)
    assert followup_post(stack.client, payload).status_code == 202
    assert followup_post(stack.client, payload).json["status"] == "duplicate"
    refused(followup_post(stack.client, followup_webhook(0, 2), token=FU_TOKEN[:-1] + "x"), 401,
            "token in the webhook URL does not match")
    refused(stack.client.post("/webhooks/generic/helpdesk", json=payload), 401, "must end with its token")
    refused(stack.client.post(f"/webhooks/generic/nosuch/{FU_TOKEN}", json=payload), 404, "no generic helpdesk")
    [event] = stack.events()
    assert (event.source, event.external_id, event.ticket_id, event.customer_id, event.author) == (
        "generic:helpdesk", "500", "9", "shop-f", "customer")

    stack.worker.run()
    [alert] = stack.alerts()
    assert alert.status == "delivered"
    [write] = stack.followups.writes
    assert write["path"] == "/api/followups/"
    assert write["authorization"] == "Basic " + base64.b64encode(f"{FU_USER}:{FU_PASSWORD}".encode()).decode()
    comment = write["body"].pop("comment")
    assert write["body"] == {"ticket": 9, "public": False}
    assert comment.endswith(f"(churnsignal alert {alert.id})")


@pytest.mark.parametrize("applied", [False, True], ids=["refused", "kept-but-answered-503"])
def test_a_helpdesk_that_cannot_sign_gets_one_note_after_a_503(stack, applied):
    stack.customer("shop-f", FU_CUSTOMER)
    stack.followups.fail_next(503, applied=applied)
    assert followup_post(stack.client, followup_webhook(0)).status_code == 202
    stack.worker.run()
    [alert] = stack.alerts()
    assert (alert.status, alert.attempts) == ("delivered", 2)
    assert len(stack.followups.followups) == 1
    assert stack.followups.reads == ["/api/followups/?ticket=9"]
    assert len(stack.followups.writes) == (1 if applied else 2)


def test_ten_simultaneous_followups_are_all_stored(stack):
    # Each webhook carries all ten follow-ups; only followup_id says which one it is about.
    payloads = [followup_webhook(n, 10) for n in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda p: stack.client.application.test_client().post(
            f"/webhooks/generic/helpdesk/{FU_TOKEN}", json=p).status_code, payloads))
    assert answers == [202] * 10
    assert sorted((e.external_id, e.text) for e in stack.events()) == [
        (str(500 + n), f"第{n + 1}次追问：退款呢？") for n in range(10)]
