"""Which of our customers a helpdesk requester is.

A helpdesk knows a requester by its own user id, an email, a phone number and sometimes the
shop's user id (``external_id``); the orders know the customer by the shop's id. The identity
table maps requester keys to customer ids. Keys are stored only as HMAC-SHA256 with a pepper,
so the table holds no email or phone number in clear and cannot be reversed without the pepper.
Logs name a customer by :func:`log_id`, a hash of the customer id, never by the id itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr
from sqlalchemy.orm import Session

from churnsignal.config import IdentitySettings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Identity
from churnsignal.webhook.helpdesks.base import Requester

KINDS = ("external_id", "email", "phone", "id")
FALLBACK_PREFIX = "hd-"
UNIDENTIFIED_PREFIX = "anon-"
LOG_PREFIX = "cust-"
# What makes an external id personal data rather than the shop's user id. Not cards or
# resident IDs: a numeric shop id passes for one of those too often to be hashed for it.
_CONTACT_KINDS = ("email", "phone")


def normalise(kind: str, value: str | int) -> str | None:
    """The form of a key that is hashed; None when nothing identifying is left.

    Emails are compared case-insensitively; a phone number is its digits, in the domestic
    form (``+86 138 1234 5678``, ``0086-13812345678`` and ``13812345678`` are one number).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown identity kind {kind!r} (one of {', '.join(KINDS)})")
    text = str(value).strip()
    if kind == "email":
        text = text.lower()
    elif kind == "phone":
        text = re.sub(r"\D", "", text)
        national = None
        if text.startswith("0086"):
            national = text[4:]
        elif text.startswith("86") and len(text) > 11:
            national = text[2:]
        if national:
            # A mobile number is 11 digits starting with 1; any other national number takes
            # its trunk 0 back, as it is dialled at home (+86 10 ... is 010 ...).
            mobile = len(national) == 11 and national.startswith("1")
            text = national if mobile or national.startswith("0") else "0" + national
    return text or None


def key_hash(kind: str, value: str | int, source: str | None, pepper: SecretStr | str) -> str:
    """HMAC-SHA256 (hex) of a requester key.

    A helpdesk's own user ids (``id``) are numbered per helpdesk, so they are scoped by
    ``source``; an email, a phone or the shop's user id means the same person everywhere.
    """
    normal = normalise(kind, value)
    if normal is None:
        raise ValueError(f"empty {kind}")
    if kind == "id" and not source:
        raise ValueError("a helpdesk user id needs the source it belongs to")
    scope = source if kind == "id" else ""
    return _hmac(pepper, f"{kind}\x1f{scope}\x1f{normal}")


def log_id(customer_id: str, pepper: SecretStr | str) -> str:
    """How logs name a customer: ``cust-`` and 12 hex digits of a keyed hash of the id.

    A customer id may itself be personal data (a shop that keys its customers by email),
    and the pepper keeps a list of emails from being hashed to find one; one customer's
    lines still read as one.
    """
    return LOG_PREFIX + _hmac(pepper, f"log\x1f{customer_id}")[:12]


def resolve(session: Session, source: str, requester: Requester, settings: IdentitySettings) -> str | None:
    """The customer id of a requester: a linked identity if any, else a stable id of their own.

    Keys are tried in ``settings.order`` and the first linked one wins. An unlinked
    requester with an ``external_id`` is that customer (helpdesks carry the shop's user id
    there by convention), unless it is an email address or a phone number; anyone else
    becomes ``hd-`` and 16 hex digits of the hash of their first key, never their email or
    phone in clear. None when no key is usable.
    """
    present = {kind: value for kind, value in requester.keys().items() if normalise(kind, value)}
    if not present:
        return None
    ordered = [kind for kind in settings.order if kind in present]
    ordered += [kind for kind in KINDS if kind in present and kind not in ordered]
    pepper = settings.required_pepper()
    hashes = {kind: key_hash(kind, present[kind], source, pepper) for kind in ordered}
    for kind in settings.order:
        if kind in hashes:
            identity = session.get(Identity, hashes[kind])
            if identity is not None:
                return identity.customer_id
    if "external_id" in present and not _is_contact(present["external_id"]):
        return normalise("external_id", present["external_id"])
    return FALLBACK_PREFIX + hashes[ordered[0]][:16]


def unidentified(source: str, ticket_id: str, pepper: SecretStr | str) -> str:
    """The customer id of a requester the helpdesk sent no usable key for (all blank, say).

    Their messages are still stored. One ticket is one person, so the id is per ticket:
    ``anon-`` and 16 hex digits of its hash. No order can be linked to it, so it is never
    scored; an id shared by all such requesters would pool strangers' complaints instead.
    """
    return UNIDENTIFIED_PREFIX + _hmac(pepper, f"ticket\x1f{source}\x1f{ticket_id}")[:16]


def _is_contact(external_id: str) -> bool:
    """Whether an external id is, or holds, an email address or a phone number."""
    return any(span.kind in _CONTACT_KINDS for span in mask_pii(external_id).found)


def link(session: Session, customer_id: str, kind: str, value: str | int, source: str | None = None,
         *, pepper: SecretStr | str | None = None) -> str:
    """Map one requester key to ``customer_id`` (insert or re-point); returns the key's hash.

    ``pepper`` defaults to the configured one; it must be the one :func:`resolve` uses.
    """
    if pepper is None:
        from churnsignal.config import get_settings

        pepper = get_settings().identity.required_pepper()
    digest = key_hash(kind, value, source, pepper)
    identity = session.get(Identity, digest)
    if identity is None:
        session.add(Identity(key_hash=digest, customer_id=customer_id))
    else:
        identity.customer_id = customer_id
    return digest


def _hmac(pepper: SecretStr | str, message: str) -> str:
    secret = pepper.get_secret_value() if isinstance(pepper, SecretStr) else pepper
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
