"""The Celery tasks: thin wrappers that take ids, call :mod:`pipeline` and :mod:`alerting`.

A task may run twice (a redelivery after a worker died, the sweeper re-queueing): each
one checks what is already done and does only the rest.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import requests
from celery import shared_task
from celery.signals import worker_ready
from sqlalchemy import select

from churnsignal.config import get_settings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Event, Store
from churnsignal.webhook.helpdesks.base import DeliveryError, NotConfigured
from churnsignal.webhook.helpdesks.http import without_credentials
from churnsignal.webhook.identity import log_id
from churnsignal.worker import alerting, pipeline, pulling, wecom_sync
from churnsignal.worker.app import (ALERT_QUEUE, DELIVER_ALERT, PROCESS_EVENTS, PULL_GENERIC, PULL_WECOM_KF, QUEUE,
                                    SWEEP)

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _store() -> Store:
    return Store(get_settings().service.database())


@lru_cache(maxsize=1)
def _http() -> requests.Session:
    return requests.Session()


@shared_task(name=PROCESS_EVENTS, bind=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def process_events(self, event_ids: list[int]) -> None:
    """Analyse the events (batched with whatever else is waiting), score their customers, raise alerts."""
    settings = get_settings()
    store = _store()
    batch = pipeline.claim_batch(store, event_ids, settings.service.batch_size)
    done = pipeline.analyse(store, batch, settings)
    with store.session() as session:
        latest = dict(session.execute(
            select(Event.customer_id, Event.id).where(Event.id.in_(done), Event.author == "customer")
            .order_by(Event.created_at, Event.id)).all())
    pepper = settings.identity.required_pepper()
    for customer_id, event_id in latest.items():
        risk = pipeline.score_customer(store, customer_id, event_id, settings)
        if risk is None:
            log.info("customer %s has no orders yet: not scored", log_id(customer_id, pepper))
            continue
        alert = alerting.decide(store, risk, settings)
        if alert is not None:
            log.info("alert %s: customer %s is %s (%.2f)", alert.id, log_id(customer_id, pepper),
                     alert.tier, alert.churn_prob)
            deliver_alert.apply_async(args=[alert.id, 1], queue=ALERT_QUEUE)


@shared_task(name=DELIVER_ALERT, bind=True, max_retries=None)
def deliver_alert(self, alert_id: int, attempt: int = 1) -> str:
    """Make one delivery attempt; schedule the next with backoff (or the helpdesk's Retry-After)."""
    outcome = alerting.deliver(_store(), alert_id, attempt, get_settings(), _http())
    if outcome.retry_in is not None:
        log.warning("alert %s attempt %s failed; retrying in %.0f s: %s", alert_id, attempt, outcome.retry_in,
                    outcome.error)
        deliver_alert.apply_async(args=[alert_id, attempt + 1], countdown=outcome.retry_in, queue=ALERT_QUEUE)
    elif outcome.status == "failed" and outcome.error:  # without one, an earlier copy of this task failed it
        log.error("alert %s failed at attempt %s, not retried: %s", alert_id, attempt, outcome.error)
    return outcome.status


@shared_task(name=PULL_WECOM_KF, bind=True, max_retries=5)
def pull_wecom_kf(self, delivery_id: int) -> int:
    """Pull the messages a stored 企业微信 notice announced and queue the new ones for analysis."""
    try:
        new = wecom_sync.pull(_store(), get_settings(), _http(), delivery_id)
    except DeliveryError as exc:
        if exc.permanent:
            log.error("pull for 企业微信 notice %s failed, not retried: %s", delivery_id, without_credentials(str(exc)))
            return 0
        raise self.retry(exc=exc, countdown=exc.retry_after or 5 * 2 ** self.request.retries) from exc
    for start in range(0, len(new), 100):
        process_events.apply_async(args=[new[start:start + 100]], queue=QUEUE)
    return len(new)


@shared_task(name=SWEEP)
def sweep() -> dict[str, int]:
    """Re-queue what was stored but never got through: events the broker missed, stalled deliveries."""
    events, alerts = pipeline.stale(_store(), get_settings().service.requeue_after_seconds)
    for start in range(0, len(events), 100):
        process_events.apply_async(args=[events[start:start + 100]], queue=QUEUE)
    for alert_id, attempt in alerts:
        deliver_alert.apply_async(args=[alert_id, attempt], queue=ALERT_QUEUE)
    if events or alerts:
        log.info("sweeper re-queued %d event(s) and %d alert delivery(ies)", len(events), len(alerts))
    return {"events": len(events), "alerts": len(alerts)}


@shared_task(name=PULL_GENERIC)
def pull_generic(source: str, delivery_id: int, values: dict[str, Any],
                 attempt: int = 1) -> dict[str, int] | None:
    """Fetch and store what a stored notice announces, then queue it for analysis; retried with
    backoff (or the helpdesk's Retry-After) like an alert, up to ``helpdesks.max_attempts``."""
    settings = get_settings()
    store = _store()
    try:
        pulled = pulling.pull_notice(store, settings, source, values, _http())
    except (DeliveryError, NotConfigured, LookupError) as error:
        reason = without_credentials(mask_pii(str(error)).text)
        retry = isinstance(error, DeliveryError) and not error.permanent and attempt < settings.helpdesks.max_attempts
        if not retry:
            log.error("pull for notice %s from %s failed at attempt %s, not retried: %s; once it is fixed, "
                      "`churnsignal backfill --helpdesk %s --since <time>` fetches what it missed", delivery_id,
                      source, attempt, reason, source.removeprefix("generic:"))
            return None
        delay = error.retry_after or min(settings.helpdesks.backoff_max_seconds,
                                         settings.helpdesks.backoff_seconds * 2 ** (attempt - 1))
        log.warning("pull for notice %s from %s attempt %s failed; retrying in %.0f s: %s", delivery_id, source,
                    attempt, delay, reason)
        pull_generic.apply_async(args=[source, delivery_id, values, attempt + 1], countdown=delay, queue=QUEUE)
        return None
    for start in range(0, len(pulled.new), 100):
        process_events.apply_async(args=[pulled.new[start:start + 100]], queue=QUEUE)
    if pulled.new:
        pulling.mark_queued(store, pulled.new)
    log.info("pull for notice %s from %s: %d fetched, %d new, %d already stored, %d not stored", delivery_id,
             source, pulled.fetched, len(pulled.new), pulled.skipped, len(pulled.errors))
    return {"fetched": pulled.fetched, "new": len(pulled.new), "skipped": pulled.skipped}


@worker_ready.connect
def _catch_up(**_kwargs) -> None:
    """A worker that starts after an outage or a crash first queues what was missed."""
    sweep.apply_async(queue=QUEUE)
