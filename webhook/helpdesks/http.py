"""The HTTP both ways, shared by every adapter.

Inbound: reading a webhook's headers, signatures and JSON fields, so that every adapter reports
a bad signature or a malformed payload in the same words. Outbound: one way to call a
helpdesk's API, so that a 429, a 5xx, a redirect or a timeout means the same :class:`DeliveryError`
whichever helpdesk answered.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin

import requests
from pydantic import SecretStr

from churnsignal.config import TicketStatus

from .base import (
    AlertMessage,
    DeliveryError,
    InvalidPayload,
    NotConfigured,
    SignatureError,
    marker,
)

# Client errors a retry can fix: a timeout, a conflicting concurrent update, too early, too many.
_TRANSIENT_CLIENT_ERRORS = {408, 409, 425, 429}
# The times accepted from webhooks and the API (naive UTC).
EARLIEST = datetime(1900, 1, 1)
LATEST = datetime(2200, 1, 1)
# A URL's user and password: everything from "://" to the last "@" of the authority.
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")
# A query parameter whose name suggests a secret (token, api_key, client_secret, sig, password...)
# and its value, which ends at the next parameter, fragment or space; punctuation just before a
# space (the ": " after a URL in a message) is the message's, not the value's.
_SECRET_PARAMETER = re.compile(r"([?&;][^=&#\s]*(?:token|secret|passw|pwd|key|sig|auth|credential)[^=&#\s]*=)"
                               r"[^&#\s]*?(?=[&#]|[:;,.)'\"]*(?:\s|$))", re.IGNORECASE)


# ---------------------------------------------------------------- inbound: headers and signatures

def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (tests and frameworks disagree on the case)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def secret(value: SecretStr | None, setting: str) -> str:
    """The configured secret; without one we refuse the request rather than trust it unsigned."""
    if value is None or not value.get_secret_value():
        raise NotConfigured(f"{setting} is not set: unsigned webhooks are refused")
    return value.get_secret_value()


def hmac_sha256(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode(), message, hashlib.sha256).digest()


def same(expected: str, received: str) -> bool:
    """Constant-time comparison, so a forger learns nothing from how long a rejection takes."""
    return hmac.compare_digest(expected.encode(), received.encode())


def check_window(sent: datetime, now: datetime, window_seconds: int) -> None:
    """Refuse a signature made too long before (or after) ``now``: it is a replay."""
    skew = abs((utc_naive(now) - utc_naive(sent)).total_seconds())
    if skew > window_seconds:
        raise SignatureError(f"signature timestamp is {skew:.0f} s from now, outside the "
                             f"{window_seconds} s replay window")


# ---------------------------------------------------------------- inbound: times

def utc_naive(moment: datetime) -> datetime:
    """Naive UTC, the one form of time stored; a naive input is taken to be UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def iso_z(moment: datetime, timespec: str = "milliseconds") -> str:
    """ISO 8601 in UTC with a ``Z``, as the helpdesks write times."""
    return utc_naive(moment).isoformat(timespec=timespec) + "Z"


def epoch(moment: datetime) -> int:
    return int(utc_naive(moment).replace(tzinfo=UTC).timestamp())


def to_time(value: Any, path: str) -> datetime:
    """An ISO 8601 string or Unix seconds, as naive UTC; anything else is an invalid payload.

    Only times from :data:`EARLIEST` to :data:`LATEST` are taken: no helpdesk or shop writes
    others, and the workers' pandas times end in 2262.
    """
    moment = None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
        elif isinstance(value, str):
            moment = utc_naive(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError, OSError):
        # fromisoformat's bad strings, NaN, and times that leave Python's years 1 to 9999
        # once their offset or epoch is applied.
        pass
    if moment is None:
        raise InvalidPayload(f"{path}: not an ISO 8601 time or Unix seconds: {shown(value)}")
    if not EARLIEST <= moment < LATEST:
        raise InvalidPayload(f"{path}: {shown(value)} is not between {EARLIEST.date()} and {LATEST.date()}")
    return moment


def shown(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters, for an error message about a sender's value."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------- inbound: JSON fields

def as_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidPayload("payload: expected a JSON object")
    return payload


def lookup(payload: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None where it is absent; a non-object on the way is invalid."""
    value: Any = payload
    walked: list[str] = []
    for key in path.split("."):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidPayload(f"{'.'.join(walked)}: expected an object")
        value = value.get(key)
        walked.append(key)
    return value


def retain(payload: Any, paths: Iterable[str]) -> dict[str, Any]:
    """The values at dotted ``paths``, nested as in the payload: what an adapter keeps of a
    webhook. A path that is absent, or runs into something other than an object, is left out."""
    kept: dict[str, Any] = {}
    for path in paths:
        keys = path.split(".")
        value: Any = payload
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        target = kept
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return kept


def required(payload: dict[str, Any], path: str) -> Any:
    value = lookup(payload, path)
    if value is None:
        raise InvalidPayload(f"{path}: missing")
    return value


def required_id(payload: dict[str, Any], path: str) -> str:
    """An identifier: helpdesks send the same id as a number in one payload and a string in another."""
    return to_id(required(payload, path), path)


def to_id(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise InvalidPayload(f"{path}: expected an id (a string or an integer), got {value!r}")
    return str(value)


def required_str(payload: dict[str, Any], path: str) -> str:
    value = required(payload, path)
    if not isinstance(value, str):
        raise InvalidPayload(f"{path}: expected a string, got {type(value).__name__}")
    return value


def optional_str(payload: dict[str, Any], path: str) -> str | None:
    """A string that may be absent; an empty one (an unfilled placeholder) counts as absent."""
    value = lookup(payload, path)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidPayload(f"{path}: expected a string, got {type(value).__name__}")
    return str(value)


def required_flag(payload: dict[str, Any], path: str) -> bool:
    """A boolean; placeholders render ``"true"``/``"false"`` as strings, so those count too."""
    value = required(payload, path)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidPayload(f"{path}: expected true or false, got {value!r}")


def ticket_status(payload: dict[str, Any], path: str, meaning: Mapping[str, TicketStatus]) -> TicketStatus | None:
    """The ticket status at ``path`` through an adapter's table of the helpdesk's values
    (lower case); None when absent or a value the table does not know (a custom status), so
    that an unknown status never refuses a message.
    """
    value = lookup(payload, path)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return meaning.get(str(value).strip().lower())


# ---------------------------------------------------------------- outbound

@dataclass
class Api:
    """One alert's calls to one helpdesk API: same session, timeout, credentials and
    ``Idempotency-Key`` on every request, and one mapping from failures to :class:`DeliveryError`.

    Redirects are never followed. ``requests`` would turn a redirected POST into a GET, whose
    200 would count an alert delivered that never landed, and would carry headers such as
    Chatwoot's ``api_access_token`` to whatever host the answer names.
    """

    http: requests.Session
    base_url: str
    timeout: float
    # None for reads that change nothing (a pull): there is no retry to recognise.
    idempotency_key: str | None
    # Basic credentials, or a requests auth object that signs each request (query_signing.py).
    auth: tuple[str, str] | requests.auth.AuthBase | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                 params: dict[str, Any] | None = None, expect: Collection[int] | None = None) -> Any:
        """Send one request; the decoded JSON answer (None when there is none).

        ``expect``: the statuses that mean it worked, for APIs configured by hand; another
        success is a permanent failure (the configuration, not the helpdesk, is wrong).
        """
        url = join_url(self.base_url, path)
        headers = dict(self.headers)
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        try:
            response = self.http.request(method, url, json=json, data=data, params=params, headers=headers,
                                         auth=self.auth, timeout=self.timeout, allow_redirects=False)
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                requests.exceptions.InvalidURL) as error:
            raise NotConfigured(f"{url} is not a usable API address: {error}") from error
        except requests.RequestException as error:
            # Timeouts and refused connections: the helpdesk may be back in a moment.
            raise DeliveryError(f"{method} {url}: {type(error).__name__}: {error}") from error
        if expect is None or response.status_code not in expect:
            if expect is not None and 200 <= response.status_code < 300:
                raise DeliveryError(f"{method} {url}: HTTP {response.status_code}, expected "
                                    f"{', '.join(map(str, expect))}", permanent=True)
            raise_for_status(response, f"{method} {url}")
        try:
            return response.json() if response.content else None
        except ValueError:
            return None


def ticket_segment(ticket_id: str) -> str:
    """The ticket id as one URL path segment, or a permanent :class:`DeliveryError`.

    ``quote`` escapes ``/`` but leaves ``.`` and ``..`` as they are, and URL normalisation
    (urllib3's, a proxy's, the helpdesk's router) resolves them: ``/tickets/..`` would address
    the collection or the account instead of a ticket, and an empty id the collection itself.
    """
    if ticket_id in ("", ".", ".."):
        raise DeliveryError(f"ticket id {ticket_id!r} cannot be a URL path segment: refused", permanent=True)
    return quote(ticket_id, safe="")


def join_url(base: str, path: str) -> str:
    """The configured ``base`` exactly as written, then ``path``.

    An empty path (the generic adapter's ``alert_url``) is the URL itself, trailing slash and
    query included: a receiver may route ``/hook`` and ``/hook/`` apart. Where a base ending in
    ``/`` meets an API path starting with ``/``, one of the two is dropped, so that
    ``https://x.zendesk.com/`` and ``https://x.zendesk.com`` reach the same API.
    """
    if base.endswith("/") and path.startswith("/"):
        return base + path[1:]
    return base + path


def raise_for_status(response: requests.Response, what: str) -> None:
    """Turn a failed answer into a :class:`DeliveryError` that says whether to retry, and when."""
    status = response.status_code
    if 300 <= status < 400:
        raise DeliveryError(_redirected(response, what), permanent=True)
    if status < 400:
        return
    message = f"{what}: HTTP {status} {response.text[:200]}".rstrip()
    if status == 429:
        raise DeliveryError(message, retry_after=retry_after(response.headers.get("Retry-After")))
    if status < 500 and status not in _TRANSIENT_CLIENT_ERRORS:
        raise DeliveryError(message, permanent=True)
    raise DeliveryError(message)


def _redirected(response: requests.Response, what: str) -> str:
    """A redirect means the configured URL is not the API's own: say where it points, in full."""
    location = response.headers.get("Location")
    where = urljoin(response.url, location) if location else "nowhere (no Location header)"
    return (f"{what}: HTTP {response.status_code} redirect to {where}: outbound calls never follow "
            f"redirects; set the URL to where it points")


def without_credentials(text: str) -> str:
    """``text`` with the credentials a URL in it may carry replaced by ``***``.

    Failure messages name the URL they called or were redirected to, and configured URLs can
    hold a user and password or a token in the query; the message is stored, logged and shown
    to operators, none of whom should learn a helpdesk's credentials from it.
    """
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO.sub("***@", text))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait, from a ``Retry-After`` of seconds or of an HTTP date."""
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def already_posted(texts: Iterable[str | None], alert: AlertMessage) -> bool:
    """Whether an earlier try's note landed: every note ends with its alert's marker line."""
    line = marker(alert.alert_id)
    return any(line in text for text in texts if text)


def other_risk_tags(tags: Iterable[str], alert: AlertMessage) -> list[str]:
    """The ticket's churn-risk tags other than this alert's: a ticket shows one tier at a time."""
    return [tag for tag in tags if tag.startswith("churn-risk-") and tag != alert.tag]
