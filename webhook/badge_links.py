"""Signed, expiring badge links and helpdesk app keys: what lets a page be shown without a login.

A badge link is ``/badge?source=S&ticket=T&exp=E[&by=B]&sig=X``: ``X`` is the hex
HMAC-SHA256, under ``badge.secret``, of the lines ``badge``, ``S``, ``T``, ``B`` (empty when
absent) and ``E`` (Unix seconds) joined by ``\\n``. Whoever holds the link may see that
ticket's badge and mark its alert handled until ``E``; no other ticket, nothing after.

An app key is ``E.X`` with ``X`` the HMAC of ``app``, ``S``, ``E``: it lets a helpdesk app
(Chatwoot dashboard app, Zendesk sidebar app) mint badge links for any ticket of source
``S`` (``POST /badge/link``), since those apps learn the ticket only in the browser.

The first line names the purpose, so a signature made for one can never pass for the other.
Signatures are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from pydantic import SecretStr

# Source names and ticket ids longer than the store's columns cannot name a stored ticket.
MAX_SOURCE = 80
MAX_TICKET = 200
MAX_BY = 200


class LinkRefused(Exception):
    """A badge link or app key that is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class BadgeLink:
    """What a valid link grants: one ticket of one helpdesk, until ``expires`` (Unix seconds)."""

    source: str
    ticket: str
    expires: int
    # Who the helpdesk says is looking; None: the agent types a name when marking it handled.
    by: str | None
    signature: str

    def query(self) -> dict[str, str]:
        """The link's query parameters, in the documented order."""
        return {"source": self.source, "ticket": self.ticket, "exp": str(self.expires)} | (
            {"by": self.by} if self.by else {}) | {"sig": self.signature}

    def path(self) -> str:
        return "/badge?" + urlencode(self.query())


def _sign(secret: SecretStr, *lines: str) -> str:
    return hmac.new(secret.get_secret_value().encode(), "\n".join(lines).encode(), hashlib.sha256).hexdigest()


def _valid_names(source: str, ticket: str, by: str | None) -> None:
    if not source or len(source) > MAX_SOURCE:
        raise LinkRefused(f"source must be 1 to {MAX_SOURCE} characters")
    if not ticket or len(ticket) > MAX_TICKET:
        raise LinkRefused(f"ticket must be 1 to {MAX_TICKET} characters")
    if by is not None and len(by) > MAX_BY:
        raise LinkRefused(f"by must be at most {MAX_BY} characters")
    if any("\n" in value for value in (source, ticket, by or "")):
        # A newline would let one set of fields sign as another.
        raise LinkRefused("source, ticket and by must be one line each")


def sign_link(secret: SecretStr, source: str, ticket: str, ttl_seconds: int, by: str | None = None,
              now: float | None = None) -> BadgeLink:
    """A link to ``ticket``'s badge valid for ``ttl_seconds`` from now."""
    by = by.strip() or None if by else None
    _valid_names(source, ticket, by)
    expires = int(now if now is not None else time.time()) + ttl_seconds
    return BadgeLink(source, ticket, expires, by, _sign(secret, "badge", source, ticket, by or "", str(expires)))


def verify_link(secret: SecretStr, source: str | None, ticket: str | None, exp: str | None, sig: str | None,
                by: str | None = None, now: float | None = None) -> BadgeLink:
    """The link these query values make, or :class:`LinkRefused` saying what is wrong with it.

    The signature is checked before the expiry, so that a forged link is called forged
    whatever expiry it claims.
    """
    missing = [name for name, value in (("source", source), ("ticket", ticket), ("exp", exp), ("sig", sig))
               if not value]
    if missing:
        raise LinkRefused(f"not a badge link: missing {', '.join(missing)}")
    _valid_names(source, ticket, by)
    if not exp.isdigit() or len(exp) > 12:
        raise LinkRefused("not a badge link: exp must be Unix seconds")
    expected = _sign(secret, "badge", source, ticket, by or "", exp)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise LinkRefused("forged or altered link: the signature does not match")
    if int(exp) <= (now if now is not None else time.time()):
        raise LinkRefused("expired link: ask the helpdesk for a new one")
    return BadgeLink(source, ticket, int(exp), by or None, sig)


def sign_app_key(secret: SecretStr, source: str, ttl_seconds: int, now: float | None = None) -> str:
    """A key with which a helpdesk app mints badge links for any ticket of ``source``."""
    _valid_names(source, "-", None)
    expires = int(now if now is not None else time.time()) + ttl_seconds
    return f"{expires}.{_sign(secret, 'app', source, str(expires))}"


def verify_app_key(secret: SecretStr, source: str, key: str | None, now: float | None = None) -> None:
    """Return if ``key`` is a current app key for ``source``; else :class:`LinkRefused`."""
    exp, _, sig = (key or "").partition(".")
    if not exp.isdigit() or len(exp) > 12 or not sig:
        raise LinkRefused("missing or malformed badge app key")
    _valid_names(source, "-", None)
    if not hmac.compare_digest(_sign(secret, "app", source, exp).encode(), sig.encode("utf-8", "replace")):
        raise LinkRefused(f"forged app key, or one made for another source than {source!r}")
    if int(exp) <= (now if now is not None else time.time()):
        raise LinkRefused("expired app key: make a new one with `churnsignal badge app-key`")


def csrf_token(secret: SecretStr, link: BadgeLink) -> str:
    """The token a handled form must carry: tied to the one link the page was opened with."""
    return _sign(secret, "csrf", link.signature)


def valid_csrf(secret: SecretStr, link: BadgeLink, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, link).encode(), token.encode("utf-8", "replace"))
