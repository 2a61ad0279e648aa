"""How long the QA workspace's pages take over a large store: N messages, each page and figure timed.

    python bench/qa_pages.py [--messages 1000000] [--days 365] [--store sqlite|postgresql]
                             [--order random|time] [--no-vacuum]
                             [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Fills a fresh store (SQLite in a temporary folder, or a PostgreSQL database created on the
server of ``--postgres-url`` and dropped afterwards) with ``--messages`` analysed customer and
agent turns spread over ``--days`` days, four helpdesks and three channels, a third of them
complaints; customers who ordered in five product categories; scores and alerts for some
complaints. It bulk-inserts them (PostgreSQL's COPY, then VACUUM ANALYZE), in random order of
time (the default: a page that reads messages newest first then reads each from anywhere in
the table) or, with ``--order time``, oldest first, as live traffic is stored as it arrives
(the same messages either way); ``--no-vacuum`` runs ANALYZE alone, as on a server with
autovacuum off. It counts the roll-ups (daily, and per customer) from them as
``churnsignal qa rebuild-rollups`` does, then asks every page and data endpoint through the
Flask test client, logged in, over the last 28 days and over the whole range, and prints one
JSON object: seconds per request (best of three), the seconds the fill and the recount took,
and the roll-up rows it wrote.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, insert, text
from sqlalchemy.engine import make_url

from churnsignal.config import Settings
from churnsignal.nlp.complaints import TOPICS
from churnsignal.store import Alert, Customer, Delivery, Event, Order, RiskScore, Store, utcnow
from churnsignal.webhook.app import create_app
from churnsignal import rollups
from churnsignal.webhook.pages.login import hash_password

SOURCES = ("zendesk", "chatwoot", "freshdesk", "generic:shop")
CHANNELS = ("chat", "ticket", "email")
CATEGORIES = ("服饰", "数码", "食品", "家居", "美妆")
TIERS = ("red", "yellow", "blue")
CUSTOMERS = 50_000
BATCH = 20_000
# Every page a QA person opens, and every figure the pages draw or export.
PAGES = ("/qa/", "/qa/spikes", "/qa/messages", "/qa/alerts")
FIGURES = ("volume", "negative-share", "heatmap-source", "heatmap-channel", "heatmap-category", "spikes", "tiers",
           "outcomes", "alerts", "messages")
# Narrower questions: a helpdesk and a topic (daily roll-ups), and a tier (per-customer roll-ups;
# the spikes' examples and the messages are read from the events).
NARROWED = ("volume.json?source=zendesk&topic=LOGISTICS", "heatmap-category.json?channel=chat",
            "volume.json?tier=red", "negative-share.json?tier=red", "heatmap-category.json?tier=red",
            "spikes.json?tier=red", "messages.json?tier=red")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--order", choices=("random", "time"), default="random",
                        help="Store the messages in random order of time, or in order of time as they arrive.")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="On PostgreSQL, ANALYZE the filled store without VACUUM (no visibility map).")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="A PostgreSQL server (any database on it) where a scratch database may be created.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, scratch_store(args, Path(scratch)) as store:
        started = time.perf_counter()
        fill(store, args.messages, args.days, args.order)
        if args.store == "postgresql":
            # What autovacuum does soon after any bulk load: the planner's statistics, and the
            # visibility map, without which an index-only scan reads the table too.
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE" if args.no_vacuum else "VACUUM ANALYZE"))
        filled = time.perf_counter() - started
        settings = Settings(service={"data_dir": scratch}, identity={"pepper": "bench-pepper"},
                            qa={"users": [{"name": "bench", "password_hash": hash_password("bench-password")}],
                                "secret_key": "b" * 64, "secure_cookies": False})
        started = time.perf_counter()
        rows = rollups.rebuild(store, settings)
        recounted = time.perf_counter() - started
        if args.store == "postgresql":
            # Statistics of the roll-ups too, which the recount just wrote.
            with store.engine.connect() as connection:
                connection.execute(text("ANALYZE daily_rollups, customer_rollups"))
                connection.commit()
        client = create_app(settings, store=store).test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"name": "bench", "password": "bench-password", "csrf_token": token})
        since = (utcnow() - timedelta(days=args.days - 1)).date().isoformat()
        seconds = {}
        for period, query in (("28 days", ""), (f"{args.days} days", f"since={since}")):
            paths = [*PAGES, *(f"/qa/data/{figure}.json" for figure in FIGURES),
                     *(f"/qa/data/{narrowed}" for narrowed in NARROWED)]
            for path in paths:
                joined = path + ("&" if "?" in path else "?") + query if query else path
                seconds[f"{path} ({period})"] = best_of_three(client, joined)
    print(json.dumps({"bench": "qa_pages", "messages": args.messages, "days": args.days, "store": args.store,
                      "order": args.order, "vacuum": args.store == "postgresql" and not args.no_vacuum,
                      "fill_seconds": round(filled, 1), "rollup_rows": rows.daily,
                      "customer_rollup_rows": rows.customers,
                      "rebuild_rollups_seconds": round(recounted, 1), "seconds": seconds}, ensure_ascii=False))


@contextmanager
def scratch_store(args: argparse.Namespace, scratch: Path) -> Iterator[Store]:
    """A fresh, migrated store, removed afterwards: a SQLite file, or a PostgreSQL database of its own."""
    if args.store == "sqlite":
        store = Store(f"sqlite:///{scratch / 'churnsignal.db'}")
        store.upgrade()
        yield store
        store.dispose()
        return
    server = make_url(args.postgres_url)
    name = f"churnsignal_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        store = Store(server.set(database=name).render_as_string(hide_password=False))
        store.upgrade()
        yield store
        store.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(store: Store, messages: int, days: int, order: str = "random") -> None:
    """``messages`` analysed turns over the last ``days`` days, their customers' orders, some scores and alerts.

    ``order``: ``random`` stores them in random order of time, ``time`` oldest first (ids too,
    as they arrive). The times are drawn apart from the rest, so both hold the same times and
    the same n-th message apart from its time.
    """
    rng = random.Random(0)
    now = utcnow()
    first = now - timedelta(days=days)
    moments = random.Random(1)
    minutes = [moments.randrange(days * 24 * 60) for _ in range(messages)]
    if order == "time":
        minutes.sort(reverse=True)
    with store.session() as session:
        delivery = Delivery(source="bench", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    # Half the customers at a tier (the tier filter's), half below every tier.
    bulk(store, Customer.__table__, [{"customer_id": f"c{n}", "churn_prob": 0.5, "scored_at": now,
                                      "tier": TIERS[n % 3] if n % 2 else None} for n in range(CUSTOMERS)])
    bulk(store, Order.__table__, [
        {"order_id": f"o{n}-{k}", "customer_id": f"c{n}", "amount": 59.0, "status": "paid",
         "ordered_at": first - timedelta(days=30) if k == 0 else first + timedelta(minutes=rng.randrange(days * 1440)),
         "category": CATEGORIES[(n + k) % len(CATEGORIES)]} for n in range(CUSTOMERS) for k in range(2)])
    triggers: list[dict[str, Any]] = []
    for start in range(0, messages, BATCH):
        rows = []
        for number in range(start, min(start + BATCH, messages)):
            at = now - timedelta(minutes=minutes[number])
            author = "agent" if number % 4 == 0 else "customer"
            complaint = author == "customer" and rng.random() < 0.45
            row = {"id": number + 1, "delivery_id": delivery_id, "source": SOURCES[number % 4],
                   "external_id": f"b{number}", "ticket_id": str(number // 5), "customer_id": f"c{number % CUSTOMERS}",
                   "author": author, "channel": CHANNELS[number % 3],
                   "text": "快递三天都没到，客服也不回消息" if complaint else "好的，谢谢",
                   "created_at": at, "received_at": at, "status": "analysed" if author == "customer" else "stored",
                   "queued_at": at, "analysed_at": at,
                   "negative_prob": rng.uniform(0.5, 1.0) if complaint else rng.uniform(0.0, 0.3),
                   "negative_word_share": 0.1, "entities": {rng.choice(TOPICS): 1} if complaint else {}}
            rows.append(row)
            if complaint and number % 100 == 1:
                triggers.append(row)
        bulk(store, Event.__table__, rows)
    scores_and_alerts(store, triggers)


def scores_and_alerts(store: Store, triggers: list[dict[str, Any]]) -> None:
    """A score for each trigger, and an alert for every other one."""
    scores, alerts = [], []
    for number, event in enumerate(triggers, start=1):
        tier, at = TIERS[number % 3], event["created_at"]
        action = {"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"}
        scores.append({"id": number, "customer_id": event["customer_id"], "event_id": event["id"], "scored_at": at,
                       "as_of": at, "churn_prob": 0.75, "tier": tier, "reasons": [], "driver": "service",
                       "action": action, "service_signal": True})
        if number % 2:
            alerts.append({"idempotency_key": f"bench-{number}", "customer_id": event["customer_id"],
                           "score_id": number, "source": event["source"], "ticket_id": event["ticket_id"],
                           "tier": tier, "churn_prob": 0.75, "reasons": [], "driver": "service", "action": action,
                           "created_at": at, "due_at": at + timedelta(hours=4), "status": "delivered",
                           "attempts": 1})
    bulk(store, RiskScore.__table__, scores)
    bulk(store, Alert.__table__, alerts)


def bulk(store: Store, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` at once: PostgreSQL's COPY, or one executemany on SQLite."""
    if not rows:
        return
    with store.engine.begin() as connection:
        if connection.dialect.name != "postgresql":
            connection.execute(insert(table), rows)
            return
        columns = list(rows[0])
        with connection.connection.cursor() as cursor, cursor.copy(
                f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_copied(row[column]) for column in columns])


def _copied(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def best_of_three(client, path: str) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.get_data(as_text=True)[:200]}")
    return round(min(times), 3)


if __name__ == "__main__":
    main()
