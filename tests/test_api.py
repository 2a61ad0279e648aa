"""The integrator API: orders and identities in, risk documents out, behind the bearer token.

Runs on SQLite and on the real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from churnsignal.config import Settings
from churnsignal.fusion.inputs import InputError
from churnsignal.store import Alert, Customer, Delivery, Event, Identity, Order, RiskScore
from churnsignal.webhook.app import create_app
from churnsignal.webhook.orders import OrderRowsError, import_csv, upsert_orders

TOKEN = "test-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(tmp_path, redis_url, store, **service):
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": TOKEN} | service,
                        identity={"pepper": "test-pepper"})
    return create_app(settings, store=store)


@pytest.fixture
def client(tmp_path, redis_url, store):
    return make_app(tmp_path, redis_url, store).test_client()


def order(order_id, customer_id="c1", amount=100.0, **extra):
    return {"customer_id": customer_id, "order_id": order_id, "ordered_at": "2025-01-05T10:00:00+08:00",
            "amount": amount, **extra}


def stored_orders(store) -> dict[str, Order]:
    with store.session() as session:
        return {o.order_id: o for o in session.scalars(select(Order))}


# ---------------------------------------------------------------- authentication


def test_every_route_needs_the_token(client, tmp_path, redis_url, store):
    routes = [("get", "/api/customers/c1/risk"), ("get", "/api/tickets/zendesk/1/risk"),
              ("post", "/api/orders"), ("post", "/api/identities")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = getattr(client, method)(path, headers=headers, json={})
            assert response.status_code == 401, (path, headers)
            assert response.is_json and "token" in response.json["error"]
    closed = make_app(tmp_path, redis_url, store, api_token=None).test_client()
    response = closed.get("/api/customers/c1/risk", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    assert "CHURNSIGNAL_SERVICE__API_TOKEN" in response.json["error"]


# ---------------------------------------------------------------- orders


def test_orders_are_upserted_by_order_id(client, store):
    response = client.post("/api/orders", headers=AUTH, json={"orders": [
        order("o1"), order("o2", "c2", 0, category="图书", status="REFUNDED")]})
    assert response.status_code == 200, response.json
    assert response.json == {"inserted": 2, "updated": 0}
    o1, o2 = stored_orders(store).values()
    assert o1.ordered_at == datetime(2025, 1, 5, 2, 0) and o1.status == "paid" and o1.category is None
    assert (o2.customer_id, o2.amount, o2.category, o2.status) == ("c2", 0.0, "图书", "refunded")

    response = client.post("/api/orders", headers=AUTH, json={"orders": [
        order("o1", amount=80.5, ordered_at="2025-01-06"), order("o3", 12345)]})
    assert response.json == {"inserted": 1, "updated": 1}
    orders = stored_orders(store)
    assert len(orders) == 3
    assert orders["o1"].amount == 80.5 and orders["o1"].ordered_at == datetime(2025, 1, 6)
    assert orders["o3"].customer_id == "12345"


def test_a_batch_with_bad_rows_is_refused_whole(client, store):
    rows = [order("ok"), order("o2", amount=-3), order("o3", amount="12"), {"order_id": "o4", "amount": 1},
            order("o5", ordered_at="last tuesday"), order("o6", status="shipped"), order("o7", amount=True), 7]
    response = client.post("/api/orders", headers=AUTH, json={"orders": rows})
    assert response.status_code == 422
    problems = response.json["problems"]
    assert "invalid" in response.json["error"]
    assert any(p.startswith("orders[1].amount: must be a non-negative number") for p in problems)
    assert "orders[2].amount: must be a non-negative number" in problems
    assert "orders[3].customer_id: must be a non-empty string" in problems
    assert "orders[3].ordered_at: must be an ISO 8601 date or time string" in problems
    assert any(p.startswith("orders[4].ordered_at:") for p in problems)
    assert "orders[5].status: must be one of paid, refunded" in problems
    assert "orders[6].amount: must be a non-negative number" in problems
    assert "orders[7]: must be an object" in problems
    assert not any(p.startswith("orders[0]") for p in problems)
    assert stored_orders(store) == {}


def test_orders_body_shape_size_and_json(client, tmp_path, redis_url, store):
    for body in ({}, {"orders": {}}, {"orders": []}, [order("o1")]):
        response = client.post("/api/orders", headers=AUTH, json=body)
        assert response.status_code == 422 and response.json["error"]
    too_many = client.post("/api/orders", headers=AUTH, json={"orders": [order(f"o{i}") for i in range(10_001)]})
    assert too_many.status_code == 422 and "10000" in too_many.json["error"]
    bad = client.post("/api/orders", headers=AUTH, data=b'{"orders": [', content_type="application/json")
    assert bad.status_code == 400 and "not JSON" in bad.json["error"]
    # A batch may be larger than a webhook body.
    small = make_app(tmp_path, redis_url, store, max_body_bytes=2048).test_client()
    rows = [order(f"big-{i}", category="家用电器" * 5) for i in range(60)]
    response = small.post("/api/orders", headers=AUTH, json={"orders": rows})
    assert response.status_code == 200 and response.json == {"inserted": 60, "updated": 0}
    assert small.post("/webhooks/zendesk", data=b"x" * 4096).status_code == 413
    assert stored_orders(store).keys() == {f"big-{i}" for i in range(60)}


def test_import_csv_uses_the_fusion_format(tmp_path, store):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,ordered_at,amount,category,status\n"
                    "c1,o1,2025-01-05,10.5,book,\n"
                    "c1,o2,2025-02-05T10:00:00+08:00,3,,refunded\n"
                    "c2,o1,2025-01-07,11,book,paid\n", encoding="utf-8")
    assert import_csv(store, path) == (2, 0)
    orders = stored_orders(store)
    # A repeated order id: the later line corrects the earlier one.
    assert (orders["o1"].customer_id, orders["o1"].amount) == ("c2", 11.0)
    assert orders["o2"].ordered_at == datetime(2025, 2, 5, 2, 0) and orders["o2"].category is None
    assert import_csv(store, path) == (0, 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,order_id,ordered_at,amount\nc1,o9,2025-01-05,-4\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2, column amount"):
        import_csv(store, bad)
    assert "o9" not in stored_orders(store)


def test_upsert_orders_validates_for_any_caller(store):
    with pytest.raises(OrderRowsError, match=r"orders\[0\]\.amount"):
        with store.session() as session:
            upsert_orders(session, [order("x", amount=float("nan"))])
    with store.session() as session:
        assert upsert_orders(session, [order("x"), order("x", amount=5)]) == (1, 0)
    assert stored_orders(store)["x"].amount == 5.0


# ---------------------------------------------------------------- identities


def test_identities_are_linked_hashed(client, store):
    response = client.post("/api/identities", headers=AUTH, json={"identities": [
        {"customer_id": "shop-1", "email": "A@B.cn", "phone": "+86 138 1234 5678"},
        {"customer_id": "shop-2", "id": 501, "source": "zendesk", "external_id": "u-2"}]})
    assert response.status_code == 200, response.json
    assert response.json == {"linked": 4, "moved_events": 0}
    with store.session() as session:
        rows = session.execute(select(Identity.key_hash, Identity.customer_id)).all()
    assert sorted(c for _, c in rows) == ["shop-1", "shop-1", "shop-2", "shop-2"]
    assert all(len(h) == 64 and "@" not in h for h, _ in rows)
    # Re-linking a key points it at the new customer.
    again = client.post("/api/identities", headers=AUTH, json={"identities": [
        {"customer_id": "shop-9", "email": "a@b.cn"}, {"customer_id": "shop-3", "email": " a@B.CN"}]})
    assert again.json == {"linked": 2, "moved_events": 0}
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Identity)) == 4
        assert session.scalar(select(func.count()).where(Identity.customer_id == "shop-3")) == 1


def test_bad_identities_are_refused_whole(client, store):
    response = client.post("/api/identities", headers=AUTH, json={"identities": [
        {"customer_id": "shop-1", "email": "a@b.cn"}, {"customer_id": "shop-2", "id": "501"},
        {"customer_id": "shop-3"}, {"email": "c@d.cn"}, "x"]})
    assert response.status_code == 422
    problems = response.json["problems"]
    assert 'identities[1].id: needs "source", the helpdesk the user id belongs to' in problems
    assert any(p.startswith("identities[2]: no key to link") for p in problems)
    assert any(p.startswith("identities[3].customer_id") for p in problems)
    assert "identities[4]: must be an object" in problems
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Identity)) == 0


# ---------------------------------------------------------------- risk documents


def add_history(store, now):
    """A customer with two scores, an alert, six analysed messages and some that must not show."""
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()

        def event(i, author="customer", status="analysed", ticket="T1", customer="c1"):
            return Event(delivery_id=delivery.id, source="zendesk", external_id=f"e{i}", ticket_id=ticket,
                         customer_id=customer, author=author, channel="chat", text=f"第{i}条 [PHONE]",
                         created_at=now - timedelta(hours=10 - i), received_at=now, status=status,
                         negative_prob=0.1 * i if status == "analysed" else None,
                         entities={"LOGISTICS": ["快递"]} if status == "analysed" else None)

        session.add_all([event(i) for i in range(6)])
        session.add_all([event(6, author="agent", status="stored"), event(7, status="queued"),
                         event(8, customer="c2", ticket="T2", author="agent", status="stored")])
        old = RiskScore(customer_id="c1", scored_at=now - timedelta(days=1), as_of=now - timedelta(days=1),
                        churn_prob=0.4, tier="yellow", reasons=[], driver="other", action={"zh": "复核", "en": "review"})
        new = RiskScore(customer_id="c1", scored_at=now, as_of=now, churn_prob=0.82, tier="red", service_signal=True,
                        reasons=[{"zh": "物流投诉", "en": "logistics complaints"}], driver="service",
                        action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"})
        session.add_all([old, new, Customer(customer_id="c1", churn_prob=0.82, tier="red", scored_at=now)])
        session.flush()
        session.add(Alert(idempotency_key="k1", customer_id="c1", score_id=new.id, source="zendesk", ticket_id="T1",
                          tier="red", churn_prob=0.82, reasons=new.reasons, driver="service", action=new.action,
                          created_at=now, due_at=now + timedelta(hours=4), status="open", attempts=0))


def test_customer_risk_document(client, store):
    now = datetime(2025, 3, 1, 12, 0)
    add_history(store, now)
    response = client.get("/api/customers/c1/risk", headers=AUTH)
    assert response.status_code == 200, response.json
    doc = response.json
    assert (doc["customer_id"], doc["tier"], doc["churn_prob"], doc["driver"]) == ("c1", "red", 0.82, "service")
    assert doc["reasons"] == [{"zh": "物流投诉", "en": "logistics complaints"}]
    assert doc["action"]["zh"] == "安排专属客服回访"
    assert doc["scored_at"] == "2025-03-01T12:00:00Z"
    assert doc["service_signal"] is True
    assert [m["text"] for m in doc["last_messages"]] == [f"第{i}条 [PHONE]" for i in (5, 4, 3, 2, 1)]
    first = doc["last_messages"][0]
    assert first["negative_prob"] == pytest.approx(0.5) and first["entities"] == {"LOGISTICS": ["快递"]}
    assert first["created_at"] == "2025-03-01T07:00:00Z" and isinstance(first["event_id"], int)
    assert [(h["tier"], h["churn_prob"]) for h in doc["history"]] == [("red", 0.82), ("yellow", 0.4)]
    assert doc["history"][0] == {"scored_at": "2025-03-01T12:00:00Z", "as_of": "2025-03-01T12:00:00Z",
                                 "churn_prob": 0.82, "tier": "red", "service_signal": True}
    # A score stored before the signal was recorded: not known.
    assert doc["history"][1]["service_signal"] is None
    [alert] = doc["alerts"]
    assert {k: alert[k] for k in ("tier", "status", "due_at", "delivered_at", "ticket_id", "source")} == {
        "tier": "red", "status": "open", "due_at": "2025-03-01T16:00:00Z", "delivered_at": None,
        "ticket_id": "T1", "source": "zendesk"}


def test_an_alert_shows_why_its_delivery_failed_or_is_retried(client, store):
    add_history(store, datetime(2025, 3, 1, 12, 0))
    reason = "PUT https://***@x.zendesk.com/api/v2/tickets/T1.json: HTTP 503"
    with store.session() as session:
        session.execute(update(Alert).values(attempts=3, last_error=reason))
    [alert] = client.get("/api/customers/c1/risk", headers=AUTH).json["alerts"]
    assert (alert["status"], alert["attempts"], alert["last_error"]) == ("open", 3, reason)


def test_ticket_risk_is_its_customers(client, store):
    add_history(store, datetime(2025, 3, 1, 12, 0))
    response = client.get("/api/tickets/zendesk/T1/risk", headers=AUTH)
    assert response.status_code == 200
    assert response.json["ticket"] == {"source": "zendesk", "ticket_id": "T1"}
    assert response.json["customer_id"] == "c1" and response.json["tier"] == "red"
    # Only an agent has written on T2 so far: the requester is still known from that message.
    assert client.get("/api/tickets/zendesk/T2/risk", headers=AUTH).json["customer_id"] == "c2"
    for path in ("/api/tickets/zendesk/T404/risk", "/api/tickets/chatwoot/T1/risk", "/api/customers/nobody/risk"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404 and response.is_json and response.json["error"]


def test_known_customer_not_scored_yet(client):
    client.post("/api/orders", headers=AUTH, json={"orders": [order("o1", "fresh")]})
    doc = client.get("/api/customers/fresh/risk", headers=AUTH).json
    assert doc["tier"] is None and doc["churn_prob"] is None and doc["scored_at"] is None
    assert doc["history"] == doc["alerts"] == doc["last_messages"] == []
