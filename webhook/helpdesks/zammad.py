"""Zammad: signed trigger webhooks in, internal notes and tags out.

Inbound, a webhook (Manage > Webhook, with an "HMAC SHA1 Signature Token") that a trigger
(Manage > Trigger, action "Webhook") calls when an article is created. Without a custom
payload Zammad posts the ticket and the article, each with its associations resolved to names
or objects (TriggerWebhookJob::RecordPayload in Zammad's source)::

    {"ticket": {"id": 81, "number": "10081", "state": "open", "customer_id": 8,
                "customer": {"id": 8, "login": "emily@example.com", "email": "emily@example.com",
                             "phone": "...", "mobile": "...", ...}, ...},
     "article": {"id": 104, "ticket_id": 81, "sender": "Customer" | "Agent" | "System",
                 "internal": false, "type": "email" | "web" | "phone" | "chat" | "note" | ...,
                 "content_type": "text/html" | "text/plain", "body": "...",
                 "created_at": "2020-11-13T14:34:35.318Z", ...}}

A trigger that fires on a ticket change without an article sends no message. An internal
article is a note, never the customer's words, whoever Zammad says sent it. The ticket's
``state`` becomes churnsignal's status by :data:`STATUSES`; a custom state is unknown.

Zammad signs with ``X-Hub-Signature: sha1=`` + hex HMAC-SHA1(token, raw body)
(``UserAgent.set_signature``). The signature covers no time, so a captured request can be
replayed: the store keeps each article once, which makes a replay a duplicate.

Outbound, with an access token (``Authorization: Token token=...``): an internal note
(``POST /api/v1/ticket_articles``), then the tier's tag (``POST /api/v1/tags/add``) in place
of the other tiers' (``DELETE /api/v1/tags/remove``). Zammad has no idempotency keys, so a
retry first reads the ticket's articles for the alert's marker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from churnsignal.config import TicketStatus, ZammadSettings

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
    already_posted,
    as_object,
    header,
    iso_z,
    lookup,
    optional_str,
    other_risk_tags,
    required,
    required_id,
    required_str,
    retain,
    same,
    secret,
    ticket_status,
    to_time,
)
from .markup import html_to_text

SIGNATURE_HEADER = "X-Hub-Signature"
SENDERS: dict[str, Author] = {"Customer": "customer", "Agent": "agent", "System": "bot"}
# Zammad's default ticket states in churnsignal's words; merged and removed tickets are done with.
STATUSES: dict[str, TicketStatus] = {
    "new": "open", "open": "open", "pending reminder": "pending", "pending close": "pending",
    "closed": "solved", "merged": "solved", "removed": "solved"}
_NATIVE_STATUS = {"open": "open", "pending": "pending reminder", "solved": "closed"}
# Article types that are a conversation rather than a ticket's correspondence.
CHAT_TYPES = frozenset({"chat", "sms", "telegram personal-message", "whatsapp message", "twitter direct-message"})
_CUSTOMER = ("id", "email", "login", "phone", "mobile")
# Every field parse reads: all that is stored of a Zammad webhook.
_READ = ("ticket.id", "ticket.state", "ticket.customer_id", *(f"ticket.customer.{key}" for key in _CUSTOMER),
         "article.id", "article.sender", "article.internal", "article.type", "article.content_type",
         "article.body", "article.created_at")


class Zammad(Helpdesk):
    name = "zammad"

    def __init__(self, settings: ZammadSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        key = secret(self.settings.webhook_secret, "helpdesks.zammad.webhook_secret")
        sent = header(headers, SIGNATURE_HEADER)
        if not sent:
            raise SignatureError(f"{SIGNATURE_HEADER} is required: set the webhook's HMAC SHA1 Signature Token")
        if not same(_signature(key, body), sent.strip().lower()):
            raise SignatureError("Zammad signature does not match the body")

    def parse(self, payload: Any) -> list[SupportEvent]:
        data = as_object(payload)
        if not lookup(data, "article"):  # a ticket change without an article
            return []
        sender = required_str(data, "article.sender")
        if sender not in SENDERS:
            raise InvalidPayload(f"article.sender: expected one of {', '.join(SENDERS)}, got {sender!r}")
        text = _text(data)
        if not text:  # an attachment alone: nothing to read
            return []
        author = SENDERS[sender]
        return [SupportEvent(
            source=self.name,
            event_id=required_id(data, "article.id"),
            ticket_id=required_id(data, "ticket.id"),
            # An internal article is a note for agents, whoever sent it.
            author="agent" if author == "customer" and _internal(data) else author,
            text=text,
            created_at=to_time(required(data, "article.created_at"), "article.created_at"),
            requester=_requester(data),
            channel="chat" if (optional_str(data, "article.type") or "").lower() in CHAT_TYPES else "ticket",
            ticket_status=ticket_status(data, "ticket.state", STATUSES),
        )]

    def retained(self, payload: Any) -> dict[str, Any]:
        return retain(payload, _READ)

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """The default trigger payload, trimmed to what parse reads, signed as Zammad signs it."""
        key = secret(self.settings.webhook_secret, "helpdesks.zammad.webhook_secret")
        r = event.requester
        customer = {"id": _number(r.id), "login": r.email or r.phone or r.id, "email": r.email or "",
                    "phone": "", "mobile": r.phone or ""}
        ticket: dict[str, Any] = {"id": _number(event.ticket_id), "customer_id": _number(r.id), "customer": customer}
        if event.ticket_status is not None:
            ticket["state"] = _NATIVE_STATUS[event.ticket_status]
        sender = {"customer": "Customer", "agent": "Agent", "bot": "System"}[event.author]
        article = {"id": _number(event.event_id), "ticket_id": _number(event.ticket_id), "sender": sender,
                   "internal": False, "type": "chat" if event.channel == "chat" else "web",
                   "content_type": "text/plain", "body": event.text, "created_at": iso_z(event.created_at)}
        body = json.dumps({"ticket": ticket, "article": article}, ensure_ascii=False).encode()
        return {"Content-Type": "application/json", SIGNATURE_HEADER: _signature(key, body)}, body

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        s = self.settings
        if not (s.base_url and s.api_token and s.api_token.get_secret_value()):
            raise NotConfigured("helpdesks.zammad needs base_url and api_token to post alerts")
        if not (alert.ticket_id.isascii() and alert.ticket_id.isdigit()):
            raise DeliveryError(f"ticket id {alert.ticket_id!r} is not a Zammad ticket id (a number)", permanent=True)
        ticket = int(alert.ticket_id)
        api = Api(http, s.base_url, self.timeout, alert.idempotency_key,
                  headers={"Authorization": f"Token token={s.api_token.get_secret_value()}"})
        if alert.attempt == 1 or not self._note_landed(api, ticket, alert):
            api("POST", "/api/v1/ticket_articles",
                json={"ticket_id": ticket, "body": alert.note(), "content_type": "text/plain", "type": "note",
                      "internal": True})
        if not s.tag:
            return
        on_ticket = {"object": "Ticket", "o_id": ticket}
        tags = (api("GET", "/api/v1/tags", params=on_ticket) or {}).get("tags") or []
        for stale in other_risk_tags(tags, alert):
            api("DELETE", "/api/v1/tags/remove", json={"item": stale, **on_ticket})
        if alert.tag not in tags:
            api("POST", "/api/v1/tags/add", json={"item": alert.tag, **on_ticket})

    def _note_landed(self, api: Api, ticket: int, alert: AlertMessage) -> bool:
        articles = api("GET", f"/api/v1/ticket_articles/by_ticket/{ticket}") or []
        return already_posted((a.get("body") for a in articles if isinstance(a, dict)), alert)


def _signature(key: str, body: bytes) -> str:
    return "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest()


def _internal(data: dict[str, Any]) -> bool:
    value = lookup(data, "article.internal")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidPayload(f"article.internal: expected true or false, got {value!r}")
    return value


def _text(data: dict[str, Any]) -> str:
    """The article's words: an HTML body (e-mail, web form) as plain text, without quoted history."""
    body = lookup(data, "article.body")
    if body is None:
        return ""
    if not isinstance(body, str):
        raise InvalidPayload(f"article.body: expected a string, got {type(body).__name__}")
    html = (optional_str(data, "article.content_type") or "").lower() == "text/html"
    return html_to_text(body) if html else body


def _requester(data: dict[str, Any]) -> Requester:
    """The ticket's customer; a login is an e-mail address where the customer has no other."""
    login = optional_str(data, "ticket.customer.login")
    return Requester(
        id=optional_str(data, "ticket.customer.id") or optional_str(data, "ticket.customer_id"),
        email=optional_str(data, "ticket.customer.email") or (login if login and "@" in login else None),
        phone=optional_str(data, "ticket.customer.mobile") or optional_str(data, "ticket.customer.phone"),
    )


def _number(value: str | None) -> int | str | None:
    """Zammad's ids are integers; keep anything else as it is."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else value
