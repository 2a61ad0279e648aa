"""The trend views' sums over the daily roll-ups (``churnsignal/rollups.py`` counts them).

The tier filter (a customer's *latest* tier) cannot be rolled up: under it the views read the
events.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from churnsignal.rollups import ALL
from churnsignal.store import DailyRollup
from churnsignal.webhook.pages.filters import Filters

Basis = Literal["daily_rollups", "events"]
ROLLUPS: Basis = "daily_rollups"
EVENTS: Basis = "events"


def basis_for(filters: Filters) -> Basis:
    """Where a trend view reads under ``filters``: the roll-ups, unless a tier is chosen."""
    return EVENTS if filters.tier else ROLLUPS


def complaints_per_day(session: Session, filters: Filters) -> Counter[tuple[date, str]]:
    """Complaints per day and topic (one about two topics in each), under the filters."""
    query = _scoped(select(DailyRollup.day, DailyRollup.topic, func.sum(DailyRollup.complaints)), filters)
    query = query.where(DailyRollup.topic == filters.topic if filters.topic else DailyRollup.topic != ALL)
    return Counter({(day, topic): n for day, topic, n in session.execute(query.group_by(DailyRollup.day,
                                                                                        DailyRollup.topic)) if n})


def turns_per_day(session: Session, filters: Filters) -> tuple[Counter[date], Counter[date]]:
    """Customer turns the sentiment read, and complaints (each once), per day under the filters."""
    per_day = (DailyRollup.day,)
    turns = _scoped(select(*per_day, func.sum(DailyRollup.customer_turns)), filters).where(DailyRollup.topic == ALL)
    complaints = _scoped(select(*per_day, func.sum(DailyRollup.complaints)), filters).where(
        DailyRollup.topic == (filters.topic or ALL))
    return (Counter({day: n for day, n in session.execute(turns.group_by(*per_day)) if n}),
            Counter({day: n for day, n in session.execute(complaints.group_by(*per_day)) if n}))


def complaints_across(session: Session, filters: Filters, across: str) -> Counter[tuple[str, str]]:
    """Complaints per topic and helpdesk, channel or product category over the filters' range."""
    column = getattr(DailyRollup, across)
    query = _scoped(select(DailyRollup.topic, column, func.sum(DailyRollup.complaints)), filters)
    query = query.where(DailyRollup.topic == filters.topic if filters.topic else DailyRollup.topic != ALL)
    return Counter({(topic, value): n for topic, value, n in session.execute(query.group_by(DailyRollup.topic, column))
                    if n})


def known(session: Session, column: str) -> list[str]:
    """The helpdesks or channels of the messages counted, for the filter menus."""
    values = getattr(DailyRollup, column)
    return list(session.scalars(select(values).distinct().order_by(values)))


def _scoped(query: Select, filters: Filters) -> Select:
    """``query`` over the roll-ups limited to the filters' days, helpdesk, channel and category."""
    query = query.where(DailyRollup.day >= filters.since, DailyRollup.day <= filters.until)
    if filters.source:
        query = query.where(DailyRollup.source == filters.source)
    if filters.channel:
        query = query.where(DailyRollup.channel == filters.channel)
    if filters.category is not None:
        query = query.where(DailyRollup.category == filters.category)
    return query
