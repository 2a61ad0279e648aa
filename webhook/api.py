"""The read/write API for integrators: orders and identities in, a customer's or ticket's risk out.

Every route needs ``Authorization: Bearer <service.api_token>``. Without a configured token
the API is closed (401 saying which setting opens it), never open by default.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request
from flask_httpauth import HTTPTokenAuth
from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from churnsignal.store import Alert, Customer, Event, Identity, Order, RiskScore
from churnsignal.webhook import identity
from churnsignal.webhook.app import error, read_json, service
from churnsignal.webhook.helpdesks import BUILT_IN
from churnsignal.webhook.inbound import enqueue
from churnsignal.webhook.orders import OrderRowsError, upsert_orders

blueprint = Blueprint("api", __name__, url_prefix="/api")
auth = HTTPTokenAuth(scheme="Bearer")

MAX_BATCH = 10_000
# A full batch of orders or identities is larger than a webhook: these two routes, and only
# after the token is checked, accept bodies up to this size.
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024
LAST_MESSAGES = 5
HISTORY = 50
ALERTS = 50
IDENTITY_KEYS = ("external_id", "email", "phone", "id")
MAX_REPORTED = 100


@auth.verify_token
def _verify_token(token: str) -> bool | None:
    configured = service().settings.service.api_token
    if configured is None or not configured.get_secret_value() or not token:
        return None
    return hmac.compare_digest(token.encode(), configured.get_secret_value().encode()) or None


@auth.error_handler
def _unauthorized(status: int):
    configured = service().settings.service.api_token
    if configured is None or not configured.get_secret_value():
        return error(401, "the API is closed: set CHURNSIGNAL_SERVICE__API_TOKEN and send it as "
                          "'Authorization: Bearer <token>'")
    return error(status, "missing or wrong bearer token")


@blueprint.before_request
@auth.login_required
def _authenticated() -> None:
    """Every route of this blueprint is behind the token."""


class _Unprocessable(Exception):
    """A request body that is JSON but not the shape this route takes: 422."""


@blueprint.errorhandler(_Unprocessable)
def _unprocessable(exc: _Unprocessable):
    return error(422, str(exc))


@blueprint.errorhandler(OrderRowsError)
def _bad_orders(exc: OrderRowsError):
    return error(422, f"{len(exc.problems)} invalid order field(s); nothing was stored",
                 problems=_capped(exc.problems))


@blueprint.post("/orders")
def post_orders():
    """``{"orders": [...]}`` upserted by order_id, all or nothing: ``{"inserted": n, "updated": m}``."""
    rows = _batch("orders")
    with service().store.session() as session:
        inserted, updated = upsert_orders(session, rows)
    return jsonify({"inserted": inserted, "updated": updated})


@blueprint.post("/identities")
def post_identities():
    """``{"identities": [{"customer_id", "email"?, "phone"?, "external_id"?, "id"?, "source"?}]}``.

    Each key present is linked to the customer (``id``, a helpdesk user id, needs the
    ``source`` it belongs to): ``{"linked": n, "moved_events": m}``. A requester who wrote
    before their key was linked was stored as a provisional ``hd-`` customer; their events
    move to the customer now (:func:`identity.adopt`), and the customer is queued to be scored again.
    """
    rows = _batch("identities")
    links, problems = _identity_links(rows)
    if problems:
        return error(422, f"{len(problems)} invalid identity field(s); nothing was stored",
                     problems=_capped(problems))
    pepper = service().settings.identity.required_pepper()
    with service().store.session() as session:
        linked = [identity.link(session, customer_id, kind, value, source, pepper=pepper)
                  for customer_id, kind, value, source in links]
    rescore = sorted({result.rescore for result in linked if result.rescore is not None})
    if rescore:
        enqueue(rescore)
    return jsonify({"linked": len(links), "moved_events": sum(len(result.moved) for result in linked)})


@blueprint.get("/customers/<customer_id>/risk")
def customer_risk(customer_id: str):
    with service().store.session() as session:
        if not _known(session, customer_id):
            raise NotFound(f"unknown customer {customer_id!r}")
        return jsonify(_risk(session, customer_id))


@blueprint.get("/tickets/<source>/<ticket_id>/risk")
def ticket_risk(source: str, ticket_id: str):
    """The risk of the ticket's customer: the author of its latest customer message."""
    with service().store.session() as session:
        customer_id = ticket_customer(session, source, ticket_id)
        if customer_id is None:
            raise NotFound(f"unknown ticket {ticket_id!r} from {source!r}")
        return jsonify({"ticket": {"source": source, "ticket_id": ticket_id}} | _risk(session, customer_id))


def ticket_customer(session: Session, source: str, ticket_id: str) -> str | None:
    """The customer a ticket is about: the author of its latest customer message; None for an unknown ticket."""
    on_ticket = select(Event.customer_id).where(Event.source == source, Event.ticket_id == ticket_id)
    customer_id = session.scalar(on_ticket.where(Event.author == "customer")
                                 .order_by(Event.created_at.desc(), Event.id.desc()).limit(1))
    if customer_id is None:
        # Only agent or bot messages so far: they carry the ticket's requester too.
        customer_id = session.scalar(on_ticket.order_by(Event.created_at.desc(), Event.id.desc()).limit(1))
    return customer_id


def _batch(key: str) -> list[Any]:
    request.max_content_length = max(MAX_BATCH_BODY_BYTES, service().settings.service.max_body_bytes)
    payload = read_json()
    rows = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise _Unprocessable(f'expected a JSON object {{"{key}": [...]}}')
    if not rows:
        raise _Unprocessable(f"{key}: empty list")
    if len(rows) > MAX_BATCH:
        raise _Unprocessable(f"{key}: {len(rows)} rows; at most {MAX_BATCH} per request")
    return rows


def _identity_links(rows: list[Any]) -> tuple[list[tuple[str, str, str, str | None]], list[str]]:
    """(customer_id, kind, value, source) for every key present, and the problems found."""
    links: list[tuple[str, str, str, str | None]] = []
    problems: list[str] = []
    for index, row in enumerate(rows):
        at = f"identities[{index}]"
        if not isinstance(row, dict):
            problems.append(f"{at}: must be an object")
            continue
        customer_id = _text(row.get("customer_id"))
        if not customer_id or len(customer_id) > 200:
            problems.append(f"{at}.customer_id: must be a non-empty string of at most 200 characters")
        source = row.get("source")
        if source is not None and not (isinstance(source, str) and source.strip()):
            problems.append(f"{at}.source: must be a helpdesk name ({', '.join(BUILT_IN)}, generic:<name>)")
        found = 0
        for kind in IDENTITY_KEYS:
            if row.get(kind) in (None, ""):
                continue
            value = _text(row[kind])
            if value is None or identity.normalise(kind, value) is None:
                problems.append(f"{at}.{kind}: must be a non-empty string")
                continue
            if kind == "id" and not (isinstance(source, str) and source.strip()):
                problems.append(f'{at}.id: needs "source", the helpdesk the user id belongs to')
                continue
            found += 1
            links.append((customer_id or "", kind, value, source.strip() if kind == "id" else None))
        if not found and not any(p.startswith(at) for p in problems):
            problems.append(f"{at}: no key to link (one of {', '.join(IDENTITY_KEYS)})")
    return links, problems


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _known(session: Session, customer_id: str) -> bool:
    return any(session.scalar(select(exists().where(column == customer_id)))
               for column in (Customer.customer_id, Event.customer_id, Order.customer_id, Identity.customer_id,
                              RiskScore.customer_id))


def _risk(session: Session, customer_id: str) -> dict[str, Any]:
    """The risk document of one known customer; tier and churn_prob are null until scored."""
    customer = session.get(Customer, customer_id)
    scores = session.scalars(select(RiskScore).where(RiskScore.customer_id == customer_id)
                             .order_by(RiskScore.scored_at.desc(), RiskScore.id.desc()).limit(HISTORY)).all()
    latest = scores[0] if scores else None
    if customer is not None and customer.scored_at is not None:
        tier, churn_prob, scored_at = customer.tier, customer.churn_prob, customer.scored_at
    elif latest is not None:
        tier, churn_prob, scored_at = latest.tier, latest.churn_prob, latest.scored_at
    else:
        tier = churn_prob = scored_at = None
    messages = session.scalars(select(Event).where(
        Event.customer_id == customer_id, Event.author == "customer", Event.status == "analysed")
        .order_by(Event.created_at.desc(), Event.id.desc()).limit(LAST_MESSAGES)).all()
    alerts = session.scalars(select(Alert).where(Alert.customer_id == customer_id)
                             .order_by(Alert.created_at.desc(), Alert.id.desc()).limit(ALERTS)).all()
    return {
        "customer_id": customer_id,
        "tier": tier,
        "churn_prob": churn_prob,
        "reasons": latest.reasons if latest else [],
        "driver": latest.driver if latest else None,
        "action": latest.action if latest else None,
        "scored_at": _time(scored_at),
        # Whether the latest score had a service signal: without one it is not posted
        # (alerts.require_service_signal), only shown here.
        "service_signal": latest.service_signal if latest else None,
        "last_messages": [{"event_id": m.id, "source": m.source, "ticket_id": m.ticket_id,
                           "created_at": _time(m.created_at), "text": m.text,
                           "negative_prob": m.negative_prob, "entities": m.entities} for m in messages],
        "history": [{"scored_at": _time(s.scored_at), "as_of": _time(s.as_of), "churn_prob": s.churn_prob,
                     "tier": s.tier, "service_signal": s.service_signal} for s in scores],
        # attempts and last_error (stored without credentials) say why an alert is failed or retried.
        "alerts": [{"id": a.id, "tier": a.tier, "status": a.status, "due_at": _time(a.due_at),
                    "delivered_at": _time(a.delivered_at), "ticket_id": a.ticket_id, "source": a.source,
                    "attempts": a.attempts, "last_error": a.last_error}
                   for a in alerts],
    }


def _time(moment: datetime | None) -> str | None:
    """Stored naive UTC as ISO 8601 with a Z."""
    return None if moment is None else moment.isoformat() + "Z"


def _capped(problems: list[str]) -> list[str]:
    more = len(problems) - MAX_REPORTED
    return problems[:MAX_REPORTED] + ([f"... and {more} more"] if more > 0 else [])
