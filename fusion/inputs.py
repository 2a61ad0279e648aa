"""Read a user's history files into validated frames (formats: docs/fusion.md).

Every problem is reported as an :class:`InputError` that names the file, the line and the
column, because the person who reads it is fixing an export from their helpdesk or shop
system, not debugging Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from churnsignal.config import CHANNELS, TICKET_STATUSES

ORDER_COLUMNS = ("customer_id", "order_id", "ordered_at", "amount")
EVENT_FIELDS = ("customer_id", "created_at", "text")
LABEL_COLUMNS = ("customer_id", "churned")
AUTHORS = ("customer", "agent")
STATUSES = ("paid", "refunded")
# Beyond this many problems the rest is more of the same; the user fixes the export and reruns.
MAX_REPORTED = 10


class InputError(ValueError):
    """A history file that cannot be used as given; the message says where and why."""


def parse_time(value: str, what: str = "--as-of") -> pd.Timestamp:
    """Parse an ISO 8601 date or time as naive UTC, the one time base of every frame here."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date or time") from exc
    if pd.isna(stamp):
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date or time")
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def read_orders(path: Path) -> pd.DataFrame:
    """Orders with ``customer_id, order_id, ordered_at, amount, category, status``."""
    frame = _read_csv(path, ORDER_COLUMNS, "orders")
    problems: list[str] = []
    _require_text(frame, path, ("customer_id", "order_id"), problems)
    ordered_at = _times(frame["ordered_at"], path, "ordered_at", problems)
    amount = pd.to_numeric(frame["amount"], errors="coerce").astype(float)
    for line, raw, value in zip(_lines(frame), frame["amount"], amount):
        if not math.isfinite(value):
            problems.append(f"{path}, line {line}, column amount: {raw!r} is not a number")
        elif value < 0:
            problems.append(f"{path}, line {line}, column amount: {raw} is negative "
                            "(record a refund as a row with status refunded)")
    status = frame["status"].str.strip().str.lower().replace("", "paid") if "status" in frame else "paid"
    if "status" in frame:
        for line, value in zip(_lines(frame), status):
            if value not in STATUSES:
                problems.append(f"{path}, line {line}, column status: {value!r} is not one of {', '.join(STATUSES)}")
    _raise(problems)
    category = frame["category"].str.strip().replace("", None) if "category" in frame else None
    return pd.DataFrame({
        "customer_id": frame["customer_id"].str.strip(), "order_id": frame["order_id"].str.strip(),
        "ordered_at": ordered_at, "amount": amount, "category": category, "status": status,
    })


def read_events(path: Path) -> pd.DataFrame:
    """Support events with ``customer_id, created_at, text, channel, ticket_id, author, rating,
    ticket_status``.

    Empty ``text`` is accepted (an attachment-only message) and simply carries no signal.
    """
    rows: list[dict] = []
    problems: list[str] = []
    with _open(path, binary=True) as stream:
        for line, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{path}, line {line}, byte {exc.start + 1}: not UTF-8")
                continue
            if text.strip():
                record = _event(text, path, line, problems)
                if record is not None:
                    rows.append(record | {"line": line})
    _raise(problems)
    if not rows:
        raise InputError(f"{path}: no events (the file is empty)")
    frame = pd.DataFrame(rows)
    frame["created_at"] = _times(frame["created_at"], path, "created_at", problems, frame["line"])
    _raise(problems)
    return frame.drop(columns="line")


def read_labels(path: Path, customers: Iterable[str]) -> pd.DataFrame:
    """Training labels ``customer_id, churned`` (0/1) and an optional ``churned_at``.

    Every labelled customer must appear in the orders: a label for someone we know nothing
    about is almost always a join on the wrong id column.
    """
    frame = _read_csv(path, LABEL_COLUMNS, "labels")
    problems: list[str] = []
    _require_text(frame, path, ("customer_id",), problems)
    known = set(customers)
    seen: dict[str, int] = {}
    for line, customer, churned in zip(_lines(frame), frame["customer_id"].str.strip(), frame["churned"].str.strip()):
        if churned not in ("0", "1"):
            problems.append(f"{path}, line {line}, column churned: {churned!r} is not 0 or 1")
        if customer and customer not in known:
            problems.append(f"{path}, line {line}, column customer_id: {customer!r} has no orders")
        if customer in seen:
            problems.append(f"{path}, line {line}, column customer_id: {customer!r} is labelled again "
                            f"(first on line {seen[customer]})")
        seen.setdefault(customer, line)
    churned_at = None
    if "churned_at" in frame:
        given = frame["churned_at"].str.strip() != ""
        churned_at = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        churned_at[given] = _times(frame.loc[given, "churned_at"], path, "churned_at", problems)
    _raise(problems)
    labels = pd.DataFrame({"customer_id": frame["customer_id"].str.strip(), "churned": frame["churned"].astype(int)})
    if churned_at is not None:
        labels["churned_at"] = churned_at
    return labels.set_index("customer_id")


def _read_csv(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    with _open(path) as stream:
        try:
            frame = pd.read_csv(stream, dtype=str, keep_default_na=False, skipinitialspace=True)
        except pd.errors.EmptyDataError as exc:
            raise InputError(f"{path}: the file is empty (expected a header: {', '.join(required)})") from exc
        except pd.errors.ParserError as exc:
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})")
    if frame.empty:
        raise InputError(f"{path}: no {what} (only a header)")
    return frame


def _open(path: Path, binary: bool = False):
    try:
        return open(path, "rb") if binary else open(path, encoding="utf-8", newline="")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, expected a file") from exc


def _event(raw: str, path: Path, line: int, problems: list[str]) -> dict | None:
    """One JSONL line as a normalised record, or None with the problem recorded."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"{path}, line {line}, column {exc.colno}: not JSON ({exc.msg})")
        return None
    if not isinstance(record, dict):
        problems.append(f"{path}, line {line}: expected a JSON object")
        return None
    before = len(problems)
    for field in EVENT_FIELDS:
        if field not in record:
            problems.append(f"{path}, line {line}, field {field}: missing")
    customer = record.get("customer_id")
    if "customer_id" in record and not (isinstance(customer, (str, int)) and str(customer).strip()):
        problems.append(f"{path}, line {line}, field customer_id: expected a non-empty string or integer")
    if "text" in record and not isinstance(record["text"], str):
        problems.append(f"{path}, line {line}, field text: expected a string")
    if "created_at" in record and not isinstance(record["created_at"], str):
        problems.append(f"{path}, line {line}, field created_at: expected an ISO 8601 string")
    channel = record.get("channel") or "chat"
    author = record.get("author") or "customer"
    if channel not in CHANNELS:
        problems.append(f"{path}, line {line}, field channel: {channel!r} is not one of {', '.join(CHANNELS)}")
    if author not in AUTHORS:
        problems.append(f"{path}, line {line}, field author: {author!r} is not one of {', '.join(AUTHORS)}")
    rating = record.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float))):
        problems.append(f"{path}, line {line}, field rating: {rating!r} is not a number")
    status = record.get("ticket_status")
    if status is not None and status not in TICKET_STATUSES:
        problems.append(f"{path}, line {line}, field ticket_status: {status!r} is not one of "
                        f"{', '.join(TICKET_STATUSES)}")
    if len(problems) > before:
        return None
    ticket = record.get("ticket_id")
    return {"customer_id": str(customer).strip(), "created_at": record["created_at"], "text": record["text"],
            "channel": channel, "ticket_id": None if ticket is None else str(ticket), "author": author,
            "rating": float("nan") if rating is None else float(rating), "ticket_status": status}


def _times(values: pd.Series, path: Path, column: str, problems: list[str],
           lines: Iterable[int] | None = None) -> pd.Series:
    """Parse ISO 8601 times (any offset) to naive UTC, recording each unparseable value."""
    parsed = pd.to_datetime(values.str.strip(), format="ISO8601", errors="coerce", utc=True)
    for line, raw, value in zip(lines if lines is not None else _lines(values), values, parsed):
        if pd.isna(value):
            problems.append(f"{path}, line {line}, column {column}: {raw!r} is not an ISO 8601 date or time")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _require_text(frame: pd.DataFrame, path: Path, columns: tuple[str, ...], problems: list[str]) -> None:
    for column in columns:
        for line in _lines(frame[frame[column].str.strip() == ""]):
            problems.append(f"{path}, line {line}, column {column}: empty")


def _lines(frame: pd.DataFrame | pd.Series) -> Iterable[int]:
    # Row 0 of a CSV is line 2: line 1 is the header.
    return (int(i) + 2 for i in frame.index)


def _raise(problems: list[str]) -> None:
    if problems:
        more = len(problems) - MAX_REPORTED
        tail = [f"... and {more} more problem(s)"] if more > 0 else []
        raise InputError("\n".join(problems[:MAX_REPORTED] + tail))
