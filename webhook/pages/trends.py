"""The QA workspace's figures, computed from the store under one set of :class:`Filters`.

A complaint is what ``nlp.complaints`` says it is: a customer's turn the sentiment reads as
negative; its topics are ``nlp.complaints.topics`` of its stored entity labels. The trend
views (volume, negative share, heat maps, spikes) sum the roll-ups (``churnsignal/rollups.py``),
which count by these same definitions: the daily ones, or under a tier filter the per-customer
ones (``webhook/pages/rollup_views.py``). For ``basis="events"`` (the definitions themselves,
which the roll-ups are tested against) they read the events: the database selects the turns
(time range, helpdesk, channel, the customer's tier, the product category they last bought)
and topics are read from each turn's entities here, with the same function the fusion
features use.

Every figure is a :class:`Table`: the rows a CSV export writes, and the same numbers shaped
for its chart.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import Row, Select, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from churnsignal.config import Settings
from churnsignal.nlp.complaints import CUSTOMER, TOPICS, negative_from, read_from_dialogue
from churnsignal.nlp.masking import mask_pii
from churnsignal.rollups import NO_CATEGORY, NO_TOPIC, category_label, complaint_topics
from churnsignal.store import Alert, AlertHandling, Customer, Event, Order, RiskScore
from churnsignal.webhook.pages import rollup_views, spikes
from churnsignal.webhook.pages.filters import Filters
from churnsignal.webhook.pages.rollup_views import EVENTS, Basis
from churnsignal.webhook.pages.tickets import ticket_url

CHART_TOPICS = (*TOPICS, NO_TOPIC)
# Chinese first, English beside it, as on the notes. A complaint counted under NO_TOPIC names
# none in its own words; on real support chat that is most of them, whatever they are about
# (model_cards/entities.md), so the name must not read "about something else".
TOPIC_NAMES = {"QUALITY": "质量 quality", "LOGISTICS": "物流 logistics", "REFUND": "退款 refund",
               "SERVICE": "服务 service", "PRICE": "价格 price", "COMPETITOR": "竞品 competitor",
               NO_TOPIC: "未点明主题 topic not named"}
Across = Literal["source", "channel", "category"]


@dataclass
class Table:
    """A figure: ``columns`` and ``rows`` for the export, ``chart`` for the page's chart.

    ``basis``: where its numbers were read, the daily or per-customer roll-ups, or the events.
    """

    columns: list[str]
    rows: list[list[Any]]
    chart: dict[str, Any]
    basis: Basis = EVENTS

    def as_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "chart": self.chart, "from": self.basis}

    def csv(self) -> str:
        """The rows as CSV, with a byte-order mark so that spreadsheet programs read the Chinese as UTF-8."""
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows([[_cell(value) for value in row] for row in self.rows])
        return out.getvalue()


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts with = + - @ (or a tab or return before one) as a formula.
    if isinstance(value, str) and len(value) > 1 and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return "" if value is None else value


def volume(session: Session, filters: Filters, settings: Settings, basis: Basis | None = None) -> Table:
    """Complaints per topic per day or week; a complaint about two topics counts for each."""
    basis = basis or rollup_views.basis_for(filters)
    counts: Counter[tuple[date, str]] = Counter()
    for (day, topic), n in _complaint_days(session, filters, settings, basis).items():
        counts[filters.bucket(day), topic] += n
    buckets, shown = filters.buckets(), _shown_topics(filters)
    rows = [[b.isoformat(), t, counts[b, t]] for b in buckets for t in shown]
    series = [{"name": t, "data": [counts[b, t] for b in buckets]} for t in shown]
    return Table(["bucket", "topic", "complaints"], rows,
                 {"buckets": [b.isoformat() for b in buckets], "series": series}, basis)


def negative_share(session: Session, filters: Filters, settings: Settings, basis: Basis | None = None) -> Table:
    """Of the customer turns the sentiment read, the share that are complaints, per day or week."""
    basis = basis or rollup_views.basis_for(filters)
    read: Counter[date] = Counter()
    complaints: Counter[date] = Counter()
    turns_per_day, complaints_per_day = _turn_days(session, filters, settings, basis)
    for day, n in turns_per_day.items():
        read[filters.bucket(day)] += n
    for day, n in complaints_per_day.items():
        complaints[filters.bucket(day)] += n
    buckets = filters.buckets()
    shares = [round(complaints[b] / read[b], 4) if read[b] else None for b in buckets]
    rows = [[b.isoformat(), read[b], complaints[b], share] for b, share in zip(buckets, shares)]
    return Table(["bucket", "customer_turns", "complaints", "negative_share"], rows,
                 {"buckets": [b.isoformat() for b in buckets], "share": shares,
                  "turns": [read[b] for b in buckets], "complaints": [complaints[b] for b in buckets]},
                 basis)


def heatmap(session: Session, filters: Filters, settings: Settings, across: Across,
            basis: Basis | None = None) -> Table:
    """Complaints per topic and helpdesk, channel or product category over the whole range.

    A complaint's product category is that of its customer's latest order before it: what
    they were buying when they complained.
    """
    basis = basis or rollup_views.basis_for(filters)
    if basis != EVENTS:
        counts = rollup_views.complaints_across(session, filters, across, basis)
    else:
        counts = _complaints_across(session, filters, settings, across)
    columns = sorted({value for _topic, value in counts})
    shown = _shown_topics(filters)
    rows = [[t, c, counts[t, c]] for t in shown for c in columns]
    cells = [[x, y, counts[t, c]] for y, t in enumerate(shown) for x, c in enumerate(columns)]
    return Table(["topic", across, "complaints"], rows,
                 {"across": across, "columns": columns, "topics": list(shown), "cells": cells,
                  "max": max(counts.values(), default=0)}, basis)


def tiers(session: Session, filters: Filters, settings: Settings) -> Table:
    """Customers scored at each tier, and alerts raised at each tier, per day or week.

    A score or an alert is about the message that triggered the scoring: that message's
    helpdesk, channel, topics and product category are the ones the filters test.
    """
    names = [t.name for t in settings.fusion.tiers if filters.tier in (None, t.name)]
    scored: dict[tuple[date, str], set[str]] = {}
    scores = (select(RiskScore.scored_at, RiskScore.customer_id, RiskScore.tier, Event.source, Event.channel,
                     Event.entities)
              .outerjoin(Event, Event.id == RiskScore.event_id)
              .where(RiskScore.scored_at >= filters.start, RiskScore.scored_at < filters.end,
                     RiskScore.tier.in_(names)))
    for scored_at, customer_id, tier, source, channel, entities in session.execute(_by_category(scores, filters)):
        if _about(filters, source, channel, entities):
            scored.setdefault((filters.bucket(scored_at), tier), set()).add(customer_id)
    alerted: Counter[tuple[date, str]] = Counter()
    alerts = (select(Alert.created_at, Alert.tier, Alert.source, Event.channel, Event.entities)
              .join(RiskScore, RiskScore.id == Alert.score_id)
              .outerjoin(Event, Event.id == RiskScore.event_id)
              .where(Alert.created_at >= filters.start, Alert.created_at < filters.end, Alert.tier.in_(names)))
    for created_at, tier, source, channel, entities in session.execute(_by_category(alerts, filters)):
        if _about(filters, source, channel, entities):
            alerted[filters.bucket(created_at), tier] += 1
    buckets = filters.buckets()
    rows = [[b.isoformat(), t, len(scored.get((b, t), ())), alerted[b, t]] for b in buckets for t in names]
    return Table(["bucket", "tier", "customers_scored", "alerts_raised"], rows,
                 {"buckets": [b.isoformat() for b in buckets], "tiers": names,
                  "customers": [{"name": t, "data": [len(scored.get((b, t), ())) for b in buckets]} for t in names],
                  "alerts": [{"name": t, "data": [alerted[b, t] for b in buckets]} for t in names]})


def outcomes(session: Session, filters: Filters, settings: Settings) -> Table:
    """Of the customers alerted in the range: how many were handled (in time), how many ordered again.

    A customer counts once, under the tier of their first alert in the range. Handled: an
    agent marked one of their alerts in the range handled (badge or workspace); in time: by
    that alert's due time. Ordered again: a paid order after that first alert, up to now.
    """
    names = [t.name for t in settings.fusion.tiers if filters.tier in (None, t.name)]
    alerts = (select(Alert, Event.channel, Event.entities)
              .join(RiskScore, RiskScore.id == Alert.score_id)
              .outerjoin(Event, Event.id == RiskScore.event_id)
              .where(Alert.created_at >= filters.start, Alert.created_at < filters.end, Alert.tier.in_(names))
              .order_by(Alert.created_at, Alert.id))
    first: dict[str, Alert] = {}
    alert_ids: dict[int, str] = {}
    for alert, channel, entities in session.execute(_by_category(alerts, filters)):
        if _about(filters, alert.source, channel, entities):
            first.setdefault(alert.customer_id, alert)
            alert_ids[alert.id] = alert.customer_id
    handled: set[str] = set()
    in_time: set[str] = set()
    for alert_id, handled_at, due_at in session.execute(
            select(AlertHandling.alert_id, AlertHandling.handled_at, Alert.due_at)
            .join(Alert, Alert.id == AlertHandling.alert_id).where(AlertHandling.alert_id.in_(list(alert_ids)))):
        handled.add(alert_ids[alert_id])
        if handled_at <= due_at:
            in_time.add(alert_ids[alert_id])
    reordered = {customer for customer, ordered_at in session.execute(
        select(Order.customer_id, Order.ordered_at).where(Order.customer_id.in_(first), Order.status == "paid"))
        if ordered_at > first[customer].created_at}
    rows = []
    for tier in names:
        customers = {c for c, alert in first.items() if alert.tier == tier}
        rows.append([tier, len(customers), len(customers & handled), len(customers & in_time),
                     len(customers & reordered)])
    return Table(["tier", "customers_alerted", "handled", "handled_in_time", "ordered_again"], rows,
                 {"tiers": names, "measures": ["customers_alerted", "handled", "handled_in_time", "ordered_again"],
                  "values": [row[1:] for row in rows]})


ALERT_COLUMNS = ("alert_id", "created_at", "tier", "churn_prob", "status", "source", "ticket_id", "ticket_url",
                 "customer", "action", "due_at", "handled_by", "handled_at", "handled_via", "in_time")


def alerts(session: Session, filters: Filters, settings: Settings, limit: int = 500) -> list[dict[str, Any]]:
    """The alerts raised in the range, newest first, each with who marked it handled, when and from where."""
    query = (select(Alert, Event.channel, Event.entities)
             .join(RiskScore, RiskScore.id == Alert.score_id)
             .outerjoin(Event, Event.id == RiskScore.event_id)
             .where(Alert.created_at >= filters.start, Alert.created_at < filters.end)
             .order_by(Alert.created_at.desc(), Alert.id.desc()))
    if filters.tier:
        query = query.where(Alert.tier == filters.tier)
    found = [alert for alert, channel, entities in session.execute(_by_category(query, filters))
             if _about(filters, alert.source, channel, entities)][:limit]
    handlings: dict[int, AlertHandling] = {}
    for handling in session.scalars(select(AlertHandling).where(AlertHandling.alert_id.in_([a.id for a in found]))
                                    .order_by(AlertHandling.handled_at)):
        handlings.setdefault(handling.alert_id, handling)
    rows = []
    for alert in found:
        handling = handlings.get(alert.id)
        rows.append({"alert_id": alert.id, "created_at": _iso(alert.created_at), "tier": alert.tier,
                     "churn_prob": round(alert.churn_prob, 3), "status": alert.status, "source": alert.source,
                     "ticket_id": alert.ticket_id, "ticket_url": ticket_url(alert.source, alert.ticket_id,
                                                                             settings.helpdesks),
                     "customer": mask_pii(alert.customer_id).text, "action": alert.action.get("zh"),
                     "due_at": _iso(alert.due_at), "handled_by": handling.handled_by if handling else None,
                     "handled_at": _iso(handling.handled_at) if handling else None,
                     "handled_via": handling.via if handling else None,
                     "in_time": handling.handled_at <= alert.due_at if handling else None})
    return rows


def messages(session: Session, filters: Filters, settings: Settings, limit: int = 200) -> list[dict[str, Any]]:
    """The complaints behind a chart cell, newest first: masked text, sentiment, topics, ticket link."""
    found: list[dict[str, Any]] = []
    chosen, before = _chosen(filters, settings)
    batch = min(max(limit, BATCH_MIN), BATCH_MAX)
    masked: dict[str, str] = {}
    while True:
        [rows] = _newest_batches(session, [(chosen, before)], batch)
        for event in rows:
            shown = complaint_topics(event.entities)
            if not _kept(filters, shown):
                continue
            if event.customer_id not in masked:
                # Customer ids may be emails or phone numbers; shown masked like the text.
                masked[event.customer_id] = mask_pii(event.customer_id).text
            found.append({"event_id": event.id, "created_at": _iso(event.created_at),
                          "source": event.source, "channel": event.channel, "ticket_id": event.ticket_id,
                          "ticket_url": ticket_url(event.source, event.ticket_id, settings.helpdesks),
                          "customer": masked[event.customer_id],
                          "negative_prob": round(event.negative_prob, 3), "topics": list(shown), "text": event.text,
                          "entity_spans": event.entity_spans,
                          "from_dialogue": read_from_dialogue(shown, event.entity_spans)})
            if len(found) >= limit:
                return found
        if len(rows) < batch:
            return found
        before = Before(rows[-1].created_at, rows[-1].id)


# Complaints read per statement: at least BATCH_MIN, since a topic filter keeps one in several,
# and at most BATCH_MAX (an export of 10,000 under a tier took 0.05-0.1 s longer on PostgreSQL
# in batches of 1,000, and no less in one of 10,000). A spike's examples are read BATCH_MIN of
# its day at a time, since its day is full of its topic (10, 20 and 40 took 0.05-0.1 s alike
# for a tier's 127 spikes a year at a million messages).
BATCH_MIN = 20
BATCH_MAX = 5000


class Before(NamedTuple):
    """Where a walk through the events newest first goes on: before ``moment``, or at it below ``id``."""

    moment: datetime
    id: int | None = None


def _chosen(filters: Filters, settings: Settings) -> tuple[Select, Before]:
    """The ids of the complaints under the filters, bar the topic (read from each one's entities),
    without the range's end: where a walk newest first starts."""
    return (_narrowed(select(Event.id), filters).where(Event.created_at >= filters.start, *_complaint(settings)),
            Before(filters.end))


# The events a drill-down shows, read by id once chosen (an alias: the ids are chosen in a subquery of events).
_Shown = aliased(Event, name="shown")
_SHOWN_COLUMNS = (_Shown.id, _Shown.created_at, _Shown.source, _Shown.channel, _Shown.ticket_id, _Shown.customer_id,
                  _Shown.negative_prob, _Shown.entities, _Shown.text, _Shown.entity_spans)


def _newest_batches(session: Session, walks: list[tuple[Select, Before]], batch: int) -> list[list[Row]]:
    """For each walk (a query of event ids, and where it goes on), its next ``batch`` events, newest
    first, with what a drill-down shows; one statement for them all.

    Each batch is a LIMIT before the last row read, which the database answers by walking the
    time index backwards from there; one unlimited ORDER BY made PostgreSQL sort every complaint
    in the range before the first row, when a page needs only the newest 200 (or a spike three).
    That bound is the walk's only upper one: SQLite starts from one upper bound of a column, and
    with the range's end beside it walked down from the end again for every batch.

    The ids are chosen in subqueries the index answers alone (it holds the time, the author, the
    negative probability, the customer, the helpdesk and the channel: migration 0009), and only
    the rows chosen are read from the table: read whole, every row a walk passed was read, from
    anywhere in the table, and under a tier six of every seven were not kept. Several walks (a
    spike's examples, one per day) are one UNION ALL of their LIMITs, at most one per day of a
    range (SQLite takes 500): a statement per spike took 0.3 s for a tier's 127 spikes a year on
    PostgreSQL. Columns, not ORM objects: an export reads up to 10,000 rows, and building objects
    was most of its time.
    """
    members = []
    for number, (chosen, before) in enumerate(walks):
        if before.id is None:
            chosen = chosen.where(Event.created_at < before.moment)
        else:
            chosen = chosen.where(Event.created_at <= before.moment,
                                  or_(Event.created_at < before.moment, Event.id < before.id))
        newest = chosen.order_by(Event.created_at.desc(), Event.id.desc()).limit(batch).subquery()
        members.append(select(newest.c.id, literal(number).label("walk")))
    chosen_ids = (members[0] if len(members) == 1 else union_all(*members)).subquery()
    found: list[list[Row]] = [[] for _ in walks]
    rows = session.execute(select(*_SHOWN_COLUMNS, chosen_ids.c.walk).join(chosen_ids, _Shown.id == chosen_ids.c.id)
                           .order_by(chosen_ids.c.walk, _Shown.created_at.desc(), _Shown.id.desc()))
    for row in rows:
        found[row.walk].append(row)
    return found


def daily_complaints(session: Session, filters: Filters, settings: Settings, days_before: int,
                     basis: Basis | None = None) -> dict[str, Counter[date]]:
    """Complaints per topic per day, from ``days_before`` days before the range to its end."""
    wider = replace(filters, since=filters.since - timedelta(days=days_before), by="day")
    counts: dict[str, Counter[date]] = {topic: Counter() for topic in _shown_topics(filters)}
    for (day, topic), n in _complaint_days(session, wider, settings, basis or rollup_views.basis_for(filters)).items():
        counts[topic][day] += n
    return counts


def spike_rows(session: Session, filters: Filters, settings: Settings,
               basis: Basis | None = None) -> list[dict[str, Any]]:
    """Every spike in the range (``webhook/pages/spikes.py`` states the rule), with up to three example messages.

    The daily counts come from ``basis`` (the daily roll-ups, the per-customer ones under a
    tier); the examples are read from the events: the newest three complaints of the spike's
    topic that day, as its drill-down lists them first.
    """
    daily = daily_complaints(session, filters, settings, spikes.BASELINE_DAYS, basis)
    found = spikes.find_spikes(daily, filters.days())
    examples = _examples(session, filters, settings, found)
    return [{"topic": spike.topic, "day": spike.day.isoformat(), "count": spike.count,
             "baseline": round(spike.baseline, 2), "rise": round(spike.rise, 2),
             "ratio": None if spike.ratio is None else round(spike.ratio, 1),
             "p_value": float(f"{spike.p_value:.3g}"),
             "examples": [{"text": e.text, "entity_spans": e.entity_spans} for e in examples[spike.topic, spike.day]]}
            for spike in found]


def _examples(session: Session, filters: Filters, settings: Settings, found: list[spikes.Spike],
              per: int = 3) -> dict[tuple[str, date], list[Row]]:
    """Each spike's newest ``per`` complaints of its topic on its day, under the filters.

    The days with a spike are walked newest first together (``_newest_batches``), each until
    each of its spikes has ``per`` or the day has no more.
    """
    examples: dict[tuple[str, date], list[Row]] = {(spike.topic, spike.day): [] for spike in found}
    topics_on: dict[date, list[str]] = {}
    for spike in found:
        topics_on.setdefault(spike.day, []).append(spike.topic)
    chosen = {day: _chosen(replace(filters, since=day, until=day), settings) for day in topics_on}
    walks = {day: before for day, (_query, before) in chosen.items()}
    while walks:
        batches = _newest_batches(session, [(chosen[day][0], before) for day, before in walks.items()], BATCH_MIN)
        going: dict[date, Before] = {}
        for day, rows in zip(walks, batches):
            for event in rows:
                for topic in complaint_topics(event.entities):
                    wanting = examples.get((topic, day))
                    if wanting is not None and len(wanting) < per:
                        wanting.append(event)
            if len(rows) == BATCH_MIN and any(len(examples[topic, day]) < per for topic in topics_on[day]):
                going[day] = Before(rows[-1].created_at, rows[-1].id)
        walks = going
    return examples


def spike_table(rows: list[dict[str, Any]]) -> Table:
    columns = ["day", "topic", "count", "baseline", "rise", "ratio", "p_value", "examples"]
    return Table(columns, [[r[c] if c != "examples" else " | ".join(e["text"] for e in r[c]) for c in columns]
                           for r in rows],
                 {"spikes": rows})


def choices(session: Session) -> dict[str, list[str]]:
    """The helpdesks, channels (of the messages counted in the roll-ups) and product categories, for the menus."""
    return {"sources": rollup_views.known(session, "source"),
            "channels": rollup_views.known(session, "channel"),
            "categories": [NO_CATEGORY, *session.scalars(select(Order.category).distinct()
                                                         .where(Order.category.is_not(None), Order.category != "")
                                                         .order_by(Order.category))]}


def _iso(moment: datetime | None) -> str | None:
    """Stored naive UTC as ISO 8601 with a Z, to the second."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def _complaint(settings: Settings) -> tuple:
    # is_complaint in SQL; the upper bound leaves NaN out (PostgreSQL orders NaN above every number).
    return (Event.author == CUSTOMER, Event.negative_prob >= negative_from(settings), Event.negative_prob <= 1.0)


def _complaints(filters: Filters, settings: Settings) -> Select:
    return _scoped(select(Event.created_at, Event.entities), filters).where(
        *_complaint(settings))


def _complaint_days(session: Session, filters: Filters, settings: Settings,
                    basis: Basis) -> Counter[tuple[date, str]]:
    """Complaints per day and topic (one about two topics in each), kept to the topic filter."""
    if basis != EVENTS:
        return rollup_views.complaints_per_day(session, filters, basis)
    counts: Counter[tuple[date, str]] = Counter()
    for created_at, entities in session.execute(_complaints(filters, settings)):
        for topic in _kept(filters, complaint_topics(entities)):
            counts[filters.day(created_at), topic] += 1
    return counts


def _turn_days(session: Session, filters: Filters, settings: Settings,
               basis: Basis) -> tuple[Counter[date], Counter[date]]:
    """Customer turns the sentiment read, and complaints (each once) kept to the topic filter, per day."""
    if basis != EVENTS:
        return rollup_views.turns_per_day(session, filters, basis)
    read: Counter[date] = Counter()
    turns = _scoped(select(Event.created_at), filters).where(Event.author == CUSTOMER, Event.negative_prob.is_not(None))
    for (created_at,) in session.execute(turns):
        read[filters.day(created_at)] += 1
    complaints: Counter[date] = Counter()
    for created_at, entities in session.execute(_complaints(filters, settings)):
        if _kept(filters, complaint_topics(entities)):
            complaints[filters.day(created_at)] += 1
    return read, complaints


def _complaints_across(session: Session, filters: Filters, settings: Settings,
                       across: Across) -> Counter[tuple[str, str]]:
    column = {"source": Event.source, "channel": Event.channel, "category": category_label()}[across]
    counts: Counter[tuple[str, str]] = Counter()
    query = _scoped(select(column, Event.entities), filters).where(*_complaint(settings))
    for value, entities in session.execute(query):
        for topic in _kept(filters, complaint_topics(entities)):
            counts[topic, value] += 1
    return counts


def _scoped(query: Select, filters: Filters) -> Select:
    """``query`` over events limited to the filters' range, helpdesk, channel, tier and category."""
    return _narrowed(query.where(Event.created_at >= filters.start, Event.created_at < filters.end), filters)


def _narrowed(query: Select, filters: Filters) -> Select:
    """``query`` over events limited to the filters' helpdesk, channel, tier and category."""
    if filters.source:
        query = query.where(Event.source == filters.source)
    if filters.channel:
        query = query.where(Event.channel == filters.channel)
    if filters.tier:
        # A message's tier is its customer's latest. Tested per message (EXISTS), so that the
        # time index drives: for an IN list SQLite reads every message of the tier's customers
        # through the customer index, 0.2 s at a million messages for each spike's examples.
        query = query.where(select(Customer.customer_id).where(Customer.customer_id == Event.customer_id,
                                                               Customer.tier == filters.tier).exists())
    return _by_category(query, filters)


def _by_category(query: Select, filters: Filters) -> Select:
    """``query``, over events or joined to the triggering event, kept to the filters' product category."""
    return query if filters.category is None else query.where(category_label() == filters.category)


def _kept(filters: Filters, found: tuple[str, ...]) -> tuple[str, ...]:
    return found if filters.topic is None else tuple(t for t in found if t == filters.topic)


def _shown_topics(filters: Filters) -> tuple[str, ...]:
    return CHART_TOPICS if filters.topic is None else (filters.topic,)


def _about(filters: Filters, source: str | None, channel: str | None, entities: dict[str, Any] | None) -> bool:
    """Whether a score's or alert's triggering message passes the helpdesk, channel and topic filters."""
    return ((filters.source is None or source == filters.source)
            and (filters.channel is None or channel == filters.channel)
            and (filters.topic is None or filters.topic in complaint_topics(entities)))

