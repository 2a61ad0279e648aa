"""The service signal an alert needs (fusion/service.py), pinned on hand-made histories."""

from __future__ import annotations

import pandas as pd

from churnsignal.config import FusionSettings
from churnsignal.fusion.features import build_features
from churnsignal.fusion.service import service_signal
from churnsignal.nlp.complaints import TOPICS

AS_OF = pd.Timestamp("2026-03-01")


def message(customer: str, days_ago: float, author: str = "customer", negative: float = 0.05,
            ticket: str | None = None) -> dict:
    return {"customer_id": customer, "created_at": AS_OF - pd.Timedelta(days=days_ago), "text": "…",
            "channel": "ticket", "ticket_id": ticket or f"{customer}-t", "author": author, "rating": float("nan"),
            "negative_prob": negative if author == "customer" else float("nan"), "negative_word_share": 0.0,
            # Marked by hand here (fusion/text.py asks nlp/complaints.py): customer turns only, never agents.
            "is_complaint": author == "customer" and negative >= 0.65, **dict.fromkeys(TOPICS, 0)}


def signal(*messages: dict) -> dict[str, bool]:
    analysed = pd.DataFrame(list(messages))
    customers = sorted(analysed["customer_id"].unique())
    orders = pd.DataFrame({"customer_id": customers, "order_id": [f"o{c}" for c in customers],
                           "ordered_at": AS_OF - pd.Timedelta(days=20), "amount": 10.0, "category": None,
                           "status": "paid"})
    features = build_features(orders, analysed, AS_OF, FusionSettings())
    return service_signal(features, analysed, AS_OF, 24.0).to_dict()


def test_calm_and_happy_customers_have_no_signal_even_when_nobody_answers() -> None:
    assert signal(
        message("happy", 30), message("happy", 10, ticket="review"),   # reviews: nobody replies
        message("calm", 5, negative=0.4), message("calm", 4.9, author="agent"),
    ) == {"calm": False, "happy": False}


def test_a_complaint_an_unresolved_ticket_or_a_slow_reply_is_a_signal() -> None:
    found = signal(
        # a complaint in the window, answered at once and then thanked for
        message("complained", 3, negative=0.9), message("complained", 2.99, author="agent"),
        message("complained", 2, negative=0.1),
        # a complaint four months ago (outside the 90-day window) whose ticket's last word is still one
        message("unresolved", 120, negative=0.9), message("unresolved", 119, author="agent"),
        message("unresolved", 118, negative=0.9),
        # a calm question answered two days later; the same answered within the hour
        message("slow", 60, negative=0.3), message("slow", 58, author="agent"),
        message("quick", 60, negative=0.3), message("quick", 59.99, author="agent"),
        # a slow reply before the window, on a ticket opened then
        message("long_ago", 150, negative=0.3), message("long_ago", 100, author="agent"),
    )
    assert found == {"complained": True, "unresolved": True, "slow": True, "quick": False, "long_ago": False}
