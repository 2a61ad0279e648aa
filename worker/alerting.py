"""From a risk score to an alert on the ticket, and its delivery: plain functions.

Deciding: a customer gets an alert when their tier rises, or when they stay in the top
tier past the cooldown; never two open alerts for one customer and tier. With
``alerts.require_service_signal`` (the default) only a score at the lowest posted tier or
above with a service signal and a reason can raise one (:func:`postable`), and a rise is counted from
the last score that could: a customer held yellow by purchases alone is alerted the day
they complain. Every score is recorded on the customer all the same. The customer's
row is locked while this is decided, so two workers scoring one customer at once cannot
both raise one.

Delivering: every attempt is claimed first (``attempts`` moves from n-1 to n in one
UPDATE), so a task delivered twice by the broker posts once; the idempotency key is the
same on every attempt, so a helpdesk that saw an earlier attempt land ignores a retry. Why an
attempt failed is stored on the alert without credentials, for the read API and the operator.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from churnsignal.config import Settings
from churnsignal.store import Alert, Customer, Event, RiskScore, Store, utcnow
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks.base import AlertMessage, DeliveryError, NotConfigured
from churnsignal.webhook.helpdesks.http import without_credentials

# Alerts that still count against "one open alert per customer and tier".
OPEN = ("open", "delivered", "failed")
# The longest reason stored for a failed attempt.
MAX_ERROR = 2000


def decide(store: Store, risk: RiskScore, settings: Settings) -> Alert | None:
    """Record the customer's new risk and raise an alert for the ticket if it calls for one."""
    tiers = settings.fusion.tiers
    rank = {tier.name: i for i, tier in enumerate(tiers)}
    now = utcnow()
    with store.session() as session:
        insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(Customer).values(customer_id=risk.customer_id).on_conflict_do_nothing())
        customer = session.scalars(select(Customer).where(Customer.customer_id == risk.customer_id)
                                   .with_for_update()).one()
        before = rank.get(customer.tier, len(tiers)) if customer.tier else len(tiers)
        if settings.alerts.require_service_signal and not postable(_previous(session, risk), settings):
            before = len(tiers)
        level = rank.get(risk.tier, len(tiers)) if risk.tier else len(tiers)
        customer.churn_prob, customer.tier, customer.scored_at = risk.churn_prob, risk.tier, risk.scored_at
        standing = session.scalars(select(Alert).where(Alert.customer_id == risk.customer_id,
                                                       Alert.status.in_(OPEN))
                                   .order_by(Alert.created_at.desc(), Alert.id.desc())).all()
        # Alerts above the customer's risk now no longer describe them.
        for alert in standing:
            if rank.get(alert.tier, -1) < level:
                alert.status = "resolved"
        standing = [a for a in standing if rank.get(a.tier, -1) >= level]
        if not postable(risk, settings):
            return None
        same = [a for a in standing if a.tier == risk.tier]
        cooled = level == 0 and all(now - a.created_at >= timedelta(hours=settings.alerts.cooldown_hours)
                                    for a in same)
        if not (level < before and not same) and not (same and cooled):
            return None
        ticket = session.get(Event, risk.event_id)
        for alert in standing:
            alert.status = "superseded"
        hours = next(t.response_hours for t in tiers if t.name == risk.tier)
        alert = Alert(idempotency_key=_key(risk), customer_id=risk.customer_id, score_id=risk.id,
                      source=ticket.source, ticket_id=ticket.ticket_id, tier=risk.tier, churn_prob=risk.churn_prob,
                      reasons=risk.reasons, driver=risk.driver, action=risk.action, created_at=now,
                      due_at=now + timedelta(hours=hours), status="open", attempts=0)
        session.add(alert)
    return alert


def postable(risk: RiskScore | None, settings: Settings) -> bool:
    """Whether a score may be posted to the helpdesk at all (whether it is, :func:`decide` says).

    Any tier may be, unless ``alerts.require_service_signal``: then only the lowest posted
    tier and above, only with a service signal (an unknown signal is none), and only with
    at least one reason: a score that no worrying fact raised (purchases that are not yet
    late, a signal the model gave no weight) would reach the agent with nothing to act on.
    """
    if risk is None or risk.tier is None:
        return False
    alerts = settings.alerts
    if not alerts.require_service_signal:
        return True
    names = [t.name for t in settings.fusion.tiers]
    return (risk.tier in names and names.index(risk.tier) <= names.index(alerts.lowest_posted_tier)
            and bool(risk.service_signal) and bool(risk.reasons))


def _previous(session: Session, risk: RiskScore) -> RiskScore | None:
    """The customer's score before ``risk``."""
    return session.scalars(select(RiskScore).where(RiskScore.customer_id == risk.customer_id, RiskScore.id < risk.id)
                           .order_by(RiskScore.id.desc()).limit(1)).first()


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to; ``retry_in`` seconds when it should be tried again, and
    ``error``, the reason as stored, when this attempt failed."""

    status: str
    retry_in: float | None = None
    error: str | None = None


def deliver(store: Store, alert_id: int, attempt: int, settings: Settings, http: requests.Session) -> Outcome:
    """Make delivery attempt number ``attempt`` (1-based) of an alert, unless it was made already."""
    hd = settings.helpdesks
    now = utcnow()
    with store.session() as session:
        claimed = session.execute(
            update(Alert).where(Alert.id == alert_id, Alert.status == "open", Alert.attempts == attempt - 1)
            .values(attempts=attempt, next_attempt_at=now + timedelta(seconds=3 * hd.timeout_seconds))).rowcount
        alert = session.get(Alert, alert_id)
    if not claimed:
        return Outcome(alert.status if alert else "missing")
    message = AlertMessage(alert_id=alert.id, idempotency_key=alert.idempotency_key, ticket_id=alert.ticket_id,
                           tier=alert.tier, churn_prob=alert.churn_prob, reasons=alert.reasons, driver=alert.driver,
                           action=alert.action, due_at=alert.due_at, attempt=attempt,
                           customer_id=alert.customer_id)
    try:
        helpdesks.get(alert.source, hd).post_alert(message, http)
    except (NotConfigured, KeyError) as exc:
        return _finish(store, alert_id, "failed", f"not configured: {exc}")
    except DeliveryError as exc:
        if exc.permanent or attempt >= hd.max_attempts:
            return _finish(store, alert_id, "failed", str(exc))
        wait = exc.retry_after if exc.retry_after is not None else _backoff(attempt, hd.backoff_seconds,
                                                                              hd.backoff_max_seconds)
        reason = _reason(str(exc))
        with store.session() as session:
            session.execute(update(Alert).where(Alert.id == alert_id).values(
                last_error=reason, next_attempt_at=utcnow() + timedelta(seconds=wait)))
        return Outcome("open", retry_in=wait, error=reason)
    return _finish(store, alert_id, "delivered", None)


def _backoff(attempt: int, base: float, ceiling: float) -> float:
    """Exponential backoff with full jitter (spreads retries of many alerts after an outage), at least 1 s."""
    return max(1.0, random.uniform(0, min(ceiling, base * 2 ** (attempt - 1))))


def _reason(error: str) -> str:
    """A failure's message as it may be stored, logged and shown: no credentials, bounded."""
    return without_credentials(error)[:MAX_ERROR]


def _finish(store: Store, alert_id: int, status: str, error: str | None) -> Outcome:
    reason = _reason(error) if error else None
    with store.session() as session:
        values = {"status": status, "last_error": reason, "next_attempt_at": None}
        if status == "delivered":
            values["delivered_at"] = utcnow()
        session.execute(update(Alert).where(Alert.id == alert_id, Alert.status == "open").values(**values))
    return Outcome(status, error=reason)


def _key(risk: RiskScore) -> str:
    # One key per score and tier: deterministic, so a re-run of the same decision cannot
    # mint a second key for what is the same alert.
    return hashlib.sha256(f"{risk.customer_id}:{risk.id}:{risk.tier}".encode()).hexdigest()[:32]
