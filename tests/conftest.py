"""Test-wide settings."""

import os

from hypothesis import settings

# In CI, property tests draw the same examples every run, so a landing never depends on
# luck; locally they explore new examples each run.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# --- The real services: a test that needs one that is down fails, it never skips. ---

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ADMIN_URL = os.environ.get("CHURNSIGNAL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHURNSIGNAL_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"churnsignal_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is needed by this test and is not answering: {exc}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis, emptied before and after the test, so its queue starts empty."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed by this test and is not answering: {exc}")
    # Tests run one at a time: the suite owns this Redis database and empties it around each test.
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """Each store test runs on the embedded default (SQLite) and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'churnsignal.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str):
    """A migrated, empty store."""
    from churnsignal.store import Store

    store = Store(database_url)
    store.upgrade()
    yield store
    store.dispose()


# --- A bare HTTP server that answers every request the same way and remembers them. ---

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorder:
    """Answers every request with ``status`` and ``headers``, and records each one it got.

    The stand-in models the helpdesks' APIs; this one is for what no helpdesk API should do
    (redirect) and for where no request may arrive at all.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                body = b"{}"
                self.send_response(recorder.status)
                for name, value in {"Content-Type": "application/json", **recorder.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"


@pytest.fixture
def recorder() -> Iterator:
    """``recorder(status=200, headers={})``: a started :class:`Recorder`, stopped after the test."""
    started: list[Recorder] = []

    def start(status: int = 200, headers: dict[str, str] | None = None) -> Recorder:
        server = Recorder(status, headers or {})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- A fusion model for tests that run the worker's scoring in process. ---


@pytest.fixture(scope="session")
def fusion_model_path(tmp_path_factory) -> Path:
    """A purchase-only fusion model trained on 300 real CDNOW customers (about half a minute).

    Enough to score a customer through the worker's own path; what it predicts is tested
    in test_fusion_model.py.
    """
    import pandas as pd

    from churnsignal.config import Settings
    from churnsignal.fusion import artifact
    from churnsignal.fusion.simulation import cdnow_orders, cdnow_transactions
    from churnsignal.fusion.training import train

    as_of = pd.Timestamp("1997-10-01")
    rows = cdnow_transactions()
    chosen = rows["customer_id"].drop_duplicates().sample(300, random_state=1)
    orders = cdnow_orders(rows[rows["customer_id"].isin(chosen)].reset_index(drop=True))
    bought_later = orders.loc[orders["ordered_at"] >= as_of, "customer_id"].unique()
    labels = pd.DataFrame({"churned": (~chosen.isin(bought_later)).astype(int).to_numpy()},
                          index=pd.Index(chosen.to_numpy(), name="customer_id"))
    path = tmp_path_factory.mktemp("fusion") / "model.zip"
    artifact.save(train(orders, None, labels, as_of, Settings(), seed=0), path)
    return path


@dataclass
class InProcessWorker:
    """The worker's own tasks run in this process, one at a time, in the order they were queued.

    What the web app queued is taken off the real Redis; what a task queues (an alert to
    deliver, a retry) is kept in :attr:`queued` instead of the broker. A retry's countdown
    is not waited for: the next :meth:`run` makes the attempt.
    """

    redis_url: str
    queued: list[tuple[str, list]] = field(default_factory=list)

    def take_from_broker(self) -> list[tuple[str, list]]:
        """The task messages the web app put on Redis (name, args), removed from it."""
        import base64
        import json

        import redis

        client = redis.Redis.from_url(self.redis_url)
        messages = [json.loads(raw) for raw in client.lrange("churnsignal", 0, -1)]
        client.delete("churnsignal")
        taken = [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]
        self.queued.extend(taken)
        return taken

    def run(self) -> list[str]:
        """Run everything queued (from the broker too) until nothing is left; the task names run."""
        from churnsignal.worker import tasks

        names = {task.name: task for task in (tasks.process_events, tasks.deliver_alert, tasks.sweep)}
        self.take_from_broker()
        ran = []
        while self.queued:
            name, args = self.queued.pop(0)
            names[name](*args)
            ran.append(name)
        return ran


@pytest.fixture
def worker(monkeypatch, redis_url) -> Iterator:
    """``worker(settings, store)``: an :class:`InProcessWorker` for them."""
    from churnsignal.worker import tasks

    def start(settings, store) -> InProcessWorker:
        running = InProcessWorker(redis_url)
        monkeypatch.setattr(tasks, "get_settings", lambda: settings)
        monkeypatch.setattr(tasks, "_store", lambda: store)
        for task in (tasks.process_events, tasks.deliver_alert):
            monkeypatch.setattr(task, "apply_async", lambda args, task=task, **_: running.queued.append(
                (task.name, list(args))))
        return running

    yield start
