"""The web side of the service: helpdesk webhooks in, the read API, health and metrics, the pages for people.

``create_app`` builds one Flask application around one store and one Celery client; gunicorn
serves ``churnsignal.webhook.app:create_app()``. Every error leaves as JSON
``{"error": "<reason>"}`` through the handlers registered here, so views only raise. The web
process never loads the NLP models or the worker tasks: it stores and queues, the workers read.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from flask import Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from churnsignal.config import Settings, get_settings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Store
from churnsignal.webhook.helpdesks.base import InvalidPayload, NotConfigured, SignatureError

logger = logging.getLogger("churnsignal.webhook")

# What a helpdesk (or a client) is told to wait before retrying while the store is down.
RETRY_AFTER_SECONDS = 30
# No identifier, amount or time needs more digits; far longer numbers are refused while
# parsing, before Python's own 4,300-digit limit would raise from deep inside json.
MAX_NUMBER_DIGITS = 100
# What no store column takes alike on SQLite and PostgreSQL: lone surrogates (a JSON
# escape such as \ud800; a valid pair is decoded to one character first) and NUL.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Characters that would start a new line or hide text in a log file.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What follows /webhooks/generic/<name>/: a url_token helpdesk's secret.
_URL_TOKEN = re.compile(r"^(/webhooks/generic/[^/]*/).+")
# HTTP methods counted by name in the metrics; anything else is "other", so made-up methods
# cannot add series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Printable(logging.Filter):
    """Escapes control characters in every line this logger writes.

    Paths, helpdesk names and ids come from requests; a path with ``%0A`` must not be able
    to forge a second log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


logger.addFilter(_Printable())


@dataclass
class Service:
    """What the views share: configuration, the store, the Celery client and this app's metrics."""

    settings: Settings
    store: Store
    celery: Celery
    metrics: Any  # churnsignal.webhook.ops.Metrics
    # time.monotonic() until which webhooks leave their events to the sweeper (broker failing).
    broker_paused_until: float = 0.0


def service() -> Service:
    """The running app's :class:`Service`."""
    return current_app.extensions["churnsignal"]


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               celery: Celery | None = None) -> Flask:
    """The Flask application (defaults: the process settings, their store and broker).

    Raises :class:`~churnsignal.config.MissingSetting` without ``identity.pepper``.
    """
    from churnsignal.webhook import api, badge, inbound, ops, pages, wecom_callback
    from churnsignal.worker.app import make_celery

    settings = settings or get_settings()
    # Refused up front rather than at the first webhook: without it no requester can be stored.
    settings.identity.required_pepper()
    store = store or Store(settings.service.database())
    celery = celery or make_celery(settings)

    if settings.alerts.model_path is not None:
        # Health checks read the model's description; importing its module (scikit-learn)
        # takes seconds, which belong to the worker's start, not to the first probe.
        import churnsignal.fusion.artifact  # noqa: F401

    app = Flask("churnsignal.webhook")
    app.config["MAX_CONTENT_LENGTH"] = settings.service.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["churnsignal"] = Service(settings, store, celery, ops.Metrics(store))

    app.register_blueprint(inbound.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(badge.blueprint)
    app.register_blueprint(wecom_callback.blueprint)
    pages.init_app(app, settings)

    app.url_value_preprocessor(_storable_view_args)
    app.before_request(_start_clock)
    app.after_request(_log_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SignatureError, lambda exc: error(401, str(exc) or "bad signature"))
    app.register_error_handler(InvalidPayload, lambda exc: error(422, str(exc) or "invalid payload"))
    app.register_error_handler(NotConfigured, _not_configured)
    app.register_error_handler(IntegrityError, _conflict)
    app.register_error_handler(DBAPIError, _store_error)
    app.register_error_handler(PoolTimeout, _store_error)
    app.register_error_handler(Exception, _internal_error)
    return app


def error(status: int, reason: str, **extra: Any) -> tuple[Response, int]:
    """The one shape of every error answer."""
    return jsonify({"error": reason, **extra}), status


def read_body() -> bytes:
    """The raw request body; a 413 when it is over the size limit, however it was sent.

    Werkzeug refuses a ``Content-Length`` over the limit, but a chunked body has none and
    its stream just stops at the limit, which would store a truncated body. So a chunked
    body is read with room for one byte more: if that byte comes, the body is too large.
    """
    if "body" not in g:
        g.body_limit = limit = request.max_content_length
        if limit is not None and request.content_length is None:
            request.max_content_length = limit + 1
        g.body = request.get_data(cache=True)
        if limit is not None and len(g.body) > limit:
            raise RequestEntityTooLarge()
    return g.body


def read_json() -> Any:
    """The request body as JSON, every string :func:`storable`; a 400 that names what is wrong.

    Reading the body is also where a body over the size limit becomes a 413.
    """
    body = read_body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} "
                         f"({exc.reason})") from None
    try:
        return storable(json.loads(text, parse_int=_bounded_int))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _TooManyDigits as exc:
        raise BadRequest(f"body is not JSON this service accepts: a number of {exc} digits "
                         f"(at most {MAX_NUMBER_DIGITS})") from None
    except RecursionError:
        raise BadRequest("body is not JSON this service accepts: nested too deeply") from None


class _TooManyDigits(Exception):
    """A JSON integer longer than :data:`MAX_NUMBER_DIGITS`; the message is its length."""


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _TooManyDigits(len(digits.lstrip("-")))
    return int(digits)


def storable(value: Any) -> Any:
    """``value`` with every string in it storable alike on SQLite and PostgreSQL.

    A lone surrogate becomes U+FFFD (the Unicode replacement character) and NUL is dropped,
    rather than refusing a message a helpdesk would then retry for ever.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value).replace("\x00", "")
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``), for a log line."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def safe_path() -> str:
    """The request path with any personal data masked (customer ids can be emails) and a
    generic helpdesk's URL token replaced by ``***``, matched route or not."""
    return mask_pii(_URL_TOKEN.sub(r"\1***", request.path)).text


def _storable_view_args(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Ids in the path (``/api/customers/<id>/risk``) are compared with stored ones.
    if values:
        values.update(storable(values))


def _start_clock() -> None:
    g.started = time.perf_counter()


def _log_request(response: Response) -> Response:
    # One line per request, never the body, the query string or unmasked path data.
    duration = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    method = request.method if request.method in _METHODS else "other"
    service().metrics.observe(endpoint, method, response.status_code, duration)
    logger.info("%s %s %d %.1fms", request.method, safe_path(), response.status_code, duration * 1000)
    return response


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    custom = exc.description != type(exc).description
    if status == 404 and not custom:
        reason = f"not found: {request.method} {safe_path()}"
    elif status == 405:
        reason = f"method {request.method} not allowed on {safe_path()} (allowed: {', '.join(exc.valid_methods or [])})"
    elif status == 413:
        limit = g.get("body_limit", request.max_content_length)
        reason = f"request body larger than {limit} bytes" + (
            " (CHURNSIGNAL_SERVICE__MAX_BODY_BYTES)" if limit == current_app.config["MAX_CONTENT_LENGTH"] else "")
    else:
        reason = exc.description or exc.name
    response, status = error(status, reason)
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response, status


def _not_configured(exc: NotConfigured) -> tuple[Response, int]:
    reason = str(exc)
    return error(403, reason if reason.startswith("not configured") else f"not configured: {reason}")


def _conflict(exc: IntegrityError) -> tuple[Response, int]:
    logger.warning("store conflict on %s %s: %s", request.method, safe_path(), _db_reason(exc))
    return error(409, "conflict with a concurrent write; send the request again")


def _store_error(exc: Exception) -> tuple[Response, int]:
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)) or getattr(exc, "connection_invalidated", False):
        logger.warning("store unavailable on %s %s: %s", request.method, safe_path(), _db_reason(exc))
        response, status = error(503, "store unavailable; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, status
    # Any other database error is a bug of ours; its message may hold stored values, so it
    # is logged by class only.
    logger.error("store error on %s %s: %s", request.method, safe_path(), type(exc).__name__)
    return error(500, "internal error")


def _internal_error(exc: Exception) -> tuple[Response, int]:
    logger.error("internal error on %s %s: %s", request.method, safe_path(), type(exc).__name__,
                 exc_info=exc)
    return error(500, "internal error")


def _db_reason(exc: Exception) -> str:
    """A database error's first line, without the SQL statement and parameters SQLAlchemy adds."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()
    return f"{type(original).__name__}: {first[0] if first else ''}"
