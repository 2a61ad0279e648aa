"""Zendesk: signed webhooks in, private comments, tags and a ticket field out.

Inbound, the primary shape is the event-subscription webhook (Admin Center > Webhooks >
subscribe to ``zen:event-type:ticket.comment_added``)::

    {"type": "zen:event-type:ticket.comment_added", "id": "<event uuid>",
     "time": "2025-01-08T14:25:30.123456789Z", "subject": "zen:ticket:5158",
     "detail": {"id": "5158", "requester_id": "8447388090494", "via": {"channel": "web"}, ...},
     "event": {"comment": {"id": "9876543210", "body": "...", "is_public": true,
                           "author": {"id": "...", "is_staff": false, "name": "..."}}}}

That shape names the requester by id only. An admin who wants the requester's email or phone
(to match customers by them) connects the webhook to a trigger instead ("Notify active
webhook", condition "Comment is present") with this JSON body, whose placeholders Zendesk fills
in; both shapes are accepted::

    {"ticket": {"id": "{{ticket.id}}",
                "via": "{{ticket.via}}",
                "status": "{{ticket.status}}",
                "requester": {"id": "{{ticket.requester.id}}",
                              "email": "{{ticket.requester.email}}",
                              "phone": "{{ticket.requester.phone}}",
                              "external_id": "{{ticket.requester.external_id}}"}},
     "comment": {"id": "{{ticket.latest_comment.id}}",
                 "body": "{{ticket.latest_comment.value}}",
                 "is_public": "{{ticket.latest_comment.is_public}}",
                 "author_id": "{{ticket.latest_comment.author.id}}",
                 "created_at": "{{ticket.updated_at_with_timestamp}}"}}

Zendesk's ``via`` channel becomes churnsignal's: ``chat`` for chat and messaging, ``ticket``
for the rest (web form, e-mail, API...). The ticket's status (``detail.status`` or
``ticket.status``, compared case-insensitively) becomes churnsignal's by :data:`STATUSES`.

Every Zendesk webhook is signed: ``X-Zendesk-Webhook-Signature`` is
base64(HMAC-SHA256(signing secret, timestamp + raw body)) and the timestamp (ISO 8601) is in
``X-Zendesk-Webhook-Signature-Timestamp``
(https://developer.zendesk.com/documentation/webhooks/verifying/).

Outbound, one ``PUT /api/v2/tickets/{id}.json`` adds the private comment, the tier tag, removes
the other tiers' tags and sets the risk field. Zendesk honours idempotency keys only when a
ticket is created, so a retry first reads the ticket's comments for the alert's marker.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from churnsignal.config import TicketStatus, ZendeskSettings

from .base import (
    AlertMessage,
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
    header,
    hmac_sha256,
    iso_z,
    optional_str,
    other_risk_tags,
    required_flag,
    required_id,
    required_str,
    retain,
    same,
    secret,
    ticket_segment,
    ticket_status,
    to_time,
)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
COMMENT_ADDED = "zen:event-type:ticket.comment_added"
# Zendesk's ticket statuses in churnsignal's words; "hold" waits on a third party.
STATUSES: dict[str, TicketStatus] = {"new": "open", "open": "open", "pending": "pending", "hold": "pending",
                                     "solved": "solved", "closed": "solved"}
# Every field parse reads, in either shape: all that is stored of a Zendesk webhook.
_READ = (
    "type", "time", "detail.id", "detail.requester_id", "detail.via.channel", "detail.status",
    "event.comment.id", "event.comment.body", "event.comment.is_public", "event.comment.author.is_staff",
    "ticket.id", "ticket.via", "ticket.status", "ticket.requester.id", "ticket.requester.email", "ticket.requester.phone",
    "ticket.requester.external_id",
    "comment.id", "comment.body", "comment.is_public", "comment.author_id", "comment.created_at",
)
# Stands in for the agent's user id in the payloads signed_request builds; parse never reads it.
_SAMPLE_AGENT_ID = "0"


class Zendesk(Helpdesk):
    name = "zendesk"

    def __init__(self, settings: ZendeskSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        key = secret(self.settings.signing_secret, "helpdesks.zendesk.signing_secret")
        signature, timestamp = header(headers, SIGNATURE_HEADER), header(headers, TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise SignatureError(f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
        expected = base64.b64encode(hmac_sha256(key, timestamp.encode() + body)).decode()
        if not same(expected, signature):
            raise SignatureError("Zendesk signature does not match the body")
        try:
            sent = to_time(timestamp, TIMESTAMP_HEADER)
        except InvalidPayload as error:
            raise SignatureError(str(error)) from error
        check_window(sent, now, self.settings.replay_window_seconds)

    def parse(self, payload: Any) -> list[SupportEvent]:
        data = as_object(payload)
        if "type" in data:
            return [self._from_event(data)] if required_str(data, "type") == COMMENT_ADDED else []
        if "comment" in data:
            return [self._from_trigger(data)]
        raise InvalidPayload("type: missing")

    def retained(self, payload: Any) -> dict[str, Any]:
        return retain(payload, _READ)

    def _from_event(self, data: dict[str, Any]) -> SupportEvent:
        staff = required_flag(data, "event.comment.author.is_staff")
        public = required_flag(data, "event.comment.is_public")
        return SupportEvent(
            source=self.name,
            event_id=required_id(data, "event.comment.id"),
            ticket_id=required_id(data, "detail.id"),
            # A private comment is an internal note, whoever wrote it.
            author="agent" if staff or not public else "customer",
            text=required_str(data, "event.comment.body"),
            created_at=to_time(required_str(data, "time"), "time"),
            requester=Requester(id=optional_str(data, "detail.requester_id")),
            channel=_channel(optional_str(data, "detail.via.channel")),
            ticket_status=ticket_status(data, "detail.status", STATUSES),
        )

    def _from_trigger(self, data: dict[str, Any]) -> SupportEvent:
        requester_id = optional_str(data, "ticket.requester.id")
        # A trigger body cannot say whether the author is staff; the requester is the customer.
        by_requester = requester_id is not None and optional_str(data, "comment.author_id") == requester_id
        public = required_flag(data, "comment.is_public")
        return SupportEvent(
            source=self.name,
            event_id=required_id(data, "comment.id"),
            ticket_id=required_id(data, "ticket.id"),
            author="customer" if by_requester and public else "agent",
            text=required_str(data, "comment.body"),
            created_at=to_time(required_str(data, "comment.created_at"), "comment.created_at"),
            requester=Requester(id=requester_id, email=optional_str(data, "ticket.requester.email"),
                                phone=optional_str(data, "ticket.requester.phone"),
                                external_id=optional_str(data, "ticket.requester.external_id")),
            channel=_channel(optional_str(data, "ticket.via")),
            ticket_status=ticket_status(data, "ticket.status", STATUSES),
        )

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """The webhook Zendesk would send: the trigger body when the requester has contact details
        (an event subscription would drop them), else the event subscription. Bots become staff.
        """
        key = secret(self.settings.signing_secret, "helpdesks.zendesk.signing_secret")
        r = event.requester
        payload = _trigger_body(event) if r.id and (r.email or r.phone or r.external_id) else _event_body(event)
        body = json.dumps(payload, ensure_ascii=False).encode()
        timestamp = iso_z(now, "seconds")
        signature = base64.b64encode(hmac_sha256(key, timestamp.encode() + body)).decode()
        return ({"Content-Type": "application/json", SIGNATURE_HEADER: signature,
                 TIMESTAMP_HEADER: timestamp}, body)

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        s = self.settings
        if not (s.base_url and s.email and s.api_token and s.api_token.get_secret_value()):
            raise NotConfigured("helpdesks.zendesk needs base_url, email and api_token to post alerts")
        api = Api(http, s.base_url, self.timeout, alert.idempotency_key,
                  auth=(f"{s.email}/token", s.api_token.get_secret_value()))
        ticket = f"/api/v2/tickets/{ticket_segment(alert.ticket_id)}"
        update: dict[str, Any] = {"additional_tags": [alert.tag]}
        if alert.attempt == 1 or not self._note_landed(api, ticket, alert):
            update["comment"] = {"body": alert.note(), "public": False}
        current = (api("GET", f"{ticket}.json") or {}).get("ticket") or {}
        stale = other_risk_tags(current.get("tags") or [], alert)
        if stale:
            update["remove_tags"] = stale
        if s.risk_field_id is not None:
            update["custom_fields"] = [{"id": s.risk_field_id, "value": alert.tier}]
        api("PUT", f"{ticket}.json", json={"ticket": update})

    def _note_landed(self, api: Api, ticket: str, alert: AlertMessage) -> bool:
        answer = api("GET", f"{ticket}/comments.json", params={"sort_order": "desc"}) or {}
        return already_posted((c.get("body") for c in answer.get("comments") or []), alert)


def _channel(via: str | None) -> str:
    """Zendesk's many ``via`` channels in churnsignal's words: a conversation is a chat."""
    return "chat" if via and ("chat" in via.lower() or "messaging" in via.lower()) else "ticket"


def _event_body(event: SupportEvent) -> dict[str, Any]:
    customer = event.author == "customer"
    return {
        "type": COMMENT_ADDED,
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"zendesk:{event.event_id}")),
        "account_id": 0,
        "time": iso_z(event.created_at),
        "subject": f"zen:ticket:{event.ticket_id}",
        "zendesk_event_version": "2022-11-06",
        "detail": {"id": event.ticket_id, "requester_id": event.requester.id,
                   "via": {"channel": "chat" if event.channel == "chat" else "web"},
                   "status": event.ticket_status},
        "event": {"comment": {
            "id": event.event_id, "body": event.text, "is_public": True,
            "author": {"id": event.requester.id if customer else _SAMPLE_AGENT_ID,
                       "is_staff": not customer, "name": event.author}}},
    }


def _trigger_body(event: SupportEvent) -> dict[str, Any]:
    r = event.requester
    return {
        "ticket": {"id": event.ticket_id, "via": "Chat" if event.channel == "chat" else "Web Form",
                   "status": event.ticket_status or "",
                   "requester": {"id": r.id, "email": r.email or "", "phone": r.phone or "",
                                 "external_id": r.external_id or ""}},
        "comment": {"id": event.event_id, "body": event.text, "is_public": "true",
                    "author_id": r.id if event.author == "customer" else _SAMPLE_AGENT_ID,
                    "created_at": iso_z(event.created_at, "seconds")},
    }
