"""End to end with real processes: a signed webhook in → store → `churnsignal worker` → a note on the ticket.

Every scenario runs on the embedded defaults (SQLite store, SQLite broker) and on this
machine's real PostgreSQL and Redis. The worker is a real ``churnsignal worker`` process
with the fusion model trained here on simulated history; the helpdesk is the stand-in.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient
from sqlalchemy import func, select

from churnsignal.config import Settings
from churnsignal.fusion import artifact, simulation, training
from churnsignal.store import Alert, Event, RiskScore, Store, utcnow
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks.base import Requester, SupportEvent
from churnsignal.webhook.standin import StandIn

PHONE, EMAIL = "13812345678", "wang.lei@example.com"
COMPLAINT = f"快递一个星期都没到，客服也不回消息，我要退款，电话{PHONE}，邮箱{EMAIL}"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[simulation.Simulation, Path]:
    """Simulated history for 300 real CDNOW customers and a fusion model trained on it."""
    folder = tmp_path_factory.mktemp("model")
    sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(None),
                              simulation.SimulationParams(customers=300), seed=0)
    settings = Settings(fusion={"cache_dir": str(folder / "cache")})
    model = training.train(sim.orders, sim.events, sim.labels.set_index("customer_id"), sim.as_of, settings)
    artifact.save(model, folder / "model.zip")
    return sim, folder / "model.zip"


@dataclass
class Stack:
    """The web app (in this process), a stand-in helpdesk and the means to start workers."""

    settings: Settings
    store: Store
    client: FlaskClient
    standin: StandIn
    env: dict[str, str]
    folder: Path
    workers: list[subprocess.Popen]

    def start_worker(self, name: str = "worker") -> Path:
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", "worker", "--no-beat"], env=self.env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(process)
        wait_for(lambda: "ready." in log.read_text(errors="replace") or process.poll() is not None, 120)
        assert process.poll() is None, log.read_text()
        return log

    def kill_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def post(self, event: SupportEvent) -> int:
        headers, body = helpdesks.get(event.source, self.settings.helpdesks).signed_request(event, utcnow())
        return self.client.post(f"/webhooks/{event.source}", data=body, headers=headers).status_code

    def count(self, model, *where) -> int:
        with self.store.session() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture(params=["embedded", "services"])
def stack(request, tmp_path: Path, history) -> Iterator[Stack]:
    _, model_path = history
    if request.param == "embedded":
        database, broker = f"sqlite:///{tmp_path / 'churnsignal.db'}", f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    else:
        database, broker = request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url")
    with StandIn() as standin:
        config = {
            "service": {"data_dir": str(tmp_path), "database_url": database, "broker_url": broker,
                        "api_token": "test-token", "requeue_after_seconds": 3},
            "alerts": {"model_path": str(model_path), "require_service_signal": False},
            "identity": {"pepper": "test-pepper"},
            # One tier from 0: every scored customer is alerted, so the test checks the plumbing.
            "fusion": {"cache_dir": str(model_path.parent / "cache"),
                       "tiers": [{"name": "red", "above": 0.0, "response_hours": 4}]},
            "helpdesks": {"zendesk": {"signing_secret": "s3cret", "base_url": standin.url("zendesk"),
                                      "email": "bot@example.com", "api_token": "t"},
                          "timeout_seconds": 1.0, "backoff_seconds": 0.5, "max_attempts": 6},
        }
        path = tmp_path / "churnsignal.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        env = os.environ | {"CHURNSIGNAL_CONFIG": str(path)}
        settings = Settings(**config)
        store = Store(database)
        store.upgrade()
        stack = Stack(settings, store, create_app(settings, store=store).test_client(), standin, env, tmp_path, [])
        try:
            yield stack
        finally:
            stack.kill_workers()
            store.dispose()


def wait_for(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.2)


def customer_with_orders(stack: Stack, history) -> str:
    """A simulated customer, their orders sent through the orders API."""
    sim, _ = history
    customer = sim.orders.loc[sim.orders["ordered_at"] < sim.as_of, "customer_id"].iloc[0]
    rows = [{"customer_id": r.customer_id, "order_id": r.order_id, "ordered_at": r.ordered_at.isoformat(),
             "amount": r.amount} for r in sim.orders[sim.orders["customer_id"] == customer].itertuples()]
    answer = stack.client.post("/api/orders", json={"orders": rows}, headers={"Authorization": "Bearer test-token"})
    assert answer.status_code == 200, answer.get_json()
    return customer


def message(customer: str, number: int = 1, ticket: str = "9001", author: str = "customer") -> SupportEvent:
    return SupportEvent(source="zendesk", event_id=f"comment-{customer}-{number}", ticket_id=ticket, author=author,
                        text=COMPLAINT, created_at=utcnow() - timedelta(minutes=5),
                        requester=Requester(id="361", external_id=customer))


def test_a_signed_message_becomes_one_alert_on_its_ticket(stack: Stack, history, caplog) -> None:
    customer = customer_with_orders(stack, history)
    caplog.set_level(logging.DEBUG)
    assert stack.post(message(customer)) == 202
    assert stack.post(message(customer)) == 200  # the helpdesk redelivers: stored and processed once
    log = stack.start_worker()
    wait_for(lambda: stack.standin.notes("9001"), 90)
    stack.standin.wait_idle()
    time.sleep(1)

    notes = stack.standin.notes("9001")
    assert len(notes) == 1
    with stack.store.session() as session:
        risk = session.scalars(select(RiskScore)).one()
        alert = session.scalars(select(Alert)).one()
        event = session.scalars(select(Event)).one()
    assert (event.status, alert.status, alert.attempts) == ("analysed", "delivered", 1)
    assert event.negative_prob > 0.5 and event.entities, "the complaint was read"
    assert risk.service_signal is True, "a complaint is a service signal, stored with the score"
    body = notes[0]["body"]
    assert f"{risk.churn_prob:.0%}" in body and "RED" in body
    for reason in risk.reasons:
        assert reason["zh"] in body and reason["en"] in body
    assert risk.action["zh"] in body and risk.action["en"] in body
    assert "churn-risk-red" in stack.standin.ticket("zendesk", "9001")["tags"]
    assert alert.due_at - alert.created_at == timedelta(hours=4)

    # Masked before it was stored, and never logged in clear, by the web app or the worker.
    assert PHONE not in event.text and EMAIL not in event.text
    for text in (log.read_text(errors="replace"), caplog.text):
        assert PHONE not in text and EMAIL not in text

    risk_document = stack.client.get("/api/tickets/zendesk/9001/risk", headers={"Authorization": "Bearer test-token"})
    assert risk_document.status_code == 200
    assert risk_document.get_json()["tier"] == "red"


def test_a_struggling_helpdesk_gets_the_alert_later_exactly_once(stack: Stack, history) -> None:
    customer = customer_with_orders(stack, history)
    stack.standin.fail_next(500, method="PUT")
    stack.standin.fail_next(429, retry_after=1, method="PUT")
    stack.standin.delay_next(2.5, method="PUT")  # longer than the 1 s timeout, and still applied
    assert stack.post(message(customer, ticket="9002")) == 202
    stack.start_worker()
    wait_for(lambda: stack.count(Alert, Alert.status == "delivered") == 1, 120)
    stack.standin.wait_idle()
    assert len(stack.standin.notes("9002")) == 1
    with stack.store.session() as session:
        alert = session.scalars(select(Alert)).one()
    # Three scripted failures, so at least four attempts; one more when a retry overlaps the
    # slow request still being applied (the stand-in answers it 409, like a payment API).
    assert alert.attempts >= 4 and alert.delivered_at is not None


def test_a_worker_killed_mid_task_leaves_nothing_undone(stack: Stack, history) -> None:
    customer = customer_with_orders(stack, history)
    assert stack.post(message(customer, ticket="9003")) == 202
    log = stack.start_worker("first")
    # The first task loads the language models for seconds: kill the worker while it does.
    wait_for(lambda: re.search(r"process_events\[.*\] received", log.read_text(errors="replace")), 60)
    stack.kill_workers()
    assert stack.count(Event, Event.status == "analysed") == 0
    stack.start_worker("second")
    wait_for(lambda: stack.count(Alert, Alert.status == "delivered") == 1, 120)
    stack.standin.wait_idle()
    time.sleep(2)  # a second copy of the task, had there been one, would have run by now
    assert stack.count(RiskScore) == 1
    assert len(stack.standin.notes("9003")) == 1
