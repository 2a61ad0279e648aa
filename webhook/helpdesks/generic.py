"""A helpdesk wired by configuration alone (``helpdesks.generic.<name>``).

Inbound, ``mapping`` says with a JMESPath expression (https://jmespath.org) where each field
of a message lives in the JSON the helpdesk posts, one message per request; the raw body is
signed with hex HMAC-SHA256 under ``secret`` in ``signature_header``, with or without a
``sha256=`` prefix (GitHub's convention).

Outbound, an alert is POSTed as JSON to ``alert_url``, signed the same way with the same
secret, with the alert's ``Idempotency-Key``: the receiver is the one place that can drop a
retry's duplicate, since there is no ticket to read back first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jmespath
import requests
from jmespath.exceptions import JMESPathError

from churnsignal.config import GenericHelpdeskSettings

from .base import (
    AlertMessage,
    Author,
    Helpdesk,
    InvalidPayload,
    NotConfigured,
    Requester,
    SignatureError,
    SupportEvent,
)
from .http import Api, header, hmac_sha256, iso_z, same, secret, to_id, to_time

_REQUIRED = ("event_id", "ticket_id", "text", "created_at", "author_role")
_OPTIONAL = ("requester_id", "requester_email", "requester_phone", "requester_external_id", "channel")


class Generic(Helpdesk):
    def __init__(self, name: str, settings: GenericHelpdeskSettings, timeout: float) -> None:
        self.name = f"generic:{name}"
        self.settings = settings
        self.timeout = timeout
        self._paths: dict[str, Any] = {}
        for field in _REQUIRED + _OPTIONAL:
            expression = getattr(settings.mapping, field)
            if expression is None:
                continue
            self._paths[field] = _compile(name, field, expression)
        condition = settings.mapping.message_when
        self._message_when = _compile(name, "message_when", condition) if condition else None

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        expected = self._sign(body)  # no timestamp is signed, so there is no replay window
        name = self.settings.signature_header
        sent = header(headers, name)
        if not sent:
            raise SignatureError(f"{name} is required")
        if not same(expected, sent.strip().lower().removeprefix("sha256=")):
            raise SignatureError(f"{name} does not match the body")

    def parse(self, payload: Any) -> list[SupportEvent]:
        if self._message_when is not None and not self._message_when.search(payload):
            return []
        role = self._required("author_role", payload)
        if not isinstance(role, str):
            raise InvalidPayload(f"{self._where('author_role')}: expected a string, got {role!r}")
        text = self._required("text", payload)
        if not isinstance(text, str):
            raise InvalidPayload(f"{self._where('text')}: expected a string, got {type(text).__name__}")
        return [SupportEvent(
            source=self.name,
            event_id=to_id(self._required("event_id", payload), self._where("event_id")),
            ticket_id=to_id(self._required("ticket_id", payload), self._where("ticket_id")),
            author=self._author(role),
            text=text,
            created_at=to_time(self._required("created_at", payload), self._where("created_at")),
            requester=Requester(id=self._optional("requester_id", payload),
                                email=self._optional("requester_email", payload),
                                phone=self._optional("requester_phone", payload),
                                external_id=self._optional("requester_external_id", payload)),
            channel=self._optional("channel", payload) or "ticket",
        )]

    def retained(self, payload: Any) -> dict[str, Any]:
        """Each mapped field's value by the field's name: a JMESPath result has no path to nest it by."""
        found = {field: compiled.search(payload) for field, compiled in self._paths.items()}
        return {field: value for field, value in found.items() if value is not None}

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """A payload with each field where the mapping looks for it (plain dotted paths only)."""
        m = self.settings.mapping
        role = {"customer": m.customer_roles[0], "agent": m.agent_roles[0], "bot": "bot"}[event.author]
        values = {"event_id": event.event_id, "ticket_id": event.ticket_id, "text": event.text,
                  "created_at": iso_z(event.created_at), "author_role": role,
                  "requester_id": event.requester.id, "requester_email": event.requester.email,
                  "requester_phone": event.requester.phone,
                  "requester_external_id": event.requester.external_id, "channel": event.channel}
        payload: dict[str, Any] = {}
        for field, compiled in self._paths.items():
            if values[field] is not None:
                _place(payload, _keys(compiled.parsed, field), values[field])
        body = json.dumps(payload, ensure_ascii=False).encode()
        return {"Content-Type": "application/json", self.settings.signature_header: self._sign(body)}, body

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        if not self.settings.alert_url:
            raise NotConfigured(f"helpdesks.{self.name.replace(':', '.')}.alert_url is not set")
        body = json.dumps({
            "alert_id": alert.alert_id, "idempotency_key": alert.idempotency_key,
            "ticket_id": alert.ticket_id, "tier": alert.tier, "tag": alert.tag,
            "churn_prob": alert.churn_prob, "reasons": alert.reasons, "driver": alert.driver,
            "action": alert.action, "due_at": iso_z(alert.due_at, "seconds"), "attempt": alert.attempt,
            "note": alert.note(),
        }, ensure_ascii=False).encode()
        api = Api(http, self.settings.alert_url, self.timeout, alert.idempotency_key,
                  headers={"Content-Type": "application/json",
                           self.settings.signature_header: self._sign(body)})
        api("POST", "", data=body)

    # ------------------------------------------------------------------ helpers

    def _sign(self, body: bytes) -> str:
        key = secret(self.settings.secret, f"helpdesks.{self.name.replace(':', '.')}.secret")
        return hmac_sha256(key, body).hex()

    def _where(self, field: str) -> str:
        return f"{field} ({getattr(self.settings.mapping, field)})"

    def _required(self, field: str, payload: Any) -> Any:
        value = self._paths[field].search(payload)
        if value is None or value == "":
            raise InvalidPayload(f"{self._where(field)}: missing")
        return value

    def _optional(self, field: str, payload: Any) -> str | None:
        if field not in self._paths:
            return None
        value = self._paths[field].search(payload)
        return None if value is None or value == "" else to_id(value, self._where(field))

    def _author(self, role: str) -> Author:
        m = self.settings.mapping
        if role in m.customer_roles:
            return "customer"
        return "agent" if role in m.agent_roles else "bot"


def _keys(node: dict[str, Any], field: str) -> list[str]:
    """The keys of a plain dotted JMESPath expression (``a.b.c``), from its parsed tree."""
    if node["type"] == "field":
        return [node["value"]]
    if node["type"] == "subexpression":
        return [key for child in node["children"] for key in _keys(child, field)]
    raise ValueError(f"mapping.{field} is not a plain dotted path; signed_request cannot build a payload for it")


def _place(payload: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        payload = payload.setdefault(key, {})
    payload[keys[-1]] = value


def _compile(name: str, field: str, expression: str) -> Any:
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        raise NotConfigured(f"helpdesks.generic.{name}.mapping.{field}: "
                            f"not a JMESPath expression: {error}") from error
