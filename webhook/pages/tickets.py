"""Where a stored ticket opens in its own helpdesk, for links from the pages."""

from __future__ import annotations

from urllib.parse import quote

from churnsignal.config import HelpdeskSettings


def ticket_url(source: str, ticket_id: str, helpdesks: HelpdeskSettings) -> str | None:
    """The agent's view of the ticket in its helpdesk; None where its address is not configured.

    A generic helpdesk has no known ticket page, so its tickets have no link.
    """
    segment = quote(ticket_id, safe="")
    if source == "zendesk" and helpdesks.zendesk.base_url:
        return f"{helpdesks.zendesk.base_url.rstrip('/')}/agent/tickets/{segment}"
    if source == "chatwoot" and helpdesks.chatwoot.base_url and helpdesks.chatwoot.account_id is not None:
        return (f"{helpdesks.chatwoot.base_url.rstrip('/')}/app/accounts/{helpdesks.chatwoot.account_id}"
                f"/conversations/{segment}")
    if source == "freshdesk" and helpdesks.freshdesk.base_url:
        return f"{helpdesks.freshdesk.base_url.rstrip('/')}/a/tickets/{segment}"
    return None
