"""企业微信 微信客服 (WeCom Customer Service): encrypted notices in, messages pulled, alerts to the agent.

Inbound takes two steps, because a 微信客服 callback announces messages without carrying them
(https://developer.work.weixin.qq.com/document/path/94670, 接收消息和事件 and 读取消息):

1. 企业微信 POSTs a notice to the callback URL, ``?msg_signature=..&timestamp=..&nonce=..`` with
   ``<xml><ToUserName>corp id</ToUserName><Encrypt>..</Encrypt><AgentID>..</AgentID></xml>``. The
   ``Encrypt`` element decrypts (:mod:`.wecom_crypto`) to::

       <xml><ToUserName>corp id</ToUserName><CreateTime>1348831860</CreateTime>
            <MsgType>event</MsgType><Event>kf_msg_or_event</Event>
            <Token>ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR</Token>
            <OpenKfId>wkxxxxxxx</OpenKfId></xml>

   :meth:`WecomKf.notice` verifies and reads it; the webhook stores it and answers at once.
2. A worker pulls ``POST /cgi-bin/kf/sync_msg`` from the stream's cursor with the notice's Token
   (:meth:`WecomKf.sync`), and each page of messages becomes events (:meth:`WecomKf.parse`)::

       {"errcode": 0, "errmsg": "ok", "next_cursor": "4gw7MepFLfgF2VC5npN", "has_more": 1,
        "msg_list": [{"msgid": "from_msgid_4622416642169452483", "open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q",
                      "external_userid": "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw", "send_time": 1615478585,
                      "origin": 3, "servicer_userid": "Zhangsan", "msgtype": "text",
                      "text": {"content": "你好"}}]}

Before the callback URL is saved, 企业微信 checks it with a GET carrying an encrypted ``echostr``,
answered with its plaintext (:meth:`WecomKf.echo`).

Outbound: the KF product has no internal notes. The alert goes to the agent serving the
conversation (``kf/service_state/get``) as an application message (``message/send``) and/or to
a group robot's webhook. Neither can be read back, so a retry cannot check whether an earlier
try landed: application messages are sent with ``enable_duplicate_check``, so 企业微信 itself
drops the same text to the same agent within 4 hours (every retry's note is the same); a robot
has no such option, and a retry after a robot post whose answer was lost posts it again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import SecretStr

from churnsignal.config import WecomKfSettings

from . import wecom_crypto
from .base import (
    AlertMessage,
    Author,
    DeliveryError,
    Helpdesk,
    InvalidPayload,
    NotConfigured,
    Requester,
    SignatureError,
    SupportEvent,
)
from .http import (
    Api,
    as_object,
    check_window,
    lookup,
    optional_str,
    required,
    required_id,
    retain,
    same,
    shown,
    to_time,
)

NAME = "wecom_kf"
SETTING = "helpdesks.wecom_kf"
# The one event a 微信客服 callback sends for new messages (and for events) on an account.
KF_NOTICE = "kf_msg_or_event"
# Who wrote a message, by its ``origin``: 3 the WeChat customer, 5 an agent in the WeCom
# client, 4 an event 企业微信 itself pushed (a session entered, a message failed...).
AUTHORS: dict[int, Author] = {3: "customer", 5: "agent", 4: "bot"}
# The most one sync_msg page returns (its documented maximum).
PAGE_LIMIT = 1000
# An access_token is fetched again this long before 企业微信 says it expires.
TOKEN_MARGIN_SECONDS = 300
# errcodes that mean the access_token is invalid or expired: fetch a new one, try once more.
STALE_TOKEN = frozenset({40014, 42001})
# errcodes a retry cannot fix (企业微信's global error codes): a wrong secret (40001), user id
# (40003), corp id (40013) or agent id (40056), an API the application may not call (48002),
# a member outside the application's visibility (60011, 81013), a server address not on the
# application's trusted IP list (60020), a robot webhook URL that is wrong (93000).
PERMANENT_ERRORS = frozenset({40001, 40003, 40013, 40056, 48002, 60011, 60020, 81013, 93000})
# How long 企业微信 drops a repeat of the same application message (its maximum, 4 hours).
DUPLICATE_CHECK_SECONDS = 4 * 3600
# What parse reads of each message: all that is stored of a sync_msg page.
_READ = ("msgid", "open_kfid", "external_userid", "send_time", "origin", "msgtype", "text.content",
         "event.event_type", "event.open_kfid", "event.external_userid")

_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


@dataclass(frozen=True)
class Notice:
    """A verified ``kf_msg_or_event`` notice: which account has news, and the Token to pull it with.

    ``msg_signature`` and ``nonce`` are what a replay of the same request repeats.
    """

    open_kfid: str
    sync_token: str
    msg_signature: str
    nonce: str


class WecomKf(Helpdesk):
    name = NAME

    def __init__(self, settings: WecomKfSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    # ------------------------------------------------------------------ inbound

    def echo(self, query: Mapping[str, str], now: datetime) -> str:
        """The callback URL check: ``echostr`` decrypted, once its signature and time are right."""
        encrypted = _parameter(query, "echostr")
        self._verify_signature(query, encrypted, now)
        return self._decrypt(encrypted).decode()

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime, *,
               query: Mapping[str, str] | None = None) -> None:
        """As :meth:`Helpdesk.verify`; 企业微信 signs in the query string, over the body's ``Encrypt``."""
        self._verify_signature(query or {}, _element(_xml(body, "body"), "Encrypt", "body"), now)

    def notice(self, query: Mapping[str, str], body: bytes, now: datetime) -> Notice | None:
        """The notice in a verified callback POST; None for a callback event that announces no messages."""
        encrypted = _element(_xml(body, "body"), "Encrypt", "body")
        self._verify_signature(query, encrypted, now)
        plain = _xml(self._decrypt(encrypted), "decrypted notice")
        if (plain.findtext("Event") or "").strip() != KF_NOTICE:
            return None
        return Notice(open_kfid=_element(plain, "OpenKfId", "decrypted notice"),
                      sync_token=_element(plain, "Token", "decrypted notice"),
                      msg_signature=_parameter(query, "msg_signature").lower(), nonce=_parameter(query, "nonce"))

    def parse(self, payload: Any) -> list[SupportEvent]:
        """The conversation messages of one ``kf/sync_msg`` answer.

        Events that belong to no customer's conversation (an agent's status changing) are left out.
        """
        messages = required(as_object(payload), "msg_list")
        if not isinstance(messages, list):
            raise InvalidPayload("msg_list: expected a list")
        events: dict[str, SupportEvent] = {}
        for number, message in enumerate(messages):
            try:
                event = self._event(as_object(message))
            except InvalidPayload as error:
                raise InvalidPayload(f"msg_list[{number}].{error}") from None
            if event is not None:
                events[event.event_id] = event
        return list(events.values())

    def retained(self, payload: Any) -> dict[str, Any]:
        messages = lookup(as_object(payload), "msg_list")
        return {"msg_list": [retain(message, _READ) for message in messages if isinstance(message, dict)]
                if isinstance(messages, list) else []}

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """企业微信 never sends a message in a webhook (see :meth:`notice_request`), and signs in the URL."""
        raise ValueError(f"{SETTING}: 企业微信 announces messages with a notice signed in its URL; "
                         "build one with notice_request")

    def notice_request(self, open_kfid: str, sync_token: str, now: datetime,
                       nonce: str) -> tuple[dict[str, str], bytes]:
        """The query string and body 企业微信 POSTs to announce news on ``open_kfid``: for stand-ins."""
        corp_id = self._required("corp_id")
        timestamp = str(int(now.timestamp()))
        plain = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><CreateTime>{timestamp}</CreateTime>"
                 f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{KF_NOTICE}]]></Event>"
                 f"<Token><![CDATA[{sync_token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>")
        encrypted = wecom_crypto.encrypt(self._key(), plain.encode(), corp_id)
        query = {"msg_signature": wecom_crypto.signature(self._required("token"), timestamp, nonce, encrypted),
                 "timestamp": timestamp, "nonce": nonce}
        body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
                f"<AgentID><![CDATA[{self.settings.agent_id or ''}]]></AgentID></xml>")
        return query, body.encode()

    def sync(self, http: requests.Session, open_kfid: str, sync_token: str,
             cursor: str | None) -> Iterator[dict[str, Any]]:
        """Every page of messages on ``open_kfid`` after ``cursor``, as ``kf/sync_msg`` answers them.

        Each page's ``next_cursor`` is where the next pull starts; the caller saves it once the
        page's messages are stored. :class:`DeliveryError` when the API fails.
        """
        client = self._client(http, f"sync-{open_kfid}")
        while True:
            body: dict[str, Any] = {"token": sync_token, "limit": PAGE_LIMIT, "open_kfid": open_kfid}
            if cursor:
                body["cursor"] = cursor
            page = client.call("/cgi-bin/kf/sync_msg", body)
            yield page
            following = page.get("next_cursor")
            if not page.get("has_more") or not following or following == cursor:
                return
            cursor = following

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        """The alert to the agent serving the conversation and/or the group robot.

        With both configured, a conversation no agent serves (waiting, or with the bot) still
        reaches the robot; with the agent only, it is retried until an agent takes it.
        """
        s = self.settings
        if s.agent_id is None and s.robot_webhook_url is None:
            raise NotConfigured(f"{SETTING} needs agent_id (with corp_id and secret) or robot_webhook_url "
                                "to post alerts")
        open_kfid, _, customer = alert.ticket_id.partition(":")
        if not open_kfid or not customer:
            raise DeliveryError(f"ticket id {shown(alert.ticket_id)} is not <open_kfid>:<external_userid>",
                                permanent=True)
        text = f"微信客服会话 KF conversation: {alert.ticket_id}\n{alert.note()}"
        unserved = None
        if s.agent_id is not None:
            client = self._client(http, alert.idempotency_key)
            state = client.call("/cgi-bin/kf/service_state/get", {"open_kfid": open_kfid, "external_userid": customer})
            agent = state.get("servicer_userid")
            if agent:
                client.call("/cgi-bin/message/send", {
                    "touser": agent, "msgtype": "text", "agentid": s.agent_id, "text": {"content": text},
                    "enable_duplicate_check": 1, "duplicate_check_interval": DUPLICATE_CHECK_SECONDS})
            else:
                unserved = f"no agent serves {alert.ticket_id} yet (service_state {state.get('service_state')})"
        if s.robot_webhook_url is not None:
            answer = Api(http, s.robot_webhook_url.get_secret_value(), self.timeout, alert.idempotency_key)(
                "POST", "", json={"msgtype": "text", "text": {"content": text}})
            _check(answer, "robot webhook")
        elif unserved:
            raise DeliveryError(unserved)

    # ------------------------------------------------------------------ helpers

    def _required(self, name: str) -> str:
        value = getattr(self.settings, name)
        value = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not value:
            raise NotConfigured(f"{SETTING}.{name} is not set")
        return value

    def _key(self) -> bytes:
        return wecom_crypto.aes_key(self._required("encoding_aes_key"))

    def _verify_signature(self, query: Mapping[str, str], encrypted: str, now: datetime) -> None:
        token = self._required("token")
        signature, timestamp = _parameter(query, "msg_signature"), _parameter(query, "timestamp")
        nonce = _parameter(query, "nonce")
        if not same(wecom_crypto.signature(token, timestamp, nonce, encrypted), signature.lower()):
            raise SignatureError("msg_signature does not match the token, timestamp, nonce and ciphertext")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise SignatureError(f"timestamp is not Unix seconds: {shown(timestamp)}")
        try:
            sent = to_time(int(timestamp), "timestamp")
        except InvalidPayload as error:
            raise SignatureError(str(error)) from None
        check_window(sent, now, self.settings.replay_window_seconds)

    def _decrypt(self, encrypted: str) -> bytes:
        try:
            return wecom_crypto.decrypt(self._key(), encrypted, self._required("corp_id"))
        except wecom_crypto.CryptoError as error:
            # Signed with our token but not sealed for our corp with our key: not 企业微信 talking to us.
            raise SignatureError(f"callback does not decrypt: {error}") from None

    def _event(self, message: dict[str, Any]) -> SupportEvent | None:
        author = AUTHORS.get(lookup(message, "origin"))
        customer = optional_str(message, "external_userid") or optional_str(message, "event.external_userid")
        if author is None or customer is None:
            return None
        open_kfid = optional_str(message, "open_kfid") or optional_str(message, "event.open_kfid")
        if open_kfid is None:
            raise InvalidPayload("open_kfid: missing")
        return SupportEvent(
            source=self.name,
            event_id=required_id(message, "msgid"),
            ticket_id=f"{open_kfid}:{customer}",
            author=author,
            text=_text(message),
            created_at=to_time(required(message, "send_time"), "send_time"),
            # external_userid is 企业微信's own id for the WeChat user (one per corp), not the shop's.
            requester=Requester(id=customer),
            channel="chat",
        )

    def _client(self, http: requests.Session, key: str) -> _Client:
        return _Client(Api(http, self.settings.api_base, self.timeout, key), self._required("corp_id"),
                       self._required("secret"))


class _Client:
    """企业微信's server API for one corp and secret: the access_token cached per process
    until shortly before it expires, and an answer's ``errcode`` turned into :class:`DeliveryError`."""

    def __init__(self, api: Api, corp_id: str, secret: str) -> None:
        self.api = api
        self.corp_id = corp_id
        self.secret = secret
        self._cache_key = (api.base_url, corp_id, hashlib.sha256(secret.encode()).hexdigest())

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path``; an invalid or expired token is fetched again once."""
        answer = self.api("POST", path, params={"access_token": self._token(fresh=False)}, json=body)
        if _errcode(answer, path) in STALE_TOKEN:
            answer = self.api("POST", path, params={"access_token": self._token(fresh=True)}, json=body)
        return _check(answer, path)

    def _token(self, fresh: bool) -> str:
        with _tokens_lock:
            cached = _tokens.get(self._cache_key)
        if cached and not fresh and time.monotonic() < cached[1]:
            return cached[0]
        answer = _check(self.api("GET", "/cgi-bin/gettoken", params={"corpid": self.corp_id,
                                                                      "corpsecret": self.secret}), "gettoken")
        token, expires_in = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise DeliveryError("gettoken: answer has no access_token and expires_in")
        with _tokens_lock:
            _tokens[self._cache_key] = (token, time.monotonic() + max(0, expires_in - TOKEN_MARGIN_SECONDS))
        return token


def _errcode(answer: Any, what: str) -> int:
    if not isinstance(answer, dict) or not isinstance(answer.get("errcode", 0), int):
        raise DeliveryError(f"{what}: the answer is not 企业微信's JSON")
    return answer.get("errcode", 0)


def _check(answer: Any, what: str) -> dict[str, Any]:
    """The answer, unless its ``errcode`` says the call failed (permanently, for a configuration error)."""
    code = _errcode(answer, what)
    if code != 0:
        raise DeliveryError(f"{what}: errcode {code} {str(answer.get('errmsg', ''))[:200]}".rstrip(),
                            permanent=code in PERMANENT_ERRORS)
    return answer


def _text(message: dict[str, Any]) -> str:
    """A text message's content; any other kind (image, voice, file, event...) as ``[kind]``."""
    kind = optional_str(message, "msgtype") or "unknown"
    if kind == "text":
        content = lookup(message, "text.content")
        if not isinstance(content, str):
            raise InvalidPayload("text.content: expected a string")
        return content
    if kind == "event":
        return f"[event:{optional_str(message, 'event.event_type') or 'unknown'}]"
    return f"[{kind}]"


def _parameter(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise SignatureError(f"query parameter {name} is required")
    return value


def _xml(document: bytes, what: str) -> Element:
    """A parsed XML document; entity and DTD tricks are refused (it is read before it is verified)."""
    try:
        return fromstring(document)
    except (ParseError, DefusedXmlException) as error:
        raise InvalidPayload(f"{what}: not the XML 企业微信 sends: {error}") from None


def _element(root: Element, name: str, what: str) -> str:
    value = (root.findtext(name) or "").strip()
    if not value:
        raise InvalidPayload(f"{what}: <{name}> is missing")
    return value
