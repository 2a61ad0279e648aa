"""The daily roll-ups the QA trend views sum: counted as the worker analyses, recounted on demand.

Reading every message of a year for each chart takes seconds at a million messages; summing
a few rows per day does not. :class:`~churnsignal.store.DailyRollup` holds, per day (in
``qa.timezone``), helpdesk, channel, product category and complaint topic, what the volume,
negative-share, heat-map and spike views count, by the same definitions they apply to the
events (``nlp.complaints``, :func:`complaint_topics`, :func:`category_label`). The worker
writes them and the pages read them (``webhook/pages/rollup_views.py``), so they live below both.

Each message is counted once: the worker adds it in the transaction that moves it out of
``received``/``queued``, and only if that update changed its row, so a message analysed twice,
or by two workers at once, is counted by whichever moved it. Upserts go in key order, so two
workers adding to the same rows lock them in the same order (no deadlock on PostgreSQL).

A roll-up keeps the day, category and complaint line of the moment it was counted. After a
change of ``qa.timezone`` or ``sentiment.neutral_high``, or orders imported for moments
before messages already counted, ``churnsignal qa rebuild-rollups`` recounts them from the
events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from churnsignal.config import Settings
from churnsignal.nlp.complaints import CUSTOMER, is_complaint, topics
from churnsignal.store import DailyRollup, Event, Order, Store

# Complaints the entity extractor found no topic in: a topic of their own on the charts.
NO_TOPIC = "OTHER"
# The product category of a message whose customer had no order (with a category) before it.
NO_CATEGORY = "-"
# The topic of a roll-up's row of every message (the others count one topic's complaints).
ALL = ""
KEY = ("day", "source", "channel", "category", "topic")
COUNTS = ("messages", "customer_turns", "complaints")
# Statuses of the messages the worker has processed (and so counted).
PROCESSED = ("analysed", "stored")

Key = tuple[date, str, str, str, str]


def day_in(zone: str, stored: datetime) -> date:
    """The day a stored (naive UTC) moment falls on in ``zone``: the pages' days and the roll-ups' are one."""
    if zone == "UTC":
        return stored.date()
    return stored.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()


def first_moment(zone: str, day: date) -> datetime:
    """The first moment of ``day`` in ``zone``, as the naive UTC the store holds."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(zone)).astimezone(UTC).replace(tzinfo=None)


def complaint_topics(entities: dict[str, Any] | None) -> tuple[str, ...]:
    """A complaint's topics on the charts: its entity topics, or ``OTHER`` when it names none."""
    return topics(entities or {}) or (NO_TOPIC,)


def category_label() -> ColumnElement[str]:
    """The product category of a message: its customer's latest order at or before it; ``-`` with none."""
    latest = (select(Order.category)
              .where(Order.customer_id == Event.customer_id, Order.ordered_at <= Event.created_at)
              .order_by(Order.ordered_at.desc(), Order.id.desc()).limit(1)
              .correlate(Event).scalar_subquery())
    return func.coalesce(func.nullif(latest, ""), NO_CATEGORY)


def count(session: Session, event_ids: list[int], settings: Settings) -> None:
    """Add messages this transaction just moved out of the queue to the roll-ups."""
    if event_ids:
        _upsert(session, tally(session.execute(_counted().where(Event.id.in_(event_ids))), settings))


def rebuild(store: Store, settings: Settings, since: date | None = None) -> int:
    """Recount the roll-ups of ``since`` (a day in ``qa.timezone``) and later, all with None; returns the rows.

    One transaction that first takes the table for itself: a worker counting a message
    meanwhile waits, then adds to the recounted rows, which did not see its message.
    """
    with store.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("LOCK TABLE daily_rollups IN EXCLUSIVE MODE"))
        clear, messages = delete(DailyRollup), _counted()
        if since is not None:
            clear = clear.where(DailyRollup.day >= since)
            messages = messages.where(Event.created_at >= first_moment(settings.qa.timezone, since))
        # On SQLite the delete takes the write lock before the events are read.
        session.execute(clear)
        counts = tally(session.execute(messages.execution_options(yield_per=20_000)), settings)
        rows = _rows(counts)
        for start in range(0, len(rows), 10_000):
            session.execute(insert(DailyRollup), rows[start:start + 10_000])
    return len(rows)


def tally(messages: Iterable[tuple], settings: Settings) -> dict[Key, list[int]]:
    """Roll-up counts of messages given as (created_at, source, channel, category, author, negative_prob, entities)."""
    counts: dict[Key, list[int]] = {}
    zone = settings.qa.timezone
    for created_at, source, channel, category, author, negative_prob, entities in messages:
        day = day_in(zone, created_at)
        every = counts.setdefault((day, source, channel, category, ALL), [0, 0, 0])
        every[0] += 1
        # The turns the negative share divides by: a customer's, with a probability (the views' test).
        if author != CUSTOMER or negative_prob is None:
            continue
        every[1] += 1
        if is_complaint(author, negative_prob, settings):
            every[2] += 1
            for topic in complaint_topics(entities):
                counts.setdefault((day, source, channel, category, topic), [0, 0, 0])[2] += 1
    return counts


def _counted() -> Select:
    return select(Event.created_at, Event.source, Event.channel, category_label(), Event.author, Event.negative_prob,
                  Event.entities).where(Event.status.in_(PROCESSED))


def _rows(counts: dict[Key, list[int]]) -> list[dict[str, Any]]:
    # In key order: concurrent upserts then lock shared rows in one order.
    return [dict(zip(KEY + COUNTS, (*key, *values))) for key, values in sorted(counts.items())]


def _upsert(session: Session, counts: dict[Key, list[int]]) -> None:
    """Add ``counts`` to the rows they name, creating the rows that do not exist yet."""
    if not counts:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(DailyRollup)
    statement = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={name: getattr(DailyRollup, name) + getattr(statement.excluded, name) for name in COUNTS})
    session.execute(statement, _rows(counts))
