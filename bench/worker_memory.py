"""A worker's memory, measured: resident set size after start, once the models are loaded, and after 1,000 messages.

    python bench/worker_memory.py [--messages 1000] [--customers 400] [--env NAME=VALUE ...]

Trains a fusion model on simulated history (real CDNOW customers with real review sentences
as their messages), stores their orders, starts one real ``churnsignal worker`` (solo pool,
SQLite store and SQLite broker), queues the messages one task each as the webhooks do, and
reads the worker's ``/proc`` status while it works: ``VmRSS`` (resident now) and ``VmHWM``
(the peak) of the worker process, and, sampled every half second, the proportional set size
(PSS: shared pages counted once) of its whole process tree, a prefork worker's children
included. ``--env`` sets variables for the worker only and
``--worker-arg`` adds to its command line, to measure a way of capping it
(``--worker-arg=--pool=prefork --worker-arg=--max-memory=900``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sqlalchemy import func, select
from tqdm import tqdm

from churnsignal.config import Settings
from churnsignal.fusion import artifact, simulation, training
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Delivery, Event, Store, utcnow
from churnsignal.webhook.orders import upsert_orders
from churnsignal.worker.app import enqueue_events, make_celery

MB = 1024 * 1024
DONE = ("analysed", "stored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=500, help="Simulated customers the messages come from.")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="An environment variable for the worker only (repeatable).")
    parser.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                        help="An argument added to `churnsignal worker --no-beat` (repeatable).")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(None),
                                  simulation.SimulationParams(customers=args.customers), seed=0)
        config = _config(folder, _model(sim, folder))
        settings = Settings(**config)
        store = Store(settings.service.database())
        store.upgrade()
        with store.session() as session:
            upsert_orders(session, sim.orders.to_dict("records"))
        messages = sim.events[sim.events["author"] == "customer"].sort_values("created_at").head(args.messages)
        if len(messages) < args.messages:
            parser.error(f"{args.customers} customers wrote {len(messages)} messages: raise --customers")
        figures = _measure(folder, config, worker_env, args.worker_arg, store, messages, args.timeout)
        store.dispose()
    print(json.dumps({"bench": "worker_memory", "messages": len(messages), "customers": args.customers,
                      "worker_env": worker_env, "worker_args": args.worker_arg, **figures}))


def _model(sim, folder: Path) -> Path:
    settings = Settings(fusion={"cache_dir": str(folder / "cache")})
    model = training.train(sim.orders[sim.orders["ordered_at"] < sim.as_of], sim.events,
                           sim.labels.set_index("customer_id"), sim.as_of, settings)
    artifact.save(model, folder / "model.zip")
    return folder / "model.zip"


def _config(folder: Path, model: Path) -> dict:
    return {"service": {"data_dir": str(folder), "requeue_after_seconds": 600},
            "alerts": {"model_path": str(model)}, "identity": {"pepper": "bench-pepper"},
            "fusion": {"cache_dir": str(folder / "cache")}}


def _measure(folder: Path, config: dict, worker_env: dict, worker_args: list[str], store: Store, messages,
             timeout: float) -> dict:
    path = folder / "churnsignal.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    log = folder / "worker.log"
    env = os.environ | {"CHURNSIGNAL_CONFIG": str(path)} | worker_env
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", "worker", "--no-beat", *worker_args],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: "ready." in log.read_text(errors="replace"), worker, 300, log)
        started_rss = _status(worker.pid)["VmRSS"]
        ids = _store_messages(store, messages)
        celery = make_celery(Settings(**config))
        started = time.monotonic()
        for event_id in ids:
            enqueue_events(celery, [event_id])
        first_batch = None
        tree_peak = 0
        with tqdm(total=len(ids), unit="msg", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
            done = 0
            while done < len(ids):
                assert worker.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() - started < timeout, f"{done} of {len(ids)} done in {timeout:.0f} s"
                time.sleep(0.5)
                now_done = _done(store, ids)
                tree_peak = max(tree_peak, _tree_pss(worker.pid))
                if now_done and first_batch is None:
                    first_batch = _status(worker.pid)["VmRSS"]
                bar.update(now_done - done)
                done = now_done
        seconds = time.monotonic() - started
        final = _status(worker.pid)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    return {"rss_after_start_mb": round(started_rss / MB), "rss_after_first_batch_mb": round(first_batch / MB),
            "rss_after_all_mb": round(final["VmRSS"] / MB), "peak_rss_mb": round(final["VmHWM"] / MB),
            "process_tree_peak_pss_mb": round(tree_peak / MB),
            "child_processes_replaced": log.read_text(errors="replace").count("exceeding memory limit"),
            "seconds": round(seconds, 1), "messages_per_second": round(len(ids) / seconds, 2)}


def _store_messages(store: Store, messages) -> list[int]:
    """The messages as the webhook stores them: one delivery each, text masked, status received."""
    ids = []
    with store.session() as session:
        for number, row in enumerate(messages.itertuples()):
            delivery = Delivery(source="generic:bench", received_at=utcnow(), body="{}")
            session.add(delivery)
            session.flush()
            event = Event(delivery_id=delivery.id, source="generic:bench", external_id=str(number),
                          ticket_id=f"{row.customer_id}-{row.ticket_id}", customer_id=row.customer_id,
                          author="customer", channel="chat", text=mask_pii(row.text).text,
                          created_at=row.created_at.to_pydatetime(), received_at=utcnow(), status="received")
            session.add(event)
            session.flush()
            ids.append(event.id)
    return ids


def _done(store: Store, ids: list[int]) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Event).where(Event.id.in_(ids), Event.status.in_(DONE)))


def _tree_pss(pid: int) -> int:
    """Proportional set size, in bytes, of ``pid`` and all its descendants."""
    total = 0
    for process in _tree(pid):
        try:
            rollup = Path(f"/proc/{process}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):  # a child that has just been replaced
            continue
        total += next(int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:"))
    return total


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return [pid]
    return [pid] + [grandchild for child in children for grandchild in _tree(int(child))]


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def _wait(condition, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.3)


if __name__ == "__main__":
    main()
