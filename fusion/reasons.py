"""Why a customer was flagged, in the words an agent reads: reasons, driver, action.

Each feature has a driver (SPEC's intervention library is keyed by churn driver) and a
sentence in Chinese and English that states the customer's own value. A customer's
reasons are the features that pushed their risk up most; their driver is the one whose
features pushed it up most in total. A complaint count also quotes the customer's latest
complaint (on that topic, for a topic's count), masked and shortened, so the agent reads
what went wrong. How negative the messages read is the model's reading, not a fact to act
on: what it raised is told as the complaint it read (:data:`READINGS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from string import Formatter

import numpy as np
import pandas as pd

from churnsignal.config import FusionSettings
from churnsignal.fusion.features import FROM_DIALOGUE, LATEST, QUOTE_CHARS

DRIVERS = ("price", "service", "social", "other")
TOP_REASONS = 3


@dataclass(frozen=True)
class Signal:
    """How one feature is explained: its driver, a sentence per language, when it reads as a warning.

    A reason is a worrying fact, never a neutral attribute: tenure, total spend or an order
    count says nothing is wrong, however much a tree model leaned on it, so such features
    have no sentence (``zh`` None) and are never reasons. A feature with a sentence is given
    as a reason only on its worrying side: above ``above`` or below ``below`` (a model can
    raise a risk through negativity *falling*, since only unhappy customers have a trend at
    all). Sentences may name other features of the customer (``{recency_days}``) to give
    the comparison, and ``[s]`` in English is the plural ending, dropped for a value of 1.
    A count of complaints about a ``topic`` ends with a quote of the latest one (``LATEST``:
    whatever its topic). A ``reading`` has no sentence of its own: see :data:`READINGS`.
    ``unless`` is another feature's least value and the sentences said below it, where the
    comparison rests on too little to be called usual.
    """

    driver: str
    zh: str | None = None
    en: str | None = None
    above: float | None = None
    below: float | None = None
    topic: str | None = None
    reading: bool = False
    unless: tuple[str, float, str, str] | None = None

    def wording(self, features: pd.DataFrame, customer) -> tuple[str, str]:
        """The sentences (zh, en) for this customer."""
        if self.unless is not None:
            field, least, zh, en = self.unless
            if field in features.columns and features.at[customer, field] < least:
                return zh, en
        return self.zh, self.en

    def worrying(self, value: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(value) & (self.zh is not None or self.reading)
        if self.above is not None:
            ok &= value > self.above
        if self.below is not None:
            ok &= value < self.below
        return ok


def _complaints(topic: str, kind_zh: str, kind_en: str, driver: str = "service") -> Signal:
    return Signal(driver, f"{kind_zh}投诉{{v:.0f}}次", f"{{v:.0f}} complaint[s] about {kind_en}", above=0, topic=topic)


SIGNALS: dict[str, Signal] = {
    # Neutral attributes: they shape the risk, but none of them is something to act on.
    "recency_days": Signal("social"),
    "tenure_days": Signal("other"),
    "orders": Signal("social"),
    "purchase_days": Signal("social"),
    "monetary": Signal("other"),
    "avg_order_value": Signal("price"),
    "gap_mean_days": Signal("social"),
    "gap_std_days": Signal("other"),
    "orders_30d": Signal("social"),
    "orders_90d": Signal("social"),
    "bgnbd_expected_purchases": Signal("social"),
    "bgnbd_p_alive": Signal("social"),
    "clv_12m": Signal("other"),
    "messages": Signal("service"),
    "window_days": Signal("other"),
    "days_since_complaint": Signal("service"),
    # Worrying facts, each against the customer's own history or SPEC's warning levels.
    # One gap between two purchase days is no usual gap: the sentence says what it rests on.
    "overdue_ratio": Signal("social", "距上次购买{recency_days:.0f}天，是平均间隔的{v:.1f}倍",
                            "{recency_days:.0f} days since the last purchase, {v:.1f}× their usual gap", above=1.5,
                            unless=("purchase_days", 3, "距上次购买{recency_days:.0f}天，是此前仅有一次购买间隔的{v:.1f}倍",
                                    "{recency_days:.0f} days since the last purchase, {v:.1f}× the one gap between "
                                    "their two purchase days")),
    "freq_change_mom": Signal("social", "购买频率环比变化{v:+.0%}", "purchase frequency {v:+.0%} month over month",
                              below=-0.25),
    "freq_change_qoq": Signal("social", "购买频率季度环比变化{v:+.0%}", "purchase frequency {v:+.0%} quarter over quarter",
                              below=-0.25),
    "aov_change_3m": Signal("price", "近3个月客单价较以往变化{v:+.0%}", "order value {v:+.0%} over 3 months vs. before",
                            below=-0.3),
    "core_category_gap_days": Signal("price", "常购品类已{v:.0f}天未购买", "{v:.0f} days without buying their usual category",
                                     above=60),
    "refunds": Signal("service", "退款{v:.0f}次", "{v:.0f} refund[s]", above=0),
    "refund_rate": Signal("service", "退款率{v:.0%}", "{v:.0%} of orders refunded", above=0),
    # Readings of how negative the messages are: told as the complaints they read (READINGS).
    "neg_prob_mean": Signal("service", above=0.5, reading=True),
    "neg_prob_max": Signal("service", above=0.5, reading=True),
    "neg_prob_trend": Signal("service", above=0.1, reading=True),
    "negative_word_share": Signal("service", above=0.15, reading=True),
    "complaints_quality": _complaints("QUALITY", "质量", "product quality"),
    "complaints_logistics": _complaints("LOGISTICS", "物流", "delivery"),
    "complaints_refund": _complaints("REFUND", "退换货", "refunds or returns"),
    "complaints_service": _complaints("SERVICE", "服务态度", "service"),
    "complaints_price": _complaints("PRICE", "价格", "price", driver="price"),
    "complaints_competitor": Signal("price", "提及竞争平台的投诉{v:.0f}次", "{v:.0f} complaint[s] mentioning a competitor",
                                    above=0, topic="COMPETITOR"),
    "complaints": Signal("service", "近期投诉{v:.0f}次", "{v:.0f} recent complaint[s]", above=0, topic=LATEST),
    "complaint_spike": Signal("service", "投诉量为其平时的{v:.1f}倍", "complaints at {v:.1f}× their usual rate", above=3),
    "repeat_complaints": Signal("service", "{v:.0f}次重复投诉未解决", "{v:.0f} repeated unresolved complaint[s]", above=0),
    "competitor_mentions": Signal("price", "提及竞争平台{v:.0f}次", "mentioned a competitor {v:.0f} time[s]", above=0),
    "rating_mean": Signal("service", "近期平均评分{v:.1f}", "recent average rating {v:.1f}", below=4),
    "complaints_6m": Signal("service", "近6个月投诉{v:.0f}次", "{v:.0f} complaint[s] in 6 months", above=0, topic=LATEST),
    "first_response_hours": Signal("service", "工单平均等待{v:.0f}小时才获首次回复", "waited {v:.0f} h on average for a first reply",
                                   above=4),
    "slowest_response_hours": Signal("service", "最长等待{v:.0f}小时才获首次回复", "waited {v:.0f} h for a first reply once",
                                     above=12),
    "unresolved_tickets": Signal("service", "{v:.0f}个工单投诉后未见好转", "{v:.0f} ticket[s] still ending in a complaint",
                                 above=0),
    # Under a day is ordinary handling time, and would read "unresolved for 0 days".
    "unresolved_days": Signal("service", "投诉工单已{v:.0f}天未解决", "complaint ticket unresolved for {v:.0f} day[s]",
                              above=1),
    "awaiting_reply": Signal("service", "{v:.0f}条投诉尚未获得回复", "{v:.0f} complaint[s] still awaiting a reply", above=0),
}


# "Recent messages 87 % negative on average", "worst message 100 % negative": what the
# sentiment model read, which an agent can neither check nor act on. What these raise is
# told as the complaint they read: the customer's complaints about the topic they complained
# about most, else their complaint count, with a quote of the latest (``_credit``).
READINGS = tuple(name for name, signal in SIGNALS.items() if signal.reading)
# Where a reading's share goes: the count of the topic complained about most (ties: this
# order), else the first of the two totals the customer has (TOTALS).
TOPIC_COUNTS = tuple(name for name, signal in SIGNALS.items() if signal.topic not in (None, LATEST))
TOTALS = ("complaints", "complaints_6m")


def explain(contributions: pd.DataFrame, features: pd.DataFrame, settings: FusionSettings,
            quotes: pd.DataFrame | None = None) -> pd.DataFrame:
    """``reasons``, ``driver`` and ``action`` per customer from their feature contributions.

    ``reasons`` and ``action`` are one line each ("zh / en"; reasons joined by "; ") for a
    CSV; ``reason_list`` and ``action_text`` hold the same as ``{"zh", "en"}`` dicts (a
    reason also names its ``kind``, the feature) for an alert that lays them out itself.
    ``quotes`` holds each customer's latest complaint per topic and overall (``LATEST``),
    already masked (``features.latest_complaints``); without it complaint counts go unquoted.
    """
    names = list(contributions.columns)
    values = features.reindex(index=contributions.index, columns=names).to_numpy(dtype=float)
    shares = contributions.to_numpy(dtype=float)
    # Only a feature the customer has a worrying value for, and that raised their risk, is a reason.
    worrying = np.stack([SIGNALS[n].worrying(values[:, j]) for j, n in enumerate(names)], axis=1)
    pushing = np.where((shares > 0) & worrying, shares, 0.0)
    by_driver = np.stack([pushing[:, [SIGNALS[n].driver == d for n in names]].sum(axis=1) for d in DRIVERS], axis=1)
    drivers = np.where(by_driver.max(axis=1) > 0, np.asarray(DRIVERS)[by_driver.argmax(axis=1)], "other")
    told = _credit(pushing, values, names)
    top = np.argsort(-told, axis=1, kind="stable")[:, :TOP_REASONS]
    reason_list = [_sentences([names[j] for j in row_top if row_told[j] > 0], row_values[row_top],
                              features, customer, quotes)
                   for customer, row_top, row_values, row_told in zip(contributions.index, top, values, told)]
    actions = [settings.interventions[d].model_dump() for d in drivers]
    return pd.DataFrame({"reasons": ["; ".join(f"{r['zh']} / {r['en']}" for r in row) for row in reason_list],
                         "driver": drivers, "action": [f"{a['zh']} / {a['en']}" for a in actions],
                         "reason_list": reason_list, "action_text": actions}, index=contributions.index)


def _credit(pushing: np.ndarray, values: np.ndarray, names: list[str]) -> np.ndarray:
    """``pushing`` with each customer's :data:`READINGS` share moved to the complaint count that
    tells it (:func:`_telling`), or dropped where they have no complaint to tell; and the two
    :data:`TOTALS`, which tell one thing twice, joined in the stronger."""
    told = pushing.copy()
    column = {name: j for j, name in enumerate(names)}
    readings = [column[name] for name in READINGS if name in column]
    topics = [column[name] for name in TOPIC_COUNTS if name in column]
    totals = [column[name] for name in TOTALS if name in column]
    moved = told[:, readings].sum(axis=1)
    told[:, readings] = 0.0
    for row in np.flatnonzero(moved > 0):
        target = _telling(values[row], topics, totals)
        if target is not None:
            told[row, target] += moved[row]
    if len(totals) == 2:
        for row in np.flatnonzero((told[:, totals] > 0).all(axis=1)):
            stronger, weaker = sorted(totals, key=lambda j: -told[row, j])
            told[row, stronger] += told[row, weaker]
            told[row, weaker] = 0.0
    return told


def _telling(values: np.ndarray, topics: list[int], totals: list[int]) -> int | None:
    """The column of the complaint count that tells a customer's readings: the topic they
    complained about most, else their first total; None without a complaint."""
    counts = np.nan_to_num(values[topics]) if topics else np.zeros(0)
    if counts.size and counts.max() > 0:
        return topics[int(counts.argmax())]
    return next((j for j in totals if np.nan_to_num(values[j]) > 0), None)


def _sentences(kinds: list[str], values: np.ndarray, features: pd.DataFrame, customer,
               quotes: pd.DataFrame | None) -> list[dict[str, str]]:
    """One customer's reasons, in order. Each complaint is quoted once: by a topic's count
    rather than by a total, else by the first reason that has it."""
    said = [_latest(quotes, customer, SIGNALS[name].topic) for name in kinds]
    inferred = [_from_dialogue(quotes, customer, SIGNALS[name].topic) for name in kinds]
    quoted: set[str] = set()
    for k in sorted(range(len(kinds)), key=lambda k: SIGNALS[kinds[k]].topic == LATEST):
        if said[k] in quoted:
            said[k] = None
        elif said[k] is not None:
            quoted.add(said[k])
    return [_sentence(name, value, features, customer, quote, from_dialogue)
            for name, value, quote, from_dialogue in zip(kinds, values, said, inferred)]


def _sentence(name: str, value: float, features: pd.DataFrame, customer, said: str | None,
              from_dialogue: bool = False) -> dict[str, str]:
    """The reason for one feature: its sentences with the customer's values, and its kind (the
    feature), ending with ``said`` (a complaint) when given. A quote whose words do not name the
    topic (the turns before it did) says so, or an agent would look for it in vain."""
    zh, en = SIGNALS[name].wording(features, customer)
    values = {"v": value} | {field: features.at[customer, field] for field in _fields(zh) if field != "v"}
    english = en.replace("[s]", "" if round(value) == 1 else "s")
    reason = {"kind": name, "zh": zh.format(**values), "en": english.format(**values)}
    if said is not None:
        if from_dialogue:
            reason["zh"] += "（主题见上文）"
            reason["en"] += " (topic from the turns before)"
        # Appended, never formatted: a customer's braces are text, not template fields.
        reason["zh"] += f"：“{_shortened(said)}”"
        reason["en"] += f': "{_shortened(said)}"'
    return reason


def _latest(quotes: pd.DataFrame | None, customer, topic: str | None) -> str | None:
    """The customer's latest complaint about ``topic`` (``LATEST``: any), if there is one to quote."""
    if quotes is None or topic is None or topic not in quotes.columns or customer not in quotes.index:
        return None
    said = quotes.at[customer, topic]
    return said if isinstance(said, str) and said.strip() else None


def _from_dialogue(quotes: pd.DataFrame | None, customer, topic: str | None) -> bool:
    """Whether the customer's latest complaint about ``topic`` took it from the turns before it."""
    column = None if topic in (None, LATEST) else FROM_DIALOGUE.format(topic=topic)
    if quotes is None or column not in quotes.columns or customer not in quotes.index:
        return False
    return bool(quotes.at[customer, column])


def _shortened(text: str) -> str:
    """``text`` on one line in at most ``QUOTE_CHARS`` characters, an ellipsis marking a cut.

    A cut never splits a masking placeholder ("[PHO…" would read as garbled text).
    """
    text = " ".join(text.split())
    if len(text) <= QUOTE_CHARS:
        return text
    head = text[:QUOTE_CHARS - 1]
    if head.rfind("[") > head.rfind("]"):
        head = head[:head.rfind("[")]
    return head.rstrip() + "…"


@lru_cache(maxsize=None)
def _fields(template: str) -> tuple[str, ...]:
    """The names a sentence template takes (``v`` and any other feature it compares with)."""
    return tuple(field for _, field, _, _ in Formatter().parse(template) if field)
