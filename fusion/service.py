"""Whether a customer's support history shows a service problem an agent can act on.

An alert asks an agent on the ticket to do something about the customer's experience; a
risk driven by purchases alone (a buyer slowing down, CDNOW's 70 % base churn) gives them
nothing to act on. The signal is read from the text features (``fusion/features.py``),
whatever the model was trained on, so a purchase-only model's alerts follow the same rule.
"""

from __future__ import annotations

import pandas as pd

# The text features the signal reads; a frame without them has no messages to read.
SIGNAL_FEATURES = ("complaints", "unresolved_tickets", "awaiting_reply", "slowest_response_hours")


def service_signal(features: pd.DataFrame, slow_first_response_hours: float) -> pd.Series:
    """Per customer: a complaint in their window, a complaint ticket still unresolved or
    awaiting a reply, or a ticket whose first reply took (or is taking) longer than
    ``slow_first_response_hours``.

    Each count keeps its feature's own window: complaints the customer's window, tickets
    and response times the 180-day lookback, as a ticket left unresolved stays a problem.
    """
    slow = features["slowest_response_hours"].fillna(0) > slow_first_response_hours
    troubled = (features[["complaints", "unresolved_tickets", "awaiting_reply"]].fillna(0) > 0).any(axis=1)
    return (troubled | slow).rename("service_signal")
