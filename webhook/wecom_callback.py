"""企业微信 微信客服's callback URL: the verification GET, and notices that are stored, then pulled.

A notice carries no message, only the news that an account has some and a Token to fetch them
with. The webhook verifies and decrypts it, refuses a replay, stores it as a delivery and queues
the pull (:mod:`churnsignal.worker.wecom_sync`), then answers ``success``: 企业微信 sends a notice
again when it has no answer within 5 seconds, which a pull cannot promise.

What is stored of a notice is its account (``open_kfid``), its Token (valid for 10 minutes),
``msg_signature`` and ``nonce``: no personal data. A replay is the same ``msg_signature`` and
``nonce`` again while the signature's timestamp is still accepted. The stored deliveries are
what every gunicorn worker sees, so a replay sent to another process is refused too. The check
and the insert are not one atomic step: a replay racing its original by milliseconds can get
through, and then costs one more pull from the saved cursor, which stores nothing twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, request
from sqlalchemy import select

from churnsignal.store import Delivery, utcnow
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import logger, read_body, service
from churnsignal.webhook.helpdesks.base import NotConfigured, SignatureError
from churnsignal.webhook.helpdesks.wecom_kf import NAME, Notice, WecomKf
from churnsignal.worker.app import enqueue_pull

blueprint = Blueprint("wecom_kf", __name__)

PATH = "/webhooks/wecom_kf"
# What the callback needs before it accepts anything.
SETTINGS = ("CHURNSIGNAL_HELPDESKS__WECOM_KF__CORP_ID", "CHURNSIGNAL_HELPDESKS__WECOM_KF__TOKEN",
            "CHURNSIGNAL_HELPDESKS__WECOM_KF__ENCODING_AES_KEY")


@blueprint.get(PATH)
def verify_url() -> Response:
    """企业微信 checks the URL before saving it: the decrypted ``echostr`` proves we hold the keys."""
    return Response(_adapter().echo(request.args, datetime.now(UTC)), mimetype="text/plain")


@blueprint.post(PATH)
def notice() -> Response:
    adapter = _adapter()
    announced = adapter.notice(request.args, read_body(), datetime.now(UTC))
    if announced is not None:
        _pull(_record(announced, adapter.settings.replay_window_seconds))
    # 企业微信 takes "success" (or an empty body) as received and does not send it again.
    return Response("success", mimetype="text/plain")


def _adapter() -> WecomKf:
    adapter = helpdesks.get(NAME, service().settings.helpdesks)
    if adapter.settings.token is None:
        raise NotConfigured(f"not configured: set {', '.join(SETTINGS)} (unsigned callbacks are refused)")
    return adapter


def _record(announced: Notice, window_seconds: int) -> int:
    """Store the notice; :class:`SignatureError` when it is one already stored (a replay)."""
    now = utcnow()
    seen = json.dumps({"msg_signature": announced.msg_signature, "nonce": announced.nonce})
    # A timestamp is accepted from window before to window after its arrival, so its first
    # arrival can be up to twice the window before a replay that is still accepted.
    since = now - timedelta(seconds=2 * window_seconds)
    with service().store.session() as session:
        replayed = session.scalar(select(Delivery.id).where(
            Delivery.source == NAME, Delivery.received_at >= since,
            Delivery.body.contains(seen[1:-1], autoescape=True)).limit(1))
        if replayed is not None:
            raise SignatureError("notice already received: the same msg_signature and nonce is a replay")
        delivery = Delivery(source=NAME, received_at=now, body=json.dumps({
            "msg_signature": announced.msg_signature, "nonce": announced.nonce,
            "open_kfid": announced.open_kfid, "token": announced.sync_token}))
        session.add(delivery)
        session.flush()
        return delivery.id


def _pull(delivery_id: int) -> None:
    """Queue the pull; a broker outage leaves it to the next notice on the account (see wecom_sync)."""
    try:
        enqueue_pull(service().celery, delivery_id)
    except Exception as exc:  # the notice is stored: whatever the broker did, 企业微信 gets its answer
        logger.warning("企业微信 notice %s stored but its pull not queued: %s", delivery_id, type(exc).__name__)
