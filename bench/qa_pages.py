"""How long the QA workspace's figures take over a large store: N analysed messages, each figure timed.

    python bench/qa_pages.py [--messages 1000000] [--days 365] [--database-url postgresql+psycopg://...]

Fills a fresh store (SQLite in a temporary folder unless ``--database-url`` names an empty
database) with ``--messages`` analysed customer and agent turns spread over ``--days`` days,
four helpdesks and three channels, a third of them complaints, then asks each data endpoint
(``/qa/data/<figure>.json``) through the Flask test client, logged in, over the last 28 days
and over the whole year, and prints one JSON object: seconds per figure (best of three).
The figures are computed from the raw events on every request (no roll-ups).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from churnsignal.config import Settings
from churnsignal.nlp.complaints import TOPICS
from churnsignal.store import Delivery, Event, Store, utcnow
from churnsignal.webhook.app import create_app
from churnsignal.webhook.pages.login import hash_password

FIGURES = ("volume", "negative-share", "heatmap-source", "tiers", "outcomes", "spikes", "alerts")
BATCH = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'churnsignal.db'}"
        store = Store(url)
        store.upgrade()
        started = time.perf_counter()
        fill(store, args.messages, args.days)
        filled = time.perf_counter() - started
        settings = Settings(service={"data_dir": scratch}, identity={"pepper": "bench-pepper"},
                            qa={"users": [{"name": "bench", "password_hash": hash_password("bench-password")}],
                                "secret_key": "b" * 64, "secure_cookies": False})
        client = create_app(settings, store=store).test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"name": "bench", "password": "bench-password", "csrf_token": token})
        since = (utcnow() - timedelta(days=args.days - 1)).date().isoformat()
        seconds = {f"{figure} ({period})": best_of_three(client, f"/qa/data/{figure}.json{query}")
                   for period, query in (("28 days", ""), (f"{args.days} days", f"?since={since}"))
                   for figure in FIGURES}
        store.dispose()
    print(json.dumps({"bench": "qa_pages", "messages": args.messages, "store": url.split(":", 1)[0],
                      "fill_seconds": round(filled, 1), "seconds": seconds}, ensure_ascii=False))


def fill(store: Store, messages: int, days: int) -> None:
    """``messages`` analysed turns over the last ``days`` days, inserted in batches."""
    rng = random.Random(0)
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="bench", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    for start in range(0, messages, BATCH):
        rows = []
        for number in range(start, min(start + BATCH, messages)):
            at = now - timedelta(minutes=rng.randrange(days * 24 * 60))
            author = "agent" if number % 4 == 0 else "customer"
            complaint = author == "customer" and rng.random() < 0.45
            rows.append({"delivery_id": delivery_id, "source": ("zendesk", "chatwoot", "freshdesk", "generic:shop")[number % 4],
                         "external_id": f"b{number}", "ticket_id": str(number // 5), "customer_id": f"c{number % 50_000}",
                         "author": author, "channel": ("chat", "ticket", "email")[number % 3],
                         "text": "快递三天都没到，客服也不回消息" if complaint else "好的，谢谢",
                         "created_at": at, "received_at": at, "status": "analysed" if author == "customer" else "stored",
                         "queued_at": at, "analysed_at": at,
                         "negative_prob": rng.uniform(0.5, 1.0) if complaint else rng.uniform(0.0, 0.3),
                         "negative_word_share": 0.1,
                         "entities": {rng.choice(TOPICS): 1} if complaint else {}})
        with store.session() as session:
            session.execute(insert(Event), rows)


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
