"""Fetching the messages a generic helpdesk's webhooks only announce, and backfills: plain functions.

A notice's pull and a backfill page through the same configured request
(``helpdesks.generic.<name>.pull``) and store what they fetch as a webhook's messages would be
stored (:func:`churnsignal.webhook.inbound.persist`): masked, customers resolved, and a message
already stored skipped by the events table's (source, event id) constraint. A notice's pull
of a sync API starts where the last one left off (:meth:`Store.cursor`) and moves the cursor
only once a page's messages are committed, so a pull that fails part-way fetches the rest next
time and never skips a message. A backfill pages through its time range from the start and
leaves that cursor alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import update

from churnsignal.config import Settings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Event, Store, utcnow
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks.base import InvalidPayload, NotConfigured, SupportEvent
from churnsignal.webhook.helpdesks.generic import Generic
from churnsignal.webhook.helpdesks.http import epoch, iso_z
from churnsignal.webhook.helpdesks.pull import Page
from churnsignal.webhook.inbound import masked, persist, storable_events

log = logging.getLogger(__name__)


@dataclass
class Pulled:
    """What one pull or backfill did: messages fetched, newly stored (their event ids), already stored."""

    fetched: int = 0
    new: list[int] = field(default_factory=list)
    skipped: int = 0
    # Why each message that could not be stored was refused ("message <n>: <why>").
    errors: list[str] = field(default_factory=list)


def helpdesk_with_pull(source: str, settings: Settings) -> Generic:
    """The generic helpdesk ``source`` names, with a pull configured; :class:`NotConfigured` otherwise."""
    adapter = helpdesks.get(source, settings.helpdesks)
    if not isinstance(adapter, Generic):
        raise NotConfigured(f"{source} is not a generic helpdesk: only helpdesks.generic.<name> can pull")
    if adapter.settings.pull is None:
        raise NotConfigured(f"helpdesks.generic.{source.removeprefix('generic:')}.pull is not set")
    return adapter


def pull_notice(store: Store, settings: Settings, source: str, values: dict[str, Any],
                http: requests.Session) -> Pulled:
    """Fetch and store the messages one notice announces; :class:`DeliveryError` when a request fails."""
    adapter = helpdesk_with_pull(source, settings)
    pull = adapter.settings.pull
    if pull.cursor is None:
        return _pages(store, settings, adapter, pull.template_values(values), http)
    stream = pull.stream_for(values)
    cursor = store.cursor(source, stream)
    return _pages(store, settings, adapter, pull.template_values(values, cursor=cursor), http, stream=stream)


def backfill(store: Store, settings: Settings, source: str, since: datetime, until: datetime,
             http: requests.Session, on_page: Callable[[Page], None] = lambda page: None) -> Pulled:
    """Fetch and store every message from ``since`` to ``until`` (naive UTC), page by page.

    For helpdesks that never retry a webhook: whatever a downtime missed is fetched again,
    and what was stored already is skipped. The notice values are all None (there is no notice).
    """
    adapter = helpdesk_with_pull(source, settings)
    values = adapter.settings.pull.template_values(since=iso_z(since, "seconds"), since_unix=epoch(since),
                                                   until=iso_z(until, "seconds"), until_unix=epoch(until))
    return _pages(store, settings, adapter, values, http, on_page=on_page)


def mark_queued(store: Store, event_ids: list[int]) -> None:
    """Queued events are left alone by the sweeper until they are overdue; only 'received' ones move."""
    with store.session() as session:
        session.execute(update(Event).where(Event.id.in_(event_ids), Event.status == "received")
                        .values(status="queued", queued_at=utcnow()))


def _pages(store: Store, settings: Settings, adapter: Generic, values: dict[str, Any], http: requests.Session, *,
           stream: str | None = None, on_page: Callable[[Page], None] = lambda page: None) -> Pulled:
    """Request page after page until the API says there is no more (or ``pull.max_pages``)."""
    pull = adapter.settings.pull
    source = adapter.name
    pulled = Pulled()
    for _ in range(pull.max_pages):
        page = adapter.pull_page(values, http)
        _store_page(store, settings, adapter, page, pulled)
        if stream is not None and page.cursor is not None:
            store.save_cursor(source, stream, page.cursor)
        on_page(page)
        if not page.more or page.cursor is None:
            return pulled
        if page.cursor == values["cursor"]:
            log.warning("%s: the pull's answer gives the same cursor again and says there is more; stopped", source)
            return pulled
        values = values | {"cursor": page.cursor}
    log.warning("%s: stopped after pull.max_pages (%d) pages; the next pull continues", source, pull.max_pages)
    return pulled


def _store_page(store: Store, settings: Settings, adapter: Generic, page: Page, pulled: Pulled) -> None:
    pulled.fetched += page.fetched
    refused = list(page.errors)
    events: dict[str, SupportEvent] = {}
    for event in page.events:
        try:
            events |= {stored.event_id: stored for stored in storable_events([event])}
        except InvalidPayload as error:
            refused.append(f"message {event.event_id}: {error}")
    # A sender's value quoted in a reason may be personal data.
    refused = [mask_pii(reason).text for reason in refused]
    for reason in refused:
        log.error("%s: a pulled message was not stored: %s", adapter.name, reason)
    pulled.errors += refused
    if not events:
        return
    body = json.dumps(masked(page.retained), ensure_ascii=False)
    _, new = persist(store, settings.identity, adapter.name, list(events.values()), body)
    pulled.new += new
    pulled.skipped += len(events) - len(new)
