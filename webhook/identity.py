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
from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from churnsignal import rollups
from churnsignal.config import IdentitySettings
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Alert, Customer, Event, Identity, RiskScore
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


@dataclass(frozen=True)
class Linked:
    """What linking one key did: its hash, and the events it moved from a provisional customer."""

    key_hash: str
    moved: list[int] = field(default_factory=list)
    # The real customer's latest message, set back to ``received`` so that the worker scores
    # them again with what was moved (it keeps its analysis and is not counted again); None
    # when nothing moved or none of their messages is a customer's.
    rescore: int | None = None


def link(session: Session, customer_id: str, kind: str, value: str | int, source: str | None = None,
         *, pepper: SecretStr | str | None = None) -> Linked:
    """Map one requester key to ``customer_id`` (insert or re-point), and adopt what that key's
    requester wrote before it was known (:func:`adopt`).

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
    return adopt(session, digest, customer_id)


def provisional(digest: str) -> str:
    """The customer id :func:`resolve` gives a requester whose first key hashes to ``digest``."""
    return FALLBACK_PREFIX + digest[:16]


def adopt(session: Session, digest: str, customer_id: str) -> Linked:
    """Move the provisional customer of a key (``hd-`` and its hash) to ``customer_id``.

    Their events, scores, alerts and per-customer roll-ups become the real customer's: they
    are what this person wrote and what was posted about them. The provisional customer's
    current-risk row is deleted rather than merged, since it described someone without orders; the real
    customer's latest message goes back to ``received``, so the normal worker path (queued
    now, or by the sweeper if the broker is down) scores them again with everything they
    wrote. The worker knows it by its ``analysed_at``: it marks it done again without
    analysing it or adding it to the roll-ups a second time (``worker/pipeline.py``, analyse).
    Linking again finds nothing left to move and changes nothing.

    Only a requester whose provisional id came from this key is found: the events keep no
    other key, so one first known by email is adopted when the email is linked, not the phone.
    """
    ghost = provisional(digest)
    if ghost == customer_id:
        return Linked(digest)
    moved = list(session.scalars(select(Event.id).where(Event.customer_id == ghost)))
    if not moved:
        return Linked(digest)
    session.execute(update(Event).where(Event.customer_id == ghost).values(customer_id=customer_id))
    session.execute(update(RiskScore).where(RiskScore.customer_id == ghost).values(customer_id=customer_id))
    session.execute(update(Alert).where(Alert.customer_id == ghost).values(customer_id=customer_id))
    session.execute(delete(Customer).where(Customer.customer_id == ghost))
    latest = session.scalar(select(Event.id).where(Event.customer_id == customer_id, Event.author == "customer")
                            .order_by(Event.created_at.desc(), Event.id.desc()).limit(1))
    if latest is not None:
        session.execute(update(Event).where(Event.id == latest, Event.status.in_(("analysed", "stored")))
                        .values(status="received"))
    # Last: no event is locked after the roll-up rows (the worker locks events, then roll-ups).
    rollups.move_customer(session, ghost, customer_id)
    return Linked(digest, moved, latest)


def _hmac(pepper: SecretStr | str, message: str) -> str:
    secret = pepper.get_secret_value() if isinstance(pepper, SecretStr) else pepper
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
