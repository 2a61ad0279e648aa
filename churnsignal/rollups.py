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

The same counts are kept per customer (:class:`~churnsignal.store.CustomerRollup`), for the
tier filter: a customer's *latest* tier changes, so it is not in any roll-up; the views sum
the rows of the customers at that tier now. Both are written by one call in one
transaction, the daily rows first and then the customers', each in key order, and recounted
together; when an identity link moves a provisional customer's messages to the real
customer, :func:`move_customer` moves their rows with them.

A roll-up keeps the day, category and complaint line of the moment it was counted. After a
change of ``qa.timezone`` or ``sentiment.neutral_high``, or orders imported for moments
before messages already counted, ``churnsignal qa rebuild-rollups`` recounts them from the
events. When a new model reads stored messages again (``churnsignal qa reanalyse``), their days
are recounted in the transaction that stores the new readings (:func:`recount`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from churnsignal.config import Settings
from churnsignal.nlp.complaints import CUSTOMER, is_complaint, topics
from churnsignal.store import Base, CustomerRollup, DailyRollup, Event, Order, Store

# Complaints the entity extractor found no topic in: a topic of their own on the charts.
NO_TOPIC = "OTHER"
# The product category of a message whose customer had no order (with a category) before it.
NO_CATEGORY = "-"
# The topic of a roll-up's row of every message (the others count one topic's complaints).
ALL = ""
KEY = ("day", "source", "channel", "category", "topic")
COUNTS = ("messages", "customer_turns", "complaints")
CUSTOMER_KEY = ("customer_id", *KEY)
# What the views sum under a tier filter; the per-customer rows hold only customer turns read.
CUSTOMER_COUNTS = ("customer_turns", "complaints")
# Statuses of the messages the worker has processed (and so counted).
PROCESSED = ("analysed", "stored")
# Rows per INSERT of a recount.
BATCH = 10_000

Key = tuple[date, str, str, str, str]
CustomerKey = tuple[str, date, str, str, str, str]


@dataclass
class Tally:
    """Roll-up counts: ``daily`` per :data:`KEY` (:data:`COUNTS`), ``customers`` per :data:`CUSTOMER_KEY`
    (:data:`CUSTOMER_COUNTS`)."""

    daily: dict[Key, list[int]] = field(default_factory=dict)
    customers: dict[CustomerKey, list[int]] = field(default_factory=dict)


class Recounted(NamedTuple):
    """Rows a recount wrote: daily, and per customer."""

    daily: int
    customers: int


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
        counts = tally(session.execute(_counted().where(Event.id.in_(event_ids))), settings)
        # The daily rows, then the customers': every writer takes them in this one order.
        _upsert(session, DailyRollup, KEY, COUNTS, counts.daily)
        _upsert(session, CustomerRollup, CUSTOMER_KEY, CUSTOMER_COUNTS, counts.customers)


def move_customer(session: Session, old: str, new: str) -> None:
    """Add ``old``'s per-customer rows to ``new``'s: an identity link just moved their messages.

    Called after the messages moved, in that transaction. The delete returns the rows it
    removed, so rows a worker or a recount committed meanwhile are moved too, not lost. The
    rows keep the category they were counted with (``-``: a provisional customer has no
    orders), as the daily rows do; a recount reads the customer's orders.
    """
    gone = session.execute(delete(CustomerRollup).where(CustomerRollup.customer_id == old).returning(
        *(getattr(CustomerRollup, name) for name in KEY + CUSTOMER_COUNTS))).all()
    moved: dict[CustomerKey, list[int]] = {}
    for *key, turns, complaints in gone:
        moved[(new, *key)] = [turns, complaints]
    _upsert(session, CustomerRollup, CUSTOMER_KEY, CUSTOMER_COUNTS, moved)


def rebuild(store: Store, settings: Settings, since: date | None = None) -> Recounted:
    """Recount the roll-ups of ``since`` (a day in ``qa.timezone``) and later, all with None.

    One transaction that first takes both tables for itself: a worker counting a message
    meanwhile waits, then adds to the recounted rows, which did not see its message.
    """
    with store.session() as session:
        return recount(session, settings, since)


def recount(session: Session, settings: Settings, since: date | None = None, until: date | None = None) -> Recounted:
    """Recount, in ``session``'s transaction, the roll-ups of the days from ``since`` to ``until``
    (days in ``qa.timezone``, both included; None: no bound).

    Both tables are taken for the rest of the transaction first (on PostgreSQL a table lock,
    on SQLite the write lock, which a transaction that has written already holds), so the
    events read are those no worker can still be counting. ``churnsignal qa reanalyse`` calls
    it in the transaction that stores a batch's new readings: its days then never show the
    old ones' counts after a commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        # In the order the worker writes them (see count).
        session.execute(text("LOCK TABLE daily_rollups, customer_rollups IN EXCLUSIVE MODE"))
    zone = settings.qa.timezone
    messages = _counted()
    if since is not None:
        messages = messages.where(Event.created_at >= first_moment(zone, since))
    if until is not None:
        messages = messages.where(Event.created_at < first_moment(zone, until + timedelta(days=1)))
    # On SQLite the first delete takes the write lock before the events are read.
    for table in (DailyRollup, CustomerRollup):
        session.execute(delete(table).where(*_days(table, since, until)))
    counts = tally(session.execute(messages.execution_options(yield_per=20_000)), settings)
    return Recounted(_insert(session, DailyRollup, KEY, COUNTS, counts.daily),
                     _insert(session, CustomerRollup, CUSTOMER_KEY, CUSTOMER_COUNTS, counts.customers))


def rows_on(session: Session, days: Collection[date]) -> Recounted:
    """How many roll-up rows ``days`` have, daily and per customer: what recounting them left."""
    found = sorted(days)
    if not found:
        return Recounted(0, 0)
    counted = []
    for table in (DailyRollup, CustomerRollup):
        per_day = session.execute(select(table.day, func.count()).where(*_days(table, found[0], found[-1]))
                                  .group_by(table.day))
        counted.append(sum(rows for day, rows in per_day if day in days))
    return Recounted(*counted)


def tally(messages: Iterable[tuple], settings: Settings) -> Tally:
    """Roll-up counts of messages given as
    (customer_id, created_at, source, channel, category, author, negative_prob, entities)."""
    counts = Tally()
    daily, customers = counts.daily, counts.customers
    zone = settings.qa.timezone
    for customer_id, created_at, source, channel, category, author, negative_prob, entities in messages:
        key = (day_in(zone, created_at), source, channel, category)
        every = daily.setdefault((*key, ALL), [0, 0, 0])
        every[0] += 1
        # The turns the negative share divides by: a customer's, with a probability (the views' test).
        if author != CUSTOMER or negative_prob is None:
            continue
        every[1] += 1
        mine = customers.setdefault((customer_id, *key, ALL), [0, 0])
        mine[0] += 1
        if is_complaint(author, negative_prob, settings):
            every[2] += 1
            mine[1] += 1
            for topic in complaint_topics(entities):
                daily.setdefault((*key, topic), [0, 0, 0])[2] += 1
                customers.setdefault((customer_id, *key, topic), [0, 0])[1] += 1
    return counts


def _days(table: type[DailyRollup] | type[CustomerRollup], since: date | None,
          until: date | None) -> list[ColumnElement[bool]]:
    """The conditions that keep ``table``'s rows of the days from ``since`` to ``until`` (None: no bound)."""
    return ([table.day >= since] if since is not None else []) + ([table.day <= until] if until is not None else [])


def _counted() -> Select:
    return select(Event.customer_id, Event.created_at, Event.source, Event.channel, category_label(), Event.author,
                  Event.negative_prob, Event.entities).where(Event.status.in_(PROCESSED))


def _rows(names: tuple[str, ...], counts: dict[tuple, list[int]]) -> Iterator[dict[str, Any]]:
    # In key order: concurrent upserts then lock shared rows in one order.
    for key, values in sorted(counts.items()):
        yield dict(zip(names, (*key, *values)))


def _insert(session: Session, table: type[Base], key: tuple[str, ...], columns: tuple[str, ...],
            counts: dict[tuple, list[int]]) -> int:
    """Insert ``counts`` as new rows, ``BATCH`` at a time (a million rows are not all built at once); returns them."""
    rows = _rows(key + columns, counts)
    while batch := list(islice(rows, BATCH)):
        session.execute(insert(table), batch)
    return len(counts)


def _upsert(session: Session, table: type[Base], key: tuple[str, ...], columns: tuple[str, ...],
            counts: dict[tuple, list[int]]) -> None:
    """Add ``counts`` to the rows they name, creating the rows that do not exist yet."""
    if not counts:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: getattr(table, name) + getattr(statement.excluded, name) for name in columns})
    session.execute(statement, list(_rows(key + columns, counts)))
