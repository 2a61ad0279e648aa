"""A helpdesk wired by configuration alone (``helpdesks.generic.<name>``).

Inbound, ``mapping`` says with a JMESPath expression (https://jmespath.org) where each field
of a message lives in the JSON the helpdesk posts, one message per request, with named list
items (``mapping.select``) and literal defaults for what JMESPath alone cannot say. The
ticket's status (``mapping.ticket_status``) is read through ``mapping.status_values``. ``auth``
says how the request is authenticated (:mod:`.signing`); by default the raw body is signed
with hex HMAC-SHA256 under ``secret`` in ``signature_header``, with or without a ``sha256=``
prefix (GitHub's convention).

Outbound, an alert is POSTed as JSON to ``alert_url``, signed the same way with the same
secret, with the alert's ``Idempotency-Key``: the receiver is the one place that can drop a
retry's duplicate, since there is no ticket to read back first. Or, with ``outbound``, it
becomes the requests the helpdesk's own API takes (:mod:`.outbound`).

A webhook that only announces messages (ids, or a bare notice) is answered by ``pull``: the
request that fetches them, each then read with the same ``mapping`` (:mod:`.pull`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jmespath
import requests
from jmespath.exceptions import JMESPathError

from churnsignal.config import MAPPED_FIELDS, GenericHelpdeskSettings, UrlTokenAuth

from . import outbound, pull
from .base import (
    AlertMessage,
    Author,
    Helpdesk,
    InvalidPayload,
    NotConfigured,
    Requester,
    SignedWebhook,
    SupportEvent,
)
from .http import Api, hmac_sha256, iso_z, secret, shown, to_id, to_time
from .pull import Page
from .signing import WebhookRequest, sign, signature_place, verify


class Generic(Helpdesk):
    def __init__(self, name: str, settings: GenericHelpdeskSettings, timeout: float) -> None:
        self.name = f"generic:{name}"
        self.settings = settings
        self.timeout = timeout
        self._paths: dict[str, Any] = {}
        for field in MAPPED_FIELDS:
            expression = getattr(settings.mapping, field)
            if expression is not None:
                self._paths[field] = _compile(name, field, expression)
        self._select = {item: tuple(_compile(name, f"select.{item}.{part}", getattr(spec, part))
                                    for part in ("list", "where", "equals"))
                        for item, spec in settings.mapping.select.items()}
        condition = settings.mapping.message_when
        self._message_when = _compile(name, "message_when", condition) if condition else None

    # ------------------------------------------------------------------ inbound

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime, *,
               query: Mapping[str, str] | None = None, path_token: str | None = None,
               peer: str | None = None) -> None:
        """As :meth:`Helpdesk.verify`; the query string, the path's token and the peer's
        address are what ``auth`` may also need."""
        key = secret(self.settings.secret, f"{self._setting}.secret")
        verify(self.settings.auth, key, WebhookRequest(headers, body, query or {}, path_token, peer), now,
               self.settings.signature_header)

    def parse(self, payload: Any) -> list[SupportEvent]:
        if self._message_when is not None and not self._message_when.search(payload):
            return []
        payload = self._with_selected(payload)
        return [SupportEvent(source=self.name, **{field: read(payload) for field, read in self._readers().items()})]

    def mapping_errors(self, payload: Any) -> list[str]:
        """Every field the mapping cannot read from ``payload``, each naming its path: what
        :meth:`parse` refuses at the first, all at once (for ``churnsignal helpdesk check``)."""
        try:
            payload = self._with_selected(payload)
        except InvalidPayload as error:
            return [str(error)]
        errors = []
        for read in self._readers().values():
            try:
                read(payload)
            except InvalidPayload as error:
                errors.append(str(error))
        return errors

    def retained(self, payload: Any) -> dict[str, Any]:
        """Each mapped field's value by the field's name: a JMESPath result has no path to nest it by."""
        payload = self._with_selected(payload)
        found = {field: compiled.search(payload) for field, compiled in self._paths.items()}
        return {field: value for field, value in found.items() if value is not None}

    def signed_request(self, event: SupportEvent, now: datetime) -> tuple[dict[str, str], bytes]:
        """As :meth:`signed_webhook`, for an ``auth`` that signs in headers only."""
        webhook = self.signed_webhook(event, now)
        if webhook.path != self.webhook_path:
            raise ValueError(f"{self._setting}.auth: a {self.settings.auth.scheme} request carries values in its "
                             "URL; signed_webhook builds it with its path")
        return webhook.headers, webhook.body

    def signed_webhook(self, event: SupportEvent, now: datetime) -> SignedWebhook:
        """A payload with each field where the mapping looks for it (plain dotted paths only),
        authenticated as ``auth`` says: signed in headers or the query string, or posted to the
        URL that ends with the token."""
        headers = {"Content-Type": "application/json"}
        body = self._payload(event)
        auth = self.settings.auth
        if isinstance(auth, UrlTokenAuth):
            return SignedWebhook(f"{self.webhook_path}/{auth.token.get_secret_value()}", headers, body)
        key = secret(self.settings.secret, f"{self._setting}.secret")
        timestamp, nonce = str(int(now.timestamp())), f"n{int(now.timestamp() * 1e6)}"
        # The default place accepts a "sha256=" prefix; the helpdesk this stands in for sends none.
        place = signature_place(auth, self.settings.signature_header)
        sent = [(place, (place.prefix if auth.signature else "") + sign(auth, key, body, timestamp, nonce))]
        sent += [(where, where.prefix + value) for where, value in ((auth.timestamp, timestamp), (auth.nonce, nonce))
                 if where is not None]
        query: dict[str, str] = {}
        for where, value in sent:
            if where.header:
                headers[where.header] = value
            else:
                query[where.query] = value
        return SignedWebhook(self.webhook_path + (f"?{urlencode(query)}" if query else ""), headers, body)

    def _payload(self, event: SupportEvent) -> bytes:
        m = self.settings.mapping
        role = {"customer": m.customer_roles[0], "agent": m.agent_roles[0], "bot": "bot"}[event.author]
        values = {"event_id": event.event_id, "ticket_id": event.ticket_id, "text": event.text,
                  "created_at": iso_z(event.created_at), "author_role": role,
                  "requester_id": event.requester.id, "requester_email": event.requester.email,
                  "requester_phone": event.requester.phone,
                  "requester_external_id": event.requester.external_id, "channel": event.channel,
                  "ticket_status": _native_status(m.status_values, event.ticket_status)}
        payload: dict[str, Any] = {}
        for field, compiled in self._paths.items():
            if values[field] is not None:
                _place(payload, _keys(compiled.parsed, field), values[field])
        return json.dumps(payload, ensure_ascii=False).encode()

    # ------------------------------------------------------------------ pull

    def notice(self, payload: Any) -> dict[str, Any] | None:
        """The values to pull with when ``payload`` only announces messages; None when it is one
        to read with the mapping (no ``pull``, or ``pull.when`` does not hold)."""
        configured = self.settings.pull
        if configured is None or not configured.is_notice(payload):
            return None
        return configured.notice_values(payload)

    def pull_page(self, values: dict[str, Any], http: requests.Session) -> Page:
        """One request of the pull with these template values, its messages read with the mapping.

        An item the mapping cannot read is reported in :attr:`Page.errors` and the others are
        kept: asking again would fetch the same item, and a wrong mapping is fixed in the YAML.
        """
        if self.settings.pull is None:
            raise NotConfigured(f"{self._setting}.pull is not set")
        items, cursor, more = pull.fetch(self.settings.pull, values, http, self.timeout, f"{self._setting}.pull")
        events: list[SupportEvent] = []
        retained: list[dict[str, Any]] = []
        errors: list[str] = []
        for number, item in enumerate(items):
            try:
                events += self.parse(item)
                retained.append(self.retained(item))
            except InvalidPayload as error:
                errors.append(f"message {number}: {error}")
        return Page(len(items), events, retained, errors, cursor, more)

    # ------------------------------------------------------------------ outbound

    def post_alert(self, alert: AlertMessage, http: requests.Session) -> None:
        if self.settings.outbound:
            outbound.send(self.settings.outbound, alert, http, self.timeout, f"{self._setting}.outbound")
            return
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

    @property
    def _setting(self) -> str:
        return f"helpdesks.{self.name.replace(':', '.')}"

    def _sign(self, body: bytes) -> str:
        """Outbound alerts: always hex HMAC-SHA256 of the body, whatever ``auth`` says inbound."""
        return hmac_sha256(secret(self.settings.secret, f"{self._setting}.secret"), body).hex()

    def _with_selected(self, payload: Any) -> Any:
        """The payload with each ``mapping.select`` item added at the root under its name."""
        if not self._select or not isinstance(payload, dict):
            return payload
        selected = dict(payload)
        for name, (items, where, equals) in self._select.items():
            wanted = equals.search(payload)
            found = items.search(payload)
            spec = self.settings.mapping.select[name]
            if not isinstance(found, list):
                raise InvalidPayload(f"select.{name}: {spec.list} is not a list")
            matches = [item for item in found if wanted is not None and _same_value(where.search(item), wanted)]
            if not matches:
                raise InvalidPayload(f"select.{name}: no item of {spec.list} whose {spec.where} equals "
                                     f"{spec.equals} ({shown(wanted)})")
            selected[name] = matches[0]
        return selected

    def _readers(self) -> dict[str, Callable[[Any], Any]]:
        """How each field of a :class:`SupportEvent` is read from a payload, in the order checked."""
        return {
            "author": lambda payload: self._author(self._string("author_role", payload, repr)),
            "text": lambda payload: self._string("text", payload, lambda value: type(value).__name__),
            "event_id": lambda payload: to_id(self._required("event_id", payload), self._where("event_id")),
            "ticket_id": lambda payload: to_id(self._required("ticket_id", payload), self._where("ticket_id")),
            "created_at": lambda payload: to_time(self._required("created_at", payload), self._where("created_at")),
            "requester": lambda payload: Requester(id=self._optional("requester_id", payload),
                                                   email=self._optional("requester_email", payload),
                                                   phone=self._optional("requester_phone", payload),
                                                   external_id=self._optional("requester_external_id", payload)),
            "channel": lambda payload: self._optional("channel", payload) or "ticket",
            "ticket_status": lambda payload: self.settings.mapping.status(self._found("ticket_status", payload)),
        }

    def _string(self, field: str, payload: Any, described: Callable[[Any], str]) -> str:
        value = self._required(field, payload)
        if not isinstance(value, str):
            raise InvalidPayload(f"{self._where(field)}: expected a string, got {described(value)}")
        return value

    def _where(self, field: str) -> str:
        return f"{field} ({getattr(self.settings.mapping, field) or 'default'})"

    def _found(self, field: str, payload: Any) -> Any:
        value = self._paths[field].search(payload) if field in self._paths else None
        return self.settings.mapping.defaults.get(field) if value is None or value == "" else value

    def _required(self, field: str, payload: Any) -> Any:
        value = self._found(field, payload)
        if value is None or value == "":
            raise InvalidPayload(f"{self._where(field)}: missing")
        return value

    def _optional(self, field: str, payload: Any) -> str | None:
        value = self._found(field, payload)
        return None if value is None or value == "" else to_id(value, self._where(field))

    def _author(self, role: str) -> Author:
        m = self.settings.mapping
        if role in m.customer_roles:
            return "customer"
        return "agent" if role in m.agent_roles else "bot"


def _native_status(values: dict[str, str], status: str | None) -> str | None:
    """The helpdesk's first value that means ``status`` (or ``status`` itself, when none does)."""
    return next((native for native, meaning in values.items() if meaning == status), status)


def _same_value(left: Any, right: Any) -> bool:
    """Ids compare as text: one part of a payload may send 42 where another sends "42"."""
    def text(value: Any) -> Any:
        return str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    return text(left) == text(right)


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
