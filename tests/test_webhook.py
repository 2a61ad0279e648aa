"""The web side: signed webhooks in, persisted first, queued on the real broker; health, metrics, logs.

Every store test runs on SQLite and on the real PostgreSQL (the ``store`` fixture); queueing
is checked on the real Redis by reading the message off its list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select

from churnsignal.config import Settings
from churnsignal.store import Base, Delivery, Event, Identity, Store
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import Requester, SupportEvent
from churnsignal.webhook.identity import FALLBACK_PREFIX, key_hash, link, resolve

PHONE = "13812345678"
EMAIL = "zhang.san@example.com"
ADDRESS = "浙江省杭州市西湖区文三路100号5幢302室"
TEXT = f"快递三天没到，客服也不回。我的电话{PHONE}，邮箱{EMAIL}，地址{ADDRESS}"
TOKEN = "test-api-token"
PEPPER = "test-pepper"
ZENDESK_SECRET = "zendesk-signing-secret"
GENERIC_SECRET = "acme-secret"
HELPDESKS = {
    "zendesk": {"signing_secret": ZENDESK_SECRET},
    "chatwoot": {"webhook_secret": "chatwoot-secret"},
    "freshdesk": {"webhook_secret": "freshdesk-secret"},
    "zammad": {"webhook_secret": "zammad-secret"},
    "generic": {"acme": {"secret": GENERIC_SECRET, "mapping": {
        "event_id": "id", "ticket_id": "ticket.id", "text": "message.text", "created_at": "message.at",
        "author_role": "message.role", "requester_id": "customer.id", "requester_email": "customer.email",
        "requester_phone": "customer.phone", "requester_external_id": "customer.uid",
        "ticket_status": "ticket.state", "status_values": {"closed": "solved"}}}},
}
PATHS = {"zendesk": "/webhooks/zendesk", "chatwoot": "/webhooks/chatwoot", "freshdesk": "/webhooks/freshdesk",
         "zammad": "/webhooks/zammad", "generic:acme": "/webhooks/generic/acme"}
DOWN_BROKER = "redis://127.0.0.1:1/0"
DOWN_STORE = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def make_settings(tmp_path, broker_url, **overrides) -> Settings:
    service = {"broker_url": broker_url, "data_dir": tmp_path, "api_token": TOKEN} | overrides.pop("service", {})
    return Settings(service=service, helpdesks=overrides.pop("helpdesks", HELPDESKS),
                    identity=overrides.pop("identity", {"pepper": PEPPER}), **overrides)


@pytest.fixture
def settings(tmp_path, redis_url) -> Settings:
    return make_settings(tmp_path, redis_url)


@pytest.fixture
def client(settings, store):
    return create_app(settings, store=store).test_client()


def message(event_id="1001", *, author="customer", text=TEXT, ticket_id="77", requester=None,
            created_at=datetime(2025, 1, 8, 14, 25)) -> SupportEvent:
    return SupportEvent(source="", event_id=event_id, ticket_id=ticket_id, author=author, text=text,
                        created_at=created_at, requester=requester or Requester(id="501", email=EMAIL, phone=PHONE),
                        channel="chat")


def deliver(client, settings, source, event, now=None):
    headers, body = helpdesks.get(source, settings.helpdesks).signed_request(event, now or datetime.now(UTC))
    return client.post(PATHS[source], data=body, headers=headers)


def zendesk_post(client, body: bytes, now=None, secret=ZENDESK_SECRET):
    """A Zendesk-signed POST of any bytes (base64 HMAC-SHA256 of timestamp + body, as documented)."""
    timestamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest())
    return client.post("/webhooks/zendesk", data=body, headers={
        "Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature.decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp})


def generic_post(client, body: bytes):
    signature = hmac.new(GENERIC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/webhooks/generic/acme", data=body,
                       headers={"Content-Type": "application/json", "X-Signature-256": signature})


def queued_tasks(redis_url) -> list[tuple[str, list[int]]]:
    """The task messages on the Redis queue: (task name, event ids)."""
    raw = redis.Redis.from_url(redis_url).lrange("churnsignal", 0, -1)
    messages = [json.loads(item) for item in raw]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0][0]) for m in messages]


def events(store) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def count(store, model) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def everything_stored(store) -> str:
    """Every value of every row of every table, as one text to search."""
    with store.engine.connect() as connection:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in connection.execute(table.select()))


def assert_json_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert isinstance(response.json["error"], str) and response.json["error"]
    return response.json["error"]


# ---------------------------------------------------------------- accepted, duplicate, ignored


@pytest.mark.parametrize("source", list(PATHS))
def test_signed_delivery_is_stored_masked_then_queued_on_redis(client, settings, store, redis_url, source):
    response = deliver(client, settings, source, message())
    assert response.status_code == 202, response.json
    assert response.json["status"] == "accepted"
    [event] = events(store)
    assert response.json["event_ids"] == [event.id]
    assert (event.source, event.ticket_id, event.author, event.status) == (source, "77", "customer", "queued")
    assert event.queued_at is not None and event.delivery_id is not None
    assert "[PHONE]" in event.text and "[EMAIL]" in event.text and "[ADDRESS]" in event.text
    assert queued_tasks(redis_url) == [("churnsignal.process_events", [event.id])]
    stored = everything_stored(store)
    for personal in (PHONE, "1234 5678", EMAIL, ADDRESS, "文三路"):
        assert personal not in stored


def test_redelivery_is_a_duplicate_stored_and_queued_once(client, settings, store, redis_url):
    first = deliver(client, settings, "chatwoot", message())
    again = deliver(client, settings, "chatwoot", message())
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "event_ids": first.json["event_ids"]}
    assert count(store, Event) == 1 and count(store, Delivery) == 1
    assert len(queued_tasks(redis_url)) == 1


def test_a_delivery_racing_another_is_answered_as_a_duplicate(client, settings, store, redis_url, monkeypatch):
    # The other delivery commits the same message between this one's lookup and its insert:
    # the unique constraint refuses the insert, and the answer is the other one's event.
    from churnsignal.webhook import inbound

    resolve_once = inbound.identity.resolve
    raced = []

    def concurrent_commit(session, source, requester, identity_settings):
        if not raced:
            with store.session() as other:
                delivery = Delivery(source=source, received_at=datetime(2025, 1, 1), body="{}")
                other.add(delivery)
                other.flush()
                other.add(Event(delivery_id=delivery.id, source=source, external_id="1001", ticket_id="77",
                                customer_id="c", author="customer", channel="chat", text="-",
                                created_at=datetime(2025, 1, 1), received_at=datetime(2025, 1, 1), status="queued"))
                other.flush()
                raced.append(delivery.id)
        return resolve_once(session, source, requester, identity_settings)

    monkeypatch.setattr(inbound.identity, "resolve", concurrent_commit)
    response = deliver(client, settings, "generic:acme", message())
    [event] = events(store)
    assert response.status_code == 200, response.json
    assert response.json == {"status": "duplicate", "event_ids": [event.id]}
    assert count(store, Delivery) == 1
    assert queued_tasks(redis_url) == []


@pytest.mark.parametrize("source", list(PATHS))
def test_the_ticket_status_is_stored_as_the_helpdesk_reports_it(client, settings, store, source):
    # Three texts: Freshdesk's event id digests the text.
    for number, status in enumerate(["solved", "pending", None]):
        event = replace(message(f"300{number}", text=f"{TEXT} ({number})"), ticket_status=status)
        assert deliver(client, settings, source, event).status_code == 202
    assert [e.ticket_status for e in events(store)] == ["solved", "pending", None]


def test_agent_and_bot_messages_are_stored_and_kinds_without_messages_ignored(client, settings, store):
    agent = deliver(client, settings, "chatwoot", message("2001", author="agent", text="您好，已为您加急"))
    bot = deliver(client, settings, "generic:acme", message("2002", author="bot", text="自动回复"))
    assert agent.status_code == bot.status_code == 202
    assert [e.author for e in events(store)] == ["agent", "bot"]
    status_changed = json.dumps({"type": "zen:event-type:ticket.status_changed", "id": "x",
                                 "time": "2025-01-08T14:25:30Z", "detail": {"id": "77"}, "event": {}}).encode()
    ignored = zendesk_post(client, status_changed)
    assert ignored.status_code == 200 and ignored.json == {"status": "ignored"}
    assert count(store, Delivery) == 2


def test_our_own_alert_note_coming_back_is_not_an_agent_reply(client, settings, store):
    note = "【流失风险 RED】概率 87%\n...\n(churnsignal alert 12)"
    assert deliver(client, settings, "zendesk", message("2003", author="agent", text=note)).status_code == 202
    assert deliver(client, settings, "zendesk", message("2004", author="agent", text="您好，已为您加急")).status_code == 202
    assert [e.author for e in events(store)] == ["bot", "agent"]


def test_escaped_unicode_body_is_stored_masked(client, store):
    # json.dumps' default escapes Chinese as \\uXXXX, which would hide an address from the masker.
    payload = {"id": "3001", "ticket": {"id": "9"}, "customer": {"email": EMAIL},
               "message": {"text": TEXT, "at": "2025-01-08T14:25:30Z", "role": "customer"}}
    body = json.dumps(payload).encode()
    assert b"\\u" in body
    response = generic_post(client, body)
    assert response.status_code == 202, response.json
    stored = everything_stored(store)
    escaped_address = json.dumps(ADDRESS)[1:-1]
    for personal in (PHONE, EMAIL, ADDRESS, escaped_address, escaped_address.lower()):
        assert personal not in stored
    with store.session() as session:
        assert "[ADDRESS]" in session.scalar(select(Delivery.body))


# What a helpdesk sends along that no adapter reads: a name, an IP address, the shop's own fields.
NAME, IP = "张伟", "203.0.113.9"
SENT_ALONG = {"name": NAME, "ip_address": IP, "browser": "Chrome 126"}
PAYLOADS = {
    "zendesk": {
        "ticket": {"id": "77", "via": "Web Form", "subject": "快递没到",
                   "requester": {"id": "501", "email": EMAIL, "phone": PHONE, "external_id": "", **SENT_ALONG}},
        "comment": {"id": "1001", "body": TEXT, "is_public": "true", "author_id": "501",
                    "created_at": "2025-01-08T14:25:30Z", "author": SENT_ALONG},
        "account": {"subdomain": "shop", "owner": NAME},
    },
    "chatwoot": {
        "event": "message_created", "id": 1001, "content": TEXT, "created_at": "2025-01-08T14:25:30.000Z",
        "message_type": "incoming", "private": False, "content_attributes": {"browser": SENT_ALONG},
        "sender": {"id": 501, "type": "contact", "email": EMAIL, "phone_number": PHONE, **SENT_ALONG},
        "conversation": {"id": 77, "channel": "Channel::WebWidget",
                         "meta": {"sender": {"id": 501, "email": EMAIL, **SENT_ALONG}},
                         "additional_attributes": {"browser": SENT_ALONG}},
        "inbox": {"id": 1, "name": "网站"}, "account": {"id": 1, "name": NAME},
    },
    "freshdesk": {
        "event": "reply_sent", "author": "customer", "ticket_id": "77", "source": "Email",
        "text": f"{NAME} : <div>{TEXT}</div>",
        "contact": {"email": EMAIL, "phone": "", "mobile": PHONE, "external_id": "", **SENT_ALONG},
        "requester_ip": IP,
    },
    "zammad": {
        "ticket": {"id": 77, "state": "open", "title": "快递没到", "customer_id": 501,
                   "customer": {"id": 501, "email": EMAIL, "login": EMAIL, "mobile": PHONE, "firstname": NAME,
                                "address": ADDRESS, **SENT_ALONG}},
        "article": {"id": 1001, "sender": "Customer", "internal": False, "type": "web", "content_type": "text/plain",
                    "body": TEXT, "created_at": "2025-01-08T14:25:30Z", "from": f"{NAME} <{EMAIL}>",
                    "created_by": SENT_ALONG},
    },
    "generic:acme": {
        "id": "1001", "ticket": {"id": "77", "assignee": NAME},
        "message": {"text": TEXT, "at": "2025-01-08T14:25:30Z", "role": "customer"},
        "customer": {"id": "501", "email": EMAIL, "phone": int(PHONE), **SENT_ALONG},  # a number, as some send it
    },
}


def signed_post(client, source: str, payload: dict):
    """POST a payload signed as ``source`` signs it."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    if source == "zendesk":
        return zendesk_post(client, body)
    if source == "generic:acme":
        return generic_post(client, body)
    if source == "chatwoot":
        timestamp = str(int(datetime.now(UTC).timestamp()))
        digest = hmac.new(b"chatwoot-secret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": timestamp}
    elif source == "zammad":
        headers = {"X-Hub-Signature": "sha1=" + hmac.new(b"zammad-secret", body, hashlib.sha1).hexdigest()}
    else:
        headers = {"X-Churnsignal-Secret": "freshdesk-secret"}
    return client.post(PATHS[source], data=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("source", list(PAYLOADS))
def test_the_delivery_body_keeps_only_the_fields_read_and_those_masked(client, store, source):
    response = signed_post(client, source, PAYLOADS[source])
    assert response.status_code == 202, response.json
    with store.session() as session:
        body = session.scalar(select(Delivery.body))
    assert "[PHONE]" in body and "[EMAIL]" in body and "[ADDRESS]" in body
    for dropped in (NAME, IP, "ip_address", "browser", "Chrome", "网站", "subject", "快递没到"):
        assert dropped not in body
    stored = everything_stored(store)
    for personal in (NAME, IP, PHONE, EMAIL, ADDRESS):
        assert personal not in stored
    [event] = events(store)
    assert (event.ticket_id, event.author) == ("77", "customer")


# ---------------------------------------------------------------- refused requests: JSON errors


def test_bad_signature_is_401(client, settings, store):
    headers, body = helpdesks.get("zendesk", settings.helpdesks).signed_request(message(), datetime.now(UTC))
    assert "signature" in assert_json_error(client.post(PATHS["zendesk"], data=body + b" ", headers=headers), 401)
    unsigned = client.post(PATHS["generic:acme"], data=b"{}", headers={"Content-Type": "application/json"})
    assert_json_error(unsigned, 401)
    assert count(store, Event) == 0


def test_a_zammad_webhook_is_stored_with_its_author_and_status(client, store, redis_url):
    payload = json.loads(json.dumps(PAYLOADS["zammad"]))
    assert signed_post(client, "zammad", payload).status_code == 202
    payload["article"].update(id=1002, internal=True, body="客户情绪很差，需回访")   # an internal note
    payload["ticket"]["state"] = "pending reminder"
    assert signed_post(client, "zammad", payload).status_code == 202
    payload["article"].update(id=1003, sender="Agent", internal=True, body="【流失风险 RED】\n(churnsignal alert 5)")
    payload["ticket"]["state"] = "closed"
    assert signed_post(client, "zammad", payload).status_code == 202
    assert [(e.source, e.ticket_id, e.author, e.ticket_status) for e in events(store)] == [
        ("zammad", "77", "customer", "open"), ("zammad", "77", "agent", "pending"), ("zammad", "77", "bot", "solved")]
    assert len(queued_tasks(redis_url)) == 3


def test_a_zammad_webhook_without_or_with_a_wrong_signature_is_401(client, store):
    body = json.dumps(PAYLOADS["zammad"]).encode()
    missing = client.post(PATHS["zammad"], data=body, headers={"Content-Type": "application/json"})
    assert "X-Hub-Signature" in assert_json_error(missing, 401)
    wrong = "sha1=" + hmac.new(b"not-the-secret", body, hashlib.sha1).hexdigest()
    refused = client.post(PATHS["zammad"], data=body, headers={"Content-Type": "application/json",
                                                                "X-Hub-Signature": wrong})
    assert "signature" in assert_json_error(refused, 401)
    assert count(store, Event) == 0


def test_replayed_zendesk_timestamp_is_401(client, settings, store):
    response = deliver(client, settings, "zendesk", message(), now=datetime.now(UTC) - timedelta(hours=1))
    assert "replay" in assert_json_error(response, 401)
    assert count(store, Event) == 0


def test_malformed_json_invalid_utf8_and_wrong_types(client, store):
    error = assert_json_error(zendesk_post(client, b'{"type": "zen:event-type:ticket.comment_added",'), 400)
    assert "not JSON" in error and "column" in error
    error = assert_json_error(zendesk_post(client, '{"text": "快递"}'.encode() + b"\xff\xfe"), 400)
    assert "UTF-8" in error and "0xff" in error and "offset 18" in error
    wrong = {"type": "zen:event-type:ticket.comment_added", "id": "e", "time": "2025-01-08T14:25:30Z",
             "detail": {"id": "77", "requester_id": "501"},
             "event": {"comment": {"id": "1", "body": 12345, "is_public": True, "author": {"is_staff": False}}}}
    error = assert_json_error(zendesk_post(client, json.dumps(wrong).encode()), 422)
    assert "event.comment.body" in error
    assert_json_error(zendesk_post(client, b"[1, 2]"), 422)
    assert count(store, Event) == 0 and count(store, Delivery) == 0


def test_body_over_the_limit_is_413(client, store):
    response = client.post(PATHS["zendesk"], data=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert "CHURNSIGNAL_SERVICE__MAX_BODY_BYTES" in assert_json_error(response, 413)


def test_unknown_routes_methods_and_helpdesks_are_json(client, tmp_path, redis_url, store):
    assert_json_error(client.get("/nowhere"), 404)
    assert_json_error(client.post("/webhooks/intercom", data=b"{}"), 404)
    assert "POST" in assert_json_error(client.get("/webhooks/zendesk"), 405)
    assert "helpdesks.generic.other" in assert_json_error(client.post("/webhooks/generic/other", data=b"{}"), 404)
    unconfigured = create_app(make_settings(tmp_path, redis_url, helpdesks={}), store=store).test_client()
    error = assert_json_error(unconfigured.post("/webhooks/zendesk", data=b"{}"), 403)
    assert "CHURNSIGNAL_HELPDESKS__ZENDESK__SIGNING_SECRET" in error
    error = assert_json_error(unconfigured.post("/webhooks/zammad", data=b"{}"), 403)
    assert "CHURNSIGNAL_HELPDESKS__ZAMMAD__WEBHOOK_SECRET" in error


# ---------------------------------------------------------------- outages


def test_broker_down_still_accepts_and_leaves_the_event_received(tmp_path, store, caplog):
    settings = make_settings(tmp_path, DOWN_BROKER)
    client = create_app(settings, store=store).test_client()
    with caplog.at_level(logging.WARNING, logger="churnsignal.webhook"):
        response = deliver(client, settings, "zendesk", message())
    assert response.status_code == 202, response.json
    [event] = events(store)
    assert response.json["event_ids"] == [event.id]
    assert event.status == "received" and event.queued_at is None
    assert "broker unavailable" in caplog.text


@pytest.fixture
def hung_broker() -> Iterator[str]:
    """A Redis URL whose server accepts connections (the kernel does) but never answers,
    as a stopped (SIGSTOP) or wedged Redis does."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_hung_broker_delays_one_webhook_by_its_timeout_and_no_more(tmp_path, store, hung_broker, caplog):
    settings = make_settings(tmp_path, hung_broker, service={"broker_timeout_seconds": 1.0})
    client = create_app(settings, store=store).test_client()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="churnsignal.webhook"):
        first = deliver(client, settings, "zendesk", message("1"))
    first_took = time.monotonic() - started
    assert first.status_code == 202, first.json
    assert first_took < 5, first_took
    assert "not trying again for 30 s" in caplog.text
    started = time.monotonic()
    later = [deliver(client, settings, "zendesk", message(str(i))).status_code for i in range(2, 7)]
    assert later == [202] * 5
    assert time.monotonic() - started < 2
    assert [e.status for e in events(store)] == ["received"] * 6  # the sweeper queues them


def test_healthz_answers_within_2_s_whatever_the_broker_does(tmp_path, store, hung_broker):
    client = create_app(make_settings(tmp_path, hung_broker), store=store).test_client()
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json["store"] == "ok" and response.json["broker"].startswith("unreachable")


def test_store_down_is_503_with_retry_after(tmp_path, redis_url):
    settings = make_settings(tmp_path, redis_url)
    client = create_app(settings, store=Store(DOWN_STORE)).test_client()
    response = deliver(client, settings, "zendesk", message())
    assert_json_error(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert queued_tasks(redis_url) == []
    read = client.get("/api/customers/c1/risk", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_json_error(read, 503)
    assert read.headers["Retry-After"]


def test_embedded_sqlite_broker_receives_the_task(tmp_path):
    # The zero-configuration deployment: SQLite store and kombu's SQLite broker in data_dir.
    settings = make_settings(tmp_path, None)
    assert settings.service.broker().startswith("sqla+sqlite:///")
    store = Store(settings.service.database())
    store.upgrade()
    client = create_app(settings).test_client()
    response = deliver(client, settings, "zendesk", message())
    assert response.status_code == 202
    [event] = events(store)
    assert event.status == "queued"
    with sqlite3.connect(tmp_path / "broker.db") as broker:
        payloads = [json.loads(row[0]) for row in broker.execute("SELECT payload FROM kombu_message")]
    assert [(p["headers"]["task"], json.loads(base64.b64decode(p["body"]))[0][0]) for p in payloads] == [
        ("churnsignal.process_events", [event.id])]
    store.dispose()


# ---------------------------------------------------------------- no personal data in logs


def test_logs_hold_no_personal_data(client, settings, store, caplog):
    caplog.set_level(logging.DEBUG)
    requester = Requester(id="501", email=EMAIL, phone=PHONE)
    deliver(client, settings, "chatwoot", message(requester=requester))
    deliver(client, settings, "chatwoot", message(requester=requester))
    client.get(f"/api/customers/{EMAIL}/risk", headers={"Authorization": f"Bearer {TOKEN}"})
    logged = caplog.text + "\n".join(str(record.args) for record in caplog.records)
    assert "POST /webhooks/chatwoot 202" in caplog.text
    assert "POST /webhooks/chatwoot 200" in caplog.text
    for personal in (PHONE, EMAIL, ADDRESS, "文三路", "快递三天没到"):
        assert personal not in logged


# ---------------------------------------------------------------- identity


def test_key_hash_normalises_and_scopes():
    pepper = "p"
    assert key_hash("email", " Zhang.San@Example.COM ", None, pepper) == key_hash("email", EMAIL, "zendesk", pepper)
    phones = {key_hash("phone", p, None, pepper) for p in (PHONE, "+86 138-1234-5678", "0086 13812345678",
                                                            "8613812345678")}
    assert len(phones) == 1
    assert key_hash("phone", "+86 10 1234 5678", None, pepper) == key_hash("phone", "010-12345678", None, pepper)
    assert key_hash("id", "501", "zendesk", pepper) != key_hash("id", "501", "chatwoot", pepper)
    assert key_hash("external_id", "u1", "zendesk", pepper) == key_hash("external_id", "u1", "chatwoot", pepper)
    assert key_hash("email", EMAIL, None, "other") != key_hash("email", EMAIL, None, pepper)
    assert len(key_hash("email", EMAIL, None, pepper)) == 64
    with pytest.raises(ValueError):
        key_hash("id", "501", None, pepper)


def test_resolve_prefers_linked_keys_then_external_id_then_a_hash(store, settings):
    identity = settings.identity
    with store.session() as session:
        link(session, "shop-42", "email", "ZHANG.SAN@example.com", pepper=identity.pepper)
        link(session, "shop-7", "id", "501", "zendesk", pepper=identity.pepper)
    with store.session() as session:
        assert resolve(session, "chatwoot", Requester(id="9", email=EMAIL), identity) == "shop-42"
        assert resolve(session, "zendesk", Requester(id="501"), identity) == "shop-7"
        # The same helpdesk user id elsewhere is someone else.
        other = resolve(session, "chatwoot", Requester(id="501"), identity)
        assert other.startswith(FALLBACK_PREFIX) and len(other) == len(FALLBACK_PREFIX) + 16
        assert resolve(session, "chatwoot", Requester(external_id="u-9", email="a@b.cn"), identity) == "u-9"
        # external_id comes first in the order: a linked one wins over the linked email.
        link(session, "shop-99", "external_id", "u-9", pepper=identity.pepper)
        assert resolve(session, "chatwoot", Requester(external_id="u-9", email=EMAIL), identity) == "shop-99"
        unlinked = resolve(session, "chatwoot", Requester(email="new@example.com", phone=PHONE), identity)
        assert unlinked == FALLBACK_PREFIX + key_hash("email", "new@example.com", None, identity.pepper)[:16]


@pytest.mark.parametrize("contact", ["leak.ident@example.com", PHONE, "+86 138-1234-5678", "１３８１２３４５６７８"])
def test_an_external_id_that_is_an_email_or_a_phone_is_hashed_like_any_key(store, settings, contact):
    identity = settings.identity
    hashed = FALLBACK_PREFIX + key_hash("external_id", contact, None, identity.pepper)[:16]
    with store.session() as session:
        assert resolve(session, "chatwoot", Requester(external_id=contact), identity) == hashed
        assert resolve(session, "zendesk", Requester(id="5", email="a@b.cn", external_id=contact), identity) == hashed
        link(session, "shop-5", "external_id", contact, pepper=identity.pepper)
        assert resolve(session, "chatwoot", Requester(external_id=contact), identity) == "shop-5"


@pytest.mark.parametrize("source", list(PATHS))
def test_an_external_id_that_is_an_email_or_a_phone_is_stored_nowhere_in_clear(client, settings, store, source):
    for number, contact in enumerate(["leak.ident@example.com", "139.8765.4321"]):
        requester = Requester(id="501", email="other@example.com", external_id=contact)
        # Freshdesk knows a message by its text, so each differs.
        response = deliver(client, settings, source, message(str(number), text=f"{TEXT} {number}", requester=requester))
        assert response.status_code == 202, response.json
    assert all(event.customer_id.startswith(FALLBACK_PREFIX) for event in events(store))
    stored = everything_stored(store)
    for personal in ("leak.ident", "139.8765.4321", "13987654321"):
        assert personal not in stored


def test_webhook_resolves_linked_and_unlinked_requesters(client, settings, store):
    linked = client.post("/api/identities", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"identities": [{"customer_id": "shop-42", "email": EMAIL.upper()}]})
    assert linked.status_code == 200 and linked.json == {"linked": 1, "moved_events": 0}
    deliver(client, settings, "chatwoot", message("1", requester=Requester(id="8", email=EMAIL)))
    deliver(client, settings, "chatwoot", message("2", requester=Requester(id="9", email="li.si@example.com")))
    known, unknown = events(store)
    assert known.customer_id == "shop-42"
    assert unknown.customer_id.startswith(FALLBACK_PREFIX)
    stored = everything_stored(store)
    assert EMAIL not in stored and EMAIL.upper() not in stored and "li.si@example.com" not in stored
    with store.session() as session:
        assert all(len(h) == 64 for h in session.scalars(select(Identity.key_hash)))


# ---------------------------------------------------------------- health and metrics


def fusion_model_file(path):
    """A model file as far as ``describe`` reads it (model.json only; health never unpickles)."""
    import sklearn

    from churnsignal import __version__

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.json", json.dumps({"format": "churnsignal-fusion", "churnsignal": __version__,
                                                   "scikit-learn": sklearn.__version__}))
    return path


def test_healthz_ok_when_store_broker_and_models_are(tmp_path, redis_url, store):
    settings = make_settings(tmp_path, redis_url, alerts={"model_path": fusion_model_file(tmp_path / "m.zip")})
    response = create_app(settings, store=store).test_client().get("/healthz")
    assert response.status_code == 200, response.json
    assert response.json == {"store": "ok", "broker": "ok",
                             "models": {"fusion": "ok", "sentiment": "ok", "entities": "ok"}}


def test_healthz_503_names_what_is_down(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    settings = make_settings(tmp_path, DOWN_BROKER, alerts={"model_path": tmp_path / "bad.zip"},
                             entities={"model_dir": tmp_path / "nowhere"})
    response = create_app(settings, store=Store(DOWN_STORE)).test_client().get("/healthz")
    assert response.status_code == 503
    report = response.json
    assert report["store"].startswith("unreachable") and report["broker"].startswith("unreachable")
    assert "not a churnsignal fusion model" in report["models"]["fusion"]
    assert report["models"]["sentiment"] == "ok"
    assert "CHURNSIGNAL_ENTITIES__MODEL_DIR" in report["models"]["entities"]
    unset = create_app(make_settings(tmp_path, DOWN_BROKER), store=Store(DOWN_STORE)).test_client().get("/healthz")
    assert "CHURNSIGNAL_ALERTS__MODEL_PATH" in unset.json["models"]["fusion"]


def test_metrics_count_requests_and_read_the_store(client, settings, store):
    deliver(client, settings, "zendesk", message())
    client.get("/nowhere")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'churnsignal_http_requests_total{endpoint="/webhooks/zendesk",method="POST",status="202"} 1.0' in text
    assert 'churnsignal_http_requests_total{endpoint="unmatched",method="GET",status="404"} 1.0' in text
    assert "churnsignal_http_request_duration_seconds_bucket" in text
    assert "churnsignal_store_up 1.0" in text
    assert 'churnsignal_events{status="queued"} 1.0' in text
    assert 'churnsignal_events{status="received"} 0.0' in text
    assert "churnsignal_oldest_unprocessed_event_age_seconds" in text
    assert "# TYPE churnsignal_alerts gauge" in text and "# TYPE churnsignal_alerts_overdue gauge" in text


def test_made_up_http_methods_add_no_metric_series(client):
    for index in range(30):
        client.open("/healthz", method=f"FAKE{index}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "FAKE" not in text
    assert 'churnsignal_http_requests_total{endpoint="unmatched",method="other",status="405"} 30.0' in text


@pytest.mark.parametrize("path", ["/x%0A2025-01-01 INFO forged: admin logged in", "/x%0D%0Aforged", "/x%00y",
                                  "/api/customers/a%0Aforged/risk"])
def test_a_request_path_cannot_forge_a_log_line(client, caplog, path):
    with caplog.at_level(logging.DEBUG, logger="churnsignal.webhook"):
        client.get(path)
    lines = [record.getMessage() for record in caplog.records]
    assert lines and all(not any(c in line for c in "\n\r\x00") for line in lines), lines
    assert any("\\n" in line or "\\r" in line or "\\x00" in line for line in lines), lines


def test_the_web_app_refuses_to_start_without_a_pepper(tmp_path, redis_url, store):
    from churnsignal.config import MissingSetting

    with pytest.raises(MissingSetting, match="CHURNSIGNAL_IDENTITY__PEPPER"):
        create_app(make_settings(tmp_path, redis_url, identity={}), store=store)

