"""Linking an identity after its requester wrote: their provisional ``hd-`` customer becomes the real one.

The messages go through the real web app and the worker's own tasks (in process); the store is
SQLite and the real PostgreSQL, the broker the real Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from churnsignal.config import Settings
from churnsignal import rollups
from churnsignal.store import Customer, CustomerRollup, DailyRollup, Event, RiskScore, utcnow
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import Requester, SupportEvent
from churnsignal.webhook.identity import key_hash, provisional
from churnsignal.worker.app import PROCESS_EVENTS

TOKEN = "relink-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEPPER = "relink-pepper"
EMAIL = "li.lei@example.com"
MAPPING = {"event_id": "message.id", "ticket_id": "ticket.id", "text": "message.text",
           "created_at": "message.at", "author_role": "message.role", "requester_email": "ticket.email"}


@pytest.fixture
def settings(tmp_path, redis_url, fusion_model_path) -> Settings:
    return Settings(
        service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": TOKEN},
        helpdesks={"generic": {"desk": {"secret": "desk-secret", "mapping": MAPPING}}},
        identity={"pepper": PEPPER},
        alerts={"model_path": fusion_model_path, "require_service_signal": False},
        fusion={"cache_dir": tmp_path / "cache", "tiers": [{"name": "red", "above": 0.0, "response_hours": 4}]})


@pytest.fixture
def client(settings, store):
    return create_app(settings, store=store).test_client()


def say(client, settings, number: int, text: str, email: str = EMAIL, at: datetime | None = None) -> int:
    event = SupportEvent(source="generic:desk", event_id=f"m{number}", ticket_id="88", author="customer", text=text,
                         created_at=at or datetime.now(UTC) - timedelta(minutes=10 - number),
                         requester=Requester(email=email))
    headers, body = helpdesks.get("generic:desk", settings.helpdesks).signed_request(event, datetime.now(UTC))
    return client.post("/webhooks/generic/desk", data=body, headers=headers).status_code


def link(client, customer_id: str = "shop-7", email: str = EMAIL.upper()):
    response = client.post("/api/identities", headers=AUTH,
                           json={"identities": [{"customer_id": customer_id, "email": email}]})
    assert response.status_code == 200, response.json
    return response.json


def customers_of_events(store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(Event.customer_id).order_by(Event.id)))


def customer_rollups(store) -> dict[tuple, tuple[int, int]]:
    with store.session() as session:
        return {(r.customer_id, r.day, r.source, r.channel, r.category, r.topic): (r.customer_turns, r.complaints)
                for r in session.scalars(select(CustomerRollup))}


def daily_rollups(store) -> dict[tuple, tuple[int, int, int]]:
    with store.session() as session:
        return {(r.day, r.source, r.channel, r.category, r.topic): (r.messages, r.customer_turns, r.complaints)
                for r in session.scalars(select(DailyRollup))}


def buy(client, customer_id: str = "shop-7") -> None:
    now = utcnow()
    orders = [{"order_id": f"o{n}", "customer_id": customer_id, "amount": 120.0 + n,
               "ordered_at": (now - timedelta(days=30 * n + 5)).isoformat() + "Z"} for n in range(4)]
    assert client.post("/api/orders", headers=AUTH, json={"orders": orders}).status_code == 200


def test_linking_moves_earlier_messages_and_rescores_the_customer(client, settings, store, worker):
    running = worker(settings, store)
    assert say(client, settings, 1, "快递一个星期都没到") == 202
    assert say(client, settings, 2, "客服也不回消息，我要退款") == 202
    ghost = provisional(key_hash("email", EMAIL, None, PEPPER))
    assert customers_of_events(store) == [ghost, ghost]
    running.run()  # analysed; an hd- customer has no orders, so is not scored
    assert client.get(f"/api/customers/{ghost}/risk", headers=AUTH).json["churn_prob"] is None

    buy(client)
    counted = customer_rollups(store)
    assert {key[0] for key in counted} == {ghost}
    assert link(client) == {"linked": 1, "moved_events": 2}
    assert customers_of_events(store) == ["shop-7", "shop-7"]
    # The tier views' per-customer roll-ups moved with the messages.
    assert customer_rollups(store) == {("shop-7", *key[1:]): counts for key, counts in counted.items()}
    [(name, [queued])] = running.take_from_broker()
    with store.session() as session:
        latest = session.scalar(select(Event.id).where(Event.external_id == "m2"))
        assert session.get(Event, latest).status == "queued"
    assert (name, queued) == (PROCESS_EVENTS, [latest])

    running.run()
    risk = client.get("/api/customers/shop-7/risk", headers=AUTH).json
    assert risk["churn_prob"] is not None and risk["tier"] == "red"
    assert [m["text"] for m in risk["last_messages"]] == ["客服也不回消息，我要退款", "快递一个星期都没到"]
    assert client.get(f"/api/customers/{ghost}/risk", headers=AUTH).status_code == 404

    # What the requester writes now goes to the customer at once.
    assert say(client, settings, 3, "还是没有回复") == 202
    assert customers_of_events(store)[-1] == "shop-7"


def test_the_rescore_after_a_link_counts_no_message_twice(client, settings, store, worker):
    """The message a link queues again is scored, not analysed and counted again: the roll-ups
    after the rescore are what a recount of the messages gives."""
    running = worker(settings, store)
    assert say(client, settings, 1, "快递一个星期都没到") == 202
    assert say(client, settings, 2, "客服也不回消息，我要退款") == 202
    running.run()
    buy(client)
    daily = daily_rollups(store)
    with store.session() as session:
        analysed = {e.external_id: (e.status, e.analysed_at, e.negative_prob) for e in session.scalars(select(Event))}
    assert link(client)["moved_events"] == 2
    moved = customer_rollups(store)
    assert {key[0] for key in moved} == {"shop-7"}

    running.run()
    assert (daily_rollups(store), customer_rollups(store)) == (daily, moved)
    with store.session() as session:
        assert session.scalar(select(func.count()).where(RiskScore.customer_id == "shop-7")) == 1
        assert {e.external_id: (e.status, e.analysed_at, e.negative_prob)
                for e in session.scalars(select(Event))} == analysed
    rollups.rebuild(store, settings)
    assert (daily_rollups(store), customer_rollups(store)) == (daily, moved)


def test_linking_twice_changes_nothing(client, settings, store, worker):
    running = worker(settings, store)
    assert say(client, settings, 1, "快递一个星期都没到") == 202
    buy(client)
    running.run()
    assert link(client)["moved_events"] == 1
    running.run()

    def state():
        with store.session() as session:
            return (customers_of_events(store), session.scalar(select(func.count()).select_from(RiskScore)),
                    list(session.scalars(select(Event.status))))

    before = state()
    assert link(client) == {"linked": 1, "moved_events": 0}
    assert running.take_from_broker() == []
    assert state() == before


def test_only_the_linked_keys_provisional_customer_moves_and_its_risk_row_goes(client, settings, store, worker):
    worker(settings, store)
    assert say(client, settings, 1, "快递一个星期都没到") == 202
    assert say(client, settings, 2, "我也要退款", email="han.meimei@example.com") == 202
    ghost = provisional(key_hash("email", EMAIL, None, PEPPER))
    other = provisional(key_hash("email", "han.meimei@example.com", None, PEPPER))
    # A provisional customer scored anyway (orders imported under its id): that risk described
    # someone else's history and must not remain as a customer of its own.
    with store.session() as session:
        session.add(Customer(customer_id=ghost, churn_prob=0.4, tier="red", scored_at=utcnow()))
    assert link(client)["moved_events"] == 1
    assert customers_of_events(store) == ["shop-7", other]
    with store.session() as session:
        assert session.get(Customer, ghost) is None
    assert client.get(f"/api/customers/{ghost}/risk", headers=AUTH).status_code == 404
