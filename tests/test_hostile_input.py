"""Signed but hostile input: every answer is a 4xx with a JSON reason, or an accepted message.

A helpdesk retries a 500 for ever, so nothing a signed sender can put in a body may cause
one: times out of range, numbers of thousands of digits, blank requesters, lone surrogates,
NUL. Every test runs on SQLite and on the real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from churnsignal.config import Settings
from churnsignal.store import Delivery, Event, Identity, Order
from churnsignal.webhook.app import create_app

TOKEN = "test-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = {"zendesk": "z-secret", "chatwoot": "c-secret", "freshdesk": "f-secret", "zammad": "m-secret",
           "generic": "g-secret"}
MAPPING = {"event_id": "id", "ticket_id": "ticket.id", "text": "message.text", "created_at": "message.at",
           "author_role": "message.role", "requester_id": "customer.id", "requester_email": "customer.email",
           "requester_phone": "customer.phone", "requester_external_id": "customer.uid"}
PATHS = {"zendesk": "/webhooks/zendesk", "chatwoot": "/webhooks/chatwoot", "freshdesk": "/webhooks/freshdesk",
         "zammad": "/webhooks/zammad", "generic": "/webhooks/generic/shop"}
# Stands for a JSON number too long to write as a Python int: replaced in the body text.
BIG_NUMBER = "<5000 digits>"
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", 1e20, 10**30, float("inf"),
                      float("nan"), -1e20, "1800-01-01T00:00:00Z"]


@pytest.fixture
def client(tmp_path, redis_url, store):
    config = Settings(
        service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": TOKEN},
        identity={"pepper": "test-pepper"},
        helpdesks={"zendesk": {"signing_secret": SECRETS["zendesk"]},
                   "chatwoot": {"webhook_secret": SECRETS["chatwoot"]},
                   "freshdesk": {"webhook_secret": SECRETS["freshdesk"]},
                   "zammad": {"webhook_secret": SECRETS["zammad"]},
                   "generic": {"shop": {"secret": SECRETS["generic"], "mapping": MAPPING}}})
    return create_app(config, store=store).test_client()


def payload(source: str, event_id: str = "1001") -> dict[str, Any]:
    """A message as each helpdesk sends it (see the adapters' docstrings)."""
    now = datetime.now(UTC).isoformat()
    if source == "zendesk":
        return {"type": "zen:event-type:ticket.comment_added", "id": f"evt-{event_id}", "time": now,
                "detail": {"id": "77", "requester_id": "501", "via": {"channel": "web"}},
                "event": {"comment": {"id": event_id, "body": "快递三天没到", "is_public": True,
                                      "author": {"id": "501", "is_staff": False, "name": "张伟"}}}}
    if source == "chatwoot":
        contact = {"id": 7, "email": "li@example.com", "phone_number": None, "identifier": None, "type": "contact"}
        return {"event": "message_created", "id": event_id, "content": "快递三天没到", "created_at": now,
                "message_type": "incoming", "private": False, "sender": contact,
                "conversation": {"id": 101, "channel": "Channel::WebWidget", "meta": {"sender": contact}}}
    if source == "freshdesk":
        return {"event": "reply_sent", "author": "customer", "ticket_id": "88", "source": "Email",
                "text": f"Li : <div>快递三天没到 {event_id}</div>",
                "contact": {"email": "li@example.com", "phone": "", "mobile": "", "external_id": ""}}
    if source == "zammad":
        return {"ticket": {"id": 81, "state": "open", "customer_id": 8,
                           "customer": {"id": 8, "email": "li@example.com", "login": "li@example.com", "mobile": ""}},
                "article": {"id": event_id, "sender": "Customer", "internal": False, "type": "email",
                            "content_type": "text/html", "body": "快递三天没到<br>", "created_at": now}}
    return {"id": event_id, "ticket": {"id": "9"}, "customer": {"id": "c-1", "email": "li@example.com"},
            "message": {"text": "快递三天没到", "at": now, "role": "customer"}}


def encode(value: Any) -> bytes:
    """JSON as a sender writes it, escaping what UTF-8 cannot carry (lone surrogates)."""
    return json.dumps(value).replace(json.dumps(BIG_NUMBER), "9" * 5000).encode()


def signed_post(client, source: str, body: bytes, timestamp: str | None = None):
    """``body`` signed as each helpdesk signs (computed here, not by the code under test)."""
    key = SECRETS[source].encode()
    headers = {"Content-Type": "application/json"}
    if source == "zendesk":
        timestamp = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        digest = hmac.new(key, timestamp.encode() + body, hashlib.sha256).digest()
        headers |= {"X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
                    "X-Zendesk-Webhook-Signature-Timestamp": timestamp}
    elif source == "chatwoot":
        timestamp = timestamp or str(int(datetime.now(UTC).timestamp()))
        digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers |= {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": timestamp}
    elif source == "freshdesk":
        headers["X-Churnsignal-Secret"] = SECRETS[source]
    elif source == "zammad":
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
    else:
        headers["X-Signature-256"] = hmac.new(key, body, hashlib.sha256).hexdigest()
    return client.post(PATHS[source], data=body, headers=headers)


def count(store, model, *where) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.json["error"]
    return response.json["error"]


def with_value(document: Any, path: tuple, value: Any) -> Any:
    """A copy of ``document`` with the value at ``path`` (keys and indexes) replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: with_value(document[head], rest, value)}
    return [with_value(item, rest, value) if i == head else item for i, item in enumerate(document)]


def paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in ``document`` a value could be put: each key and index, nested."""
    found = [prefix]
    if isinstance(document, dict):
        for key, item in document.items():
            found += paths(item, prefix + (key,))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found += paths(item, prefix + (index,))
    return found


# ---------------------------------------------------------------- each finding, one by one


@pytest.mark.parametrize("moment", OUT_OF_RANGE_TIMES)
def test_message_times_out_of_range_are_422_naming_the_field(client, store, moment):
    body = payload("generic")
    body["message"]["at"] = moment
    assert "created_at (message.at)" in error_of(signed_post(client, "generic", encode(body)), 422)
    zendesk = payload("zendesk")
    zendesk["time"] = moment
    assert "time" in error_of(signed_post(client, "zendesk", encode(zendesk)), 422)
    chatwoot = payload("chatwoot")
    chatwoot["created_at"] = moment
    assert "created_at" in error_of(signed_post(client, "chatwoot", encode(chatwoot)), 422)
    assert count(store, Event) == count(store, Delivery) == 0


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1e20", "Infinity"])
def test_zendesk_signature_timestamps_out_of_range_are_401(client, store, timestamp):
    response = signed_post(client, "zendesk", encode(payload("zendesk")), timestamp=timestamp)
    assert "X-Zendesk-Webhook-Signature-Timestamp" in error_of(response, 401)


@pytest.mark.parametrize("timestamp", ["²", "１２３", "9" * 30, "9" * 5000])
def test_chatwoot_timestamps_that_are_not_ascii_seconds_are_401(client, store, timestamp):
    response = signed_post(client, "chatwoot", encode(payload("chatwoot")), timestamp=timestamp)
    assert "X-Chatwoot-Timestamp" in error_of(response, 401)


@pytest.mark.parametrize("source", list(PATHS))
def test_a_5000_digit_number_in_a_webhook_is_400(client, store, source):
    body = payload(source)
    body["extra"] = BIG_NUMBER
    assert "digits" in error_of(signed_post(client, source, encode(body)), 400)
    assert count(store, Delivery) == 0


def test_a_5000_digit_number_or_a_time_out_of_range_in_the_api_is_a_4xx(client, store):
    big = encode({"orders": [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-01-01",
                              "amount": BIG_NUMBER}]})
    assert "digits" in error_of(client.post("/api/orders", headers=AUTH | {"Content-Type": "application/json"},
                                            data=big), 400)
    big = encode({"identities": [{"customer_id": BIG_NUMBER, "email": "a@b.cn"}]})
    assert "digits" in error_of(client.post("/api/identities", headers=AUTH | {"Content-Type": "application/json"},
                                            data=big), 400)
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        rows = [{"customer_id": "c1", "order_id": "o1", "ordered_at": moment, "amount": 1}]
        response = client.post("/api/orders", headers=AUTH, json={"orders": rows})
        assert error_of(response, 422)
        assert any(p.startswith("orders[0].ordered_at") for p in response.json["problems"])
    assert count(store, Order) == 0


@pytest.mark.parametrize("blank", ["", " ", "-", "N/A", "n/a", "null"])
def test_a_requester_with_only_blank_keys_is_stored_as_unidentified(client, store, blank):
    body = payload("freshdesk")
    body["contact"] = {"email": blank, "phone": blank, "mobile": blank, "external_id": blank}
    response = signed_post(client, "freshdesk", encode(body))
    assert response.status_code == 202, response.json
    with store.session() as session:
        [customer_id] = session.scalars(select(Event.customer_id)).all()
    assert customer_id.startswith("anon-")
    # The same ticket is the same (unknown) person; another ticket is someone else.
    again = payload("freshdesk", "1002")
    again["contact"] = body["contact"]
    other = dict(again, ticket_id="89")
    assert signed_post(client, "freshdesk", encode(again)).status_code == 202
    assert signed_post(client, "freshdesk", encode(other)).status_code == 202
    with store.session() as session:
        ids = session.scalars(select(Event.customer_id).order_by(Event.id)).all()
    assert ids[0] == ids[1] != ids[2]


def test_lone_surrogates_and_nul_are_stored_the_same_on_either_store(client, store):
    body = payload("generic", "id\u0000-7")
    body["message"]["text"] = "快递\ud800没到\u0000了"
    body["ticket"]["id"] = "t\u00009"
    response = signed_post(client, "generic", encode(body))
    assert response.status_code == 202, response.json
    with store.session() as session:
        event = session.scalars(select(Event)).one()
        stored_body = session.scalar(select(Delivery.body))
    assert (event.external_id, event.ticket_id, event.text) == ("id-7", "t9", "快递\ufffd没到了")
    assert "\x00" not in stored_body and "\\u0000" not in stored_body


def test_api_rows_with_nul_surrogates_and_extremes_are_answered_without_a_500(client, store):
    orders = [{"customer_id": "c\u00001", "order_id": "o\ud8001", "ordered_at": "2025-01-01", "amount": 10**99,
               "category": "书\u0000"}]
    response = client.post("/api/orders", headers=AUTH | {"Content-Type": "application/json"},
                           data=encode({"orders": orders}))
    assert response.status_code == 200, response.json
    with store.session() as session:
        order = session.scalars(select(Order)).one()
    assert (order.customer_id, order.order_id, order.category) == ("c1", "o\ufffd1", "书")
    identities = [{"customer_id": "c\u00002", "email": "a\u0000@b.cn", "id": "9\ud800", "source": "zen\u0000desk"}]
    response = client.post("/api/identities", headers=AUTH | {"Content-Type": "application/json"},
                           data=encode({"identities": identities}))
    assert response.status_code == 200, response.json
    assert count(store, Identity) == 2
    assert client.get("/api/customers/c%002/risk", headers=AUTH).status_code == 200


# ---------------------------------------------------------------- any signed input at all

HOSTILE_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(OUT_OF_RANGE_TIMES),
    st.just(BIG_NUMBER), st.sampled_from(["", " ", "-", "N/A", "²", "\u0000", "\ud800", "..", "\n", "null"]),
    st.text(st.characters(exclude_categories=()), max_size=30),  # lone surrogates and NUL included
)
HOSTILE = st.recursive(HOSTILE_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)
LIMITS = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def spoiled(draw, document: Any) -> Any:
    """``document`` with one to three of its values, anywhere in it, replaced by hostile ones."""
    for _ in range(draw(st.integers(1, 3))):
        document = with_value(document, draw(st.sampled_from(paths(document))), draw(HOSTILE))
    return document


@st.composite
def hostile_webhook(draw) -> tuple[str, bytes]:
    """A real payload of one helpdesk with up to three of its values replaced by hostile ones."""
    source = draw(st.sampled_from(list(PATHS)))
    return source, encode(spoiled(draw, payload(source, draw(st.text("0123456789abc", min_size=1, max_size=8)))))


@LIMITS
@given(hostile_webhook())
def test_no_signed_webhook_is_answered_500_and_an_accepted_one_is_stored_once(client, store, webhook):
    source, body = webhook
    deliveries = count(store, Delivery)
    response = signed_post(client, source, body)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code == 202:
        ids = response.json["event_ids"]
        assert count(store, Event, Event.id.in_(ids)) == len(set(ids)) >= 1
        assert count(store, Delivery) == deliveries + 1
        assert signed_post(client, source, body).json["status"] == "duplicate"
    else:
        assert count(store, Delivery) == deliveries


@st.composite
def hostile_rows(draw) -> tuple[str, bytes]:
    """An orders or identities batch with hostile rows or values."""
    route = draw(st.sampled_from(["orders", "identities"]))
    good = ({"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-01-05T10:00:00+08:00", "amount": 10.5}
            if route == "orders" else {"customer_id": "c1", "email": "a@b.cn", "id": "5", "source": "zendesk"})
    return route, encode(spoiled(draw, {route: [good, dict(good)]}))


@LIMITS
@given(hostile_rows())
def test_no_api_batch_is_answered_500_and_a_refused_one_stores_nothing(client, store, batch):
    route, body = batch
    before = count(store, Order), count(store, Identity)
    response = client.post(f"/api/{route}", headers=AUTH | {"Content-Type": "application/json"}, data=body)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code != 200:
        assert (count(store, Order), count(store, Identity)) == before
