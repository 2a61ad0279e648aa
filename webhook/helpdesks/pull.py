"""A generic helpdesk's pull (``helpdesks.generic.<name>.pull``): fetching what a webhook only announces.

Some helpdesks post a notice ("session 81 has new messages", or just "something changed")
and leave the messages to be fetched from their API. The pull is one configured request: a
URL template and an optional JSON body template over the notice's ``values`` (and ``cursor``,
``since``, ``until`` for sync APIs and backfills), the same credentials an outbound request
takes (:func:`.outbound.api`), and a JMESPath to the answer's list of messages, each then read
with the helpdesk's ordinary ``mapping``. A failed request is the same :class:`DeliveryError`
as a failed alert, so a 429, a 5xx or a timeout is retried and a 401 is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from jinja2 import TemplateError

from churnsignal.config import PullSettings
from churnsignal.nlp.masking import mask_pii

from .base import DeliveryError, SupportEvent
from .http import shown
from .outbound import api, json_body


@dataclass(frozen=True)
class Page:
    """One answer of the pulled API: its messages read with the mapping, and where the next page starts."""

    fetched: int  # messages in the answer
    events: list[SupportEvent]
    # What the store keeps of each message read (Helpdesk.retained), unmasked yet.
    retained: list[dict[str, Any]]
    # "message <n>: <why>" for each message the mapping could not read.
    errors: list[str]
    cursor: str | None
    more: bool


def fetch(pull: PullSettings, values: dict[str, Any], http: requests.Session, timeout: float,
          setting: str) -> tuple[list[Any], str | None, bool]:
    """One request: the answer's messages, the next page's cursor and whether there is a next page.

    An answer without a list where ``messages`` points (an API that reports errors with a 200,
    as WeCom's do) fails the pull like a 5xx would: it is retried, and the error names the path.
    """
    try:
        address = pull.url_for(values)
    except (TemplateError, TypeError, ValueError) as error:
        raise DeliveryError(f"{setting}.url: cannot render: {error}", permanent=True) from error
    body = json_body(pull.body_for, values, f"{setting}.body")
    answer = api(http, pull.auth, address, timeout, None)(pull.method, "", json=body)
    items = pull.messages_in(answer)
    if not isinstance(items, list):
        raise DeliveryError(f"{setting}.messages: {pull.messages} finds no list in the answer of "
                            f"{pull.method} {address}: {_masked(answer)}")
    if pull.cursor is None:
        return items, None, False
    cursor, more = pull.next_cursor(answer)
    return items, None if cursor in (None, "") else str(cursor), more


def _masked(answer: Any) -> str:
    """The start of an unexpected answer, for the log: enough to see an error code, never personal data."""
    return shown(mask_pii(json.dumps(answer, ensure_ascii=False)).text, 200)
