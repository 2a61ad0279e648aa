"""Orders into the store: one validation and one upsert for the API and the CLI.

The orders are the fusion model's purchase history, in its orders format (docs/fusion.md):
``customer_id, order_id, ordered_at, amount[, category, status]``. An order is identified by
``order_id``: sending it again replaces it, so a shop can re-export overlapping periods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from churnsignal.store import Order, Store
from churnsignal.webhook.helpdesks.http import InvalidPayload, to_time

STATUSES = ("paid", "refunded")
MAX_ID_LENGTH = 200
# Ids per SELECT ... IN (...): far below SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 500
# Beyond this many problems the rest is more of the same; the sender fixes the export.
MAX_REPORTED = 100


class OrderRowsError(ValueError):
    """Order rows that cannot be stored; ``problems`` names each bad row and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = len(problems) - MAX_REPORTED
        shown = problems[:MAX_REPORTED] + ([f"... and {more} more problem(s)"] if more > 0 else [])
        super().__init__("\n".join(shown))


def validate_order_rows(rows: Iterable[Mapping[str, Any]], where: str = "orders") -> list[dict[str, Any]]:
    """The rows normalised for the store, or :class:`OrderRowsError` listing every bad one.

    All or nothing: a batch with one bad row is refused whole, so a retry after fixing it
    cannot leave half an export behind. Problems read ``orders[3].amount: must be a
    non-negative number``.
    """
    problems: list[str] = []
    clean: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        at = f"{where}[{index}]"
        if not isinstance(row, Mapping):
            problems.append(f"{at}: must be an object")
            continue
        before = len(problems)
        customer_id = _identifier(row, "customer_id", at, problems)
        order_id = _identifier(row, "order_id", at, problems)
        ordered_at = _time(row.get("ordered_at"), f"{at}.ordered_at", problems)
        amount = row.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
            problems.append(f"{at}.amount: must be a non-negative number"
                            + (" (record a refund with status refunded)" if _negative(amount) else ""))
        category = row.get("category")
        if category is not None and not isinstance(category, str):
            problems.append(f"{at}.category: must be a string or null")
        elif isinstance(category, str) and len(category.strip()) > MAX_ID_LENGTH:
            problems.append(f"{at}.category: longer than {MAX_ID_LENGTH} characters")
        status = row.get("status")
        if status is None or (isinstance(status, str) and not status.strip()):
            status = "paid"
        elif not isinstance(status, str) or status.strip().lower() not in STATUSES:
            problems.append(f"{at}.status: must be one of {', '.join(STATUSES)}")
        if len(problems) == before:
            clean.append({"customer_id": customer_id, "order_id": order_id, "ordered_at": ordered_at,
                          "amount": float(amount), "category": (category or "").strip() or None,
                          "status": status.strip().lower()})
    if problems:
        raise OrderRowsError(problems)
    return clean


def upsert_orders(session: Session, rows: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Validate and store orders, replacing those whose ``order_id`` is known: (inserted, updated).

    A repeated ``order_id`` within the rows counts once; its last row wins, as a later line
    of an export corrects an earlier one.
    """
    latest = {row["order_id"]: row for row in validate_order_rows(rows)}
    ids = list(latest)
    inserted = updated = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        known = {order.order_id: order
                 for order in session.scalars(select(Order).where(Order.order_id.in_(chunk)))}
        for order_id in chunk:
            row = latest[order_id]
            order = known.get(order_id)
            if order is None:
                session.add(Order(**row))
                inserted += 1
            else:
                for name, value in row.items():
                    setattr(order, name, value)
                updated += 1
        session.flush()
    return inserted, updated


def import_csv(store: Store, path: Path | str) -> tuple[int, int]:
    """Load an orders CSV in the fusion format into the store: (inserted, updated).

    The file is read by :func:`churnsignal.fusion.inputs.read_orders`, so it is the same
    format, and a bad file the same ``InputError`` naming file, line and column, as for
    ``churnsignal fusion train``.
    """
    from churnsignal.fusion.inputs import read_orders

    frame = read_orders(Path(path))
    rows = [{"customer_id": customer_id, "order_id": order_id, "ordered_at": ordered_at.to_pydatetime(),
             "amount": float(amount), "category": category if isinstance(category, str) else None,
             "status": status}
            for customer_id, order_id, ordered_at, amount, category, status in frame[
                ["customer_id", "order_id", "ordered_at", "amount", "category", "status"]].itertuples(index=False)]
    with store.session() as session:
        return upsert_orders(session, rows)


def _identifier(row: Mapping[str, Any], name: str, at: str, problems: list[str]) -> str | None:
    value = row.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{at}.{name}: must be a non-empty string")
        return None
    if len(value.strip()) > MAX_ID_LENGTH:
        problems.append(f"{at}.{name}: longer than {MAX_ID_LENGTH} characters")
        return None
    return value.strip()


def _time(value: Any, at: str, problems: list[str]) -> datetime | None:
    """An ISO 8601 date or time as naive UTC (the store's time base), in the range webhooks take."""
    if not isinstance(value, (datetime, str)):
        problems.append(f"{at}: must be an ISO 8601 date or time string")
        return None
    try:
        return to_time(value.isoformat() if isinstance(value, datetime) else value, at)
    except InvalidPayload as exc:
        problems.append(str(exc))
        return None


def _negative(amount: Any) -> bool:
    return isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount < 0
