"""What a worker does with stored events, as plain functions a test can call without a broker.

``analyse`` reads customer messages once (sentiment, entities) and stores the signals;
``score_customer`` turns a customer's stored orders and messages into a risk score with
the fusion model. Both are idempotent: running them twice stores the same thing.
``reanalyse`` reads stored messages again the same way, after a model upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, and_, case, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from churnsignal.config import Settings
from churnsignal.fusion import artifact
from churnsignal.fusion.artifact import FusionModel
from churnsignal.fusion.scoring import score_details
from churnsignal.fusion.text import analyse_events, analysed_by
from churnsignal.nlp.complaints import CUSTOMER, TOPICS, is_complaint
from churnsignal.store import Alert, Event, Order, RiskScore, Store, utcnow
from churnsignal import rollups

# Events the worker has yet to process.
_WAITING = ("received", "queued")
# Helpdesk channels that are not the fusion model's chat/review read as tickets.
_CHANNELS = {"chat": "chat", "review": "review"}
# Messages read again per transaction by ``reanalyse``: an interrupted run loses at most these.
REREAD_BATCH = 500
# Tickets whose earlier turns one statement reads, one condition each.
TICKETS_PER_QUERY = 400


class ModelMissing(RuntimeError):
    """No usable fusion model is configured; the message says how to make one."""


def claim_batch(store: Store, event_ids: list[int], batch_size: int) -> list[int]:
    """``event_ids`` plus other queued events, up to ``batch_size``: one model call reads them all.

    Events arrive one webhook at a time, but the BERT is far cheaper per message in a
    batch; taking whatever else is waiting turns a burst of tasks into a few batches.
    The other tasks then find their events done and return at once.
    """
    with store.session() as session:
        waiting = session.scalars(
            select(Event.id).where(Event.status.in_(("received", "queued")), Event.id.not_in(event_ids))
            .order_by(Event.id).limit(max(0, batch_size - len(event_ids)))).all()
    return sorted(set(event_ids) | set(waiting))


def analyse(store: Store, event_ids: list[int], settings: Settings) -> list[int]:
    """Analyse the customer messages among ``event_ids`` not analysed yet; returns the events now done.

    Agent and bot messages are marked ``stored``: they are not customer signal (agent
    reply times still count, through the fusion features). An analysed message records the
    models that read it (``analysed_by``), for :func:`reanalyse` after an upgrade. The QA
    workspace's daily roll-ups count each message in the same transaction, and only where this
    call moved it out of the queue for the first time: an event analysed by two workers at once
    is counted by one of them, and one an identity link queued again is marked done again, not
    analysed or counted again (its customer is still scored, as the link asks).
    """
    with store.session() as session:
        # In id order: two workers on overlapping batches then lock their rows in one order.
        waiting = session.scalars(select(Event).where(Event.id.in_(event_ids), Event.status.in_(_WAITING))
                                  .order_by(Event.id)).all()
        # A message analysed before and back in the queue: an identity link put it there so that
        # its customer is scored again (webhook/identity.py, adopt). Its analysis and its roll-up
        # counts stand; analysing it again would count it twice.
        again = [e.id for e in waiting if e.analysed_at is not None]
        pending = [e for e in waiting if e.analysed_at is None]
        rows = [(e.id, e.author, e.text) for e in pending]
        customers = [e for e in pending if e.author == "customer"]
        messages = _with_earlier_turns(session, customers)
    if not waiting:
        return []
    wanted = {e.id for e in customers}
    now = utcnow()
    moved: list[int] = []
    with store.session() as session:
        if wanted:
            analysed = _read(messages, wanted, settings)
            by = analysed_by(settings)
            for row in analysed.itertuples():
                done = session.execute(update(Event).where(Event.id == row.id, Event.status.in_(_WAITING),
                                                           Event.analysed_at.is_(None)).values(
                    status="analysed", analysed_at=now, **_signals(row, by)))
                if done.rowcount == 1:
                    moved.append(row.id)
            # Whitespace-only messages carry no signal; they are done too.
            moved += _mark_stored(session, wanted - set(analysed["id"]), now)
        moved += _mark_stored(session, [i for i, a, _ in rows if a != "customer"], now)
        rollups.count(session, moved, settings)
        _mark_done_again(session, again)
    return [i for i, _, _ in rows] + again


def _read(messages: pd.DataFrame, wanted: set[int], settings: Settings) -> pd.DataFrame:
    """The ``wanted`` rows of ``messages`` (from :func:`_with_earlier_turns`) analysed, each after
    the turns before it; the others are read only as those turns, not analysed again."""
    analysed = analyse_events(messages, settings, only=messages["id"].isin(wanted))
    return analysed[analysed["id"].isin(wanted)]


def _signals(row: Any, by: str) -> dict[str, Any]:
    """What a reading of a message stores on its event: its signals and the models that gave them."""
    return {"negative_prob": float(row.negative_prob), "negative_word_share": float(row.negative_word_share),
            "entities": {topic: int(getattr(row, topic)) for topic in TOPICS if getattr(row, topic)},
            "entity_spans": row.entity_spans, "analysed_by": by}


def _with_earlier_turns(session: Session, messages: list[Event]) -> pd.DataFrame:
    """``messages`` with the turns before them on their tickets, as ``analyse_events`` reads them.

    The sentiment reads a message after the turns before it (``fusion.text.ticket_contexts``);
    scoring later reads the customer's whole history the same way, so both see one reading.
    """
    columns = ["id", "customer_id", "created_at", "text", "ticket_id", "author", "channel"]
    tickets = sorted({(m.customer_id, m.ticket_id) for m in messages if m.ticket_id is not None})
    ids, latest = {m.id for m in messages}, max((m.created_at for m in messages), default=None)
    earlier = []
    # A few hundred tickets per query: SQLite refuses a condition nested 1,000 deep.
    for start in range(0, len(tickets), TICKETS_PER_QUERY):
        chunk = tickets[start:start + TICKETS_PER_QUERY]
        found = session.execute(
            select(Event.id, Event.customer_id, Event.created_at, Event.text, Event.ticket_id, Event.author, Event.channel)
            .where(or_(*(and_(Event.customer_id == c, Event.ticket_id == t) for c, t in chunk)),
                   Event.author.in_(("customer", "agent")), Event.created_at <= latest))
        earlier += [row for row in found if row.id not in ids]
    rows = [*earlier, *((m.id, m.customer_id, m.created_at, m.text, m.ticket_id, m.author, m.channel) for m in messages)]
    frame = pd.DataFrame(rows, columns=columns)
    frame["channel"] = frame["channel"].map(lambda c: _CHANNELS.get(c, "ticket"))
    return frame


def _mark_stored(session: Session, event_ids: Iterable[int], now: datetime) -> list[int]:
    """Mark still-waiting events never processed before ``stored``; returns those this call moved."""
    event_ids = list(event_ids)
    if not event_ids:
        return []
    return list(session.scalars(update(Event).where(Event.id.in_(event_ids), Event.status.in_(_WAITING),
                                                    Event.analysed_at.is_(None))
                                .values(status="stored", analysed_at=now).returning(Event.id)))


def _mark_done_again(session: Session, event_ids: list[int]) -> None:
    """Give messages analysed before their status back (``stored``: read no sentiment), without counting them."""
    if event_ids:
        session.execute(update(Event).where(Event.id.in_(event_ids), Event.status.in_(_WAITING)).values(
            status=case((Event.negative_prob.is_not(None), "analysed"), else_="stored")))


@dataclass
class Reread:
    """What :func:`reanalyse` did: the messages whose signals it replaced, how many of them
    became or stopped being complaints, and the days (in ``qa.timezone``) whose roll-ups it recounted."""

    messages: int = 0
    flipped: int = 0
    days: set[date] = field(default_factory=set)


def outdated(store: Store, settings: Settings, since: date | None = None) -> int:
    """How many analysed customer messages (from ``since``, a day in ``qa.timezone``) other models read."""
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Event).where(
            _read_by_others(analysed_by(settings)), *_from(settings, since)))


def reanalyse(store: Store, settings: Settings, since: date | None = None, batch_size: int = REREAD_BATCH,
              on_batch: Callable[[int], None] = lambda read: None) -> Reread:
    """Read again, with the configured models, the analysed customer messages other models read.

    After a model upgrade the stored signals are the old model's, and the QA workspace counts
    its complaints. Each message is read in its ticket's dialogue as :func:`analyse` reads a new
    one, oldest first, ``batch_size`` at a time (``on_batch`` is told how many). Each batch is
    stored, and the roll-ups of its days recounted, in one transaction, which changes only
    messages still ``analysed`` and still read by other models: workers may keep running, an
    identity link's re-queued message is left to its worker, and an interrupted run keeps every
    batch it stored, with roll-ups that agree with it; run again, it reads only the rest.
    """
    by = analysed_by(settings)
    wanted = (_read_by_others(by), *_from(settings, since))
    done = Reread()
    after: tuple[datetime, int] | None = None
    while True:
        with store.session() as session:
            query = select(Event).where(*wanted).order_by(Event.created_at, Event.id).limit(batch_size)
            batch = session.scalars(query if after is None else query.where(
                tuple_(Event.created_at, Event.id) > after)).all()
            if not batch:
                return done
            messages = _with_earlier_turns(session, list(batch))
        _store_again(store, batch, _read(messages, {m.id for m in batch}, settings), by, settings, done)
        # Past this batch whatever happened to it: a message left alone is not asked for again.
        after = (batch[-1].created_at, batch[-1].id)
        on_batch(len(batch))


def _read_by_others(by: str) -> ColumnElement[bool]:
    """Analysed customer messages whose signals models other than ``by`` wrote (or models not recorded)."""
    return and_(Event.author == CUSTOMER, Event.status == "analysed",
                or_(Event.analysed_by.is_(None), Event.analysed_by != by))


def _from(settings: Settings, since: date | None) -> list[ColumnElement[bool]]:
    return [] if since is None else [Event.created_at >= rollups.first_moment(settings.qa.timezone, since)]


def _store_again(store: Store, batch: Iterable[Event], analysed: pd.DataFrame, by: str, settings: Settings,
                 done: Reread) -> None:
    """Store a batch's new readings and recount its days' roll-ups in one transaction; add to ``done``."""
    before = {m.id: m for m in batch}
    # The events first, then the roll-ups, as the worker and an identity link take them; the
    # events in id order, so that two runs at once lock them in one order.
    with store.session() as session:
        stored = [row for row in analysed.sort_values("id").itertuples()
                  if session.execute(update(Event).where(Event.id == row.id, _read_by_others(by))
                                     .values(**_signals(row, by))).rowcount == 1]
        if not stored:
            return
        days = [rollups.day_in(settings.qa.timezone, before[row.id].created_at) for row in stored]
        rollups.recount(session, settings, min(days), max(days))
    done.messages += len(stored)
    done.flipped += sum(is_complaint(CUSTOMER, before[row.id].negative_prob, settings) != row.is_complaint
                        for row in stored)
    done.days.update(min(days) + timedelta(days=n) for n in range((max(days) - min(days)).days + 1))


def score_customer(store: Store, customer_id: str, event_id: int, settings: Settings) -> RiskScore | None:
    """Score ``customer_id`` as of just after ``event_id`` was written; None without orders.

    The as-of time is the message's own time, not the clock: replayed or late history
    is scored as it was then, and a live message's time is now anyway.
    """
    model = fusion_model(settings)
    with store.session() as session:
        trigger = session.get(Event, event_id)
        as_of = pd.Timestamp(trigger.created_at) + timedelta(seconds=1)
        orders = _frame(session.execute(
            select(Order.customer_id, Order.order_id, Order.ordered_at, Order.amount, Order.category, Order.status)
            .where(Order.customer_id == customer_id)).all(),
            ["customer_id", "order_id", "ordered_at", "amount", "category", "status"])
        events = support_events(session, customer_id)
    if orders.empty:
        return None
    # Always with the events: a purchase-only model does not read them, but the service signal does.
    result = score_details(model, orders, events, as_of, settings)
    if result.empty:
        return None
    row = result.iloc[0]
    risk = RiskScore(customer_id=customer_id, event_id=event_id, scored_at=utcnow(), as_of=as_of.to_pydatetime(),
                     churn_prob=float(row["churn_prob"]), tier=None if row["tier"] == "none" else row["tier"],
                     reasons=list(row["reason_list"]),
                     driver=str(row["driver"]), action=dict(row["action_text"]),
                     service_signal=bool(row["service_signal"]))
    with store.session() as session:
        session.add(risk)
    return risk


def support_events(session: Session, customer_id: str) -> pd.DataFrame:
    """A customer's stored messages as the fusion reads them (``fusion/inputs.py``'s columns).

    Bot messages, our own notes among them, are read only when they carry a ticket status:
    a helpdesk may report a solved ticket with a system message alone (``fusion/text.py``).
    """
    events = _frame(session.execute(
        select(Event.customer_id, Event.created_at, Event.text, Event.channel, Event.ticket_id, Event.author,
               Event.ticket_status)
        .where(Event.customer_id == customer_id, (Event.author != "bot") | Event.ticket_status.is_not(None))).all(),
        ["customer_id", "created_at", "text", "channel", "ticket_id", "author", "ticket_status"])
    events["channel"] = events["channel"].map(lambda c: _CHANNELS.get(c, "ticket"))
    events["rating"] = float("nan")
    return events


def stale(store: Store, after_seconds: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Events and alert deliveries that should have moved on by now, to queue again.

    Events still ``received`` (the broker was down when they came in) or ``queued`` for
    longer than ``after_seconds`` (the message was lost with a worker) are marked queued
    again and returned; so are open alerts whose attempt never reported back, each with
    the attempt number to make next.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=after_seconds)
    with store.session() as session:
        events = list(session.scalars(select(Event.id).where(or_(
            (Event.status == "received") & (Event.received_at < now - timedelta(seconds=min(5, after_seconds))),
            (Event.status == "queued") & (Event.queued_at < cutoff)))).all())
        alerts = [(alert_id, attempts + 1) for alert_id, attempts in session.execute(
            select(Alert.id, Alert.attempts).where(Alert.status == "open", or_(
                Alert.next_attempt_at.is_(None) & (Alert.created_at < cutoff), Alert.next_attempt_at < cutoff)))]
        if events:
            session.execute(update(Event).where(Event.id.in_(events)).values(status="queued", queued_at=now))
    return events, alerts


def fusion_model(settings: Settings) -> FusionModel:
    """The configured fusion model, loaded once per process (again if the file changes)."""
    path = settings.alerts.model_path
    if path is None:
        raise ModelMissing("no fusion model configured: train one with `churnsignal fusion train` and set "
                           "CHURNSIGNAL_ALERTS__MODEL_PATH to its file")
    try:
        return _load(Path(path), Path(path).stat().st_mtime)
    except (FileNotFoundError, artifact.ArtifactError) as exc:
        raise ModelMissing(str(exc)) from exc


@lru_cache(maxsize=2)
def _load(path: Path, _mtime: float) -> FusionModel:
    return artifact.load(path)


def _frame(rows: list, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for column in ("ordered_at", "created_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    return frame
