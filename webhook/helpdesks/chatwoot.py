"""Chatwoot: signed ``message_created`` webhooks in, private notes, labels and an attribute out.

Inbound, the account webhook (Settings > Integrations > Webhooks, event "Message created")
posts the message's ``webhook_data`` with the event name (app/models/message.rb)::

    {"event": "message_created", "id": 501, "content": "...", "created_at": "2024-06-10T09:05:00.000Z",
     "message_type": "incoming" | "outgoing" | "activity" | "template", "private": false,
     "sender": {"id": 7, "type": "contact" | "user" | "agent_bot", "email": ..., "phone_number": ...,
                "identifier": ...},
     "conversation": {"id": 101, "channel": "Channel::WebWidget", "status": "open",
                      "meta": {"sender": {<the contact>}}, ...},
     "inbox": {...}, "account": {"id": 1, ...}}

``conversation.id`` is the conversation's display id, the one the API takes. An e-mail inbox's
conversations are tickets to churnsignal, every other channel's are chats. Other events
(``conversation_status_changed``, ``message_updated``...) carry no new message. The
conversation's status (open, pending, snoozed, resolved) becomes churnsignal's by
:data:`STATUSES`; resolving a conversation posts an activity message that carries it.

Webhooks with a secret are signed: ``X-Chatwoot-Signature`` is ``sha256=`` + hex
HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}.{raw body}"), the timestamp in Unix seconds, with a
delivery id in ``X-Chatwoot-Delivery`` (lib/webhooks/trigger.rb; Chatwoot's webhook API
schema). Chatwoot versions that predate signing send neither header and are refused.

Outbound, with an agent's access token (``api_access_token``; an agent bot's token may not
list messages, which a retry's check needs): a private outgoing message,
then the label list and custom attributes, which Chatwoot replaces wholesale on every POST,
so both are read first and written back merged. Chatwoot has no idempotency keys, so a retry
first reads the conversation's recent messages for the alert's marker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from churnsignal.config import ChatwootSettings, TicketStatus

from .base import (
    AlertMessage,
    Author,
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
    check_window,
    epoch,
    header,
    hmac_sha256,
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
    shown,
    ticket_segment,
    ticket_status,
    to_time,
)

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
MESSAGE_TYPES = ("incoming", "outgoing", "activity", "template")
# Chatwoot's conversation statuses in churnsignal's words; a snoozed one waits to come back.
STATUSES: dict[str, TicketStatus] = {"open": "open", "pending": "pending", "snoozed": "pending",
                                     "resolved": "solved"}
_NATIVE_STATUS = {"open": "open", "pending": "pending", "solved": "resolved"}
# Every field parse reads: all that is stored of a Chatwoot webhook. The contact is the
# sender or the conversation's, whichever parse takes.
_CONTACT = ("id", "email", "phone_number", "identifier")
_READ = ("event", "id", "content", "created_at", "message_type", "sender.type", "conversation.id",
         "conversation.channel", "conversation.status",
         *(f"{contact}.{key}" for contact in ("sender", "conversation.meta.sender") for key in _CONTACT))


class Chatwoot(Helpdesk):
    name = "chatwoot"

    def __init__(self, settings: ChatwootSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        key = secret(self.settings.webhook_secret, "helpdesks.chatwoot.webhook_secret")
        signature, timestamp = header(headers, SIGNATURE_HEADER), header(headers, TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise SignatureError(f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
        if not same(_signature(key, timestamp, body), signature):
            raise SignatureError("Chatwoot signature does not match the body")
        # str.isdigit() also takes "²" and other digits int() refuses: ASCII digits only.
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds: {shown(timestamp)}")
        try:
            sent = to_time(int(timestamp), TIMESTAMP_HEADER)
        except (InvalidPayload, ValueError) as error:
            raise SignatureError(f"{TIMESTAMP_HEADER} is not a usable time: {shown(timestamp)}") from error
        check_window(sent, now, self.settings.replay_window_seconds)

    def parse(self, payload: Any) -> list[SupportEvent]:
        data = as_object(payload)
        if required_str(data, "event") != "message_created":
            return []
        content = lookup(data, "content")
        if content is None:  # an attachment-only message: nothing to read
            return []
        if not isinstance(content, str):
            raise InvalidPayload(f"content: expected a string, got {type(content).__name__}")
        message_type = required_str(data, "message_type")
        if message_type not in MESSAGE_TYPES:
            raise InvalidPayload(f"message_type: expected one of {', '.join(MESSAGE_TYPES)}, got {message_type!r}")
        # An incoming message's sender is the contact; otherwise the conversation names them.
        contact = "sender" if message_type == "incoming" and lookup(data, "sender") else "conversation.meta.sender"
        channel = optional_str(data, "conversation.channel")
        return [SupportEvent(
            source=self.name,
            event_id=required_id(data, "id"),
            ticket_id=required_id(data, "conversation.id"),
            author=_author(message_type, optional_str(data, "sender.type")),
            text=content,
            created_at=to_time(required(data, "created_at"), "created_at"),
            requester=Requester(id=optional_str(data, f"{contact}.id"),
                                email=optional_str(data, f"{contact}.email"),
                                phone=optional_str(data, f"{contact}.phone_number"),
                                external_id=optional_str(data, f"{contact}.identifier")),
            channel="ticket" if channel == "Channel::Email" else "chat",
            ticket_status=ticket_status(data, "conversation.status", STATUSES),
        )]

    def retained(self, payload: Any) -> dict[str, Any]:
        return retain(payload, _READ)

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """A ``message_created`` webhook as Chatwoot's ``webhook_data`` writes it."""
        key = secret(self.settings.webhook_secret, "helpdesks.chatwoot.webhook_secret")
        r = event.requester
        contact = {"id": _number(r.id), "email": r.email, "phone_number": r.phone,
                   "identifier": r.external_id, "type": "contact"}
        sender = {"customer": contact, "agent": {"id": 0, "name": "agent", "type": "user"},
                  "bot": {"id": 0, "name": "bot", "type": "agent_bot"}}[event.author]
        payload = {
            "event": "message_created",
            "id": _number(event.event_id),
            "content": event.text,
            "created_at": iso_z(event.created_at),
            "message_type": "incoming" if event.author == "customer" else "outgoing",
            "content_type": "text",
            "content_attributes": {},
            "private": False,
            "source_id": None,
            "sender": sender,
            "conversation": {"id": _number(event.ticket_id),
                             "channel": "Channel::Email" if event.channel == "ticket" else "Channel::WebWidget",
                             "status": _NATIVE_STATUS.get(event.ticket_status or ""),
                             "meta": {"sender": contact}},
            "inbox": {"id": 1, "name": "churnsignal"},
            "account": {"id": self.settings.account_id or 1, "name": "churnsignal"},
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        timestamp = str(epoch(now))
        return ({"Content-Type": "application/json", SIGNATURE_HEADER: _signature(key, timestamp, body),
                 TIMESTAMP_HEADER: timestamp,
                 DELIVERY_HEADER: str(uuid.uuid5(uuid.NAMESPACE_URL, f"chatwoot:{event.event_id}"))}, body)

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        s = self.settings
        if not (s.base_url and s.account_id is not None and s.api_token and s.api_token.get_secret_value()):
            raise NotConfigured("helpdesks.chatwoot needs base_url, account_id and api_token to post alerts")
        api = Api(http, s.base_url, self.timeout, alert.idempotency_key,
                  headers={"api_access_token": s.api_token.get_secret_value()})
        conversation = f"/api/v1/accounts/{s.account_id}/conversations/{ticket_segment(alert.ticket_id)}"
        if alert.attempt == 1 or not self._note_landed(api, conversation, alert):
            api("POST", f"{conversation}/messages",
                json={"content": alert.note(), "message_type": "outgoing", "private": True})
        current = api("GET", conversation) or {}
        labels = current.get("labels") or []
        stale = other_risk_tags(labels, alert)
        wanted = [label for label in labels if label not in stale and label != alert.tag] + [alert.tag]
        api("POST", f"{conversation}/labels", json={"labels": wanted})
        if s.risk_attribute:
            attributes = {**(current.get("custom_attributes") or {}), s.risk_attribute: alert.tier}
            api("POST", f"{conversation}/custom_attributes", json={"custom_attributes": attributes})

    def _note_landed(self, api: Api, conversation: str, alert: AlertMessage) -> bool:
        answer = api("GET", f"{conversation}/messages") or {}
        return already_posted((m.get("content") for m in answer.get("payload") or []), alert)


def _signature(key: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256(key, timestamp.encode() + b"." + body).hex()


def _author(message_type: str, sender_type: str | None) -> Author:
    """Incoming is the customer; activity lines are Chatwoot's own; a person at the desk is an agent.

    Private notes are outgoing messages, so they land with the agent or bot who wrote them.
    """
    if message_type == "incoming":
        return "customer"
    if message_type in ("outgoing", "template"):
        return "agent" if sender_type == "user" else "bot"
    return "bot"


def _number(value: str | None) -> int | str | None:
    """Chatwoot's ids are integers; keep anything else as it is."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else value
