"""What every helpdesk adapter is: inbound (verify, parse) and outbound (post an alert).

The rest of churnsignal sees only :class:`SupportEvent` coming in and :class:`AlertMessage`
going out; everything a helpdesk does differently stays inside its own module, as Rasa
keeps one module per channel.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import requests

from churnsignal.config import TicketStatus

Author = Literal["customer", "agent", "bot"]

# The last line of every note churnsignal posts; how a retry finds an earlier try's note and
# how the webhook recognises that note when the helpdesk sends it back.
MARKER = re.compile(r"\(churnsignal alert (\d+)\)")


# What a helpdesk puts in a contact field nobody filled in: no key to know a customer by.
NO_VALUE = frozenset({"", "-", "--", "—", "n/a", "na", "none", "null", "nil", "undefined", "unknown"})


def marker(alert_id: int) -> str:
    return f"(churnsignal alert {alert_id})"


class SignatureError(Exception):
    """The request is not from the helpdesk (bad, missing or replayed signature): HTTP 401."""


class InvalidPayload(ValueError):
    """The payload is not a shape this helpdesk sends: HTTP 422 with this message."""


class NotConfigured(Exception):
    """This helpdesk has no secret (inbound) or no API address/credentials (outbound)."""


class DeliveryError(Exception):
    """Posting an alert failed; ``retry_after`` (seconds) when the helpdesk said when to retry.

    ``permanent`` failures (401, 403, 404, 422, a redirect, a ticket id that cannot be in a URL:
    a retry cannot succeed) are not retried.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


@dataclass(frozen=True)
class Requester:
    """Who wrote to the helpdesk, as the helpdesk knows them; any key may be missing."""

    id: str | None = None
    email: str | None = None
    phone: str | None = None
    external_id: str | None = None

    def keys(self) -> dict[str, str]:
        """The keys that are present, by name (``id``, ``email``, ``phone``, ``external_id``).

        Blanks and placeholders such as ``"-"`` or ``"N/A"`` are not keys.
        """
        return {k: v for k, v in (("id", self.id), ("email", self.email), ("phone", self.phone),
                                  ("external_id", self.external_id))
                if v is not None and v.strip().lower() not in NO_VALUE}


@dataclass(frozen=True)
class SupportEvent:
    """One message on a ticket or conversation, normalised from any helpdesk's webhook.

    ``text`` is as the helpdesk sent it (the webhook masks it before storing).
    ``created_at`` is naive UTC. ``ticket_status`` is the ticket's status as the webhook
    reports it, in churnsignal's words; None when the payload carries none (or one its adapter
    does not know).
    """

    source: str
    event_id: str
    ticket_id: str
    author: Author
    text: str
    created_at: datetime
    requester: Requester
    channel: str = "ticket"
    ticket_status: TicketStatus | None = None


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook request as the helpdesk would send it: the path under the service's root (with
    any token or query string it carries), the headers and the body."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class AlertMessage:
    """An alert to post on a ticket; ``idempotency_key`` is the same on every retry."""

    alert_id: int
    idempotency_key: str
    ticket_id: str
    tier: str
    churn_prob: float
    reasons: list[dict[str, str]]  # [{"zh": ..., "en": ...}], most important first
    driver: str
    action: dict[str, str]  # {"zh": ..., "en": ...}
    due_at: datetime
    # 1 on the first try; on a retry an adapter whose helpdesk has no idempotency keys
    # first checks whether the earlier try's note already landed.
    attempt: int = 1
    # The customer the alert is about, as churnsignal knows them (for URL and body templates).
    customer_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"churn-risk-{self.tier}"

    def note(self) -> str:
        """The private note an agent reads, in Chinese then English."""
        reasons_zh = "；".join(r["zh"] for r in self.reasons) or "无"
        reasons_en = "; ".join(r["en"] for r in self.reasons) or "none"
        due = self.due_at.strftime("%Y-%m-%d %H:%M UTC")
        return (f"【流失风险 {self.tier.upper()}】概率 {self.churn_prob:.0%}\n"
                f"原因：{reasons_zh}\n建议：{self.action['zh']}\n请在 {due} 前处理\n\n"
                f"[Churn risk {self.tier.upper()}] probability {self.churn_prob:.0%}\n"
                f"Reasons: {reasons_en}\nSuggested action: {self.action['en']}\nRespond by {due}\n"
                f"{marker(self.alert_id)}")


class Helpdesk(ABC):
    """One helpdesk: both directions. Subclasses set ``name`` and take their settings."""

    name: str

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        """Raise :class:`SignatureError` unless the request is signed by the helpdesk.

        Raise :class:`NotConfigured` when no secret is configured: unsigned traffic is refused.
        """

    @abstractmethod
    def parse(self, payload: Any) -> list[SupportEvent]:
        """The messages in a decoded JSON payload; [] for event kinds that carry none.

        Raise :class:`InvalidPayload` naming the field that is missing or of the wrong type.
        """

    @abstractmethod
    def retained(self, payload: Any) -> dict[str, Any]:
        """What the store keeps of a payload that parsed: the fields ``parse`` reads, and
        nothing else, so that the names, IP addresses and whatever else a helpdesk sends
        along are never stored. The webhook masks what is kept.
        """

    @abstractmethod
    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        """Put the alert on its ticket: private note, tag/label and, if configured, a field.

        Raise :class:`DeliveryError` (with ``retry_after`` from a 429) on failure and
        :class:`NotConfigured` without an API address or credentials.
        """

    @abstractmethod
    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """Headers and body the helpdesk itself would send for ``event``, signed.

        The demo replays traffic with it and the tests check ``parse`` round-trips it.
        """

    def signed_webhook(self, event: SupportEvent, now: datetime) -> SignedWebhook:
        """The whole request the helpdesk would send for ``event``, path included: what the demo
        posts. Helpdesks whose ``auth`` puts a token or a signature in the URL override it."""
        headers, body = self.signed_request(event, now)
        return SignedWebhook(self.webhook_path, headers, body)

    @property
    def webhook_path(self) -> str:
        """Where the helpdesk's webhooks are posted: ``/webhooks/zendesk``, ``/webhooks/generic/<name>``."""
        return f"/webhooks/{self.name.replace(':', '/', 1)}"
