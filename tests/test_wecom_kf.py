"""企业微信 微信客服: the callback protocol on the docs' published vectors, the callback URL in the
app, the pull from a stand-in of the documented API with its cursor, roles from ``origin``, and
alerts to the serving agent and a group robot.

The stand-in implements the documented calls (gettoken, kf/sync_msg with cursor and has_more,
kf/service_state/get, message/send, a group robot webhook) and checks what the docs require of a
caller: a current access_token, the notice's Token, the corp id and secret.

Published vectors: the WXBizMsgCrypt samples, Tencent's C# Sample.cs (token QDG6eK) and
sbzhu/weworkapi_python callback/Sample.py (token hJqcu3uJ...), each checked here against our
own implementation, including the plaintexts they decrypt to.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import requests
from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy import select
from werkzeug.serving import make_server

from churnsignal.config import Settings, WecomKfSettings
from churnsignal.store import Delivery, Event
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import AlertMessage, DeliveryError, InvalidPayload, NotConfigured, SignatureError
from churnsignal.webhook.helpdesks import wecom_crypto
from churnsignal.webhook.helpdesks.wecom_kf import WecomKf
from churnsignal.worker import wecom_sync

# Tencent's WXBizMsgCrypt sample (Sample.cs), the verify-URL and the message examples.
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"
URL_CHECK = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
             "nonce": "263014780",
             "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="}
MESSAGE = {"msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6", "timestamp": "1409659813",
           "nonce": "1372623149"}
MESSAGE_BODY = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdv"
    "o+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpG"
    "LYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izo"
    "un1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9"
    "o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
    "]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>").encode()
# sbzhu/weworkapi_python callback/Sample.py (commit 27220fbe), another corp's keys.
SAMPLE_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
SAMPLE_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
SAMPLE_CORP_ID = "ww1436e0e65a779aee"
SAMPLE_URL_CHECK = {"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "timestamp": "1476416373",
                    "nonce": "47744683",
                    "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="}

SECRET = "kf-app-secret"
AGENT_ID = 1000002
OPEN_KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
CUSTOMER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
SERVICER = "Zhangsan"
PHONE = "13812345678"
PEPPER = "test-pepper"


def at(timestamp: str) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


# ====================================================================== a stand-in for 企业微信's API

class WecomStandIn:
    """The documented server API, in memory: tokens it issued, each account's messages, sends received."""

    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.sync_tokens: set[str] = set()
        self.servicers: dict[tuple[str, str], str] = {}
        self.sent: list[dict[str, Any]] = []
        self.robot_posts: list[dict[str, Any]] = []
        self.sync_calls: list[dict[str, Any]] = []
        self.token_fetches = 0
        self.errors: dict[str, list[int]] = {}  # path -> errcodes to answer next, in order
        self._access_tokens: set[str] = set()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    def __enter__(self) -> WecomStandIn:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def add(self, origin: int, msgtype: str = "text", content: str | None = None, **extra: Any) -> str:
        """A message on the account, as sync_msg lists it; its msgid."""
        msgid = f"msg{next(self._counter)}"
        message = {"msgid": msgid, "open_kfid": OPEN_KFID,
                   "send_time": 1_780_000_000 + len(self.messages.get(OPEN_KFID, [])), "origin": origin,
                   "msgtype": msgtype, **extra}
        # An event names its customer inside "event", where it has one.
        if msgtype != "event":
            message["external_userid"] = CUSTOMER
        if msgtype == "text":
            message["text"] = {"content": content}
        elif msgtype == "image":
            message["image"] = {"media_id": "2iSLeVyqzk4eX0IB5kTi9Ljfa2rt9dwfq5WKRQ4Nvvgw"}
        self.messages.setdefault(OPEN_KFID, []).append(message)
        return msgid

    def expire_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    def _error(self, path: str) -> int | None:
        with self._lock:
            queued = self.errors.get(path)
            return queued.pop(0) if queued else None

    def _build(self) -> Flask:
        app = Flask("wecom-standin")

        def authorised() -> bool:
            with self._lock:
                return request.args.get("access_token") in self._access_tokens

        @app.get("/cgi-bin/gettoken")
        def gettoken():
            if request.args.get("corpid") != CORP_ID:
                return jsonify(errcode=40013, errmsg="invalid corpid")
            if request.args.get("corpsecret") != SECRET:
                return jsonify(errcode=40001, errmsg="invalid credential")
            token = f"access-{next(self._counter)}"
            with self._lock:
                self._access_tokens.add(token)
                self.token_fetches += 1
            return jsonify(errcode=0, errmsg="ok", access_token=token, expires_in=7200)

        @app.post("/cgi-bin/kf/sync_msg")
        def sync_msg():
            if not authorised():
                return jsonify(errcode=42001, errmsg="access_token expired")
            body = request.get_json()
            self.sync_calls.append(body)
            if body.get("token") not in self.sync_tokens:
                return jsonify(errcode=95007, errmsg="invalid msg token")
            messages = self.messages.get(body["open_kfid"], [])
            start = int(body.get("cursor") or 0)
            end = min(start + min(body.get("limit", 1000), self.page_size), len(messages))
            return jsonify(errcode=0, errmsg="ok", next_cursor=str(end), has_more=int(end < len(messages)),
                           msg_list=messages[start:end])

        @app.post("/cgi-bin/kf/service_state/get")
        def service_state():
            if not authorised():
                return jsonify(errcode=42001, errmsg="access_token expired")
            body = request.get_json()
            servicer = self.servicers.get((body["open_kfid"], body["external_userid"]))
            return jsonify(errcode=0, errmsg="ok", service_state=3 if servicer else 2,
                           **({"servicer_userid": servicer} if servicer else {}))

        @app.post("/cgi-bin/message/send")
        def message_send():
            if not authorised():
                return jsonify(errcode=42001, errmsg="access_token expired")
            code = self._error("message/send")
            if code is not None:
                return jsonify(errcode=code, errmsg="scripted")
            self.sent.append(request.get_json())
            return jsonify(errcode=0, errmsg="ok", invaliduser="", msgid="xxxx")

        @app.post("/cgi-bin/webhook/send")
        def robot():
            if request.args.get("key") != "robot-key":
                return jsonify(errcode=93000, errmsg="invalid webhook url")
            code = self._error("robot")
            if code is not None:
                return jsonify(errcode=code, errmsg="scripted")
            self.robot_posts.append(request.get_json())
            return jsonify(errcode=0, errmsg="ok")

        return app


@pytest.fixture
def wecom() -> Iterator[WecomStandIn]:
    with WecomStandIn() as standin:
        yield standin


def kf_settings(wecom: WecomStandIn | None = None, **changes: Any) -> dict[str, Any]:
    values = {"corp_id": CORP_ID, "token": TOKEN, "encoding_aes_key": AES_KEY, "secret": SECRET,
              "agent_id": AGENT_ID}
    if wecom is not None:
        values |= {"api_base": wecom.url, "robot_webhook_url": f"{wecom.url}/cgi-bin/webhook/send?key=robot-key"}
    return values | changes


@pytest.fixture
def settings(tmp_path, redis_url, wecom) -> Settings:
    return Settings(service={"broker_url": redis_url, "data_dir": tmp_path},
                    helpdesks={"wecom_kf": kf_settings(wecom), "timeout_seconds": 5},
                    identity={"pepper": PEPPER})


@pytest.fixture
def client(settings, store):
    return create_app(settings, store=store).test_client()


def adapter(settings: Settings) -> WecomKf:
    return helpdesks.get("wecom_kf", settings.helpdesks)


def notice(settings: Settings, wecom: WecomStandIn, now: datetime | None = None,
           nonce: str = "1372623149") -> tuple[dict[str, str], bytes]:
    """A notice as 企业微信 POSTs it, with a Token the stand-in will honour."""
    sync_token = f"ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMz{len(wecom.sync_tokens)}"
    wecom.sync_tokens.add(sync_token)
    return adapter(settings).notice_request(OPEN_KFID, sync_token, now or datetime.now(UTC), nonce)


def post(client, query: dict[str, str], body: bytes):
    return client.post("/webhooks/wecom_kf", query_string=query, data=body, content_type="text/xml")


def queued(redis_url: str) -> list[tuple[str, list[Any]]]:
    raw = redis.Redis.from_url(redis_url).lrange("churnsignal", 0, -1)
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0])
            for m in map(json.loads, raw)]


def events(store) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


# ====================================================================== the protocol, on published vectors

def test_the_published_url_check_verifies_and_decrypts():
    kf = WecomKf(WecomKfSettings(**kf_settings()), 5)
    assert kf.echo(URL_CHECK, at(URL_CHECK["timestamp"])) == "1616140317555161061"
    other = WecomKf(WecomKfSettings(corp_id=SAMPLE_CORP_ID, token=SAMPLE_TOKEN, encoding_aes_key=SAMPLE_AES_KEY,
                                    secret=SECRET), 5)
    assert other.echo(SAMPLE_URL_CHECK, at(SAMPLE_URL_CHECK["timestamp"])) == "1288432023552776189"


def test_the_published_message_verifies_and_decrypts_for_its_corp_only():
    kf = WecomKf(WecomKfSettings(**kf_settings()), 5)
    kf.verify({}, MESSAGE_BODY, at(MESSAGE["timestamp"]), query=MESSAGE)
    encrypted = MESSAGE_BODY.split(b"<![CDATA[")[2].split(b"]]>")[0].decode()
    plain = wecom_crypto.decrypt(wecom_crypto.aes_key(AES_KEY), encrypted, CORP_ID).decode()
    assert "<Content><![CDATA[hello]]></Content>" in plain and "<MsgId>4561255354251345929</MsgId>" in plain
    with pytest.raises(wecom_crypto.CryptoError, match="corp id"):
        wecom_crypto.decrypt(wecom_crypto.aes_key(AES_KEY), encrypted, SAMPLE_CORP_ID)
    # A text message to an application is not a 微信客服 notice: nothing to pull.
    assert kf.notice(MESSAGE, MESSAGE_BODY, at(MESSAGE["timestamp"])) is None


def test_encrypt_is_what_decrypt_reads_and_pads_to_32_bytes():
    key = wecom_crypto.aes_key(AES_KEY)
    for size in (0, 1, 11, 12, 43, 44, 1000):
        sealed = wecom_crypto.encrypt(key, b"x" * size, CORP_ID)
        assert len(base64.b64decode(sealed)) % 32 == 0
        assert wecom_crypto.decrypt(key, sealed, CORP_ID) == b"x" * size


def test_a_wrong_signature_a_changed_ciphertext_and_an_old_timestamp_are_refused():
    kf = WecomKf(WecomKfSettings(**kf_settings()), 5)
    now = at(URL_CHECK["timestamp"])
    with pytest.raises(SignatureError, match="msg_signature does not match"):
        kf.echo(URL_CHECK | {"msg_signature": "0" * 40}, now)
    with pytest.raises(SignatureError, match="msg_signature does not match"):
        kf.echo(URL_CHECK | {"echostr": URL_CHECK["echostr"].replace("P9n", "Q9n")}, now)
    with pytest.raises(SignatureError, match="replay window"):
        kf.echo(URL_CHECK, now + timedelta(seconds=301))
    assert kf.echo(URL_CHECK, now + timedelta(seconds=299)) == "1616140317555161061"
    with pytest.raises(SignatureError, match="nonce is required"):
        kf.echo({k: v for k, v in URL_CHECK.items() if k != "nonce"}, now)


def test_bad_configuration_fails_at_start_naming_the_setting():
    with pytest.raises(ValidationError, match=r"helpdesks\.wecom_kf\.encoding_aes_key"):
        Settings(helpdesks={"wecom_kf": kf_settings(encoding_aes_key=AES_KEY[:-1])})
    with pytest.raises(ValidationError, match=r"helpdesks\.wecom_kf\.encoding_aes_key"):
        Settings(helpdesks={"wecom_kf": kf_settings(encoding_aes_key=AES_KEY[:-1] + "!")})
    with pytest.raises(ValidationError, match=r"missing helpdesks\.wecom_kf\.corp_id"):
        Settings(helpdesks={"wecom_kf": kf_settings(corp_id=None)})
    with pytest.raises(ValidationError, match=r"helpdesks\.wecom_kf\.secret is needed"):
        Settings(helpdesks={"wecom_kf": kf_settings(secret=None)})
    with pytest.raises(ValidationError, match=r"helpdesks\.wecom_kf\.api_base"):
        Settings(helpdesks={"wecom_kf": kf_settings(api_base="qyapi.weixin.qq.com")})
    with pytest.raises(ValidationError, match=r"helpdesks\.wecom_kf\.token"):
        Settings(helpdesks={"wecom_kf": kf_settings(token="has spaces")})


# ====================================================================== the callback URL

def test_the_callback_url_check_answers_the_plaintext(client):
    timestamp = str(int(datetime.now(UTC).timestamp()))
    echostr = wecom_crypto.encrypt(wecom_crypto.aes_key(AES_KEY), b"7465827313524689821", CORP_ID)
    query = {"msg_signature": wecom_crypto.signature(TOKEN, timestamp, "99", echostr), "timestamp": timestamp,
             "nonce": "99", "echostr": echostr}
    answer = client.get("/webhooks/wecom_kf", query_string=query)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == "7465827313524689821"
    refused = client.get("/webhooks/wecom_kf", query_string=query | {"msg_signature": "1" * 40})
    assert refused.status_code == 401 and "msg_signature" in refused.get_json()["error"]


def test_a_notice_is_stored_answered_and_its_pull_queued(client, settings, store, redis_url, wecom):
    query, body = notice(settings, wecom)
    answer = post(client, query, body)
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "success"
    with store.session() as session:
        (delivery,) = session.scalars(select(Delivery)).all()
    stored = json.loads(delivery.body)
    assert delivery.source == "wecom_kf" and stored["open_kfid"] == OPEN_KFID and stored["token"] in wecom.sync_tokens
    assert queued(redis_url) == [("churnsignal.pull_wecom_kf", [delivery.id])]


def test_a_replayed_notice_is_refused_even_by_another_app_process(client, settings, store, wecom):
    query, body = notice(settings, wecom)
    assert post(client, query, body).status_code == 200
    # Another gunicorn worker: its own app, the same store.
    other = create_app(settings, store=store).test_client()
    replay = post(other, query, body)
    assert replay.status_code == 401 and "replay" in replay.get_json()["error"]
    fresh = notice(settings, wecom, nonce="555")
    assert post(other, *fresh).status_code == 200
    with store.session() as session:
        assert len(session.scalars(select(Delivery)).all()) == 2


def test_a_wrong_signature_an_expired_timestamp_and_junk_are_refused_with_json(client, settings, store, wecom):
    query, body = notice(settings, wecom)
    wrong = post(client, query | {"msg_signature": "f" * 40}, body)
    assert wrong.status_code == 401 and "msg_signature" in wrong.get_json()["error"]
    old_query, old_body = notice(settings, wecom, now=datetime.now(UTC) - timedelta(seconds=301))
    expired = post(client, old_query, old_body)
    assert expired.status_code == 401 and "replay window" in expired.get_json()["error"]
    junk = post(client, query, b"<xml><Encrypt>")
    assert junk.status_code == 422 and "XML" in junk.get_json()["error"]
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    assert post(client, query, bomb).status_code == 422
    with store.session() as session:
        assert session.scalars(select(Delivery)).all() == []


def test_without_the_callback_settings_the_url_is_refused(tmp_path, redis_url, store):
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path}, identity={"pepper": PEPPER})
    answer = create_app(settings, store=store).test_client().get("/webhooks/wecom_kf", query_string=URL_CHECK)
    assert answer.status_code == 403
    assert "CHURNSIGNAL_HELPDESKS__WECOM_KF__TOKEN" in answer.get_json()["error"]


# ====================================================================== the pull

def stored_notice(client, settings, wecom) -> int:
    """Post a notice; the id of the delivery it was stored as."""
    query, body = notice(settings, wecom, nonce=str(len(wecom.sync_tokens)))
    assert post(client, query, body).status_code == 200
    store = client.application.extensions["churnsignal"].store
    return max(id for id, body in deliveries(store) if "msg_signature" in body)


def deliveries(store) -> list[tuple[int, dict[str, Any]]]:
    with store.session() as session:
        return [(d.id, json.loads(d.body)) for d in session.scalars(select(Delivery).order_by(Delivery.id))]


def test_a_pull_stores_every_page_then_the_next_starts_from_the_saved_cursor(client, settings, store, wecom):
    wecom.add(3, content=f"快递三天没到，我的电话{PHONE}")
    wecom.add(5, content="您好，这边帮您查询")
    wecom.add(3, "image")
    http = requests.Session()
    first = wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom))
    assert len(first) == 3
    assert [call.get("cursor") for call in wecom.sync_calls] == [None, "2"]  # two pages of two
    assert store.cursor("wecom_kf", OPEN_KFID) == "3"

    wecom.add(4, "event", event={"event_type": "enter_session", "open_kfid": OPEN_KFID, "external_userid": CUSTOMER})
    wecom.add(3, content="还是没有消息")
    wecom.add(4, "event", event={"event_type": "servicer_status_change", "servicer_userid": SERVICER})
    second = wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom))
    assert wecom.sync_calls[2]["cursor"] == "3"
    assert len(second) == 2 and not set(first) & set(second)
    assert store.cursor("wecom_kf", OPEN_KFID) == "6"

    rows = events(store)
    assert [(e.author, e.text) for e in rows] == [
        ("customer", "快递三天没到，我的电话[PHONE]"),
        ("agent", "您好，这边帮您查询"), ("customer", "[image]"), ("bot", "[event:enter_session]"),
        ("customer", "还是没有消息")]
    assert {e.ticket_id for e in rows} == {f"{OPEN_KFID}:{CUSTOMER}"}
    assert len({e.customer_id for e in rows}) == 1 and all(e.channel == "chat" for e in rows)
    assert rows[0].created_at == datetime(2026, 5, 28, 20, 26, 40)
    pages = [body for _, body in deliveries(store) if "msg_list" in body]
    assert len(pages) == 3  # one delivery per page that held messages
    assert pages[0]["msg_list"][0]["text"]["content"] == "快递三天没到，我的电话[PHONE]"


def test_a_pull_that_sees_the_same_messages_again_stores_nothing_twice(client, settings, store, wecom):
    wecom.add(3, content="第一条")
    wecom.add(3, content="第二条")
    http = requests.Session()
    notice_id = stored_notice(client, settings, wecom)
    assert len(wecom_sync.pull(store, settings, http, notice_id)) == 2
    # A pull that died before saving its cursor: the next one fetches the same page again.
    with store.session() as session:
        from churnsignal.store import SyncCursor
        session.delete(session.get(SyncCursor, ("wecom_kf", OPEN_KFID)))
    assert wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom)) == []
    assert len(events(store)) == 2


def test_the_access_token_is_cached_and_fetched_again_once_when_expired(client, settings, store, wecom):
    wecom.add(3, content="你好")
    http = requests.Session()
    wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom))
    wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom))
    assert wecom.token_fetches == 1
    wecom.expire_tokens()
    wecom.add(3, content="在吗")
    assert len(wecom_sync.pull(store, settings, http, stored_notice(client, settings, wecom))) == 1
    assert wecom.token_fetches == 2


def test_a_wrong_secret_is_a_permanent_failure_and_saves_no_cursor(client, store, tmp_path, redis_url, wecom):
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path},
                        helpdesks={"wecom_kf": kf_settings(wecom, secret="not-the-secret")},
                        identity={"pepper": PEPPER})
    wrong_client = create_app(settings, store=store).test_client()
    wecom.add(3, content="你好")
    with pytest.raises(DeliveryError, match="errcode 40001") as failure:
        wecom_sync.pull(store, settings, requests.Session(), stored_notice(wrong_client, settings, wecom))
    assert failure.value.permanent and store.cursor("wecom_kf", OPEN_KFID) is None and events(store) == []


def test_the_pull_task_queues_the_new_messages_and_drops_a_permanent_failure(client, settings, store, wecom,
                                                                             monkeypatch, caplog):
    from churnsignal.worker import tasks

    queued_ids: list[list[int]] = []
    monkeypatch.setattr(tasks, "_store", lambda: store)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks.process_events, "apply_async", lambda args, queue: queued_ids.append(args[0]))
    wecom.add(3, content="你好")
    wecom.add(3, content="在吗")
    assert tasks.pull_wecom_kf(stored_notice(client, settings, wecom)) == 2
    assert queued_ids == [[e.id for e in events(store)]]
    wrong = settings.model_copy(update={"helpdesks": settings.helpdesks.model_copy(update={
        "wecom_kf": settings.helpdesks.wecom_kf.model_copy(update={"api_base": wecom.url, "corp_id": "ww-other"})})})
    monkeypatch.setattr(tasks, "get_settings", lambda: wrong)
    with caplog.at_level(logging.ERROR, logger="churnsignal.worker.tasks"):
        assert tasks.pull_wecom_kf(stored_notice(client, settings, wecom)) == 0
    (failure,) = [r.getMessage() for r in caplog.records if r.name == "churnsignal.worker.tasks"]
    assert "errcode 40013" in failure and "not retried" in failure


def test_parse_names_a_malformed_message():
    kf = WecomKf(WecomKfSettings(**kf_settings()), 5)
    page = {"msg_list": [{"msgid": "m1", "open_kfid": OPEN_KFID, "external_userid": CUSTOMER, "origin": 3,
                          "msgtype": "text", "text": {"content": "好"}, "send_time": 1_780_000_000},
                         {"open_kfid": OPEN_KFID, "external_userid": CUSTOMER, "origin": 3, "msgtype": "text",
                          "text": {"content": "好"}, "send_time": 1_780_000_000}]}
    with pytest.raises(InvalidPayload, match=r"msg_list\[1\]\.msgid: missing"):
        kf.parse(page)
    assert [e.event_id for e in kf.parse({"msg_list": page["msg_list"][:1]})] == ["m1"]
    assert kf.retained(page)["msg_list"][0]["text"] == {"content": "好"}


# ====================================================================== alerts

def alert(**changes: Any) -> AlertMessage:
    values = dict(alert_id=42, idempotency_key="k42", ticket_id=f"{OPEN_KFID}:{CUSTOMER}", tier="red",
                  churn_prob=0.83, reasons=[{"zh": "投诉物流", "en": "logistics complaint"}], driver="service",
                  action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"},
                  due_at=datetime(2026, 5, 1, 16, 0), customer_id="c1")
    return AlertMessage(**(values | changes))


def test_an_alert_goes_to_the_serving_agent_and_the_robot(settings, wecom):
    wecom.servicers[(OPEN_KFID, CUSTOMER)] = SERVICER
    adapter(settings).post_alert(alert(), requests.Session())
    (sent,) = wecom.sent
    assert sent["touser"] == SERVICER and sent["agentid"] == AGENT_ID and sent["msgtype"] == "text"
    assert sent["enable_duplicate_check"] == 1
    assert "(churnsignal alert 42)" in sent["text"]["content"] and CUSTOMER in sent["text"]["content"]
    (robot,) = wecom.robot_posts
    assert robot["msgtype"] == "text" and robot["text"]["content"] == sent["text"]["content"]


def test_an_unserved_conversation_reaches_the_robot_or_is_retried(settings, wecom):
    kf = adapter(settings)
    kf.post_alert(alert(), requests.Session())
    assert wecom.sent == [] and len(wecom.robot_posts) == 1
    agent_only = helpdesks.get("wecom_kf", settings.helpdesks.model_copy(update={
        "wecom_kf": settings.helpdesks.wecom_kf.model_copy(update={"robot_webhook_url": None})}))
    with pytest.raises(DeliveryError, match="no agent serves") as failure:
        agent_only.post_alert(alert(), requests.Session())
    assert not failure.value.permanent


def test_errcodes_are_permanent_for_configuration_and_retryable_otherwise(settings, wecom):
    wecom.servicers[(OPEN_KFID, CUSTOMER)] = SERVICER
    kf = adapter(settings)
    wecom.errors["message/send"] = [60020]
    with pytest.raises(DeliveryError, match="errcode 60020") as not_allowed:
        kf.post_alert(alert(), requests.Session())
    assert not_allowed.value.permanent
    wecom.errors["message/send"] = [-1]
    with pytest.raises(DeliveryError, match="errcode -1") as busy:
        kf.post_alert(alert(), requests.Session())
    assert not busy.value.permanent
    wecom.errors["robot"] = [45009]
    with pytest.raises(DeliveryError, match="robot webhook: errcode 45009") as limited:
        kf.post_alert(alert(), requests.Session())
    assert not limited.value.permanent
    assert len(wecom.sent) == 1 and wecom.robot_posts == []


def test_an_alert_without_a_way_out_or_on_a_foreign_ticket_is_refused(settings, wecom):
    bare = WecomKf(WecomKfSettings(**kf_settings(agent_id=None)), 5)
    with pytest.raises(NotConfigured, match="agent_id"):
        bare.post_alert(alert(), requests.Session())
    with pytest.raises(DeliveryError, match="open_kfid") as foreign:
        adapter(settings).post_alert(alert(ticket_id="5158"), requests.Session())
    assert foreign.value.permanent
