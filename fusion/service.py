"""Whether a customer's support history shows a service problem an agent can act on.

An alert asks an agent on the ticket to do something about the customer's experience; a
risk driven by purchases alone (a buyer slowing down, CDNOW's 70 % base churn) gives them
nothing to act on. The signal is read from the messages (the text features and the
analysed messages they come from), whatever the model was trained on, so a purchase-only
model's alerts follow the same rule. What a complaint is comes from ``fusion/text.py``
(``is_complaint``); only the customer's own messages are complaints.
"""

from __future__ import annotations

import pandas as pd

HOUR = pd.Timedelta(hours=1)


def service_signal(features: pd.DataFrame, analysed: pd.DataFrame, as_of: pd.Timestamp,
                   slow_first_response_hours: float) -> pd.Series:
    """Per customer of ``features``: a complaint in their window, a complaint ticket still
    unresolved or awaiting a reply, or a ticket opened in their window whose first agent
    reply came more than ``slow_first_response_hours`` after the customer wrote.

    ``analysed`` are the messages the text features were built from. A reply that never
    came counts only if a complaint is waiting for it (``awaiting_reply``): nobody answers
    a five-star review or a thank-you, and that is no customer kept waiting.
    """
    troubled = (features[["complaints", "unresolved_tickets", "awaiting_reply"]].fillna(0) > 0).any(axis=1)
    slow = slow_first_responses(analysed, as_of, features["window_days"], slow_first_response_hours)
    return (troubled | (slow.reindex(features.index).fillna(0) > 0)).rename("service_signal")


def slow_first_responses(analysed: pd.DataFrame, as_of: pd.Timestamp, window_days: pd.Series,
                         hours: float) -> pd.Series:
    """Per customer, tickets opened in the customer's window whose first agent reply came
    more than ``hours`` after the customer's first message on it."""
    messages = analysed[(analysed["created_at"] < as_of) & analysed["ticket_id"].notna()]
    opened = messages[messages["author"] == "customer"].groupby(["customer_id", "ticket_id"])["created_at"].min()
    span = window_days.reindex(opened.index.get_level_values("customer_id")).to_numpy() * pd.Timedelta(days=1)
    opened = opened[(as_of - opened).to_numpy() < span]
    replies = messages[messages["author"] == "agent"].set_index(["customer_id", "ticket_id"])["created_at"]
    after = replies[replies >= opened.reindex(replies.index)]
    answered = after.groupby(level=["customer_id", "ticket_id"]).min().reindex(opened.index)
    slow = (answered - opened) > hours * HOUR
    return slow[slow].groupby(level="customer_id").size()
