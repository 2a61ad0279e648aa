"""How a generic helpdesk's webhook proves where it came from, as ``auth`` configures it.

Helpdesks disagree on everything: the hash, its encoding, the header or query parameter, a
prefix, what is signed (the body, a timestamp, a nonce) and whether they can sign at all.
``hmac`` and ``digest`` rebuild the signed text from the request and compare in constant time;
``url_token`` compares the token in the webhook's path. Every refusal is a
:class:`SignatureError` that names what was expected and never the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from churnsignal.config import PLACEHOLDER, DigestAuth, HmacAuth, RequestValue, UrlTokenAuth

from .base import SignatureError
from .http import check_window, header, same

# Unix times above this are in milliseconds (it is the year 5138 in seconds).
_MILLISECONDS_FROM = 10**11


@dataclass(frozen=True)
class WebhookRequest:
    """What a signature can cover or a token travel in: the request as it arrived."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    path_token: str | None = None
    peer: str | None = None


def verify(auth: HmacAuth | DigestAuth | UrlTokenAuth, secret: str, request: WebhookRequest,
           now: datetime, signature_header: str) -> None:
    """Raise :class:`SignatureError` unless ``request`` passes ``auth``."""
    if isinstance(auth, UrlTokenAuth):
        _verify_token(auth, request)
        return
    if request.path_token is not None:
        raise SignatureError("this webhook's URL has no token: post to /webhooks/generic/<name>")
    place = signature_place(auth, signature_header)
    sent = request_value(place, request)
    if not sent:
        raise SignatureError(f"{place.describe()} is required: the {signature_description(auth)}")
    timestamp = request_value(auth.timestamp, request) if auth.timestamp else None
    if auth.timestamp is not None:
        if not timestamp:
            raise SignatureError(f"{auth.timestamp.describe()} is required: the signature's timestamp")
        check_window(parse_timestamp(timestamp, auth.timestamp), now, auth.replay_window_seconds)
    nonce = (request_value(auth.nonce, request) or "") if auth.nonce else ""
    expected = sign(auth, secret, request.body, timestamp or "", nonce)
    if not _matches(auth.encoding, expected, sent):
        raise SignatureError(f"{place.describe()} does not match: expected the {signature_description(auth)}")


def sign(auth: HmacAuth | DigestAuth, secret: str, body: bytes, timestamp: str = "", nonce: str = "") -> str:
    """The signature a helpdesk sends for this body, timestamp and nonce (without prefix)."""
    message = render(auth.signed, body=body, timestamp=timestamp, nonce=nonce,
                     secret=secret if isinstance(auth, DigestAuth) else "")
    if isinstance(auth, HmacAuth):
        digest = hmac.new(secret.encode(), message, auth.algorithm).digest()
    else:
        digest = hashlib.new(auth.algorithm, message).digest()
    if auth.encoding == "hex":
        return digest.hex()
    if auth.encoding == "base64":
        return base64.b64encode(digest).decode()
    if auth.encoding == "hex_base64":
        return base64.b64encode(digest.hex().encode()).decode()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def render(template: str, *, body: bytes, timestamp: str, nonce: str, secret: str) -> bytes:
    """The bytes a template stands for; the placeholders were checked when the settings loaded."""
    values = {"body": body, "timestamp": timestamp.encode(), "nonce": nonce.encode(), "secret": secret.encode(),
              "md5(body)": hashlib.md5(body).hexdigest().encode(),
              "sha1(body)": hashlib.sha1(body).hexdigest().encode(),
              "sha256(body)": hashlib.sha256(body).hexdigest().encode()}
    parts = PLACEHOLDER.split(template)
    # split() alternates literal text and placeholder names.
    return b"".join(part.encode() if i % 2 == 0 else values[part] for i, part in enumerate(parts))


def signature_place(auth: HmacAuth | DigestAuth, signature_header: str) -> RequestValue:
    return auth.signature or RequestValue(header=signature_header, prefix=f"{auth.algorithm}=")


def parse_timestamp(value: str, place: RequestValue) -> datetime:
    """Unix seconds or milliseconds, or ISO 8601; anything else is refused as unsigned."""
    text = value.strip()
    try:
        if text.isascii() and text.isdigit():
            number = int(text)
            return datetime.fromtimestamp(number / 1000 if number >= _MILLISECONDS_FROM else number, UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise SignatureError(f"{place.describe()}: not Unix seconds, milliseconds or ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _verify_token(auth: UrlTokenAuth, request: WebhookRequest) -> None:
    if not request.path_token:
        raise SignatureError("this webhook's URL must end with its token: /webhooks/generic/<name>/<token>")
    if not same(auth.token.get_secret_value(), request.path_token):
        raise SignatureError("the token in the webhook URL does not match")
    if auth.allow_from:
        address = _client_address(auth, request)
        networks = [ipaddress.ip_network(cidr, strict=False) for cidr in auth.allow_from]
        if address is None or not any(address in network for network in networks):
            raise SignatureError(f"the client address {address or 'unknown'} is not in auth.allow_from")


def _client_address(auth: UrlTokenAuth, request: WebhookRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    raw = header(request.headers, auth.client_ip_header) if auth.client_ip_header else request.peer
    try:
        return ipaddress.ip_address((raw or "").split(",")[0].strip())
    except ValueError:
        return None


def request_value(place: RequestValue, request: WebhookRequest) -> str | None:
    raw = header(request.headers, place.header) if place.header else request.query.get(place.query or "")
    if raw is None:
        return None
    raw = raw.strip()
    return raw[len(place.prefix):] if place.prefix and raw.lower().startswith(place.prefix.lower()) else raw


def _matches(encoding: str, expected: str, sent: str) -> bool:
    if encoding == "hex":
        return same(expected, sent.lower())
    if encoding == "base64url":
        return same(expected, sent.rstrip("="))
    if encoding == "hex_base64":
        # Senders disagree on padding and alphabet (美洽's own examples use both): compare the
        # hex digest the base64 stands for.
        return same(base64.b64decode(expected).decode(), _hex_of_base64(sent))
    return same(expected, sent)


def _hex_of_base64(sent: str) -> str:
    """The lower-case text a base64 or base64url value decodes to; '' when it is not one."""
    try:
        return base64.urlsafe_b64decode(sent.replace("+", "-").replace("/", "_") + "=" * (-len(sent) % 4)).decode().lower()
    except (ValueError, UnicodeDecodeError):
        return ""


def signature_description(auth: HmacAuth | DigestAuth) -> str:
    kind = f"HMAC-{auth.algorithm.upper()}" if isinstance(auth, HmacAuth) else auth.algorithm.upper()
    return f"{auth.encoding} {kind} of {auth.signed}"
