"""Per-customer signals as of a moment ``as_of``: purchase behaviour and what they wrote.

Everything here reads only rows strictly before ``as_of``: a feature computed from the
future would make a model look good in evaluation and useless in service. Each feature
is described in ``model_cards/fusion.md``; the names are the ones a reason on an alert
is built from (``fusion/reasons.py``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from churnsignal.config import FusionSettings
from churnsignal.nlp.complaints import TOPICS, read_from_dialogue

DAY = pd.Timedelta(days=1)
MONTH_DAYS = 30
QUARTER_DAYS = 90
# SPEC: warning signals appear 3 to 6 months before customers leave; complaints that old
# still count towards the unresolved ones.
LOOKBACK_DAYS = 180

PURCHASE_FEATURES = (
    "recency_days", "tenure_days", "orders", "purchase_days", "monetary", "avg_order_value",
    "gap_mean_days", "gap_std_days", "overdue_ratio",
    "orders_30d", "freq_change_mom", "orders_90d", "freq_change_qoq",
    "aov_change_3m", "core_category_gap_days", "refunds", "refund_rate",
)
TOPIC_FEATURES = tuple(f"complaints_{topic.lower()}" for topic in TOPICS)
# latest_complaints' column for a customer's latest complaint whatever its topic.
LATEST = "latest"
# Beside each topic's column of latest_complaints: whether that complaint's words name no such
# topic, so that the turns before it gave it (nlp/dialogue_topics.py).
FROM_DIALOGUE = "{topic} from the dialogue"
# The characters of a complaint a reason quotes (fusion/reasons.py): long enough to recognise
# the complaint, short enough to sit on one line of a note.
QUOTE_CHARS = 20
TEXT_FEATURES = (
    "messages", "window_days", "neg_prob_mean", "neg_prob_max", "neg_prob_trend", "negative_word_share",
    *TOPIC_FEATURES, "complaints", "complaint_spike", "repeat_complaints", "competitor_mentions",
    "days_since_complaint", "rating_mean", "complaints_6m", "unresolved_tickets", "unresolved_days",
    "awaiting_reply", "first_response_hours", "slowest_response_hours",
)


def purchase_features(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM, purchase rhythm and its change, order value trend, category gap and refunds.

    One row per customer with any order before ``as_of``; counts are of paid orders.
    """
    # Sorted, so that the same history in another row order gives bit-identical sums.
    history = orders[orders["ordered_at"] < as_of].sort_values(["customer_id", "ordered_at", "order_id"])
    customers = pd.Index(history["customer_id"].unique(), name="customer_id")
    paid = history[history["status"] == "paid"]
    by = paid.groupby("customer_id")
    age = (as_of - paid["ordered_at"]) / DAY
    out = pd.DataFrame(index=customers)
    out["recency_days"] = (as_of - by["ordered_at"].max()) / DAY
    out["tenure_days"] = (as_of - by["ordered_at"].min()) / DAY
    out["orders"] = by.size()
    out["purchase_days"] = paid.assign(day=paid["ordered_at"].dt.normalize()).groupby("customer_id")["day"].nunique()
    out["monetary"] = by["amount"].sum()
    out["avg_order_value"] = by["amount"].mean()
    gaps = _gaps(paid)
    out["gap_mean_days"] = gaps.mean()
    out["gap_std_days"] = gaps.std(ddof=0)
    out["overdue_ratio"] = out["recency_days"] / out["gap_mean_days"].where(out["gap_mean_days"] > 0)
    out["orders_30d"] = _count(paid, age < MONTH_DAYS)
    out["freq_change_mom"] = _change(out["orders_30d"], _count(paid, (age >= MONTH_DAYS) & (age < 2 * MONTH_DAYS)))
    out["orders_90d"] = _count(paid, age < QUARTER_DAYS)
    out["freq_change_qoq"] = _change(out["orders_90d"], _count(paid, (age >= QUARTER_DAYS) & (age < 2 * QUARTER_DAYS)))
    recent_aov = paid[age < QUARTER_DAYS].groupby("customer_id")["amount"].mean()
    earlier_aov = paid[age >= QUARTER_DAYS].groupby("customer_id")["amount"].mean()
    out["aov_change_3m"] = recent_aov / earlier_aov.where(earlier_aov > 0) - 1
    out["core_category_gap_days"] = _core_category_gap(paid, as_of)
    refunds = history[history["status"] == "refunded"].groupby("customer_id").size()
    out["refunds"] = refunds
    out[["orders", "purchase_days", "orders_30d", "orders_90d", "refunds"]] = (
        out[["orders", "purchase_days", "orders_30d", "orders_90d", "refunds"]].fillna(0))
    out["refund_rate"] = out["refunds"] / (out["orders"] + out["refunds"])
    return out.reindex(columns=PURCHASE_FEATURES).astype(float)


def text_features(events: pd.DataFrame, as_of: pd.Timestamp, customers: pd.Index,
                  orders_per_month: pd.Series, settings: FusionSettings) -> pd.DataFrame:
    """Sentiment, complaints and competitor mentions over a window that fits each customer.

    ``events`` are customer messages with analysis columns and agent messages
    (``fusion/text.py``); a complaint is what ``is_complaint`` marks, counted once per topic
    it is about however often it names it. High-frequency buyers are read over the short
    window (a week of silence after a bad delivery matters), the others over the long one.
    """
    everything = events[(events["created_at"] < as_of) & events["customer_id"].isin(customers)]
    everything = everything.sort_values(["customer_id", "created_at"], kind="stable")
    seen = everything[everything["author"] == "customer"]
    high = orders_per_month.reindex(customers).fillna(0) >= settings.high_frequency_orders_per_month
    window = pd.Series(np.where(high, settings.short_window_days, settings.long_window_days),
                       index=customers, dtype=float)
    age = (as_of - seen["created_at"]) / DAY
    span = window.reindex(seen["customer_id"]).to_numpy()
    now = seen[age.to_numpy() < span]
    before = seen[(age.to_numpy() >= span) & (age.to_numpy() < 2 * span)]
    complaint = now[now["is_complaint"]]
    by = now.groupby("customer_id")
    out = pd.DataFrame(index=customers)
    out["messages"] = by.size()
    out["window_days"] = window
    out["neg_prob_mean"] = by["negative_prob"].mean()
    out["neg_prob_max"] = by["negative_prob"].max()
    out["neg_prob_trend"] = out["neg_prob_mean"] - before.groupby("customer_id")["negative_prob"].mean()
    out["negative_word_share"] = by["negative_word_share"].mean()
    for topic, name in zip(TOPICS, TOPIC_FEATURES):
        out[name] = (complaint[topic] > 0).groupby(complaint["customer_id"]).sum()
    out["complaints"] = complaint.groupby("customer_id").size()
    out["complaint_spike"] = out["complaints"] / _complaints_per_window(seen, as_of, window)
    out["repeat_complaints"] = _repeat_complaints(seen[seen["is_complaint"]], now.index)
    out["competitor_mentions"] = now["COMPETITOR"].groupby(now["customer_id"]).sum()
    out["days_since_complaint"] = (as_of - seen[seen["is_complaint"]].groupby("customer_id")["created_at"].max()) / DAY
    out["rating_mean"] = by["rating"].mean()
    recent = seen[age.to_numpy() < LOOKBACK_DAYS]
    out["complaints_6m"] = recent[recent["is_complaint"]].groupby("customer_id").size()
    lookback = everything[((as_of - everything["created_at"]) / DAY).to_numpy() < LOOKBACK_DAYS]
    unresolved_since = _unresolved_since(lookback)
    out["unresolved_tickets"] = unresolved_since.groupby(level="customer_id").size()
    out["unresolved_days"] = (as_of - unresolved_since.groupby(level="customer_id").min()) / DAY
    out["awaiting_reply"] = _awaiting_reply(lookback)
    waits = _first_response_hours(lookback, as_of)
    out["first_response_hours"] = waits.groupby(level="customer_id").mean()
    out["slowest_response_hours"] = waits.groupby(level="customer_id").max()
    counts = ["messages", *TOPIC_FEATURES, "complaints", "repeat_complaints", "competitor_mentions", "complaints_6m",
              "unresolved_tickets", "awaiting_reply"]
    out[counts] = out[counts].fillna(0)
    return out.reindex(columns=TEXT_FEATURES).astype(float)


def build_features(orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
                   settings: FusionSettings) -> pd.DataFrame:
    """All features of every customer with an order before ``as_of`` (text ones only with events)."""
    purchase = purchase_features(orders, as_of)
    if events is None:
        return purchase
    per_month = purchase["orders_90d"] / (QUARTER_DAYS / MONTH_DAYS)
    return purchase.join(text_features(events, as_of, purchase.index, per_month, settings))


def _gaps(paid: pd.DataFrame) -> pd.core.groupby.SeriesGroupBy:
    """Days between consecutive purchase days of each customer."""
    days = paid[["customer_id"]].assign(day=paid["ordered_at"].dt.normalize()).drop_duplicates()
    days = days.sort_values(["customer_id", "day"])
    gap = days.groupby("customer_id")["day"].diff() / DAY
    return gap.groupby(days["customer_id"])


def _count(paid: pd.DataFrame, mask: pd.Series) -> pd.Series:
    return paid[mask].groupby("customer_id").size()


def _change(recent: pd.Series, previous: pd.Series) -> pd.Series:
    """Relative change of a count; undefined (NaN) when there was nothing to compare with."""
    previous = previous.reindex(recent.index).fillna(0)
    return (recent.fillna(0) - previous) / previous.where(previous > 0)


def _core_category_gap(paid: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Days since the customer last bought their most-bought category (NaN without categories)."""
    known = paid.dropna(subset=["category"])
    if known.empty:
        return pd.Series(dtype=float)
    counts = known.groupby(["customer_id", "category"]).agg(n=("amount", "size"), last=("ordered_at", "max"))
    # Most orders first; on a tie the category bought most recently is the core one.
    core = counts.sort_values(["n", "last"], ascending=False).groupby(level="customer_id").head(1)
    return ((as_of - core["last"]) / DAY).droplevel("category")


def latest_complaints(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer (rows) and topic (columns), the masked text of their latest complaint about
    it; column ``LATEST``, their latest complaint whatever its topic; columns ``FROM_DIALOGUE``,
    per topic, whether that complaint's own words name it or the turns before it gave it.

    Features are numbers; a reason also quotes what the customer said, so that an agent sees
    the complaint behind a count without opening the ticket. Only rows before ``as_of`` are
    read, so whenever a window counts a complaint about a topic, its latest is among them.
    """
    complaints = events[(events["created_at"] < as_of) & events["is_complaint"]]
    complaints = complaints.sort_values("created_at", kind="stable")
    latest = {}
    for topic in TOPICS:
        last = complaints[complaints[topic] > 0].groupby("customer_id").tail(1)
        customers = last["customer_id"].to_numpy()
        latest[topic] = pd.Series(_where_named(last, topic), index=customers, dtype=object)
        latest[FROM_DIALOGUE.format(topic=topic)] = pd.Series(
            [bool(read_from_dialogue((topic,), spans)) if isinstance(spans, list) else False
             for spans in last["entity_spans"]], index=customers, dtype=bool)
    latest[LATEST] = complaints.groupby("customer_id")["masked_text"].last()
    flags = [FROM_DIALOGUE.format(topic=topic) for topic in TOPICS]
    frame = pd.DataFrame(latest, columns=[*TOPICS, LATEST, *flags])
    # A customer with no complaint about a topic: nothing was read from a dialogue for it.
    frame[flags] = frame[flags].fillna(False).astype(bool)
    return frame


# Where a clause ends: a quote about a topic starts after the last of these before the topic's word.
CLAUSE_END = re.compile(r"[，,。.！!？?；;：:\s]")


def _where_named(complaints: pd.DataFrame, topic: str) -> list[str]:
    """Each complaint's masked text, from the clause that first names ``topic`` ("…" marking the
    cut) where a quote of its beginning would not reach the word.

    A quote is cut short, and a complaint may name its topic only at the end: "就是风扇的声音有些大，
    … 不过这个价格忍了" is a price complaint by its entities, and an agent should see the words that
    made it one ("…不过这个价格忍了") to judge it. The word is found in the masked text by its
    place among the same words in the text as given (what ``entity_spans`` index); where it
    cannot be found there, the quote starts at the beginning.
    """
    quoted = []
    for text, masked, spans in zip(complaints["text"], complaints["masked_text"], complaints["entity_spans"]):
        named = [span for span in spans if span["label"] == topic] if isinstance(spans, list) else []
        start = _found_at(text, masked, named[0]) if named else -1
        width = named[0]["end"] - named[0]["start"] if named else 0
        if len(masked) <= QUOTE_CHARS or start + width < QUOTE_CHARS:
            quoted.append(masked)
            continue
        clause = max((m.end() for m in CLAUSE_END.finditer(masked, 0, start)), default=0)
        # A long clause starts late enough for the word to fit ("…" and QUOTE_CHARS - 2 more),
        # and never inside a masking placeholder: after it.
        begin = max(clause, start + width - (QUOTE_CHARS - 2))
        if masked.rfind("[", 0, begin) > masked.rfind("]", 0, begin):
            begin = masked.find("]", begin) + 1
        quoted.append("…" + masked[begin:])
    return quoted


def _found_at(text: str, masked: str, span: dict) -> int:
    """Where ``span`` of ``text`` is in its masked form: the same word, as many times before it."""
    word = text[span["start"]:span["end"]]
    at = -1
    for _ in range(text.count(word, 0, span["start"]) + 1):
        at = masked.find(word, at + 1)
        if at < 0:
            return -1
    return at


def _complaints_per_window(seen: pd.DataFrame, as_of: pd.Timestamp, window: pd.Series) -> pd.Series:
    """A customer's usual complaints per window before the current one (at least 1).

    The floor of 1 keeps a first complaint from reading as an infinite spike.
    """
    window_of = window.reindex(seen["customer_id"]).to_numpy()
    earlier = seen[((as_of - seen["created_at"]) / DAY).to_numpy() >= window_of]
    complaints = earlier[earlier["is_complaint"]].groupby("customer_id").size()
    first = seen.groupby("customer_id")["created_at"].min()
    windows = ((as_of - first) / DAY / window.reindex(first.index) - 1).clip(lower=1)
    return (complaints.reindex(first.index).fillna(0) / windows).clip(lower=1)


def _first_response_hours(messages: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Per ticket, hours from the customer's first message to the first agent reply after it.

    SPEC names slow first response as a churn signal. A ticket still unanswered at
    ``as_of`` has waited at least until then, and counts with that wait.
    """
    on_tickets = messages[messages["ticket_id"].notna()]
    opened = on_tickets[on_tickets["author"] == "customer"].groupby(["customer_id", "ticket_id"])["created_at"].min()
    replies = on_tickets[on_tickets["author"] == "agent"].set_index(["customer_id", "ticket_id"])["created_at"]
    after = replies[replies >= opened.reindex(replies.index)]
    answered = after.groupby(level=["customer_id", "ticket_id"]).min().reindex(opened.index)
    return (answered.fillna(as_of) - opened) / pd.Timedelta(hours=1)


def _unresolved_since(messages: pd.DataFrame) -> pd.Series:
    """Per unresolved ticket, when the complaint that is still unresolved was made.

    Where the helpdesk reports the ticket's status (``ticket_status``, ``config.TicketStatus``),
    a ticket whose latest known status is "solved" is not unresolved, whatever its last message
    says, and a solve settles the complaints before it as a calm word from the customer does.
    Otherwise (open, pending, or no status known) a ticket is unresolved while the customer's
    last word on it is a complaint: only the customer's own words are read, as an agent writing
    "resolved" does not make it so (the helpdesk's status does). It has been unresolved since
    the first complaint after the last calm message or solve on it. ``messages`` are sorted by
    customer and time.
    """
    on_tickets = messages[messages["ticket_id"].notna()]
    ticket = [on_tickets["customer_id"], on_tickets["ticket_id"]]
    status = _statuses(on_tickets)
    said = on_tickets["author"] == "customer"
    complaint = on_tickets["is_complaint"].eq(True)
    settled = (said & ~complaint) | (status == "solved")
    settled_before = settled.groupby(ticket).cumsum()
    after_last_settled = settled_before == settled_before.groupby(ticket).transform("max")
    still_open = on_tickets[after_last_settled & said & complaint & ~_solved(on_tickets)]
    return still_open.groupby(["customer_id", "ticket_id"])["created_at"].min()


def _statuses(messages: pd.DataFrame) -> pd.Series:
    """Each message's ticket status as its helpdesk reported it; missing where none did."""
    if "ticket_status" in messages:
        return messages["ticket_status"]
    return pd.Series(None, index=messages.index, dtype=object)


def _solved(on_tickets: pd.DataFrame) -> pd.Series:
    """Per row, whether its ticket's latest known status is "solved" (False where none is known)."""
    ticket = [on_tickets["customer_id"], on_tickets["ticket_id"]]
    # groupby().last() skips missing values: the latest status the helpdesk reported.
    return _statuses(on_tickets).groupby(ticket).transform("last") == "solved"


def _awaiting_reply(messages: pd.DataFrame) -> pd.Series:
    """Tickets not solved whose last message is the customer's complaint: nobody has answered it yet.

    Unlike ``_unresolved_since`` this reads who spoke last, not what the agent said: a
    complaint left hanging is a fact about the ticket, whatever an agent wrote before it.
    ``messages`` is sorted by customer and time, so the last row per ticket is the last word.
    """
    on_tickets = messages[messages["ticket_id"].notna()]
    # Rows that only carry a ticket status (fusion/text.py) are nobody's word; a ticket the
    # helpdesk reports solved waits for nothing.
    said = on_tickets[on_tickets["author"].isin(("customer", "agent")) & ~_solved(on_tickets)]
    last = said.groupby(["customer_id", "ticket_id"]).tail(1)
    waiting = last[(last["author"] == "customer") & last["is_complaint"]]
    return waiting.groupby("customer_id").size()


def _repeat_complaints(complaints: pd.DataFrame, in_window: pd.Index) -> pd.Series:
    """Complaints in the window about something already complained about and not put right.

    A complaint repeats when the same ticket was complained about before, or, for
    messages without a ticket, the same complaint type was.
    """
    ordered = complaints.sort_values("created_at")
    ticket_again = ordered.duplicated(["customer_id", "ticket_id"]) & ordered["ticket_id"].notna()
    kind = ordered[list(TOPICS)].idxmax(axis=1).where(ordered[list(TOPICS)].any(axis=1))
    kind_again = (ordered.assign(kind=kind).duplicated(["customer_id", "kind"])
                  & kind.notna() & ordered["ticket_id"].isna())
    repeated = ordered[(ticket_again | kind_again) & ordered.index.isin(in_window)]
    return repeated.groupby("customer_id").size()
