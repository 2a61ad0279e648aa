"""The one database layer: what the service keeps, on SQLite by default or PostgreSQL.

The webhook writes deliveries and events; workers add analyses, scores and alerts; the
read API and the metrics read them. Text and raw bodies are stored masked, so the store
holds no phone numbers, ID numbers, emails or addresses. Times are naive UTC.

The schema is owned by the Alembic migrations in ``churnsignal/migrations``:
:meth:`Store.upgrade` brings any database to the current one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Engine, ForeignKey, Index, String, Text, UniqueConstraint, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from churnsignal.config import ANALYSED_BY_CHARS

MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    """Now, as the naive UTC time every column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Delivery(Base):
    """One webhook request, kept so nothing accepted is lost: the fields its adapter reads, masked."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text)


class Event(Base):
    """One message on a ticket, normalised; ``status`` says how far it has been processed."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_events_source_external_id"),
        # The QA workspace's ranges of days, newest first (migration 0009): with what the
        # drill-down tests beside the time, its filters read the index, not the table.
        Index("ix_events_created_at_filters", "created_at", "id", "author", "negative_prob", "customer_id", "source",
              "channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    source: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str] = mapped_column(String(200))
    ticket_id: Mapped[str] = mapped_column(String(200), index=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    author: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    # Indexed for the QA workspace's ranges of days (ix_events_created_at_filters).
    created_at: Mapped[datetime]
    received_at: Mapped[datetime]
    # received → queued → analysed (customer messages) or stored (agent and bot messages)
    status: Mapped[str] = mapped_column(String(16), index=True)
    queued_at: Mapped[datetime | None]
    analysed_at: Mapped[datetime | None]
    negative_prob: Mapped[float | None]
    negative_word_share: Mapped[float | None]
    entities: Mapped[dict[str, Any] | None]
    # Where each entity is in ``text``: [{"start", "end", "label"}], character offsets into
    # the masked text as stored; null before analysis (and for events analysed before 0005).
    entity_spans: Mapped[list[Any] | None]
    # Which models wrote the four signals above (``fusion.text.analysed_by``), so that messages
    # read by a model since replaced can be read again (``churnsignal qa reanalyse``); null for
    # messages no model read and for those analysed before 0010.
    analysed_by: Mapped[str | None] = mapped_column(String(ANALYSED_BY_CHARS))
    # open, pending or solved, as the helpdesk reported it with this message; null where it
    # sends none (the fusion then reads who spoke last).
    ticket_status: Mapped[str | None] = mapped_column(String(16))


class Order(Base):
    """One order, in the fusion model's orders format."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    ordered_at: Mapped[datetime]
    amount: Mapped[float]
    category: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="paid")


class Identity(Base):
    """A helpdesk requester key (HMAC-hashed, never in clear) and the customer it belongs to."""

    __tablename__ = "identities"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)


class SyncCursor(Base):
    """Where a pull from a helpdesk's sync API left off, so the next pull starts there."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    # One helpdesk may sync several streams (WeCom KF: one per customer-service account).
    stream: Mapped[str] = mapped_column(String(200), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Customer(Base):
    """A customer's latest risk; its row is locked while an alert is decided."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    churn_prob: Mapped[float | None]
    tier: Mapped[str | None] = mapped_column(String(32))
    scored_at: Mapped[datetime | None]


class RiskScore(Base):
    """One scoring of a customer, kept as their history of scores."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    scored_at: Mapped[datetime] = mapped_column(index=True)
    as_of: Mapped[datetime]
    churn_prob: Mapped[float]
    tier: Mapped[str | None] = mapped_column(String(32))
    reasons: Mapped[list[Any]]
    driver: Mapped[str] = mapped_column(String(16))
    action: Mapped[dict[str, Any]]
    # A complaint, an unresolved complaint ticket or a slow first response in the customer's
    # window (fusion/service.py); without one the score is kept but not posted. Null: not
    # known (scored before this was recorded).
    service_signal: Mapped[bool | None]


# Every status an alert can have, in the order of its life (see :class:`Alert`).
ALERT_STATUSES = ("open", "delivered", "failed", "superseded", "resolved")


class Alert(Base):
    """An alert for a ticket.

    ``status``: ``open`` (being delivered), ``delivered``, ``failed`` (after the last
    retry; stays visible), ``superseded`` (a newer alert replaced it) or ``resolved``
    (the customer's risk fell below its tier).
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    score_id: Mapped[int] = mapped_column(ForeignKey("scores.id"))
    source: Mapped[str] = mapped_column(String(80))
    ticket_id: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(32))
    churn_prob: Mapped[float]
    reasons: Mapped[list[Any]]
    driver: Mapped[str] = mapped_column(String(16))
    action: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(index=True)
    # SPEC: the tier's response time (4 h / 12 h / 24 h) from when the alert was raised.
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    # When an attempt that has not reported back should be given up on and made again.
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class AlertHandling(Base):
    """An agent marked an alert handled: who (as the helpdesk or the login names them), when, from where."""

    __tablename__ = "alert_handlings"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    handled_by: Mapped[str] = mapped_column(String(200))
    handled_at: Mapped[datetime]
    # badge (a helpdesk sidebar) or qa (the workspace)
    via: Mapped[str] = mapped_column(String(40))


class DailyRollup(Base):
    """What the QA workspace's trend views count, per day and per what they filter and break down by.

    Kept by the worker in the transaction that stores each message's analysis, so a page
    sums a few rows per day instead of reading every message; ``churnsignal qa
    rebuild-rollups`` recomputes them from the events. ``day`` is the message's day in
    ``qa.timezone`` and ``category`` its customer's latest product category at that moment
    (``-``: none), both as they were when counted. ``topic`` is a complaint topic (or ``OTHER``)
    whose row counts only ``complaints`` (a complaint about two topics in each), or ``""``,
    the row of every message: ``messages`` processed, ``customer_turns`` the sentiment read,
    and ``complaints`` counted once each.
    """

    __tablename__ = "daily_rollups"

    day: Mapped[date] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    category: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(16), primary_key=True)
    messages: Mapped[int]
    customer_turns: Mapped[int]
    complaints: Mapped[int]


class CustomerRollup(Base):
    """The daily roll-ups again, per customer: what the trend views count under a tier filter.

    A tier filter keeps the messages of customers whose *latest* tier is that tier, and tiers
    change, so a roll-up cannot hold the tier: the views sum these rows of the customers at
    the tier now (a join to ``customers``). Same key as :class:`DailyRollup` with
    ``customer_id`` first, and only the customer turns the sentiment read (the counts the
    views sum), kept and recounted with the daily roll-ups. The key is the table itself
    (``WITHOUT ROWID`` on SQLite), so a customer's days are read in one range, counts
    included.
    """

    __tablename__ = "customer_rollups"
    __table_args__ = {"sqlite_with_rowid": False}

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    category: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_turns: Mapped[int]
    complaints: Mapped[int]


class Store:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # A database host that drops packets must not hang a web worker: give up connecting
        # after 5 s (the webhook answers 503 and the helpdesk retries). hide_parameters keeps
        # bound values, which may be customer ids or message text, out of error messages.
        # prepare_threshold None: psycopg prepares no statement, so PostgreSQL plans each query
        # for its values. Prepared, a statement run five times gets one generic plan for every
        # range: after a few four-week drill-downs, a year's under a tier read and sorted every
        # message of the year for each batch (8 s instead of 0.8 s at a million messages).
        connect_args = {"connect_timeout": 5, "prepare_threshold": None} if url.startswith("postgresql") else {}
        self.engine: Engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def upgrade(self) -> None:
        """Apply every Alembic migration this database has not had yet."""
        from alembic import command

        with self.engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The migration this database is at; None for a database no migration has touched."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def cursor(self, source: str, stream: str) -> str | None:
        """Where the last pull of ``stream`` from ``source`` left off; None before the first."""
        with self.session() as session:
            row = session.get(SyncCursor, (source, stream))
            return row.cursor if row else None

    def save_cursor(self, source: str, stream: str, cursor: str) -> None:
        """Remember where a pull left off, once what it fetched is stored (so nothing is skipped)."""
        with self.session() as session:
            session.merge(SyncCursor(source=source, stream=stream, cursor=cursor, updated_at=utcnow()))

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str):
    """Alembic's configuration for ``url``, without an alembic.ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def latest_revision() -> str:
    """The migration this version's schema ends with: where :meth:`Store.upgrade` brings a database."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _sqlite_pragmas(connection, _record) -> None:
    # WAL lets the web app write while a worker reads; the busy timeout makes concurrent
    # writers from several processes wait for each other instead of failing.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
