"""Requests signed in the query string afresh for each call (``auth.query_signature``).

The stand-in is Udesk-shaped, from its open API (v2) documentation: every call carries
``email``, ``timestamp`` (Unix seconds), ``nonce`` (used once), ``sign_version=v2`` and
``sign = SHA256(email&open_api_token&timestamp&nonce&sign_version)`` in lower-case hex; a
session's messages are listed, and a note is added to a ticket.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy import select

from churnsignal.config import HelpdeskSettings, QuerySignature, Settings
from churnsignal.store import Event
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks import AlertMessage, DeliveryError
from churnsignal.webhook.helpdesks.query_signing import SignedQuery
from churnsignal.worker import pulling

EMAIL, API_TOKEN = "admin@shop.example", "udesk-open-api-token-3391"
UDESK_SIGNATURE = {"secret_env": "UDESK_TOKEN", "algorithm": "sha256",
                   "signed": "{email}&{secret}&{timestamp}&{nonce}&{sign_version}",
                   "params": {"email": EMAIL, "sign_version": "v2"}}
MAPPING = {"event_id": "id", "ticket_id": "session_id", "text": "content", "created_at": "created_at",
           "author_role": "sender", "requester_external_id": "customer_id"}


class Udesk:
    """Checks each call's signature and nonce as the documentation says Udesk does."""

    def __init__(self) -> None:
        self.nonces: set[str] = set()
        self.calls: list[dict[str, str]] = []
        self.notes: list[dict[str, Any]] = []
        self.messages = [{"id": 1, "session_id": 81, "content": "等了三天还没发货", "sender": "customer",
                          "customer_id": "u-7", "created_at": "2026-11-20T08:00:00Z"}]
        app = Flask(__name__)
        app.add_url_rule("/open_api_v1/im/sessions/<int:session>/messages", view_func=self._messages)
        app.add_url_rule("/open_api_v1/tickets/<int:ticket>/replies", view_func=self._note, methods=["POST"])
        app.before_request(self._signed)
        self.app = app
        self.base = ""  # where the fixture serves it

    def _signed(self) -> Any:
        query = request.args.to_dict()
        self.calls.append(query)
        text = "&".join([query.get("email", ""), API_TOKEN, query.get("timestamp", ""), query.get("nonce", ""),
                         query.get("sign_version", "")])
        if query.get("sign") != hashlib.sha256(text.encode()).hexdigest():
            return jsonify(code=2004, message="sign invalid"), 401
        if abs(time.time() - int(query["timestamp"])) > 300 or query["nonce"] in self.nonces:
            return jsonify(code=2005, message="nonce used or timestamp expired"), 401
        self.nonces.add(query["nonce"])
        return None

    def _messages(self, session: int) -> Any:
        return jsonify(code=1000, messages=[m for m in self.messages if m["session_id"] == session])

    def _note(self, ticket: int) -> Any:
        self.notes.append({"ticket": ticket} | request.get_json())
        return jsonify(code=1000), 200


@pytest.fixture
def udesk(serve) -> Udesk:
    server = Udesk()
    server.base = serve(server.app)
    return server


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDESK_TOKEN", API_TOKEN)


def test_the_signature_is_the_documented_hash_and_each_request_gets_its_own_nonce():
    signer = SignedQuery(QuerySignature(**UDESK_SIGNATURE), clock=lambda: 1494474404.7)
    params = signer.params("1494474404", "2d931510-d99f-494a-8c67-87feb05e1594")
    expected = hashlib.sha256(f"{EMAIL}&{API_TOKEN}&1494474404&2d931510-d99f-494a-8c67-87feb05e1594&v2".encode())
    assert params == {"email": EMAIL, "sign_version": "v2", "timestamp": "1494474404",
                      "nonce": "2d931510-d99f-494a-8c67-87feb05e1594", "sign": expected.hexdigest()}
    first, second = (signer(requests.Request("GET", "https://x.udesk.cn/open_api_v1/a?page=2").prepare())
                     for _ in range(2))
    assert first.url.startswith("https://x.udesk.cn/open_api_v1/a?page=2&email=admin%40shop.example&")
    assert "timestamp=1494474404&" in first.url and first.url != second.url  # a new nonce, a new signature


def test_a_pull_signs_every_call_and_a_note_goes_out_signed_too(tmp_path, redis_url, store, udesk, http):
    auth = {"query_signature": UDESK_SIGNATURE}
    pull = {"url": udesk.base + "/open_api_v1/im/sessions/{{ session }}/messages", "auth": auth,
            "values": {"session": "session_id"}, "messages": "messages"}
    note = {"method": "POST", "url": udesk.base + "/open_api_v1/tickets/{ticket_id}/replies", "auth": auth,
            "body": '{"content": {{ note | tojson }}, "type": "internal"}', "expect": [200]}
    generic = {"secret": "s", "mapping": MAPPING, "pull": pull, "outbound": [note]}
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": "t"},
                        helpdesks={"generic": {"udesk": generic}, "timeout_seconds": 2}, identity={"pepper": "p"})

    for _ in range(2):  # the second pull finds the message stored: nothing twice
        pulling.pull_notice(store, settings, "generic:udesk", {"session": 81}, http)
    with store.session() as session:
        assert [e.text for e in session.scalars(select(Event))] == ["等了三天还没发货"]

    alert = AlertMessage(alert_id=5, idempotency_key="k5", ticket_id="7001", tier="red", churn_prob=0.8,
                         reasons=[{"zh": "物流投诉1次", "en": "1 delivery complaint"}], driver="service",
                         action={"zh": "回访", "en": "call back"}, due_at=datetime(2026, 11, 21, 12),
                         customer_id="u-7")
    helpdesks.get("generic:udesk", settings.helpdesks).post_alert(alert, http)
    [posted] = udesk.notes
    assert posted["ticket"] == 7001 and "(churnsignal alert 5)" in posted["content"]
    assert len(udesk.calls) == 3 and len(udesk.nonces) == 3  # every call signed, no nonce reused


def test_a_wrong_token_is_refused_by_the_helpdesk_and_fails_the_pull_for_good(tmp_path, redis_url, store, udesk,
                                                                               http, monkeypatch):
    monkeypatch.setenv("UDESK_TOKEN", "not-the-token")
    pull = {"url": udesk.base + "/open_api_v1/im/sessions/{{ session }}/messages",
            "auth": {"query_signature": UDESK_SIGNATURE}, "values": {"session": "session_id"}, "messages": "messages"}
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": "t"},
                        helpdesks={"generic": {"udesk": {"secret": "s", "mapping": MAPPING, "pull": pull}},
                                   "timeout_seconds": 2}, identity={"pepper": "p"})
    with pytest.raises(DeliveryError) as failed:
        pulling.pull_notice(store, settings, "generic:udesk", {"session": 81}, http)
    assert failed.value.permanent and "not-the-token" not in str(failed.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"signed": "{email}&{timestamp}&{nonce}"}, "must contain {secret}"),
    ({"signed": "{email}&{secret}&{tiemstamp}"}, "unknown placeholder {tiemstamp}"),
    ({"secret_env": "UDESK_TOKEN_UNSET"}, "environment variable UDESK_TOKEN_UNSET is not set"),
    ({"algorithm": "crc32"}, "algorithm"),
])
def test_a_bad_query_signature_stops_the_service_at_start(change, message):
    note = {"method": "POST", "url": "https://x.udesk.cn/open_api_v1/tickets/{ticket_id}/replies",
            "auth": {"query_signature": UDESK_SIGNATURE | change}, "body": "{}"}
    with pytest.raises(ValidationError, match="query_signature") as refused:
        HelpdeskSettings(generic={"udesk": {"secret": "s", "mapping": MAPPING, "outbound": [note]}})
    assert message in str(refused.value)
