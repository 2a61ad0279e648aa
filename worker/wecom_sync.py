"""Pulling the 企业微信 微信客服 messages a stored notice announced: what the pull task calls.

The pull runs in a worker, not in the webhook: 企业微信 wants its callback answered within 5 s
and sends it again otherwise, while a pull makes several API calls and stores up to 1000
messages a page. The notice is stored first, so a pull that fails is retried from it.

Each page is stored (one delivery, its new events) before its ``next_cursor`` is saved, so a
pull that dies between the two fetches that page again and stores nothing twice: events are
unique per source and ``msgid``. Two pulls of one account at once fetch the same pages and
store them once; whichever cursor is saved last is a position both reached. A notice whose pull
never ran is caught up by the next notice on that account, which pulls from the saved cursor.
"""

from __future__ import annotations

import json

import requests

from churnsignal.config import Settings
from churnsignal.store import Delivery, Store
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks.wecom_kf import NAME
from churnsignal.webhook.inbound import masked_body, persist


def pull(store: Store, settings: Settings, http: requests.Session, delivery_id: int) -> list[int]:
    """Fetch and store what the notice stored as ``delivery_id`` announced; the ids of new events.

    Raises :class:`~churnsignal.webhook.helpdesks.DeliveryError` when 企业微信's API fails and
    ``LookupError`` when there is no such notice.
    """
    with store.session() as session:
        delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.source != NAME:
        raise LookupError(f"delivery {delivery_id} is not a stored 企业微信 notice")
    notice = json.loads(delivery.body)
    open_kfid = notice["open_kfid"]
    adapter = helpdesks.get(NAME, settings.helpdesks)
    new: list[int] = []
    for page in adapter.sync(http, open_kfid, notice["token"], store.cursor(NAME, open_kfid)):
        events = adapter.parse(page)
        if events:
            new += persist(store, settings.identity, NAME, events, masked_body(adapter, page))[1]
        if page.get("next_cursor"):
            store.save_cursor(NAME, open_kfid, page["next_cursor"])
    return new
