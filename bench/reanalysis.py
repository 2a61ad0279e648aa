"""Reading stored messages again after a model upgrade (``churnsignal qa reanalyse``), timed.

    python bench/reanalysis.py [--tickets 500] [--database URL] [--first-model DIR]

Stores real support chat as a helpdesk would send it: the first ``--tickets`` dialogues of
the chat gold set's train split (JDDC, ``bench/data/chat_gold_train.jsonl.gz``: each a
labelled customer turn and the turns before it, customers' and agents'), one ticket each,
a minute apart. The worker analyses them (``pipeline.analyse``) with the sentiment model in
``--first-model`` (an upgrade from it: 0.1.0, say); without it, with the configured one,
every analysed message then marked as read by another model. ``pipeline.reanalyse`` reads
them all again with the configured models, recounting the roll-ups batch by batch, as the
command does. Prints one JSON object: the customer messages read again, how many became or
stopped being complaints (at the configured ``sentiment.neutral_high``), the seconds it
took, and messages per second. ``--database`` takes an empty database (PostgreSQL, say); by default
a SQLite file in a temporary folder. The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from churnsignal.config import Settings
from churnsignal.fusion.text import analysed_by
from churnsignal.nlp.training.chat import read_gold
from churnsignal.store import Delivery, Event, Store, utcnow
from churnsignal.worker import pipeline

OTHER_MODELS = "sentiment 0.1.0 000000000000 int8; entities churnsignal_entities 0.0.0"


def store_dialogues(store: Store, tickets: int) -> list[int]:
    """The first ``tickets`` gold train dialogues as queued events, one ticket each; their ids."""
    start = utcnow() - timedelta(days=30)
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=start, body="{}")
        session.add(delivery)
        session.flush()
        events, minute = [], 0
        for n, row in enumerate(read_gold("train")[:tickets]):
            turns = [line.partition(": ") for line in row.get("context", [])] + [("customer", "", row["text"])]
            for author, _, text in turns:
                minute += 1
                at = start + timedelta(minutes=minute)
                events.append(Event(delivery_id=delivery.id, source="zendesk", external_id=f"b{minute}",
                                    ticket_id=f"T{n}", customer_id=f"c{n % 50}", author=author, channel="chat",
                                    text=text, created_at=at, received_at=at, status="queued"))
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=500, help="gold train dialogues to store (default 500)")
    parser.add_argument("--database", help="an empty database's URL (default: SQLite in a temporary folder)")
    parser.add_argument("--first-model", type=Path, help="the sentiment model the worker read them with first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(args.database or f"sqlite:///{scratch}/bench.db")
        store.upgrade()
        first = {"model_dir": str(args.first_model)} if args.first_model else {}
        settings = Settings(fusion={"cache_dir": str(Path(scratch) / "worker-cache")}, sentiment=first)
        ids = store_dialogues(store, args.tickets)
        for start in range(0, len(ids), settings.service.batch_size):
            pipeline.analyse(store, ids[start:start + settings.service.batch_size], settings)
        if not args.first_model:
            with store.session() as session:
                session.execute(update(Event).where(Event.status == "analysed").values(analysed_by=OTHER_MODELS))
        # Another cache: what is read again is read by the models, as after an upgrade.
        again = Settings(fusion={"cache_dir": str(Path(scratch) / "upgrade-cache")})
        started = time.perf_counter()
        done = pipeline.reanalyse(store, again)
        seconds = time.perf_counter() - started
        with store.session() as session:
            left = len(session.scalars(select(Event.id).where(Event.status == "analysed",
                                                              Event.analysed_by != analysed_by(again))).all())
        dialect = store.engine.dialect.name
        store.dispose()
    print(json.dumps({"bench": "reanalysis", "database": dialect, "tickets": args.tickets,
                      "first_model": str(args.first_model) if args.first_model else "the configured one",
                      "events": len(ids), "read_again": done.messages, "left_unread": left,
                      "changed_complaint_or_not": done.flipped, "days_recounted": len(done.days),
                      "seconds": round(seconds, 1), "messages_per_second": round(done.messages / seconds, 1)},
                     indent=2))


if __name__ == "__main__":
    main()
