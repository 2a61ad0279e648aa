"""Helpdesk webhooks in: verify, parse, persist first, then queue.

An accepted message is committed to the store before anything else happens to it, so a
broker outage loses nothing (the sweeper queues ``received`` events later) and a store
outage is answered 503 so that the helpdesk retries. Redeliveries are recognised by
(source, helpdesk event id) and stored once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from churnsignal.config import TICKET_STATUSES, IdentitySettings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Delivery, Event, Store, utcnow
from churnsignal.webhook import identity
from churnsignal.webhook.app import RETRY_AFTER_SECONDS, error, logger, read_body, read_json, service
from churnsignal.webhook.helpdesks.base import (
    MARKER,
    Helpdesk,
    InvalidPayload,
    NotConfigured,
    Requester,
    SupportEvent,
)
from churnsignal.webhook.helpdesks.generic import Generic
from churnsignal.worker.app import enqueue_events, enqueue_generic_pull

blueprint = Blueprint("inbound", __name__)

# The setting that turns each built-in helpdesk's endpoint on.
SECRET_SETTINGS = {
    "zendesk": "CHURNSIGNAL_HELPDESKS__ZENDESK__SIGNING_SECRET",
    "chatwoot": "CHURNSIGNAL_HELPDESKS__CHATWOOT__WEBHOOK_SECRET",
    "freshdesk": "CHURNSIGNAL_HELPDESKS__FRESHDESK__WEBHOOK_SECRET",
    "zammad": "CHURNSIGNAL_HELPDESKS__ZAMMAD__WEBHOOK_SECRET",
}
AUTHORS = ("customer", "agent", "bot")
# How long a web process leaves events to the sweeper after the broker failed to take one.
BROKER_PAUSE_SECONDS = 30
# Column widths of the events table.
MAX_ID_LENGTH = 200
MAX_CHANNEL_LENGTH = 16


def builtin(source: str):
    return receive(source)


# One rule per built-in helpdesk, so each has its own route in the logs and the metrics.
for _source in SECRET_SETTINGS:
    blueprint.add_url_rule(f"/webhooks/{_source}", f"builtin_{_source}", builtin, methods=["POST"],
                           defaults={"source": _source})


@blueprint.post("/webhooks/generic/<name>")
@blueprint.post("/webhooks/generic/<name>/<token>")
def generic(name: str, token: str | None = None):
    # The token (auth.scheme url_token) is the webhook's secret: the request log masks it
    # (app.safe_path) and no answer repeats it.
    return receive(f"generic:{name}", query=request.args.to_dict(), path_token=token, peer=request.remote_addr)


def receive(source: str, **request_context: Any):
    """One delivery: 202 accepted, 200 duplicate or ignored; errors through the app's handlers.

    ``request_context`` is what a generic helpdesk's ``auth`` may read besides headers and body.
    """
    helpdesk = _helpdesk(source)
    body = read_body()  # over service.max_body_bytes: 413 here, before anything is checked
    try:
        helpdesk.verify(request.headers, body, datetime.now(UTC), **request_context)
    except NotConfigured:
        raise NotConfigured(_not_configured(source)) from None
    payload = read_json()
    values = helpdesk.notice(payload) if isinstance(helpdesk, Generic) else None
    if values is not None:
        return _pull_later(source, values)
    events = storable_events(_parse(helpdesk, source, payload))
    if not events:
        return jsonify({"status": "ignored"}), 200

    svc = service()
    event_ids, new_ids = persist(svc.store, svc.settings.identity, source, events, masked_body(helpdesk, payload))
    if not new_ids:
        return jsonify({"status": "duplicate", "event_ids": event_ids}), 200
    enqueue(new_ids)
    return jsonify({"status": "accepted", "event_ids": event_ids}), 202


def _helpdesk(source: str) -> Helpdesk:
    from churnsignal.webhook import helpdesks

    try:
        return helpdesks.get(source, service().settings.helpdesks)
    except (LookupError, NotConfigured) as exc:
        if source.startswith("generic:"):
            name = source.removeprefix("generic:")
            raise NotFound(f"not configured: no generic helpdesk named {name!r} "
                           f"(add it under helpdesks.generic.{name} in the configuration)") from None
        if isinstance(exc, NotConfigured):
            raise NotConfigured(_not_configured(source)) from None
        raise


def _not_configured(source: str) -> str:
    return f"not configured: set {SECRET_SETTINGS[source]} (unsigned webhooks are refused)" \
        if source in SECRET_SETTINGS else f"not configured: {source} has no secret"


def _parse(helpdesk: Helpdesk, source: str, payload) -> list[SupportEvent]:
    try:
        events = helpdesk.parse(payload)
    except InvalidPayload:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # An adapter should name the bad field itself; a payload that trips it anyway is
        # still the sender's bad input, not a server error.
        logger.warning("%s payload not understood by its adapter: %s", source, type(exc).__name__)
        raise InvalidPayload(f"payload not understood as a {source} webhook") from None
    return events


def storable_events(events: Sequence[SupportEvent]) -> list[SupportEvent]:
    """One event per helpdesk event id (a payload may repeat a message), each checked to fit
    the events table (:class:`InvalidPayload` otherwise), our own notes as the bot's."""
    unique = list({event.event_id: event for event in events}.values())
    for event in unique:
        _check(event)
    # Our own alert notes come back as the helpdesk's webhooks too; they are not an agent's
    # reply (which would count as a first response) and never a customer's words.
    return [replace(event, author="bot") if MARKER.search(event.text) else event for event in unique]


def _pull_later(source: str, values: dict[str, Any]) -> tuple[Response, int]:
    """A notice: stored, then its pull queued for a worker, which retries a failed one.

    The pull is an outbound request that may be slow or fail; a worker can wait and retry
    where a webhook cannot. A notice the broker does not take is answered 503, so that the
    helpdesk sends it again: unlike an event, a notice has nothing the sweeper could find.
    """
    svc = service()
    with svc.store.session() as session:
        delivery = Delivery(source=source, received_at=utcnow(),
                            body=json.dumps({"notice": masked(values)}, ensure_ascii=False))
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    if time.monotonic() >= svc.broker_paused_until:
        try:
            enqueue_generic_pull(svc.celery, source, delivery_id, values)
            return jsonify({"status": "pulling", "delivery_id": delivery_id}), 202
        except BrokerUnavailable as exc:
            svc.broker_paused_until = time.monotonic() + BROKER_PAUSE_SECONDS
            logger.warning("broker unavailable, the pull for notice %d from %s is not queued: %s", delivery_id,
                           source, type(exc).__name__)
    response, status = error(503, "cannot queue the pull for this notice; send it again later")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


def _check(event: SupportEvent) -> None:
    """Refuse what the events table cannot hold, as the sender's error rather than a database one."""
    for field, value in (("event id", event.event_id), ("ticket id", event.ticket_id)):
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            raise InvalidPayload(f"{field}: must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    if event.author not in AUTHORS:
        raise InvalidPayload(f"author: {event.author!r} is not one of {', '.join(AUTHORS)}")
    if not isinstance(event.channel, str) or not event.channel or len(event.channel) > MAX_CHANNEL_LENGTH:
        raise InvalidPayload(f"channel: must be a non-empty string of at most {MAX_CHANNEL_LENGTH} characters")
    if not isinstance(event.text, str):
        raise InvalidPayload("text: must be a string")
    if event.ticket_status is not None and event.ticket_status not in TICKET_STATUSES:
        raise InvalidPayload(f"ticket status: {event.ticket_status!r} is not one of {', '.join(TICKET_STATUSES)}")


def masked_body(helpdesk: Helpdesk, payload: Any) -> str:
    """The delivery as stored: the fields its adapter reads, each masked, as unescaped JSON."""
    return json.dumps(masked(helpdesk.retained(payload)), ensure_ascii=False)


def masked(value: Any) -> Any:
    """A JSON value with every string masked, and every number that reads as personal data
    (a phone number sent as a number)."""
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return mask_pii(value).text
    if isinstance(value, int | float) and not isinstance(value, bool):
        as_text = mask_pii(str(value))
        return as_text.text if as_text.found else value
    return value


def persist(store: Store, settings: IdentitySettings, source: str, events: list[SupportEvent],
            body: str) -> tuple[list[int], list[int]]:
    """Store the delivery and its new events in one transaction: (ids of all its events, new ids).

    Webhooks come in here, and so do the messages a worker pulls from a helpdesk's API.
    """
    try:
        with store.session() as session:
            return _store_events(session, settings, source, events, body)
    except IntegrityError:
        # Two deliveries of the same message raced and the other committed first: what it
        # stored is there now, so this one is (at least partly) a duplicate.
        logger.info("concurrent delivery from %s; storing what is still new", source)
        with store.session() as session:
            return _store_events(session, settings, source, events, body)


def _store_events(session: Session, settings: IdentitySettings, source: str, events: list[SupportEvent],
                  body: str) -> tuple[list[int], list[int]]:
    external_ids = [event.event_id for event in events]
    known = dict(session.execute(select(Event.external_id, Event.id).where(
        Event.source == source, Event.external_id.in_(external_ids))).all())
    new = [event for event in events if event.event_id not in known]
    if not new:
        return [known[external_id] for external_id in external_ids], []
    # Customers are resolved (reads only) before the first write, to keep the write short.
    customers: dict[tuple[Requester, str], str] = {}
    for event in new:
        who = (event.requester, event.ticket_id)
        if who not in customers:
            customers[who] = _customer(session, source, event, settings)
    now = utcnow()
    delivery = Delivery(source=source, received_at=now, body=body)
    session.add(delivery)
    session.flush()
    rows = [Event(delivery_id=delivery.id, source=source, external_id=event.event_id, ticket_id=event.ticket_id,
                  customer_id=customers[(event.requester, event.ticket_id)], author=event.author, channel=event.channel,
                  text=mask_pii(event.text).text, created_at=_utc_naive(event.created_at), received_at=now,
                  status="received", ticket_status=event.ticket_status)
            for event in new]
    session.add_all(rows)
    session.flush()
    ids = known | {row.external_id: row.id for row in rows}
    return [ids[external_id] for external_id in external_ids], [row.id for row in rows]


def _customer(session: Session, source: str, event: SupportEvent, settings: IdentitySettings) -> str:
    """Who wrote ``event``: a resolved customer, or an unidentified one of its ticket."""
    customer_id = identity.resolve(session, source, event.requester, settings)
    if customer_id is None:
        return identity.unidentified(source, event.ticket_id, settings.required_pepper())
    if len(customer_id) > MAX_ID_LENGTH:
        raise InvalidPayload(f"requester external_id: longer than {MAX_ID_LENGTH} characters")
    return customer_id


def enqueue(event_ids: list[int]) -> None:
    """Queue stored events and mark them queued; a broker outage leaves them to the sweeper.

    After a failed publish this process leaves new events to the sweeper for
    :data:`BROKER_PAUSE_SECONDS` without trying: a broker that hangs would otherwise cost
    every webhook its full socket timeout.
    """
    svc = service()
    if time.monotonic() < svc.broker_paused_until:
        return
    try:
        enqueue_events(svc.celery, event_ids)
    except BrokerUnavailable as exc:
        svc.broker_paused_until = time.monotonic() + BROKER_PAUSE_SECONDS
        logger.warning("broker unavailable, %d event(s) stored and left for the sweeper; not trying again "
                       "for %d s: %s", len(event_ids), BROKER_PAUSE_SECONDS, type(exc).__name__)
        return
    except Exception as exc:
        # The events are committed: whatever went wrong with the broker, the sender gets its
        # 202 and the sweeper queues them; the failure itself is logged as the bug it is.
        logger.error("queueing %d stored event(s) failed; left for the sweeper", len(event_ids), exc_info=exc)
        return
    try:
        with svc.store.session() as session:
            # A worker may already have moved an event on: only 'received' becomes 'queued'.
            session.execute(update(Event).where(Event.id.in_(event_ids), Event.status == "received")
                            .values(status="queued", queued_at=utcnow()))
    except SQLAlchemyError as exc:
        logger.warning("%d event(s) queued but not marked queued: %s", len(event_ids), type(exc).__name__)


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
