"""Checking a generic helpdesk's configuration against what it really sends (``churnsignal helpdesk check``).

Wiring a helpdesk by YAML is trial and error against a live account unless each part can be
tried on a captured webhook: does the signature scheme accept it, what does the mapping read
from it (or where does it go wrong, every field at once), and does a note posted through the
outbound templates land. A captured sample is usually older than the replay window, so a
signed timestamp is checked at the time it names and its age reported apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from churnsignal.config import Settings, UrlTokenAuth
from churnsignal.nlp.masking import mask_pii

from .base import AlertMessage, NotConfigured, SignatureError, SupportEvent
from .generic import Generic
from .http import secret, utc_naive
from .signing import (
    WebhookRequest,
    parse_timestamp,
    request_value,
    signature_description,
    signature_place,
    verify,
)

# The alert id of a test note: real alerts count from 1, so its marker line matches none of them.
TEST_ALERT_ID = 0


@dataclass(frozen=True)
class SignatureCheck:
    """``verified``: True when the sample passes ``auth``, False when it fails, None when a
    sample cannot show it (a URL token, or no signature in the sample)."""

    verified: bool | None
    message: str


def check_signature(adapter: Generic, request: WebhookRequest, now: datetime) -> SignatureCheck:
    """Whether ``request`` passes the helpdesk's ``auth``, and in words what it expects."""
    auth = adapter.settings.auth
    if isinstance(auth, UrlTokenAuth):
        return SignatureCheck(None, "auth.scheme url_token: the token travels in the webhook URL "
                                    f"(/webhooks/generic/{adapter.name.removeprefix('generic:')}/<token>), "
                                    "not in a sample; nothing here to check")
    place = signature_place(auth, adapter.settings.signature_header)
    expected = signature_description(auth)
    option = f"--header '{place.header}: <value>'" if place.header else f"--query '{place.query}=<value>'"
    if not request_value(place, request):
        return SignatureCheck(None, f"cannot check the signature: the sample has no {place.describe()}; "
                                    f"give it with {option}. The scheme expects the {expected}")
    signed_at, age = now, ""
    try:
        key = secret(adapter.settings.secret, f"helpdesks.{adapter.name.replace(':', '.')}.secret")
        if auth.timestamp is not None:
            sent = request_value(auth.timestamp, request)
            if not sent:
                raise SignatureError(f"{auth.timestamp.describe()} is required: the signature's timestamp")
            signed_at = parse_timestamp(sent, auth.timestamp)
            skew = abs((utc_naive(now) - utc_naive(signed_at)).total_seconds())
            if skew > auth.replay_window_seconds:
                age = (f" (signed {timedelta(seconds=round(skew))} from now: a live webhook this far off is refused, "
                       f"auth.replay_window_seconds is {auth.replay_window_seconds})")
        verify(auth, key, request, signed_at, adapter.settings.signature_header)
    except (SignatureError, NotConfigured) as error:
        return SignatureCheck(False, f"signature refused: {error}")
    return SignatureCheck(True, f"signature matches: the {expected} in {place.describe()}{age}")


def read_sample(adapter: Generic, payload: Any) -> tuple[dict[str, Any] | None, list[SupportEvent], list[str]]:
    """What the webhook would do with ``payload``: the notice values it would pull with (or
    None), the messages the mapping reads, and every mapping error."""
    values = adapter.notice(payload)
    if values is not None:
        return values, [], []
    errors = adapter.mapping_errors(payload)
    return None, [] if errors else adapter.parse(payload), errors


def masked_lines(event: SupportEvent) -> Iterator[str]:
    """A message as an operator may see it: every value masked."""
    keys = ", ".join(f"{name} {mask_pii(value).text}" for name, value in event.requester.keys().items())
    yield f"message {mask_pii(event.event_id).text} on ticket {mask_pii(event.ticket_id).text}"
    yield f"  author:   {event.author}"
    yield f"  created:  {event.created_at.isoformat(timespec='seconds')}Z"
    yield f"  customer: {keys or 'no requester key (an unidentified customer of this ticket)'}"
    yield f"  channel:  {event.channel}"
    yield f"  status:   {event.ticket_status or 'not sent (the fusion reads who spoke last)'}"
    yield f"  text:     {mask_pii(event.text).text}"


def trial_alert(settings: Settings, ticket_id: str, now: datetime) -> AlertMessage:
    """An alert that says it is a test, at the highest tier, for ``ticket_id``."""
    tier = settings.fusion.tiers[0]
    action = settings.fusion.interventions["other"]
    return AlertMessage(
        alert_id=TEST_ALERT_ID, idempotency_key=f"churnsignal-test-{int(now.timestamp())}", ticket_id=ticket_id,
        tier=tier.name, churn_prob=0.99, reasons=[{"zh": "测试提醒，请忽略", "en": "a test alert, please ignore"}],
        driver="other", action={"zh": action.zh, "en": action.en},
        due_at=utc_naive(now.astimezone(UTC)) + timedelta(hours=tier.response_hours), customer_id="churnsignal-test")


def answered(http: requests.Session) -> list[requests.Response]:
    """The answers ``http`` receives from now on, in order (to show each request's status)."""
    seen: list[requests.Response] = []
    http.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))
    return seen
