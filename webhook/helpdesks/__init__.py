"""The helpdesks churnsignal speaks to, by the name their webhooks and alerts go by.

A source is ``"zendesk"``, ``"chatwoot"``, ``"freshdesk"``, ``"zammad"``, ``"wecom_kf"`` or ``"generic:<name>"`` for a helpdesk
configured under ``helpdesks.generic.<name>``; :func:`get` gives the adapter for it, as Rasa
looks up a channel by name.
"""

from __future__ import annotations

from churnsignal.config import HelpdeskSettings

from .base import (
    AlertMessage,
    Author,
    DeliveryError,
    Helpdesk,
    InvalidPayload,
    NotConfigured,
    Requester,
    SignatureError,
    SupportEvent,
)
from .chatwoot import Chatwoot
from .freshdesk import Freshdesk
from .generic import Generic
from .wecom_kf import WecomKf
from .zammad import Zammad
from .zendesk import Zendesk

__all__ = [
    "AlertMessage", "Author", "DeliveryError", "Helpdesk", "InvalidPayload", "NotConfigured",
    "Requester", "SignatureError", "SupportEvent", "BUILT_IN", "get", "configured_sources",
]

BUILT_IN = ("zendesk", "chatwoot", "freshdesk", "zammad", "wecom_kf")
_GENERIC = "generic:"


def get(source: str, settings: HelpdeskSettings) -> Helpdesk:
    """The adapter for ``source``; ``KeyError`` saying which sources exist when it is unknown."""
    timeout = settings.timeout_seconds
    if source == "zendesk":
        return Zendesk(settings.zendesk, timeout)
    if source == "chatwoot":
        return Chatwoot(settings.chatwoot, timeout)
    if source == "freshdesk":
        return Freshdesk(settings.freshdesk, timeout)
    if source == "zammad":
        return Zammad(settings.zammad, timeout)
    if source == "wecom_kf":
        return WecomKf(settings.wecom_kf, timeout)
    name = source.removeprefix(_GENERIC)
    if source.startswith(_GENERIC) and name in settings.generic:
        return Generic(name, settings.generic[name], timeout)
    known = ", ".join([*BUILT_IN, *(_GENERIC + n for n in settings.generic)])
    raise KeyError(f"unknown helpdesk source {source!r}; known: {known}")


def configured_sources(settings: HelpdeskSettings) -> list[str]:
    """The sources that accept webhooks: those with an inbound secret (unsigned traffic is refused)."""
    secrets = {"zendesk": settings.zendesk.signing_secret, "chatwoot": settings.chatwoot.webhook_secret,
               "freshdesk": settings.freshdesk.webhook_secret, "zammad": settings.zammad.webhook_secret,
               "wecom_kf": settings.wecom_kf.token}
    built_in = [source for source, secret in secrets.items() if secret and secret.get_secret_value()]
    return built_in + [_GENERIC + name for name in settings.generic]
