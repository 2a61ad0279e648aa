"""Freshdesk: automation-rule webhooks in, private notes, tags and a ticket field out.

Freshdesk does not sign webhooks, and its automation rules send whatever JSON the admin
writes. So churnsignal defines the payload. In Admin > Workflows > Automations, create one rule
per kind of message below, each with the action "Trigger webhook": POST to churnsignal's
Freshdesk URL, encoding JSON, content "Advanced", a custom header named as
``helpdesks.freshdesk.secret_header`` (``X-Churnsignal-Secret``) carrying
``helpdesks.freshdesk.webhook_secret``, and this body::

    {"event": "reply_sent",
     "author": "customer",
     "ticket_id": "{{ticket.id}}",
     "source": "{{ticket.source}}",
     "status": "{{ticket.status}}",
     "text": "{{ticket.latest_public_comment}}",
     "contact": {"email": "{{ticket.contact.email}}",
                 "phone": "{{ticket.contact.phone}}",
                 "mobile": "{{ticket.contact.mobile}}",
                 "external_id": "{{ticket.contact.unique_external_id}}"}}

- "Ticket creation" rule: ``"event": "ticket_created"``, ``"author": "customer"``,
  ``"text": "{{ticket.description}}"``.
- "Ticket updates" rule, event "Reply is sent", performed by the Requester:
  ``"event": "reply_sent"``, ``"author": "customer"`` (as above).
- The same, performed by an Agent: ``"author": "agent"``.
- Event "Note is added": ``"event": "note_added"``, ``"author": "agent"``,
  ``"text": "{{ticket.latest_private_comment}}"``.

Any other ``event`` value is accepted and ignored. A ticket whose source is chat is a chat to
churnsignal, any other (e-mail, portal, phone...) a ticket. The status becomes churnsignal's by
:data:`STATUSES`; a custom status is taken as unknown. Freshdesk renders a comment placeholder as
"<author name> : <HTML body>" (``liquidize_comment`` in Freshdesk's ticket model); the name
and the markup are removed here, and so is a quoted e-mail history (``<blockquote>``), which
would otherwise put the agent's earlier words in the customer's mouth.

No placeholder carries the comment's id or time. The event id is therefore a digest of the
ticket, event and text (Freshdesk's own retries of a delivery collapse onto it; two identical
texts on one ticket do too), and the time is when the webhook arrived, which for a rule
that fires on the reply is when the reply was sent.

Outbound (API key as basic-auth user, password ``X``): ``POST /api/v2/tickets/{id}/notes``
with a private note, then ``PUT /api/v2/tickets/{id}`` with the tags (Freshdesk replaces the
list, so it is read first and merged) and the risk field. Freshdesk has no idempotency keys,
so a retry first reads the ticket's conversations for the alert's marker.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import requests

from churnsignal.config import FreshdeskSettings, TicketStatus

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
    header,
    optional_str,
    other_risk_tags,
    required_id,
    required_str,
    retain,
    same,
    secret,
    ticket_segment,
    ticket_status,
)
from .markup import html_to_text

MessageEvent = Literal["ticket_created", "reply_sent", "note_added"]
# Freshdesk's ticket statuses, by name as ``{{ticket.status}}`` renders them or by number as
# the API writes them, in churnsignal's words; the two "Waiting on" statuses are pending ones.
STATUSES: dict[str, TicketStatus] = {
    "open": "open", "2": "open", "pending": "pending", "3": "pending", "resolved": "solved", "4": "solved",
    "closed": "solved", "5": "solved", "waiting on customer": "pending", "waiting on third party": "pending"}
_NATIVE_STATUS = {"open": "Open", "pending": "Pending", "solved": "Resolved"}
# Freshdesk answers 100 conversations per page at most.
_PAGE_SIZE = 100
# Every field parse reads: all that is stored of a Freshdesk webhook.
_READ = ("event", "author", "ticket_id", "text", "source", "status",
         "contact.email", "contact.phone", "contact.mobile", "contact.external_id")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Freshdesk(Helpdesk):
    name = "freshdesk"

    def __init__(self, settings: FreshdeskSettings, timeout: float,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.settings = settings
        self.timeout = timeout
        self.clock = clock  # the payload has no time; see the module docstring

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        key = secret(self.settings.webhook_secret, "helpdesks.freshdesk.webhook_secret")
        sent = header(headers, self.settings.secret_header)
        if not sent:
            raise SignatureError(f"{self.settings.secret_header} is required")
        if not same(key, sent):
            raise SignatureError(f"{self.settings.secret_header} does not match the shared secret")

    def parse(self, payload: Any) -> list[SupportEvent]:
        data = as_object(payload)
        event = required_str(data, "event")
        if event not in get_args(MessageEvent):
            return []
        author = required_str(data, "author")
        if author not in get_args(Author):
            raise InvalidPayload(f"author: expected one of {', '.join(get_args(Author))}, got {author!r}")
        ticket_id = required_id(data, "ticket_id")
        raw = required_str(data, "text")
        text = html_to_text(_comment(event, raw))
        if not text:  # an attachment or an image alone: nothing to read
            return []
        return [SupportEvent(
            source=self.name,
            event_id=f"{ticket_id}-{_digest(ticket_id, event, raw)}",
            ticket_id=ticket_id,
            # Only agents add notes, whatever the rule says.
            author="agent" if event == "note_added" and author == "customer" else cast(Author, author),
            text=text,
            created_at=self.clock(),
            requester=Requester(email=optional_str(data, "contact.email"),
                                phone=optional_str(data, "contact.mobile") or optional_str(data, "contact.phone"),
                                external_id=optional_str(data, "contact.external_id")),
            channel="chat" if "chat" in (optional_str(data, "source") or "").lower() else "ticket",
            ticket_status=ticket_status(data, "status", STATUSES),
        )]

    def retained(self, payload: Any) -> dict[str, Any]:
        """The fields parse reads, the comment without the author's name that Freshdesk puts before it."""
        kept = retain(payload, _READ)
        kept["text"] = _comment(kept["event"], kept["text"])
        return kept

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """The documented payload for a reply, as the rule would render it (HTML, author prefix).

        Freshdesk sends no id and no time, so ``parse`` derives the first and takes the second
        from its clock: those two fields do not survive the trip.
        """
        key = secret(self.settings.webhook_secret, "helpdesks.freshdesk.webhook_secret")
        r = event.requester
        payload = {
            "event": "reply_sent",
            "author": event.author,
            "ticket_id": event.ticket_id,
            "source": "Chat" if event.channel == "chat" else "Email",
            "status": _NATIVE_STATUS.get(event.ticket_status or "", ""),
            "text": f"{event.author} : <div>{html.escape(event.text).replace(chr(10), '<br>')}</div>",
            "contact": {"email": r.email or "", "phone": "", "mobile": r.phone or "",
                        "external_id": r.external_id or ""},
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        return {"Content-Type": "application/json", self.settings.secret_header: key}, body

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        s = self.settings
        if not (s.base_url and s.api_key and s.api_key.get_secret_value()):
            raise NotConfigured("helpdesks.freshdesk needs base_url and api_key to post alerts")
        api = Api(http, s.base_url, self.timeout, alert.idempotency_key, auth=(s.api_key.get_secret_value(), "X"))
        ticket = f"/api/v2/tickets/{ticket_segment(alert.ticket_id)}"
        if alert.attempt == 1 or not self._note_landed(api, ticket, alert):
            note_html = html.escape(alert.note()).replace("\n", "<br>")
            api("POST", f"{ticket}/notes", json={"body": note_html, "private": True})
        tags = (api("GET", ticket) or {}).get("tags") or []
        stale = other_risk_tags(tags, alert)
        update: dict[str, Any] = {"tags": [t for t in tags if t not in stale and t != alert.tag] + [alert.tag]}
        if s.risk_field:
            update["custom_fields"] = {s.risk_field: alert.tier}
        api("PUT", ticket, json=update)

    def _note_landed(self, api: Api, ticket: str, alert: AlertMessage) -> bool:
        page = 1
        while True:
            conversations = api("GET", f"{ticket}/conversations",
                                params={"page": page, "per_page": _PAGE_SIZE}) or []
            if already_posted((c.get("body_text") or c.get("body") for c in conversations), alert):
                return True
            if len(conversations) < _PAGE_SIZE:
                return False
            page += 1


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _comment(event: str, rendered: str) -> str:
    """The comment's HTML: a comment placeholder has the author's name before it, a description has not."""
    return rendered if event == "ticket_created" else _without_author_name(rendered)


def _without_author_name(rendered: str) -> str:
    """Drop the "<author name> : " that Freshdesk puts before a rendered comment."""
    name, separator, body = rendered.partition(" : ")
    return body if separator and "<" not in name else rendered
