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


# --- Stand-in helpdesk APIs: a Flask app served for one test, and the session that calls it. ---

from collections.abc import Callable

import requests
from flask import Flask
from werkzeug.serving import make_server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """The session outbound calls, pulls and read-backs are made with."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve a stand-in helpdesk's Flask app on a free local port for one test: its base URL."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


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


# --- Pages for people: a seeded store, the app on a real port, and a real browser. ---

import random
from datetime import datetime, timedelta

# Who may log in to the pages in these tests: name -> (role, password).
PAGE_USERS = {"qa-lead": ("qa", "correct horse battery staple"), "admin": ("admin", "another long passphrase")}
# Debian's chromium package; Playwright drives it and never downloads a browser of its own.
CHROMIUM = os.environ.get("CHURNSIGNAL_TEST_CHROMIUM", "/usr/bin/chromium")

SEED_TEXTS = {
    "LOGISTICS": "快递三天都没到，电话[PHONE]也打不通",
    "REFUND": "退款申请了一周还没处理",
    "QUALITY": "质量太差了，用了两天就坏",
    "SERVICE": "客服态度很差，一直不回消息",
    "PRICE": "刚买就降价，太坑了",
    "COMPETITOR": "京东上便宜多了，以后不在这买了",
}
# The word the entity pipeline marks in each seed text (events.entity_spans), with its label.
SEED_ENTITIES = {"快递": "LOGISTICS", "退款": "REFUND", "质量": "QUALITY", "客服": "SERVICE", "降价": "PRICE",
                 "京东": "COMPETITOR"}


def seed_spans(text: str) -> list[dict] | None:
    """Where :data:`SEED_ENTITIES` stand in ``text``, as the worker stores them; None where none does."""
    spans = [{"start": text.index(word), "end": text.index(word) + len(word), "label": label}
             for word, label in SEED_ENTITIES.items() if word in text]
    return spans or None


def seed_trends(store, now: datetime | None = None, seed: int = 0, settings=None) -> None:
    """Forty days of analysed support traffic, scores and alerts, up to ``now`` (UTC), and its daily roll-ups.

    Four helpdesks, three channels, every topic, calm turns and complaints, agent replies
    (never complaints), one complaint without a topic, customers at every tier, and a
    LOGISTICS spike three days ago: what the QA views and the badge read. Numbers are drawn
    from ``seed``; tests compute what they expect from the store, never from this function.
    """
    from churnsignal.config import Settings
    from churnsignal.store import Alert, AlertHandling, Customer, Delivery, Event, Order, RiskScore, utcnow
    from churnsignal import rollups

    rng = random.Random(seed)
    now = now or utcnow()
    sources = ("zendesk", "chatwoot", "freshdesk", "generic:shopline")
    channels = ("chat", "ticket", "email")
    tiers = {f"c{n}": tier for n, tier in enumerate(("red", "red", "yellow", "yellow", "blue", None, None, "blue"))}
    with store.session() as session:
        delivery = Delivery(source="seed", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        number = 0

        def add(day: int, customer: str, author: str, prob: float | None, entities: dict | None, text: str,
                spread: bool = True) -> Event:
            nonlocal number
            number += 1
            at = now - timedelta(days=day, minutes=rng.randrange(24 * 60) if spread else 0)
            event = Event(delivery_id=delivery.id, source=sources[number % len(sources)], external_id=f"m{number}",
                          ticket_id=str(1000 + number // 3), customer_id=customer, author=author,
                          channel=channels[number % len(channels)], text=text, created_at=at, received_at=at,
                          status="analysed" if author == "customer" else "stored", queued_at=at, analysed_at=at,
                          negative_prob=prob, negative_word_share=0.1 if prob is not None else None,
                          entities=entities, entity_spans=seed_spans(text) if author == "customer" else None)
            session.add(event)
            return event

        for day in range(40):
            for _ in range(rng.randrange(2, 6)):
                topic = rng.choice(list(SEED_TEXTS))
                # A delivery complaint may also be a refund one that names no refund word: a topic
                # read from the turns before (nlp/dialogue_topics.py), with no span.
                entities = {topic: 1} | ({"REFUND": 1} if topic == "LOGISTICS" and rng.random() < 0.3 else {})
                add(day, rng.choice(list(tiers)), "customer", rng.uniform(0.5, 0.99), entities, SEED_TEXTS[topic])
            for _ in range(rng.randrange(1, 4)):
                add(day, rng.choice(list(tiers)), "customer", rng.uniform(0.0, 0.3), {}, "好的，谢谢")
            # An agent's apology quotes the complaint: never a complaint itself.
            add(day, rng.choice(list(tiers)), "agent", 0.9, {"LOGISTICS": 1}, "抱歉快递慢了，我们马上催")
        add(5, "c0", "customer", 0.8, {}, "太失望了")
        for _ in range(8):
            add(3, rng.choice(list(tiers)), "customer", 0.95, {"LOGISTICS": 1}, SEED_TEXTS["LOGISTICS"], spread=False)
        session.flush()

        for customer, tier in tiers.items():
            session.add(Customer(customer_id=customer, churn_prob=0.8 if tier else 0.05, tier=tier,
                                 scored_at=now))
        triggers = session.query(Event).filter(Event.author == "customer", Event.negative_prob > 0.5).all()
        for index, event in enumerate(rng.sample(triggers, 30)):
            tier = tiers[event.customer_id] or "blue"
            score = RiskScore(customer_id=event.customer_id, event_id=event.id, scored_at=event.created_at,
                              as_of=event.created_at, churn_prob=0.75, tier=tier,
                              reasons=[{"zh": "投诉增多", "en": "more complaints"}], driver="service",
                              action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"},
                              service_signal=True)
            session.add(score)
            session.flush()
            if index % 2 == 0:
                alert = Alert(idempotency_key=f"seed-{index}", customer_id=event.customer_id, score_id=score.id,
                              source=event.source, ticket_id=event.ticket_id, tier=tier, churn_prob=0.75,
                              reasons=score.reasons, driver="service", action=score.action,
                              created_at=event.created_at, due_at=event.created_at + timedelta(hours=4),
                              status="delivered", attempts=1, delivered_at=event.created_at)
                session.add(alert)
                session.flush()
                if index % 3 != 1:
                    # Most alerts are handled, some after their due time.
                    late = timedelta(hours=9 if index % 3 == 2 else 1)
                    session.add(AlertHandling(alert_id=alert.id, handled_by="agent.zhang", via="badge",
                                              handled_at=event.created_at + late))
        # What each customer bought before it all (c7 never ordered); categories for the heat map.
        for number, customer in enumerate(sorted(tiers)[:-1]):
            session.add(Order(order_id=f"old{number}", customer_id=customer, ordered_at=now - timedelta(days=90),
                              amount=59.0, category=("服饰", "数码", "食品")[number % 3], status="paid"))
        # Some customers order again (and one only asks for a refund).
        for number, customer in enumerate(("c0", "c2", "c4")):
            session.add(Order(order_id=f"o{number}", customer_id=customer, ordered_at=now - timedelta(hours=2),
                              amount=99.0, status="paid"))
        session.add(Order(order_id="o-refund", customer_id="c1", ordered_at=now - timedelta(hours=1), amount=-99.0,
                          status="refunded"))
    # Stored directly, not through the worker: counted into the roll-ups as for an existing store.
    rollups.rebuild(store, settings or Settings())


@pytest.fixture
def seeded_store(store):
    """The ``store`` fixture (SQLite, then PostgreSQL) holding :func:`seed_trends`' traffic."""
    seed_trends(store)
    return store


@pytest.fixture
def configured(seeded_store, monkeypatch, tmp_path):
    """``seeded_store`` as the store the CLI's settings name (and a data folder of its own)."""
    from churnsignal.config import get_settings

    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABASE_URL", seeded_store.url)
    get_settings.cache_clear()
    yield seeded_store
    get_settings.cache_clear()


@pytest.fixture
def pages_settings(tmp_path: Path):
    """Settings with the QA workspace on: a qa user and an admin, cookies allowed over plain HTTP."""
    from churnsignal.config import Settings
    from churnsignal.webhook.pages.login import hash_password

    return Settings(
        service={"data_dir": str(tmp_path), "api_token": "t" * 32},
        identity={"pepper": "p" * 64},
        helpdesks={"zendesk": {"base_url": "https://shop.zendesk.example"},
                   "chatwoot": {"base_url": "https://chat.example", "account_id": 7}},
        qa={"users": [{"name": name, "role": role, "password_hash": hash_password(password)}
                      for name, (role, password) in PAGE_USERS.items()],
            "secret_key": "s" * 64, "secure_cookies": False})


@pytest.fixture
def page_users() -> dict[str, tuple[str, str]]:
    """The people ``pages_settings`` lets in: name -> (role, password)."""
    return dict(PAGE_USERS)


@dataclass
class LiveApp:
    url: str
    store: object
    settings: object


@pytest.fixture
def live_app(pages_settings, tmp_path: Path) -> Iterator[LiveApp]:
    """The web app on a free local port, in a thread, over a migrated SQLite store seeded by :func:`seed_trends`."""
    from churnsignal.store import Store
    from churnsignal.webhook.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'pages.db'}")
    store.upgrade()
    seed_trends(store)
    app = create_app(pages_settings, store=store)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", store, pages_settings)
    finally:
        server.shutdown()
        thread.join()
        store.dispose()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (the system's), for the whole test session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is needed by this test and is not at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (own cookies), closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where browser tests put their screenshots: ``$CHURNSIGNAL_SCREENSHOTS`` when set (``make
    screenshots`` points it at docs/images, for docs/qa.md and docs/agents.md), else the test's temporary folder."""
    folder = Path(os.environ.get("CHURNSIGNAL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def logged_in(page, live_app):
    """A page logged in to ``live_app`` as the qa user, through the login form."""
    name, (_role, password) = next(iter(PAGE_USERS.items()))
    page.goto(f"{live_app.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_app.url}/qa/")
    return page
