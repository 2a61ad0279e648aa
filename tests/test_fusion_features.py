"""Purchase and text features: hand-checked values, and nothing from at or after ``as_of``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnsignal.config import FusionSettings, Settings
from churnsignal.fusion.features import build_features, purchase_features, text_features
from churnsignal.nlp.complaints import TOPICS, is_complaint

AS_OF = pd.Timestamp("2024-07-01")


def orders_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "amount", "category", "status"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    return frame


def day(offset: int) -> str:
    return (AS_OF - pd.Timedelta(days=offset)).isoformat()


ORDERS = orders_frame([
    # a: 4 paid orders 200, 100, 40, 10 days before as_of (two of them in 书), one refund
    ("a", "1", day(200), 100.0, "书", "paid"),
    ("a", "2", day(100), 100.0, "书", "paid"),
    ("a", "3", day(40), 50.0, "数码", "paid"),
    ("a", "4", day(10), 30.0, "数码", "paid"),
    ("a", "5", day(9), 30.0, "数码", "refunded"),
    # b: one order
    ("b", "6", day(30), 20.0, None, "paid"),
])


def test_purchase_features_by_hand() -> None:
    f = purchase_features(ORDERS, AS_OF)
    a = f.loc["a"]
    assert a["recency_days"] == 10 and a["tenure_days"] == 200
    assert a["orders"] == 4 and a["purchase_days"] == 4 and a["monetary"] == 280
    assert a["avg_order_value"] == 70
    assert a["gap_mean_days"] == pytest.approx(190 / 3)
    assert a["overdue_ratio"] == pytest.approx(10 / (190 / 3))
    assert a["orders_30d"] == 1 and a["freq_change_mom"] == 0.0  # 1 in the last 30 days, 1 in the 30 before
    assert a["orders_90d"] == 2 and a["freq_change_qoq"] == 1.0  # 2 vs 1 (day 100)
    assert a["aov_change_3m"] == pytest.approx(40 / 100 - 1)
    assert a["core_category_gap_days"] == 10  # 书 and 数码 tie on orders; 数码 was bought last
    assert a["refunds"] == 1 and a["refund_rate"] == pytest.approx(1 / 5)
    b = f.loc["b"]
    assert b["orders"] == 1 and np.isnan(b["gap_mean_days"])
    assert b["freq_change_mom"] == -1  # its one order was 30 days ago: the month before
    assert np.isnan(b["freq_change_qoq"])  # nothing in the quarter before to compare with
    assert np.isnan(b["core_category_gap_days"]) and b["refunds"] == 0


def test_nothing_at_or_after_as_of_changes_a_feature() -> None:
    before = purchase_features(ORDERS, AS_OF)
    future = orders_frame([
        ("a", "9", AS_OF.isoformat(), 999.0, "书", "paid"),           # exactly at as_of: excluded
        ("a", "10", day(-5), 5.0, "书", "refunded"),
        ("c", "11", day(-1), 1.0, None, "paid"),                      # a customer who starts later
    ])
    after = purchase_features(pd.concat([ORDERS, future], ignore_index=True), AS_OF)
    pd.testing.assert_frame_equal(before, after)


def analysed(rows: list[tuple]) -> pd.DataFrame:
    """Messages as fusion/text.py leaves them: signals as columns."""
    frame = pd.DataFrame(rows, columns=["customer_id", "created_at", "ticket_id", "negative_prob", "labels"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["negative_word_share"] = frame["negative_prob"] / 4
    frame["rating"] = np.nan
    frame["author"] = "customer"
    frame["is_complaint"] = [is_complaint("customer", p, Settings()) for p in frame["negative_prob"]]
    for topic in TOPICS:
        frame[topic] = [labels.count(topic) for labels in frame["labels"]]
    return frame.drop(columns="labels")


MESSAGES = analysed([
    ("a", day(150), "t1", 0.9, ["LOGISTICS"]),        # an old complaint, outside the window
    ("a", day(60), "t2", 0.2, []),                    # the window before (b's window is 90 days)
    ("a", day(20), "t2", 0.8, ["LOGISTICS"]),
    ("a", day(5), "t2", 0.95, ["LOGISTICS", "COMPETITOR"]),   # same ticket again: a repeat
    ("a", day(3), None, 0.3, ["PRICE"]),              # not negative enough to be a complaint
    ("b", day(40), "t8", 0.9, ["SERVICE"]),           # b complained on t8, then calmed down
    ("b", day(30), "t8", 0.2, []),
    ("b", day(2), "t9", 0.1, []),
])


def test_text_features_by_hand() -> None:
    settings = FusionSettings()
    customers = pd.Index(["a", "b", "z"])
    per_month = pd.Series({"a": 0.5, "b": 0.3, "z": 0.0})
    f = text_features(MESSAGES, AS_OF, customers, per_month, settings)
    a = f.loc["a"]
    assert a["window_days"] == 90 and a["messages"] == 4
    assert a["neg_prob_mean"] == pytest.approx((0.2 + 0.8 + 0.95 + 0.3) / 4)
    assert a["neg_prob_max"] == 0.95
    assert a["neg_prob_trend"] == pytest.approx(a["neg_prob_mean"] - 0.9)  # vs. days 90-180
    assert a["complaints"] == 2 and a["complaints_logistics"] == 2 and a["complaints_price"] == 0
    assert a["repeat_complaints"] == 1 and a["competitor_mentions"] == 1
    assert a["days_since_complaint"] == 5
    # before the window: 1 complaint in 60 days of messages, counted as one window
    assert a["complaint_spike"] == 2
    assert a["complaints_6m"] == 3  # the one 150 days ago counts too
    assert a["unresolved_tickets"] == 2  # t1 and t2 both end in a complaint
    assert a["unresolved_days"] == 150  # t1's complaint, never followed up
    assert f.loc["b", "unresolved_tickets"] == 0 and f.loc["b", "complaints_6m"] == 1
    assert np.isnan(f.loc["b", "unresolved_days"])
    z = f.loc["z"]
    assert z["messages"] == 0 and np.isnan(z["neg_prob_mean"]) and np.isnan(z["days_since_complaint"])


def agent_replies(rows: list[tuple]) -> pd.DataFrame:
    """Agent messages as fusion/text.py keeps them: times only, no signals."""
    frame = pd.DataFrame(rows, columns=["customer_id", "created_at", "ticket_id"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    return frame.assign(author="agent", is_complaint=False, **{topic: 0 for topic in TOPICS})


def test_first_response_time_per_ticket() -> None:
    replies = agent_replies([
        ("a", (AS_OF - pd.Timedelta(days=20, hours=-3)).isoformat(), "t2"),   # t2 opened 60 days ago
        ("a", (AS_OF - pd.Timedelta(days=149)).isoformat(), "t1"),            # t1 answered after 24 h
        ("a", (AS_OF - pd.Timedelta(days=170)).isoformat(), "t1"),            # a reply before the ticket opened
        ("b", day(1), "t9"),                                                  # t9 answered after 24 h
    ])
    f = text_features(pd.concat([MESSAGES, replies], ignore_index=True), AS_OF, pd.Index(["a", "b"]),
                      pd.Series({"a": 0.5, "b": 0.3}), FusionSettings())
    t1, t2 = 24.0, (60 - 20) * 24 + 3.0
    assert f.loc["a", "first_response_hours"] == pytest.approx((t1 + t2) / 2)
    assert f.loc["a", "slowest_response_hours"] == pytest.approx(t2)
    # b's t8 (opened 40 days ago) was never answered: it has waited 40 days so far
    assert f.loc["b", "first_response_hours"] == pytest.approx((24 + 40 * 24) / 2)
    # agent messages are not customer messages
    assert f.loc["a", "messages"] == text_features(MESSAGES, AS_OF, pd.Index(["a"]), pd.Series({"a": 0.5}),
                                                   FusionSettings()).loc["a", "messages"]


def test_high_frequency_customers_are_read_over_the_short_window() -> None:
    f = text_features(MESSAGES, AS_OF, pd.Index(["a"]), pd.Series({"a": 6.0}), FusionSettings())
    assert f.loc["a", "window_days"] == 7
    assert f.loc["a", "messages"] == 2 and f.loc["a", "complaints"] == 1


def test_text_features_ignore_messages_from_as_of_on() -> None:
    late = analysed([("a", AS_OF.isoformat(), "t3", 0.99, ["QUALITY"]), ("a", day(-3), "t3", 0.99, ["SERVICE"])])
    settings = FusionSettings()
    base = build_features(ORDERS, MESSAGES, AS_OF, settings)
    more = build_features(ORDERS, pd.concat([MESSAGES, late], ignore_index=True), AS_OF, settings)
    pd.testing.assert_frame_equal(base, more)


def test_complaints_awaiting_reply() -> None:
    """A ticket counts while its last message is the customer's complaint, whoever wrote before it."""
    customers, per_month = pd.Index(["a", "b"]), pd.Series({"a": 0.5, "b": 0.3})
    alone = text_features(MESSAGES, AS_OF, customers, per_month, FusionSettings())
    # Nobody ever answered: t1 (150 days ago, inside the 180-day lookback) and t2 end in complaints.
    assert alone.loc["a", "awaiting_reply"] == 2
    # b's tickets end in calm messages, so nothing is waiting.
    assert alone.loc["b", "awaiting_reply"] == 0
    replies = agent_replies([
        ("a", (AS_OF - pd.Timedelta(days=149)).isoformat(), "t1"),   # t1 answered: no longer waiting
        ("a", day(10), "t2"),                                         # t2 answered, then a complaint on day 5
    ])
    answered = text_features(pd.concat([MESSAGES, replies], ignore_index=True), AS_OF, customers, per_month,
                             FusionSettings())
    assert answered.loc["a", "awaiting_reply"] == 1
    # The customer's own words decide "unresolved": an agent reply changes neither.
    assert answered.loc["a", "unresolved_tickets"] == alone.loc["a", "unresolved_tickets"] == 2


def with_status(frame: pd.DataFrame, statuses: list[str | None]) -> pd.DataFrame:
    return frame.assign(ticket_status=pd.Series(statuses, index=frame.index, dtype=object))


def status_rows(rows: list[tuple]) -> pd.DataFrame:
    """Agent replies and status-only rows (author bot) that carry the ticket's status."""
    frame = agent_replies([(customer, at, ticket) for customer, at, ticket, _, _ in rows])
    return frame.assign(author=[author for *_, author, _ in rows],
                        ticket_status=pd.Series([status for *_, status in rows], dtype=object))


def features_of(*frames: pd.DataFrame) -> pd.DataFrame:
    return text_features(pd.concat(frames, ignore_index=True), AS_OF, pd.Index(["a", "b"]),
                         pd.Series({"a": 0.5, "b": 0.3}), FusionSettings())


def test_no_known_status_keeps_the_rule_of_the_last_word() -> None:
    unknown = with_status(MESSAGES, [None] * len(MESSAGES))
    pd.testing.assert_frame_equal(features_of(unknown), features_of(MESSAGES))


def test_a_solved_ticket_is_not_unresolved_whatever_its_last_message_says() -> None:
    solved = status_rows([("a", day(4), "t2", "agent", "solved"),     # an agent's reply that solved t2
                          ("a", day(149), "t1", "bot", "solved")])    # t1 marked resolved, no words
    f = features_of(MESSAGES, solved)
    assert f.loc["a", "unresolved_tickets"] == 0 and np.isnan(f.loc["a", "unresolved_days"])
    # The complaints themselves still count, and a status row is nobody's word.
    assert f.loc["a", "complaints"] == features_of(MESSAGES).loc["a", "complaints"] == 2
    assert f.loc["a", "awaiting_reply"] == 0  # a solved ticket waits for nothing


def test_a_status_row_alone_is_no_reply() -> None:
    pending = status_rows([("a", day(4), "t2", "bot", "pending"), ("a", day(149), "t1", "bot", "open")])
    f, before = features_of(MESSAGES, pending), features_of(MESSAGES)
    for name in ("awaiting_reply", "unresolved_tickets", "unresolved_days", "first_response_hours"):
        assert f.loc["a", name] == before.loc["a", name]


def test_an_open_or_pending_ticket_is_unresolved_since_its_last_solve_or_calm_word() -> None:
    customer = analysed([("b", day(40), "t8", 0.9, []), ("b", day(10), "t8", 0.9, []), ("b", day(6), "t8", 0.95, [])])
    customer = with_status(customer, ["open", "open", "pending"])
    # Solved in between, then the customer complained again (the helpdesk reopened it).
    solved = status_rows([("b", day(20), "t8", "agent", "solved")])
    f = features_of(customer, solved)
    assert f.loc["b", "unresolved_tickets"] == 1 and f.loc["b", "unresolved_days"] == 10
    # Never solved: unresolved since the first complaint, as without a status.
    assert features_of(customer).loc["b", "unresolved_days"] == 40
    # Solved last: not unresolved.
    last = status_rows([("b", day(1), "t8", "agent", "solved")])
    assert features_of(customer, solved, last).loc["b", "unresolved_tickets"] == 0
