"""Operations: ``/healthz`` for the load balancer and ``/metrics`` for Prometheus (no auth).

Request figures cover every gunicorn worker: ``churnsignal serve`` runs prometheus_client in
multi-process mode (``PROMETHEUS_MULTIPROC_DIR``), and a scrape, answered by any one worker,
adds up the files all of them write. Without that variable they are this process's own. The
pipeline figures (events by status, alerts by
tier and status, overdue alerts, the oldest unprocessed event) are read from the store at
scrape time, so what the worker processes did shows up here as well.
"""

from __future__ import annotations

import os
import threading
from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from churnsignal.config import Settings
from churnsignal.store import Alert, Event, Store, utcnow
from churnsignal.webhook.app import logger, service

blueprint = Blueprint("ops", __name__)

EVENT_STATUSES = ("received", "queued", "analysed", "stored")
UNPROCESSED = ("received", "queued")
OVERDUE = ("open", "failed")
# /healthz answers within 2 s whatever the broker does: this much for the broker, the rest for the store.
BROKER_TIMEOUT_SECONDS = 1.5


class Metrics:
    """One app's Prometheus registry: its request figures and the store's pipeline figures."""

    def __init__(self, store: Store):
        # A registry per app, not the global default: tests and embedders create many apps.
        self.registry = CollectorRegistry()
        self.requests = Counter("churnsignal_http_requests", "HTTP requests answered, by route and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("churnsignal_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["endpoint", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.store_collector = StoreCollector(store)
        self.registry.register(self.store_collector)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, str(status)).observe(seconds)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.store_collector)
        return generate_latest(registry)


class StoreCollector:
    """Pipeline gauges read from the store on every scrape."""

    def __init__(self, store: Store):
        self.store = store

    def describe(self):
        # Nothing up front: describing would query the store when the app is created.
        return []

    def collect(self):
        up = GaugeMetricFamily("churnsignal_store_up", "1 if the store answered this scrape")
        try:
            figures = self._read()
        except SQLAlchemyError as exc:
            logger.warning("metrics: store unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _read(self) -> list[GaugeMetricFamily]:
        now = utcnow()
        with self.store.session() as session:
            by_status = dict(session.execute(select(Event.status, func.count()).group_by(Event.status)).all())
            alerts = session.execute(select(Alert.tier, Alert.status, func.count())
                                     .group_by(Alert.tier, Alert.status)).all()
            overdue = session.execute(select(Alert.tier, func.count())
                                      .where(Alert.status.in_(OVERDUE), Alert.due_at < now)
                                      .group_by(Alert.tier)).all()
            oldest = session.scalar(select(func.min(Event.received_at)).where(Event.status.in_(UNPROCESSED)))

        events = GaugeMetricFamily("churnsignal_events", "Stored events by processing status", labels=["status"])
        for status in sorted(set(EVENT_STATUSES) | set(by_status)):
            events.add_metric([status], by_status.get(status, 0))
        alert_family = GaugeMetricFamily("churnsignal_alerts", "Alerts by tier and status", labels=["tier", "status"])
        for tier, status, count in alerts:
            alert_family.add_metric([tier, status], count)
        overdue_family = GaugeMetricFamily("churnsignal_alerts_overdue",
                                           "Open or failed alerts past their response deadline", labels=["tier"])
        for tier, count in overdue:
            overdue_family.add_metric([tier], count)
        age = GaugeMetricFamily("churnsignal_oldest_unprocessed_event_age_seconds",
                                "Age of the oldest event received or queued but not processed (0: none)")
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        return [events, alert_family, overdue_family, age]


@blueprint.get("/healthz")
def healthz():
    """``{"store", "broker", "models": {...}}``, each "ok" or why not; 200 only when all are ok."""
    svc = service()
    report = {"store": _store(svc.store), "broker": _broker(svc.celery), "models": _models(svc.settings)}
    healthy = report["store"] == report["broker"] == "ok" and all(v == "ok" for v in report["models"].values())
    return jsonify(report), 200 if healthy else 503


@blueprint.get("/metrics")
def metrics():
    return Response(service().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def _store(store: Store) -> str:
    try:
        store.ping()
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        first = str(original).strip().splitlines()
        return f"unreachable: {type(original).__name__}: {first[0] if first else ''}".rstrip(": ")
    return "ok"


def _broker(celery) -> str:
    """"ok" or why not, within :data:`BROKER_TIMEOUT_SECONDS` whatever the broker does.

    The transport's socket timeouts bound each call, but a connection attempt may make
    several; the probe runs in a thread of its own so that the answer cannot wait longer.
    """
    outcome: list[str] = []
    probe = threading.Thread(target=lambda: outcome.append(_probe_broker(celery)), daemon=True,
                             name="churnsignal-broker-probe")
    probe.start()
    probe.join(BROKER_TIMEOUT_SECONDS)
    return outcome[0] if outcome else f"unreachable: no answer within {BROKER_TIMEOUT_SECONDS:g} s"


def _probe_broker(celery) -> str:
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                         timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # kombu raises transport-specific errors as well as its own
        return f"unreachable: {type(exc).__name__}: {exc}"
    return "ok"


def _models(settings: Settings) -> dict[str, str]:
    return {"fusion": _fusion(settings.alerts.model_path),
            "sentiment": _model_dir(settings.sentiment.model_dir, "sentiment", "config.json",
                                    "CHURNSIGNAL_SENTIMENT__MODEL_DIR"),
            "entities": _model_dir(settings.entities.model_dir, "entities", "config.cfg",
                                   "CHURNSIGNAL_ENTITIES__MODEL_DIR")}


def _fusion(path: Path | None) -> str:
    if path is None:
        return "not set: CHURNSIGNAL_ALERTS__MODEL_PATH (train one with `churnsignal fusion train`)"
    # Imported here: the web process needs scikit-learn only when a model is configured.
    from churnsignal.fusion.artifact import ArtifactError, describe

    try:
        describe(Path(path))
    except ArtifactError as exc:
        return str(exc)
    return "ok"


def _model_dir(configured: Path | None, shipped: str, marker: str, setting: str) -> str:
    """Whether the model directory is in place; the model itself is loaded by the workers only."""
    directory = Path(configured) if configured else Path(str(resources.files("churnsignal.nlp") / "models" / shipped))
    if not (directory / marker).is_file():
        where = f"{setting}={directory}" if configured else f"the shipped model at {directory}"
        return f"missing: {where} has no {marker}"
    return "ok"
