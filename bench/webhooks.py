"""Webhook intake under concurrent load: signed Zendesk deliveries against ``churnsignal serve``.

    python bench/webhooks.py [--requests 2000] [--concurrency 16] [--workers 4]
                             [--database-url URL] [--broker-url URL]

Starts the web app under gunicorn (no worker: messages are stored and queued, which is all
a webhook answer waits for), sends ``--requests`` distinct signed deliveries from
``--concurrency`` client threads, and prints one JSON object: answer times (median, p90,
p99, max), answers per second, the status codes, and how many messages the store holds
afterwards (it must be exactly ``--requests``). Defaults are the embedded SQLite store and
SQLite broker in a temporary folder; pass a scratch PostgreSQL database and a Redis URL to
measure the production set-up (the bench writes into them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from threading import local

import requests
import yaml
from sqlalchemy import func, select

from churnsignal.config import ZendeskSettings
from churnsignal.demo import free_port, running, wait_for_web
from churnsignal.store import Event, Store, utcnow
from churnsignal.webhook.helpdesks.base import Requester, SupportEvent
from churnsignal.webhook.helpdesks.zendesk import Zendesk

SECRET = "bench-secret"
TEXT = "快递三天都没到，客服也不回消息，我要退款"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        database = args.database_url or f"sqlite:///{folder / 'churnsignal.db'}"
        config = {"service": {"data_dir": str(folder), "database_url": database, "broker_url": args.broker_url},
                  "helpdesks": {"zendesk": {"signing_secret": SECRET}}, "identity": {"pepper": "bench-pepper"}}
        (folder / "churnsignal.yaml").write_text(yaml.safe_dump(config))
        env = os.environ | {"CHURNSIGNAL_CONFIG": str(folder / "churnsignal.yaml")}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(["serve", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers)], env,
                     folder / "web.log"):
            wait_for_web(base, timeout=120, healthy=False)
            figures = load(base, args.requests, args.concurrency)
        store = Store(database)
        with store.session() as session:
            figures["messages_stored"] = session.scalar(select(func.count()).select_from(Event))
        store.dispose()
    print(json.dumps({"bench": "webhooks", "requests": args.requests, "concurrency": args.concurrency,
                      "gunicorn_workers": args.workers, "store": database.split(":", 1)[0],
                      "broker": (args.broker_url or "sqla+sqlite").split(":", 1)[0], **figures}))


def load(base: str, count: int, concurrency: int) -> dict:
    """Send ``count`` signed deliveries from ``concurrency`` threads; answer times and codes."""
    zendesk = Zendesk(ZendeskSettings(signing_secret=SECRET), timeout=10)
    written = utcnow() - timedelta(minutes=1)
    deliveries = [zendesk.signed_request(SupportEvent(
        source="zendesk", event_id=f"bench-{n}", ticket_id=str(n % 500), author="customer", text=f"{TEXT}（{n}）",
        created_at=written, requester=Requester(id=str(n % 300), external_id=f"c{n % 300}")), utcnow())
        for n in range(count)]
    sessions = local()

    def send(delivery: tuple[dict[str, str], bytes]) -> tuple[int, float]:
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
        started = time.perf_counter()
        answer = sessions.http.post(f"{base}/webhooks/zendesk", data=delivery[1], headers=delivery[0], timeout=30)
        return answer.status_code, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, deliveries))
    elapsed = time.perf_counter() - started
    times = sorted(seconds for _, seconds in results)

    def ms(share: float) -> float:
        return round(1000 * times[min(len(times) - 1, int(share * len(times)))], 1)

    return {"answers_per_second": round(count / elapsed, 1),
            "answer_ms": {"median": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": round(1000 * times[-1], 1)},
            "status": dict(Counter(str(code) for code, _ in results))}


if __name__ == "__main__":
    main()
