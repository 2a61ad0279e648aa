"""A generic helpdesk's alert as the requests its own API takes (``helpdesks.generic.<name>.outbound``).

Each configured request is a method, a URL template, credentials read from the environment and
a sandboxed Jinja2 template that renders the JSON body from the alert's fields. They are sent in
order; the first failure stops the attempt, and the retry sends them all again, except a request
whose ``read_back`` finds that the earlier try's note landed. Each request has its own
``Idempotency-Key`` (the alert's, then its number): a helpdesk that honours keys must not answer
the tag request with the note request's stored answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import requests
from jinja2 import TemplateError

from churnsignal.config import PLACEHOLDER, OutboundAuth, OutboundRequest, ReadBack

from .base import AlertMessage, DeliveryError, marker
from .http import Api, already_posted, iso_z, ticket_segment
from .query_signing import SignedQuery


def send(calls: list[OutboundRequest], alert: AlertMessage, http: requests.Session, timeout: float,
         setting: str) -> None:
    """Make every configured request for ``alert``; :class:`DeliveryError` at the first that fails."""
    values = template_values(alert)
    for number, request in enumerate(calls, start=1):
        where = f"{setting}[{number - 1}]"
        key = f"{alert.idempotency_key}-{number}"
        if request.read_back is not None and alert.attempt > 1 and _landed(request.read_back, request.auth, alert,
                                                                             http, timeout, key):
            continue
        body = json_body(request.render, values, f"{where}.body")
        api(http, request.auth, url(request.url, alert), timeout, key)(request.method, "", json=body,
                                                                       expect=request.expect)


def template_values(alert: AlertMessage) -> dict[str, Any]:
    """Every field of an alert, by the names a body template uses (``config.TEMPLATE_FIELDS``)."""
    values: dict[str, Any] = {
        "alert_id": alert.alert_id, "idempotency_key": alert.idempotency_key, "ticket_id": alert.ticket_id,
        "customer_id": alert.customer_id, "tier": alert.tier, "tag": alert.tag, "probability": alert.churn_prob,
        "reasons": alert.reasons, "reasons_zh": "；".join(r["zh"] for r in alert.reasons),
        "reasons_en": "; ".join(r["en"] for r in alert.reasons), "driver": alert.driver, "action": alert.action,
        "action_zh": alert.action["zh"], "action_en": alert.action["en"], "due_at": iso_z(alert.due_at, "seconds"),
        "attempt": alert.attempt, "note": alert.note(), "marker": marker(alert.alert_id),
    }
    # APIs that take the ticket as a JSON number; left undefined (so a template using it fails
    # clearly) for a ticket id that is not one.
    if alert.ticket_id.isascii() and alert.ticket_id.isdigit():
        values["ticket_number"] = int(alert.ticket_id)
    return values


def url(template: str, alert: AlertMessage) -> str:
    """The URL with each placeholder replaced by its value as one quoted path segment."""
    values = {"ticket_id": alert.ticket_id, "customer_id": alert.customer_id, "alert_id": str(alert.alert_id)}

    def segment(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        if value is None:
            raise DeliveryError(f"{template}: this alert has no {match.group(1)}", permanent=True)
        return ticket_segment(value)

    return PLACEHOLDER.sub(segment, template)


def json_body(render: Callable[[dict[str, Any]], str | None], values: dict[str, Any], where: str) -> Any:
    """The rendered body, decoded: a template that does not render JSON can never succeed."""
    try:
        text = render(values)
    except (TemplateError, TypeError, ValueError) as error:  # filters and operators raise plain ones too
        hint = " (ticket_number is defined only for a ticket id of digits)" if "ticket_number" in str(error) else ""
        raise DeliveryError(f"{where}: cannot render: {error}{hint}", permanent=True) from error
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise DeliveryError(f"{where}: the template did not render JSON ({error}); "
                            "write string fields as {{ field | tojson }}", permanent=True) from error


def _landed(read_back: ReadBack, auth: OutboundAuth | None, alert: AlertMessage, http: requests.Session,
            timeout: float, key: str) -> bool:
    answer = api(http, read_back.auth or auth, url(read_back.url, alert), timeout, key)(read_back.method, "")
    found = read_back.texts(answer)
    texts = [found] if isinstance(found, str) else found if isinstance(found, list) else []
    return already_posted((text for text in texts if isinstance(text, str)), alert)


def api(http: requests.Session, auth: OutboundAuth | None, address: str, timeout: float, key: str | None) -> Api:
    """Calls to ``address`` with the credentials ``auth`` names (outbound requests and pulls alike)."""
    if auth is None:
        return Api(http, address, timeout, key)
    if auth.query_signature is not None:
        return Api(http, address, timeout, key, auth=SignedQuery(auth.query_signature))
    return Api(http, address, timeout, key, auth=auth.basic_auth(), headers=auth.headers())
