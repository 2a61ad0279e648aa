"""The trend views' sums over the roll-ups (``churnsignal/rollups.py`` counts them).

Without a tier filter they sum the daily roll-ups: a few rows per day. A tier filter (a
customer's *latest* tier, which changes) cannot be rolled up, so under it they sum the
per-customer roll-ups of the customers at that tier now, joined in the database: a year of a
tier at a million messages is some hundred thousand rows summed there, where reading the
events and their topics in Python took a second.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from churnsignal.rollups import ALL
from churnsignal.store import Customer, CustomerRollup, DailyRollup
from churnsignal.webhook.pages.filters import Filters

Basis = Literal["daily_rollups", "customer_rollups", "events"]
ROLLUPS: Basis = "daily_rollups"
CUSTOMER_ROLLUPS: Basis = "customer_rollups"
EVENTS: Basis = "events"
Rollup = type[DailyRollup] | type[CustomerRollup]


def basis_for(filters: Filters) -> Basis:
    """Where a trend view reads under ``filters``: the daily roll-ups, or the per-customer ones under a tier."""
    return CUSTOMER_ROLLUPS if filters.tier else ROLLUPS


def complaints_per_day(session: Session, filters: Filters, basis: Basis) -> Counter[tuple[date, str]]:
    """Complaints per day and topic (one about two topics in each), under the filters."""
    table = _table(basis)
    query = _scoped(select(table.day, table.topic, func.sum(table.complaints)), table, filters)
    query = query.where(table.topic == filters.topic if filters.topic else table.topic != ALL)
    return Counter({(day, topic): n for day, topic, n in session.execute(query.group_by(table.day, table.topic))
                    if n})


def turns_per_day(session: Session, filters: Filters, basis: Basis) -> tuple[Counter[date], Counter[date]]:
    """Customer turns the sentiment read, and complaints (each once), per day under the filters."""
    table = _table(basis)
    turns = _scoped(select(table.day, func.sum(table.customer_turns)), table, filters).where(table.topic == ALL)
    complaints = _scoped(select(table.day, func.sum(table.complaints)), table, filters).where(
        table.topic == (filters.topic or ALL))
    return (Counter({day: n for day, n in session.execute(turns.group_by(table.day)) if n}),
            Counter({day: n for day, n in session.execute(complaints.group_by(table.day)) if n}))


def complaints_across(session: Session, filters: Filters, across: str, basis: Basis) -> Counter[tuple[str, str]]:
    """Complaints per topic and helpdesk, channel or product category over the filters' range."""
    table = _table(basis)
    column = getattr(table, across)
    query = _scoped(select(table.topic, column, func.sum(table.complaints)), table, filters)
    query = query.where(table.topic == filters.topic if filters.topic else table.topic != ALL)
    return Counter({(topic, value): n for topic, value, n in session.execute(query.group_by(table.topic, column))
                    if n})


def known(session: Session, column: str) -> list[str]:
    """The helpdesks or channels of the messages counted, for the filter menus."""
    values = getattr(DailyRollup, column)
    return list(session.scalars(select(values).distinct().order_by(values)))


def _table(basis: Basis) -> Rollup:
    if basis == EVENTS:
        raise ValueError("the events are read in webhook/pages/trends.py, not summed here")
    return CustomerRollup if basis == CUSTOMER_ROLLUPS else DailyRollup


def _scoped(query: Select, table: Rollup, filters: Filters) -> Select:
    """``query`` over ``table`` limited to the filters' days, helpdesk, channel, category and tier."""
    query = query.where(table.day >= filters.since, table.day <= filters.until)
    if filters.source:
        query = query.where(table.source == filters.source)
    if filters.channel:
        query = query.where(table.channel == filters.channel)
    if filters.category is not None:
        query = query.where(table.category == filters.category)
    if filters.tier:
        if table is DailyRollup:
            raise ValueError("the daily roll-ups hold no customer: a tier filter sums the per-customer ones")
        # A message's tier is its customer's latest.
        query = query.where(table.customer_id.in_(select(Customer.customer_id).where(Customer.tier == filters.tier)))
    return query
