"""A generic helpdesk's inbound authentication and mapping, as real helpdesks send them.

Zammad signs ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>``; 网易七鱼 puts
``SHA1(secret + md5(body) + time)`` and the time in the query string; some helpdesks cannot
sign and are given a long token in the URL. Each is configured, posted through the Flask
test client and stored (or refused) as the real helpdesk's delivery would be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.store import Event
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import SignatureError

SECRET = "helpdesk-shared-secret"
TOKEN = "Vq3r7wQy0LkP2xZs9bNcT4mHd8Fj1aUe6GiRoYpX"
MAPPING = {"event_id": "article.id", "ticket_id": "ticket.id", "text": "article.body",
           "created_at": "article.created_at", "author_role": "article.sender", "requester_id": "ticket.customer_id"}


def settings_with(tmp_path, redis_url, **generic: dict[str, Any]) -> Settings:
    entries = {name: {"secret": SECRET, "mapping": MAPPING} | entry for name, entry in generic.items()}
    return Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": "t"},
                    helpdesks={"generic": entries}, identity={"pepper": "p"})


def article(article_id: int = 1, ticket_id: int = 7) -> bytes:
    return json.dumps({"ticket": {"id": ticket_id, "customer_id": 42},
                       "article": {"id": article_id, "body": "东西坏了，三天没人回", "sender": "Customer",
                                   "created_at": "2026-11-24T08:05:17Z"}}, ensure_ascii=False).encode()


def stored(store) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def refused(response, *expected: str) -> str:
    assert response.status_code == 401, response.get_data(as_text=True)
    reason = response.get_json()["error"]
    for text in expected:
        assert text in reason
    assert SECRET not in reason and TOKEN not in reason
    return reason


ZAMMAD = {"auth": {"scheme": "hmac", "algorithm": "sha1",
                   "signature": {"header": "X-Hub-Signature", "prefix": "sha1="}},
          "mapping": MAPPING | {"customer_roles": ["Customer"]}}


def test_zammad_sha1_signature_is_accepted_and_a_wrong_one_refused(tmp_path, redis_url, store):
    client = create_app(settings_with(tmp_path, redis_url, zammad=ZAMMAD), store=store).test_client()
    body = article()
    good = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert client.post("/webhooks/generic/zammad", data=body, headers={"X-Hub-Signature": good}).status_code == 202
    wrong = "sha1=" + hmac.new(b"another secret", body, hashlib.sha1).hexdigest()
    refused(client.post("/webhooks/generic/zammad", data=article(2), headers={"X-Hub-Signature": wrong}),
            "X-Hub-Signature", "HMAC-SHA1")
    refused(client.post("/webhooks/generic/zammad", data=article(3)), "X-Hub-Signature is required")
    [event] = stored(store)
    assert (event.external_id, event.author) == ("1", "customer")


QIYU = {"auth": {"scheme": "digest", "algorithm": "sha1", "signed": "{secret}{md5(body)}{timestamp}",
                 "signature": {"query": "checksum"}, "timestamp": {"query": "time"},
                 "replay_window_seconds": 300},
        "mapping": MAPPING | {"defaults": {"author_role": "customer"}, "author_role": None}}


def qiyu_url(body: bytes, sent_at: float) -> str:
    moment = str(int(sent_at))
    checksum = hashlib.sha1((SECRET + hashlib.md5(body).hexdigest() + moment).encode()).hexdigest()
    return f"/webhooks/generic/qiyu?checksum={checksum}&time={moment}"


def test_qiyu_digest_in_the_query_is_accepted_and_an_expired_one_refused(tmp_path, redis_url, store):
    client = create_app(settings_with(tmp_path, redis_url, qiyu=QIYU), store=store).test_client()
    body = article()
    assert client.post(qiyu_url(body, time.time()), data=body).status_code == 202
    late = article(2)
    refused(client.post(qiyu_url(late, time.time() - 600), data=late), "replay window")
    tampered = qiyu_url(body, time.time()).replace("checksum=", "checksum=0")
    refused(client.post(tampered, data=article(3)), "query parameter checksum", "{secret}{md5(body)}{timestamp}")
    [event] = stored(store)
    assert event.author == "customer"  # mapping.defaults: the webhook fires on customer messages only


def test_a_signed_timestamp_outside_the_window_is_a_replay(tmp_path, redis_url, store):
    stamped = {"auth": {"scheme": "hmac", "encoding": "base64", "signed": "{timestamp}.{body}",
                        "signature": {"header": "X-Sig"}, "timestamp": {"header": "X-Ts"},
                        "replay_window_seconds": 60}}
    client = create_app(settings_with(tmp_path, redis_url, desk=stamped), store=store).test_client()
    body = article()

    def post(sent_at: int, signed_at: int | None = None):
        message = f"{signed_at or sent_at}.".encode() + body
        signature = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()
        return client.post("/webhooks/generic/desk", data=body, headers={"X-Sig": signature, "X-Ts": str(sent_at)})

    now = int(time.time())
    refused(post(now - 3600), "replay window")
    refused(post(now, signed_at=now - 3600), "X-Sig does not match")  # a fresh time on an old signature
    assert post(now).status_code == 202
    assert post(now).status_code == 200  # the same message again: stored once


URL_TOKEN = {"auth": {"scheme": "url_token", "token": TOKEN, "allow_from": ["203.0.113.0/24", "2001:db8::/32"]}}


def test_url_token_is_accepted_a_wrong_one_refused_and_never_shown(tmp_path, redis_url, store, caplog):
    client = create_app(settings_with(tmp_path, redis_url, legacy=URL_TOKEN), store=store).test_client()
    inside = {"REMOTE_ADDR": "203.0.113.9"}
    caplog.set_level(logging.INFO, logger="churnsignal.webhook")
    assert client.post(f"/webhooks/generic/legacy/{TOKEN}", data=article(), environ_base=inside).status_code == 202
    wrong = TOKEN[:-1] + "Z"
    reason = refused(client.post(f"/webhooks/generic/legacy/{wrong}", data=article(2), environ_base=inside),
                     "token in the webhook URL does not match")
    assert wrong not in reason
    refused(client.post("/webhooks/generic/legacy", data=article(3), environ_base=inside), "must end with its token")
    refused(client.post(f"/webhooks/generic/legacy/{TOKEN}", data=article(4), environ_base={"REMOTE_ADDR": "198.51.100.7"}),
            "198.51.100.7 is not in auth.allow_from")
    assert client.post(f"/webhooks/generic/legacy/{TOKEN}/x", data=article(5)).status_code == 404
    assert [e.external_id for e in stored(store)] == ["1"]
    logged = caplog.text
    assert "/webhooks/generic/legacy/***" in logged
    assert TOKEN not in logged and wrong not in logged


def test_a_proxy_header_names_the_client_only_when_configured(tmp_path, redis_url, store):
    proxied = {"auth": URL_TOKEN["auth"] | {"client_ip_header": "X-Real-IP"}}
    client = create_app(settings_with(tmp_path, redis_url, legacy=proxied), store=store).test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.post(f"/webhooks/generic/legacy/{TOKEN}", data=article(), environ_base=local,
                       headers={"X-Real-IP": "2001:db8::5"}).status_code == 202
    refused(client.post(f"/webhooks/generic/legacy/{TOKEN}", data=article(2), environ_base=local), "unknown")


def test_a_signed_helpdesk_refuses_a_token_in_its_url(tmp_path, redis_url, store):
    client = create_app(settings_with(tmp_path, redis_url, zammad=ZAMMAD), store=store).test_client()
    body = article()
    good = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    refused(client.post(f"/webhooks/generic/zammad/{TOKEN}", data=body, headers={"X-Hub-Signature": good}), "no token")


@pytest.mark.parametrize(("auth", "setting"), [
    ({"scheme": "hmac", "algorithm": "md4"}, "auth.hmac.algorithm"),
    ({"scheme": "hmac", "encoding": "base32"}, "auth.hmac.encoding"),
    ({"scheme": "hmac", "signed": "{ts}.{body}"}, "unknown placeholder {ts}"),
    ({"scheme": "hmac", "signed": "{timestamp}.{body}"}, "auth.timestamp does not say where"),
    ({"scheme": "hmac", "signature": {"header": "X-Sig", "query": "sig"}}, "exactly one of header or query"),
    ({"scheme": "digest", "signed": "{md5(body)}{timestamp}", "timestamp": {"query": "time"}}, "without {secret}"),
    ({"scheme": "url_token", "token": "too-short-but-secret"}, "at least 32 characters"),
    ({"scheme": "url_token", "token": TOKEN, "allow_from": ["10.0.0.0/33"]}, "auth.allow_from: '10.0.0.0/33'"),
    ({"scheme": "oauth"}, "auth"),
])
def test_bad_auth_is_refused_at_load_naming_the_setting(tmp_path, redis_url, auth, setting):
    with pytest.raises(ValidationError) as error:
        settings_with(tmp_path, redis_url, desk={"auth": auth})
    assert "helpdesks.generic.desk.auth" in str(error.value) and setting in str(error.value)
    if auth["scheme"] == "url_token":
        assert auth["token"] not in str(error.value)


@pytest.mark.parametrize(("mapping", "setting"), [
    ({"defaults": {"author": "customer"}}, "mapping.defaults: author is not a mapped field"),
    ({"author_role": None}, "author_role needs an expression or a mapping.defaults entry"),
])
def test_bad_mapping_is_refused_at_load(tmp_path, redis_url, mapping, setting):
    with pytest.raises(ValidationError, match="helpdesks.generic.desk.mapping") as error:
        settings_with(tmp_path, redis_url, desk={"mapping": MAPPING | mapping})
    assert setting in str(error.value)


FOLLOWUPS = {"select": {"followup": {"list": "ticket.followup_set", "where": "id", "equals": "followup_id"}},
             "event_id": "followup.id", "ticket_id": "ticket.id", "text": "followup.comment",
             "created_at": "followup.date", "author_role": "followup.user_role",
             "requester_email": "ticket.submitter_email", "defaults": {"author_role": "customer"}}


def test_select_by_root_value_picks_each_of_ten_simultaneous_followups(tmp_path, redis_url, store):
    desk = {"mapping": FOLLOWUPS, "auth": {"scheme": "url_token", "token": TOKEN}}
    client = create_app(settings_with(tmp_path, redis_url, desk=desk), store=store).test_client()
    # Every webhook carries the whole ticket, all ten follow-ups; followup_id says which one is new.
    followups = [{"id": 500 + n, "comment": f"第{n}次追问：退款呢？", "date": f"2026-11-24T08:{n:02d}:00Z",
                  **({"user_role": "agent"} if n == 3 else {})} for n in range(10)]
    ticket = {"id": 9, "submitter_email": "li.lei@example.com", "followup_set": followups}
    answers = [client.post(f"/webhooks/generic/desk/{TOKEN}",
                           json={"followup_id": str(500 + n), "ticket": ticket}).status_code for n in range(10)]
    assert answers == [202] * 10
    events = stored(store)
    assert [(e.external_id, e.text, e.author) for e in events] == [
        (str(500 + n), f"第{n}次追问：退款呢？", "agent" if n == 3 else "customer") for n in range(10)]
    missing = client.post(f"/webhooks/generic/desk/{TOKEN}", json={"followup_id": 999, "ticket": ticket})
    assert missing.status_code == 422
    assert "select.followup: no item of ticket.followup_set whose id equals followup_id (999)" in missing.get_json()["error"]


def test_signed_request_round_trips_a_timestamped_nonced_sha512_base64url_signature(tmp_path, redis_url):
    auth = {"scheme": "hmac", "algorithm": "sha512", "encoding": "base64url", "signed": "{timestamp}:{nonce}:{body}",
            "signature": {"header": "X-Sig", "prefix": "v1="}, "timestamp": {"header": "X-Ts"},
            "nonce": {"header": "X-Nonce"}}
    settings = settings_with(tmp_path, redis_url, desk={"auth": auth})
    adapter = helpdesks.get("generic:desk", settings.helpdesks)
    now = datetime.now(UTC)
    [event] = adapter.parse(json.loads(article()))
    headers, body = adapter.signed_request(event, now)
    assert headers["X-Sig"].startswith("v1=") and "=" not in headers["X-Sig"][3:]
    adapter.verify(headers, body, now)
    with pytest.raises(SignatureError, match="X-Sig does not match: expected the base64url HMAC-SHA512"):
        adapter.verify(headers | {"X-Nonce": "another"}, body, now)


# 美洽's published signing examples (github.com/Meiqia/MeiqiaSDK-Push-Signature-Example, sample.txt):
# Authorization: "meiqia_sign:" + base64(hex(HMAC-SHA1(Secret-Key, raw body))).
MEIQIA_KEY = "$2a$12$skg8Mk3UJ3ylnmciryxCQ.IyjKTqi2ujRYwH0ak/BMXYiFBacZbx6"
MEIQIA_SAMPLES = [
    ("美洽，在线客服软件的漂亮之选", "YTgyMmFkMDY5OWJjYzI1ODRkNjBhNzAyMTdlY2M4YjU2NDNiYjhkZA=="),
    ("👏 美洽，在线客服软件的漂亮之选 👏", "NzgwYzM4ZGUwNGNmNWM3NmQ3N2NkOTJkZGEwYzg0ZjkxMTY0YzU3OQ=="),
]
MEIQIA = {"auth": {"scheme": "hmac", "algorithm": "sha1", "encoding": "hex_base64",
                   "signature": {"header": "Authorization", "prefix": "meiqia_sign:"}},
          "mapping": MAPPING | {"customer_roles": ["Customer"]}}


@pytest.mark.parametrize(("text", "published"), MEIQIA_SAMPLES)
def test_meiqia_signature_matches_its_published_examples(text, published):
    from churnsignal.config import HmacAuth
    from churnsignal.webhook.helpdesks.signing import WebhookRequest, sign, verify

    auth = HmacAuth(**MEIQIA["auth"])
    assert sign(auth, MEIQIA_KEY, text.encode()) == published
    unpadded_urlsafe = base64.urlsafe_b64encode(base64.b64decode(published)).decode().rstrip("=")
    for sent in (published, unpadded_urlsafe):  # their Java example drops the padding
        verify(auth, MEIQIA_KEY, WebhookRequest(headers={"Authorization": "meiqia_sign:" + sent}, body=text.encode()),
               datetime.now(UTC), "X-Signature-256")
    with pytest.raises(SignatureError, match="hex_base64 HMAC-SHA1"):
        verify(auth, MEIQIA_KEY, WebhookRequest(headers={"Authorization": "meiqia_sign:" + published},
                                                body=text.encode() + b" "), datetime.now(UTC), "X-Signature-256")


def test_meiqia_webhook_is_accepted_with_its_authorization_header_and_refused_without(tmp_path, redis_url, store):
    client = create_app(settings_with(tmp_path, redis_url, meiqia=MEIQIA), store=store).test_client()
    body = article()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest().encode()).decode()
    assert client.post("/webhooks/generic/meiqia", data=body,
                       headers={"Authorization": "meiqia_sign:" + signature}).status_code == 202
    refused(client.post("/webhooks/generic/meiqia", data=article(2),
                        headers={"Authorization": "meiqia_sign:bm90IGEgc2lnbmF0dXJl"}), "Authorization does not match")
    refused(client.post("/webhooks/generic/meiqia", data=article(3)), "Authorization is required")
    assert [event.external_id for event in stored(store)] == ["1"]
