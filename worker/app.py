"""The Celery application: one broker URL from the settings, tasks known by name.

The web app only sends tasks by name (it never imports the NLP or fusion code); the
worker process imports :mod:`churnsignal.worker.tasks`, which registers them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery

from churnsignal.config import Settings

PROCESS_EVENTS = "churnsignal.process_events"
DELIVER_ALERT = "churnsignal.deliver_alert"
SWEEP = "churnsignal.sweep"
PULL_WECOM_KF = "churnsignal.pull_wecom_kf"
QUEUE = "churnsignal"
# Deliveries have a queue of their own, so a note is not posted only after a backlog of
# messages has been analysed: a worker takes from both in turn.
ALERT_QUEUE = "churnsignal.alerts"
# A generic helpdesk's pull of what a stored notice announced (helpdesks.generic.<name>.pull).
PULL_GENERIC = "churnsignal.pull_generic"
# How often the sweeper looks for events persisted but never processed.
SWEEP_EVERY_SECONDS = 60.0


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the configured broker (Redis, or SQLite through kombu when unset)."""
    broker = settings.service.broker()
    if broker.startswith("sqla+sqlite:///"):
        settings.service.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("churnsignal", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        # A task is acknowledged when it has finished, so a worker killed mid-task leaves
        # its message to be delivered again; the tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # A webhook must answer within milliseconds: if the broker is down, give up at
        # once; the event is already stored and the sweeper queues it later.
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=settings.service.broker_timeout_seconds,
        beat_schedule={"sweep": {"task": SWEEP, "schedule": SWEEP_EVERY_SECONDS}},
    )
    if broker.startswith(("redis://", "rediss://")):
        timeout = settings.service.broker_timeout_seconds
        app.conf.broker_transport_options = {
            # An unacknowledged message (its worker died) is delivered again after this long.
            "visibility_timeout": settings.service.requeue_after_seconds,
            # Without socket timeouts a publish to a Redis that accepts connections but never
            # answers (stopped, or a dead peer behind NAT) waits for ever, and so does the
            # webhook that made it. The consumer's BRPOP runs on its own event loop timer.
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
    return app


def enqueue_generic_pull(app: Celery, source: str, delivery_id: int, values: dict[str, Any]) -> None:
    """Queue the pull a stored notice asks for; raises ``kombu.exceptions.OperationalError`` if the broker is down."""
    app.send_task(PULL_GENERIC, args=[source, delivery_id, values], queue=QUEUE)


def enqueue_events(app: Celery, event_ids: Iterable[int]) -> None:
    """Queue stored events for analysis; raises ``kombu.exceptions.OperationalError`` if the broker is down."""
    app.send_task(PROCESS_EVENTS, args=[list(event_ids)], queue=QUEUE)



def enqueue_pull(app: Celery, delivery_id: int) -> None:
    """Queue the pull a stored 企业微信 notice announced; raises like :func:`enqueue_events`."""
    app.send_task(PULL_WECOM_KF, args=[delivery_id], queue=QUEUE)
