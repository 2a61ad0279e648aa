"""Deciding and delivering alerts, without a broker: on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from churnsignal.config import Settings
from churnsignal.store import Alert, Customer, Delivery, Event, RiskScore, utcnow
from churnsignal.webhook.identity import log_id
from churnsignal.webhook.standin import StandIn
from churnsignal.worker import alerting, pipeline


def settings_for(standin: StandIn | None = None, require_service_signal: bool = False, **helpdesk) -> Settings:
    """Settings for a test; the tier mechanics are tested apart from the service-signal rule by default."""
    zendesk = {"base_url": standin.url("zendesk"), "email": "bot@example.com", "api_token": "t"} if standin else {}
    return Settings(helpdesks={"zendesk": zendesk, "timeout_seconds": 1.0, "max_attempts": 3, **helpdesk},
                    alerts={"cooldown_hours": 24, "require_service_signal": require_service_signal},
                    identity={"pepper": "test-pepper"})


def add_event(store, customer: str = "c1", ticket: str = "501", status: str = "queued", **fields) -> int:
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        event = Event(delivery_id=delivery.id, source="zendesk", external_id=f"e{now.timestamp()}{customer}{status}",
                      ticket_id=ticket, customer_id=customer, author=fields.pop("author", "customer"),
                      channel="ticket", text=fields.pop("text", "快递太慢了"),
                      created_at=now, received_at=fields.pop("received_at", now), status=status,
                      queued_at=fields.pop("queued_at", now), **fields)
        session.add(event)
        session.flush()
        return event.id


def add_score(store, tier: str | None, prob: float, customer: str = "c1", signal: bool | None = True,
              reasons: tuple[dict, ...] = ({"zh": "近7天投诉2次", "en": "2 complaints in 7 days"},)) -> RiskScore:
    event_id = add_event(store, customer)
    with store.session() as session:
        risk = RiskScore(customer_id=customer, event_id=event_id, scored_at=utcnow(), as_of=utcnow(), churn_prob=prob,
                         tier=tier, service_signal=signal,
                         reasons=list(reasons), driver="service",
                         action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"})
        session.add(risk)
    return risk


def statuses(store) -> list[tuple[str, str]]:
    with store.session() as session:
        return [(a.tier, a.status) for a in session.scalars(select(Alert).order_by(Alert.id))]


def test_rising_tiers_raise_one_alert_each_and_supersede_the_last(store) -> None:
    settings = settings_for()
    first = alerting.decide(store, add_score(store, "blue", 0.2), settings)
    assert first is not None and first.tier == "blue"
    assert alerting.decide(store, add_score(store, "blue", 0.25), settings) is None
    assert alerting.decide(store, add_score(store, "yellow", 0.5), settings).tier == "yellow"
    assert alerting.decide(store, add_score(store, "red", 0.8), settings).tier == "red"
    assert statuses(store) == [("blue", "superseded"), ("yellow", "superseded"), ("red", "open")]
    with store.session() as session:
        customer = session.get(Customer, "c1")
        assert (customer.tier, customer.churn_prob) == ("red", 0.8)


def test_due_time_follows_the_tier_response_time(store) -> None:
    red = alerting.decide(store, add_score(store, "red", 0.9), settings_for())
    assert red.due_at - red.created_at == timedelta(hours=4)
    blue = alerting.decide(store, add_score(store, "blue", 0.2, customer="c2"), settings_for())
    assert blue.due_at - blue.created_at == timedelta(hours=24)


def test_red_again_only_after_the_cooldown(store) -> None:
    settings = settings_for()
    alerting.decide(store, add_score(store, "red", 0.9), settings)
    assert alerting.decide(store, add_score(store, "red", 0.95), settings) is None
    with store.session() as session:
        session.execute(update(Alert).values(created_at=utcnow() - timedelta(hours=25)))
    again = alerting.decide(store, add_score(store, "red", 0.95), settings)
    assert again is not None
    assert statuses(store) == [("red", "superseded"), ("red", "open")]


def test_falling_risk_resolves_the_alerts_above_it(store) -> None:
    settings = settings_for()
    alerting.decide(store, add_score(store, "red", 0.9), settings)
    assert alerting.decide(store, add_score(store, "yellow", 0.4), settings) is None
    assert statuses(store) == [("red", "resolved")]
    assert alerting.decide(store, add_score(store, None, 0.05), settings) is None
    with store.session() as session:
        assert session.get(Customer, "c1").tier is None


def test_without_a_service_signal_the_risk_is_recorded_and_nothing_is_posted(store) -> None:
    settings = settings_for(require_service_signal=True)
    assert Settings().alerts.require_service_signal  # the default
    for tier, prob in (("yellow", 0.5), ("red", 0.9)):
        assert alerting.decide(store, add_score(store, tier, prob, signal=False), settings) is None
    assert alerting.decide(store, add_score(store, "red", 0.9, signal=None), settings) is None
    assert statuses(store) == []
    with store.session() as session:
        customer = session.get(Customer, "c1")
        assert (customer.tier, customer.churn_prob) == ("red", 0.9)


def test_a_score_without_a_reason_is_recorded_and_not_posted(store) -> None:
    """A service signal the model gave no weight, on a risk purchases drove: nothing to tell the agent."""
    settings = settings_for(require_service_signal=True)
    assert alerting.decide(store, add_score(store, "yellow", 0.5, reasons=()), settings) is None
    assert statuses(store) == []
    # With the rule off, any tier is posted, reasons or not.
    assert alerting.decide(store, add_score(store, "yellow", 0.5, customer="c2", reasons=()), settings_for()).tier == "yellow"
    # The same customer, once a worrying fact explains the risk: posted.
    assert alerting.decide(store, add_score(store, "yellow", 0.5), settings).tier == "yellow"


def test_with_a_service_signal_the_alert_is_posted_from_the_lowest_posted_tier(store) -> None:
    settings = settings_for(require_service_signal=True)
    # Blue is below alerts.lowest_posted_tier (yellow): never posted while the rule is on.
    assert alerting.decide(store, add_score(store, "blue", 0.2), settings) is None
    # Yellow through purchases alone, then the customer complains: alerted then.
    assert alerting.decide(store, add_score(store, "yellow", 0.5, signal=False), settings) is None
    alert = alerting.decide(store, add_score(store, "yellow", 0.5), settings)
    assert alert is not None and alert.tier == "yellow"
    # Quiet again at the same tier: the standing alert is enough.
    assert alerting.decide(store, add_score(store, "yellow", 0.5, signal=False), settings) is None
    assert alerting.decide(store, add_score(store, "yellow", 0.55), settings) is None
    assert alerting.decide(store, add_score(store, "red", 0.8), settings).tier == "red"
    assert statuses(store) == [("yellow", "superseded"), ("red", "open")]
    # The switch off: any tier is posted, signal or not.
    assert alerting.decide(store, add_score(store, "blue", 0.2, customer="c2", signal=False),
                           settings_for()).tier == "blue"


def test_delivery_posts_the_note_and_a_repeated_attempt_does_not(store) -> None:
    with StandIn() as standin:
        settings = settings_for(standin)
        alert = alerting.decide(store, add_score(store, "red", 0.87), settings)
        http = requests.Session()
        assert alerting.deliver(store, alert.id, 1, settings, http).status == "delivered"
        # The broker delivering the same task twice: the attempt is already claimed.
        assert alerting.deliver(store, alert.id, 1, settings, http).status == "delivered"
        notes = standin.notes(alert.ticket_id)
    assert len(notes) == 1
    assert "RED" in notes[0]["body"] and "87%" in notes[0]["body"]
    assert "近7天投诉2次" in notes[0]["body"] and "2 complaints in 7 days" in notes[0]["body"]
    assert "安排专属客服回访" in notes[0]["body"]
    with store.session() as session:
        stored = session.get(Alert, alert.id)
        assert (stored.status, stored.attempts, stored.last_error) == ("delivered", 1, None)
        assert stored.delivered_at is not None


def test_delivery_tells_the_helpdesk_which_customer_the_alert_is_about(store, monkeypatch) -> None:
    posted = []

    class Recorder:
        def post_alert(self, message, http) -> None:
            posted.append(message)

    monkeypatch.setattr(alerting.helpdesks, "get", lambda source, settings: Recorder())
    settings = settings_for()
    alert = alerting.decide(store, add_score(store, "red", 0.9, customer="c7"), settings)
    assert alerting.deliver(store, alert.id, 1, settings, requests.Session()).status == "delivered"
    assert [m.customer_id for m in posted] == ["c7"]


def test_retryable_failures_back_off_then_fail_visibly(store) -> None:
    with StandIn() as standin:
        settings = settings_for(standin)
        alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
        standin.fail_next(429, times=1, retry_after=7, method="PUT")
        standin.fail_next(500, times=5, method="PUT")
        http = requests.Session()
        first = alerting.deliver(store, alert.id, 1, settings, http)
        assert first.status == "open" and first.retry_in == 7
        second = alerting.deliver(store, alert.id, 2, settings, http)
        assert second.status == "open" and 1.0 <= second.retry_in <= settings.helpdesks.backoff_max_seconds
        assert alerting.deliver(store, alert.id, 3, settings, http).status == "failed"
        assert standin.notes() == []
    with store.session() as session:
        failed = session.get(Alert, alert.id)
        assert failed.status == "failed" and "500" in failed.last_error and failed.attempts == 3


def test_a_permanent_error_fails_at_once(store) -> None:
    with StandIn() as standin:
        settings = settings_for(standin)
        alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
        standin.fail_next(404, method="PUT")
        assert alerting.deliver(store, alert.id, 1, settings, requests.Session()).status == "failed"


def test_a_redirect_fails_the_alert_naming_where_it_points(store, recorder) -> None:
    # Followed, the redirected write became a GET whose 200 counted as delivered: no note existed.
    landing = recorder()
    moved = recorder(301, {"Location": f"{landing.url}/zendesk/"})
    settings = settings_for(zendesk={"base_url": moved.url, "email": "bot@example.com", "api_token": "t"})
    alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
    assert alerting.deliver(store, alert.id, 1, settings, requests.Session()).status == "failed"
    assert landing.requests == []
    with store.session() as session:
        failed = session.get(Alert, alert.id)
        assert failed.delivered_at is None
        assert f"HTTP 301 redirect to {landing.url}/zendesk/" in failed.last_error


def test_reasons_are_stored_without_credentials(store, recorder) -> None:
    down = recorder(503)
    settings = settings_for(zendesk={"base_url": down.url.replace("://", "://bot:pa55w0rd@"),
                                     "email": "bot@example.com", "api_token": "t"})
    alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
    retried = alerting.deliver(store, alert.id, 1, settings, requests.Session())
    assert retried.retry_in is not None and retried.error.startswith("GET http://***@127.0.0.1:")
    with store.session() as session:
        assert session.get(Alert, alert.id).last_error == retried.error
    down.status, down.headers["Location"] = 302, "https://sso.example.com/login?next=%2F&access_token=abc123"
    failed = alerting.deliver(store, alert.id, 2, settings, requests.Session())
    assert failed.status == "failed" and failed.error.endswith(
        "redirect to https://sso.example.com/login?next=%2F&access_token=***: outbound calls never follow "
        "redirects; set the URL to where it points")
    with store.session() as session:
        stored = session.get(Alert, alert.id).last_error
    assert stored == failed.error and "pa55w0rd" not in stored and "abc123" not in stored


def test_the_worker_logs_why_a_delivery_is_retried_or_failed(store, recorder, monkeypatch, caplog) -> None:
    from churnsignal.worker import tasks

    down = recorder(503)
    settings = settings_for(zendesk={"base_url": down.url.replace("://", "://bot:pa55w0rd@"),
                                     "email": "bot@example.com", "api_token": "t"})
    alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
    queued: list[dict] = []
    monkeypatch.setattr(tasks, "_store", lambda: store)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks.deliver_alert, "apply_async", lambda **kwargs: queued.append(kwargs))
    with caplog.at_level(logging.WARNING, logger="churnsignal.worker.tasks"):
        assert tasks.deliver_alert(alert.id, 1) == "open"
        down.status = 404
        assert tasks.deliver_alert(alert.id, 2) == "failed"
    retry, failure = caplog.records
    assert retry.levelno == logging.WARNING and failure.levelno == logging.ERROR
    assert f"alert {alert.id} attempt 1 failed; retrying in" in retry.getMessage()
    assert "GET http://***@127.0.0.1:" in retry.getMessage() and "HTTP 503" in retry.getMessage()
    assert f"alert {alert.id} failed at attempt 2, not retried: GET http://***@" in failure.getMessage()
    assert "HTTP 404" in failure.getMessage() and "pa55w0rd" not in caplog.text
    assert [q["args"] for q in queued] == [[alert.id, 2]]


def test_an_unconfigured_helpdesk_fails_the_alert_with_the_reason(store) -> None:
    settings = settings_for()
    alert = alerting.decide(store, add_score(store, "red", 0.9), settings)
    outcome = alerting.deliver(store, alert.id, 1, settings, requests.Session())
    assert outcome.status == "failed"
    with store.session() as session:
        assert "not configured" in session.get(Alert, alert.id).last_error


def test_stale_events_and_stalled_deliveries_are_found_again(store) -> None:
    long_ago = utcnow() - timedelta(minutes=10)
    missed = add_event(store, status="received", received_at=long_ago, queued_at=None)
    lost = add_event(store, status="queued", queued_at=long_ago)
    fresh = add_event(store, status="queued")
    done = add_event(store, status="analysed", queued_at=long_ago)
    alert = alerting.decide(store, add_score(store, "red", 0.9), settings_for())
    with store.session() as session:
        session.execute(update(Alert).where(Alert.id == alert.id).values(attempts=2, next_attempt_at=long_ago))
    events, alerts = pipeline.stale(store, after_seconds=60)
    assert sorted(events) == sorted([missed, lost])
    assert fresh not in events and done not in events
    assert alerts == [(alert.id, 3)]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.status == "queued",
                                                                          Event.id.in_(events))) == 2


@pytest.mark.parametrize("waiting", [0, 5])
def test_a_task_takes_what_else_is_waiting_up_to_the_batch_size(store, waiting: int) -> None:
    own = add_event(store)
    others = [add_event(store, customer=f"c{i}") for i in range(waiting)]
    batch = pipeline.claim_batch(store, [own], batch_size=4)
    assert batch == sorted([own, *others])[:4]
    assert own in batch


def test_the_worker_logs_customers_by_a_hashed_id_only(store, monkeypatch, caplog) -> None:
    from churnsignal.worker import tasks

    settings = settings_for()
    scored, unscored = "leak.ident@example.com", "13812345678"  # as a shop may key its customers
    event_ids = [add_event(store, customer=scored), add_event(store, customer=unscored)]
    risk = add_score(store, "red", 0.9, customer=scored)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_store", lambda: store)
    monkeypatch.setattr(pipeline, "claim_batch", lambda store, ids, batch_size: ids)
    monkeypatch.setattr(pipeline, "analyse", lambda store, batch, settings: batch)
    monkeypatch.setattr(pipeline, "score_customer",
                        lambda store, customer_id, event_id, settings: risk if customer_id == scored else None)
    monkeypatch.setattr(tasks.deliver_alert, "apply_async", lambda **_: None)
    with caplog.at_level(logging.INFO, logger="churnsignal.worker"):
        tasks.process_events(event_ids)
    pepper = settings.identity.pepper
    assert f"customer {log_id(unscored, pepper)} has no orders yet" in caplog.text
    assert f"customer {log_id(scored, pepper)} is red" in caplog.text
    logged = caplog.text + "\n".join(str(record.args) for record in caplog.records)
    for personal in (scored, unscored, "leak.ident"):
        assert personal not in logged


def test_the_fusion_reads_messages_and_the_ticket_status_a_bot_message_carries(store) -> None:
    add_event(store, text="还没到，气死了", ticket_status="open")
    add_event(store, author="agent", text="已补发")
    add_event(store, author="bot", text="Conversation was marked resolved", ticket_status="solved")
    add_event(store, author="bot", text="(churnsignal alert 3)")   # our own note: no status, not read
    add_event(store, customer="c2")
    with store.session() as session:
        events = pipeline.support_events(session, "c1")
    assert events["author"].tolist() == ["customer", "agent", "bot"]
    assert events["ticket_status"].fillna("unknown").tolist() == ["open", "unknown", "solved"]
    assert events["channel"].tolist() == ["ticket"] * 3
