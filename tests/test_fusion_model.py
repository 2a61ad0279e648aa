"""Training, scoring and the model file on real CDNOW purchase histories (purchase-only)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnsignal.config import FusionSettings, Settings, Tier
from churnsignal.fusion import artifact
from churnsignal.fusion.inputs import InputError
from churnsignal.fusion.reasons import DRIVERS, READINGS, SIGNALS
from churnsignal.fusion.scoring import COLUMNS, score
from churnsignal.fusion.simulation import cdnow_orders, cdnow_transactions
from churnsignal.fusion.tiers import assign, fit_cutoffs
from churnsignal.fusion.training import train

AS_OF = pd.Timestamp("1997-10-01")


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders and holdout labels of 500 real CDNOW customers."""
    rows = cdnow_transactions()
    chosen = rows["customer_id"].drop_duplicates().sample(500, random_state=1)
    rows = rows[rows["customer_id"].isin(chosen)].reset_index(drop=True)
    orders = cdnow_orders(rows)
    bought_later = orders.loc[orders["ordered_at"] >= AS_OF, "customer_id"].unique()
    labels = pd.DataFrame({"churned": (~chosen.isin(bought_later)).astype(int).to_numpy()},
                          index=pd.Index(chosen.to_numpy(), name="customer_id"))
    return orders, labels


@pytest.fixture(scope="module")
def trained(history):
    orders, labels = history
    return train(orders, None, labels, AS_OF, Settings(), seed=0)


def test_training_ignores_the_future_and_is_deterministic(history, trained) -> None:
    orders, labels = history
    future = orders[orders["ordered_at"] >= AS_OF].assign(amount=lambda f: f["amount"] * 3 + 1)
    shuffled = pd.concat([orders[orders["ordered_at"] < AS_OF], future]).sample(frac=1, random_state=3)
    again = train(shuffled, None, labels, AS_OF, Settings(), seed=0)
    before = orders[orders["ordered_at"] < AS_OF]
    p1 = score(trained, before, None, AS_OF, Settings()).set_index("customer_id")
    p2 = score(again, before, None, AS_OF, Settings()).set_index("customer_id")
    pd.testing.assert_frame_equal(p1, p2.loc[p1.index])
    other_seed = train(orders, None, labels, AS_OF, Settings(), seed=1)
    p3 = score(other_seed, before, None, AS_OF, Settings()).set_index("customer_id")
    assert not np.allclose(p1["churn_prob"], p3.loc[p1.index, "churn_prob"])


def test_the_model_ranks_real_churners_above_chance(trained) -> None:
    figures = trained.info["training"]
    assert figures["customers"] == 500
    assert figures["oof_auc"] > 0.6  # out of fold, 500 customers; on all of CDNOW ~0.77
    assert trained.features[:3] == ["recency_days", "tenure_days", "orders"]
    assert "core_category_gap_days" not in trained.features  # CDNOW has no categories


def test_scores_have_tiers_reasons_drivers_and_actions(history, trained) -> None:
    orders, _ = history
    settings = Settings()
    scores = score(trained, orders, None, AS_OF, settings)
    assert tuple(scores.columns) == COLUMNS and len(scores) == 500
    assert scores["churn_prob"].is_monotonic_decreasing
    assert scores["churn_prob"].between(0, 1).all()
    tiers = settings.fusion.tiers
    for _, row in scores.iterrows():
        expected = next((t.name for t in tiers if row["churn_prob"] > t.above), "none")
        assert row["tier"] == expected
    assert set(scores["driver"]) <= set(DRIVERS)
    top = scores.iloc[0]
    reasons = top["reasons"].split("; ")
    assert 1 <= len(reasons) <= 3 and all(" / " in r for r in reasons)
    assert any(signal.en.split("{")[0] in top["reasons"] for signal in SIGNALS.values() if signal.en)
    action = settings.fusion.interventions[top["driver"]]
    assert top["action"] == f"{action.zh} / {action.en}"


def test_tiers_and_actions_are_configuration(history, trained) -> None:
    orders, _ = history
    custom = FusionSettings(tiers=[Tier(name="high", above=0.85, response_hours=2),
                                   Tier(name="watch", above=0.5, response_hours=48)],
                            interventions={d: {"zh": f"{d}动作", "en": f"{d} action"} for d in DRIVERS})
    scores = score(trained, orders, None, AS_OF, Settings(fusion=custom, alerts={"lowest_posted_tier": "watch"}))
    with pytest.raises(ValueError, match="lowest_posted_tier: 'yellow' is not one of fusion.tiers"):
        Settings(fusion=custom)
    assert set(scores["tier"]) <= {"high", "watch", "none"}
    assert (scores.loc[scores["churn_prob"] > 0.85, "tier"] == "high").all()
    assert scores["action"].str.endswith(" action").all()


def test_model_file_round_trip_and_version_refusal(tmp_path: Path, history, trained) -> None:
    orders, _ = history
    path = tmp_path / "model.zip"
    artifact.save(trained, path)
    loaded = artifact.load(path)
    assert loaded.features == trained.features
    assert loaded.info["training"] == trained.info["training"]
    pd.testing.assert_frame_equal(score(loaded, orders, None, AS_OF, Settings()),
                                  score(trained, orders, None, AS_OF, Settings()))
    with zipfile.ZipFile(path) as archive:
        description = json.loads(archive.read("model.json"))
        estimator = archive.read("estimator.joblib")
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("model.json", json.dumps(description | {"churnsignal": "0.0.1"}))
        archive.writestr("estimator.joblib", estimator)
    with pytest.raises(artifact.ArtifactError, match="trained with churnsignal 0.0.1.*Retrain"):
        artifact.load(old)
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(artifact.ArtifactError, match="not a churnsignal fusion model"):
        artifact.load(tmp_path / "junk.zip")


def test_labels_need_history_before_as_of(history) -> None:
    orders, labels = history
    late = orders.assign(ordered_at=orders["ordered_at"] + pd.Timedelta(days=3650))
    with pytest.raises(InputError, match="have no order before 1997-10-01"):
        train(late, None, labels, AS_OF, Settings())
    with pytest.raises(InputError, match="at least 5 churned and 5 retained"):
        train(orders, None, labels.assign(churned=1), AS_OF, Settings())


def test_cutoffs_fitted_per_segment_hold_the_false_alarm_target() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    churned = pd.Series(rng.integers(0, 2, n))
    segment = pd.Series(np.where(rng.random(n) < 0.3, "high_frequency", "low_frequency"))
    # the high-frequency segment's loyal customers score higher: one fixed cut-off misfires there
    proba = pd.Series(np.clip(rng.normal(0.35 + 0.35 * churned + 0.25 * (segment == "high_frequency"), 0.15), 0, 1))
    tiers = FusionSettings().tiers
    cutoffs = fit_cutoffs(proba, churned, segment, tiers, target_false_alarm=0.05)
    assert set(cutoffs) == {"high_frequency", "low_frequency"}
    assert cutoffs["high_frequency"][0] > cutoffs["low_frequency"][0]
    tier = assign(proba, segment, tiers, cutoffs)
    for name in cutoffs:
        members = segment == name
        false_alarms = ((tier == "red") & members & (churned == 0)).sum() / (members & (churned == 0)).sum()
        # Within the target with a margin for the customers the cut-off was not fitted to.
        assert 0.03 <= false_alarms <= 0.045
        assert cutoffs[name] == sorted(cutoffs[name], reverse=True)
    fixed = assign(proba, segment, tiers)
    high = (segment == "high_frequency") & (churned == 0)
    assert ((fixed == "red") & high).sum() / high.sum() > 0.05


def test_fitted_cutoff_holds_the_target_on_new_customers() -> None:
    """Fitted on 1,000 retained customers' scores, the cut-off keeps a population's rate within the target.

    A cut-off that hits the target exactly on its own scores misses it on new customers
    about half the time; the one fitted here must hold in at least 80 % of 200 fittings.
    """
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    tiers = FusionSettings().tiers
    segment = pd.Series(["low_frequency"] * 1000)
    held = []
    for _ in range(200):
        scores = pd.Series(norm.cdf(rng.normal(-1.0, 0.6, 1000)))   # retained customers only
        cut = fit_cutoffs(scores, pd.Series(0, index=scores.index), segment, tiers, 0.05)["low_frequency"][0]
        # the false-alarm rate on every retained customer there is, from the score distribution
        held.append(norm.sf((norm.ppf(cut) + 1.0) / 0.6) <= 0.05)
    assert np.mean(held) >= 0.8


def test_reasons_only_name_worrying_values() -> None:
    from churnsignal.fusion.reasons import explain

    features = pd.DataFrame({"neg_prob_trend": [-0.05, 0.30, -0.05], "complaints": [0.0, 2.0, 0.0],
                             "recency_days": [122.0, 40.0, 116.0], "overdue_ratio": [2.44, 0.8, 58.0],
                             "purchase_days": [6.0, 6.0, 2.0], "tenure_days": [160.0, 160.0, 160.0],
                             "awaiting_reply": [0.0, 1.0, 0.0]},
                            index=["calmer", "angrier", "two days"])
    # both customers' risk was raised by every feature, as a tree model can do
    shares = pd.DataFrame(0.2, index=features.index, columns=features.columns)
    why = explain(shares, features, FusionSettings())
    # A gap is given against the customer's own cadence; tenure, a neutral attribute, never.
    assert why.loc["calmer", "reasons"] == ("距上次购买122天，是平均间隔的2.4倍 / "
                                           "122 days since the last purchase, 2.4× their usual gap")
    assert why.loc["calmer", "reason_list"][0]["kind"] == "overdue_ratio"
    assert why.loc["calmer", "driver"] == "social"
    reasons = why.loc["angrier", "reasons"]
    # Rising negativity is the model's reading: it is told as the complaints it read.
    assert "negativity" not in reasons and "2 recent complaints" in reasons
    assert "1 complaint still awaiting a reply" in reasons  # singular for one
    assert "160" not in reasons and "40 days" not in reasons
    assert why.loc["angrier", "driver"] == "service"
    # Two purchase days, two days apart, give one gap: no "usual" gap, and the sentence says so.
    assert why.loc["two days", "reasons"] == ("距上次购买116天，是此前仅有一次购买间隔的58.0倍 / 116 days since the "
                                              "last purchase, 58.0× the one gap between their two purchase days")


def test_how_negative_messages_read_is_told_as_the_complaint_they_read() -> None:
    from churnsignal.fusion.features import LATEST
    from churnsignal.fusion.reasons import READINGS, explain

    features = pd.DataFrame({"neg_prob_max": [0.99, 0.99, 0.98], "neg_prob_mean": [0.9, 0.9, 0.9],
                             "complaints_quality": [1.0, 0.0, 0.0], "complaints_logistics": [2.0, 0.0, 0.0],
                             "complaints": [3.0, 2.0, 0.0], "complaints_6m": [5.0, 4.0, 0.0],
                             "overdue_ratio": [2.0, 2.0, 2.0], "recency_days": [90.0, 90.0, 90.0]},
                            index=["topics", "untopiced", "none"])
    # The readings raised each risk most; the counts and the purchase gap a little.
    shares = pd.DataFrame({"neg_prob_max": 0.5, "neg_prob_mean": 0.4, "complaints_quality": 0.02,
                           "complaints_logistics": 0.01, "complaints": 0.03, "complaints_6m": 0.04,
                           "overdue_ratio": 0.05, "recency_days": 0.0}, index=features.index)
    quotes = pd.DataFrame({"QUALITY": ["用了两天就坏了", None, None], "LOGISTICS": ["等了三天还没到", None, None],
                           LATEST: ["等了三天还没到", "你们到底管不管", None]}, index=features.index)
    why = explain(shares, features, FusionSettings(), quotes)
    told = {customer: [(r["kind"], r["zh"]) for r in row] for customer, row in why["reason_list"].items()}
    # To the topic complained about most, with its latest complaint; the two totals as one reason,
    # whose quote the topic already gave.
    assert told["topics"] == [("complaints_logistics", "物流投诉2次：“等了三天还没到”"), ("complaints_6m", "近6个月投诉5次"),
                              ("overdue_ratio", "距上次购买90天，是平均间隔的2.0倍")]
    # Without a topic, to the window's count, quoting the latest complaint.
    assert told["untopiced"][0] == ("complaints", "近期投诉2次：“你们到底管不管”")
    assert [kind for kind, _ in told["untopiced"]] == ["complaints", "overdue_ratio"]
    # No complaint to tell: the readings give no reason.
    assert told["none"] == [("overdue_ratio", "距上次购买90天，是平均间隔的2.0倍")]
    assert not {kind for row in told.values() for kind, _ in row} & set(READINGS)
    assert why.loc["topics", "driver"] == "service"


# What the issue calls neutral attributes: true of any customer, worrying in none.
NEUTRAL_KINDS = {"recency_days", "tenure_days", "orders", "purchase_days", "monetary", "avg_order_value",
                 "gap_mean_days", "gap_std_days", "orders_30d", "orders_90d", "bgnbd_expected_purchases",
                 "bgnbd_p_alive", "clv_12m", "messages", "window_days", "days_since_complaint"}


def test_a_simulated_population_gets_no_reason_of_a_neutral_kind(tmp_path: Path) -> None:
    from churnsignal.fusion import simulation

    sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(None),
                              simulation.SimulationParams(customers=300), seed=2)
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    labels = sim.labels.set_index("customer_id")
    model = train(sim.orders[sim.orders["ordered_at"] < sim.as_of], sim.events, labels, sim.as_of, settings, seed=0)
    from churnsignal.fusion.scoring import score_details

    details = score_details(model, sim.orders, sim.events, sim.as_of, settings)
    reasons = [reason for row in details["reason_list"] for reason in row]
    assert len(reasons) > 100
    assert not {r["kind"] for r in reasons} & (NEUTRAL_KINDS | set(READINGS))
    # Most customers reached yellow through their complaints, and read them quoted.
    alerted = details.loc[details["tier"].isin(["yellow", "red"]) & details["service_signal"], "reason_list"]
    assert len(alerted) > 20
    assert sum(any("：“" in r["zh"] for r in row) for row in alerted) > len(alerted) / 2
    for reason in reasons:
        assert "(s)" not in reason["en"] and "[s]" not in reason["en"]
        assert not any(reason["en"].startswith(f"1 {noun}s")
                       for noun in ("refund", "recent complaint", "complaint", "ticket"))
