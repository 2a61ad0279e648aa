"""Evaluation of churn warnings: hand-checked figures, tier semantics, edge cases, the report."""

import json

import numpy as np
import pandas as pd
import pytest

from churnsignal.config import FusionSettings
from churnsignal.fusion.evaluation import evaluate, tier_of, write_report

TIERS = FusionSettings().tiers  # red > 0.70, yellow > 0.30, blue > 0.10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ten_customers() -> tuple[pd.Series, pd.Series]:
    """Ten customers whose figures are worked out by hand in the tests below.

    Ranked by probability: c0 P, c1 P, c2 N | c3 P, c4 N, c5 N | c6 N, c7 N | c8 P, c9 N
    (bars separate red | yellow | blue | none).
    """
    index = pd.Index([f"c{i}" for i in range(10)], name="customer_id")
    prob = pd.Series([0.95, 0.85, 0.75, 0.60, 0.50, 0.40, 0.20, 0.15, 0.05, 0.02], index=index)
    churned = pd.Series([1, 1, 0, 1, 0, 0, 0, 0, 1, 0], index=index)
    return churned, prob


def _evaluate(churned: pd.Series, prob: pd.Series, **kwargs) -> dict:
    return evaluate(churned, prob, pd.Series(tier_of(prob, TIERS), index=prob.index), TIERS, **kwargs)


def test_tier_of_cut_off_is_strict():
    prob = np.array([0.70, 0.7001, 0.30, 0.3001, 0.10, 0.1001, 0.0, 1.0])
    assert tier_of(prob, TIERS).tolist() == ["yellow", "red", "blue", "yellow", "none", "blue", "none", "red"]


def test_tier_of_accepts_a_series():
    assert tier_of(pd.Series([0.8, 0.2]), TIERS).tolist() == ["red", "blue"]


def test_headline_figures_by_hand(ten_customers):
    churned, prob = ten_customers
    fig = _evaluate(churned, prob)
    assert fig["customers"] == 10
    assert fig["churners"] == 4
    assert fig["churn_rate"] == 0.4
    # Churner/non-churner pairs ranked right: c0 6, c1 6, c3 5, c8 1 -> 18 of 24.
    assert fig["auc"] == 0.75
    # Precision at each churner's rank: 1/1, 2/2, 3/4, 4/9 -> mean 0.79861.
    assert fig["pr_auc"] == 0.7986
    # Squared errors sum to 2.1229.
    assert fig["brier"] == 0.2123
    # c0, c1, c3 warned; c8 (0.05) is not.
    assert fig["coverage"] == 0.75
    assert fig["lead_time_days"] is None


def test_tier_figures_by_hand(ten_customers):
    churned, prob = ten_customers
    tiers = _evaluate(churned, prob)["tiers"]
    assert tiers == [
        # c0, c1, c2: 2 hits of 3; 1 of 6 non-churners alerted.
        {"tier": "red", "cut_off": 0.7, "response_hours": 4.0, "customers_in_tier": 3, "alerts": 3,
         "precision": 0.6667, "recall": 0.5, "f1": 0.5714, "false_alarm_rate": 0.1667},
        # + c3, c4, c5: 3 hits of 6; 3 of 6 non-churners alerted.
        {"tier": "yellow", "cut_off": 0.3, "response_hours": 12.0, "customers_in_tier": 3, "alerts": 6,
         "precision": 0.5, "recall": 0.75, "f1": 0.6, "false_alarm_rate": 0.5},
        # + c6, c7, both loyal: 3 hits of 8; 5 of 6 non-churners alerted.
        {"tier": "blue", "cut_off": 0.1, "response_hours": 24.0, "customers_in_tier": 2, "alerts": 8,
         "precision": 0.375, "recall": 0.75, "f1": 0.5, "false_alarm_rate": 0.8333},
    ]


def test_tier_is_taken_as_given_not_recomputed(ten_customers):
    churned, prob = ten_customers
    # A per-segment cut-off put c8 in blue although its probability is below 0.10.
    tier = pd.Series(tier_of(prob, TIERS), index=prob.index)
    tier["c8"] = "blue"
    fig = evaluate(churned, prob, tier, TIERS)
    assert fig["coverage"] == 1.0
    assert fig["tiers"][2]["recall"] == 1.0
    assert fig["tiers"][2]["customers_in_tier"] == 3


def test_alerts_are_cumulative():
    rng = np.random.default_rng(0)
    index = pd.RangeIndex(500)
    prob = pd.Series(rng.random(500), index=index)
    churned = pd.Series((rng.random(500) < prob).astype(int), index=index)
    tier = pd.Series(tier_of(prob, TIERS), index=index)
    red, yellow, blue = evaluate(churned, prob, tier, TIERS)["tiers"]

    red_alerts = set(index[tier == "red"])
    red_or_yellow_alerts = set(index[tier.isin(["red", "yellow"])])
    assert red_alerts < red_or_yellow_alerts
    assert red["alerts"] == len(red_alerts) == red["customers_in_tier"]
    assert yellow["alerts"] == len(red_or_yellow_alerts) == red["customers_in_tier"] + yellow["customers_in_tier"]
    assert blue["alerts"] == (tier != "none").sum()
    for lower, higher in ((yellow, red), (blue, yellow)):
        assert lower["recall"] >= higher["recall"]
        assert lower["false_alarm_rate"] >= higher["false_alarm_rate"]


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_none_not_nan(ten_customers, label):
    _, prob = ten_customers
    churned = pd.Series(label, index=prob.index)
    fig = _evaluate(churned, prob, lead_days=pd.Series(np.nan, index=prob.index))
    assert fig["auc"] is None
    assert fig["pr_auc"] is None
    json.dumps(fig, allow_nan=False)  # raises on NaN or numpy scalars
    if label == 0:
        assert fig["coverage"] is None
        assert fig["tiers"][0]["recall"] is None
        assert fig["tiers"][0]["false_alarm_rate"] == 0.3
    else:
        assert fig["coverage"] == 0.8
        assert fig["tiers"][0]["false_alarm_rate"] is None
        assert fig["tiers"][0]["precision"] == 1.0


def test_tier_without_alerts_has_no_precision(ten_customers):
    churned, prob = ten_customers
    fig = evaluate(churned, prob, pd.Series("none", index=prob.index), TIERS)
    assert [t["precision"] for t in fig["tiers"]] == [None, None, None]
    assert [t["recall"] for t in fig["tiers"]] == [0.0, 0.0, 0.0]
    assert fig["coverage"] == 0.0
    json.dumps(fig, allow_nan=False)


def test_lead_time_counts_warned_churners_with_a_date_only(ten_customers):
    churned, prob = ten_customers
    lead = pd.Series(np.nan, index=prob.index)
    lead["c0"] = 10.0  # warned churner
    lead["c1"] = np.nan  # warned churner, churn date unknown
    lead["c3"] = 60.0  # warned churner
    lead["c8"] = 100.0  # churner never warned
    lead["c2"] = 7.0  # warned, but did not churn
    fig = _evaluate(churned, prob, lead_days=lead)
    assert fig["lead_time_days"] == {"median": 35.0, "mean": 35.0, "p25": 22.5, "p75": 47.5,
                                     "warned_churners_with_date": 2}


def test_lead_time_without_any_known_date(ten_customers):
    churned, prob = ten_customers
    fig = _evaluate(churned, prob, lead_days=pd.Series(np.nan, index=prob.index))
    assert fig["lead_time_days"] == {"median": None, "mean": None, "p25": None, "p75": None,
                                     "warned_churners_with_date": 0}


def test_same_customers_in_another_order_are_aligned(ten_customers):
    churned, prob = ten_customers
    assert _evaluate(churned, prob) == _evaluate(churned, prob.iloc[::-1])


def test_mismatched_index_is_rejected(ten_customers):
    churned, prob = ten_customers
    with pytest.raises(ValueError, match="same customers"):
        _evaluate(churned, prob.rename({"c9": "c99"}))


def test_label_other_than_0_or_1_is_rejected(ten_customers):
    churned, prob = ten_customers
    churned = churned.copy()
    churned["c4"] = 2
    with pytest.raises(ValueError, match=r"churned must be 0 or 1; found 2 for customer c4"):
        _evaluate(churned, prob)


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_probability_outside_0_1_is_rejected(ten_customers, bad):
    churned, prob = ten_customers
    prob = prob.copy()
    prob["c4"] = bad
    with pytest.raises(ValueError, match=r"churn_prob must lie in \[0, 1\]; found .* for customer c4"):
        evaluate(churned, prob, pd.Series("none", index=prob.index), TIERS)


def test_unknown_tier_name_is_rejected(ten_customers):
    churned, prob = ten_customers
    with pytest.raises(ValueError, match="not configured tiers.*orange"):
        evaluate(churned, prob, pd.Series("orange", index=prob.index), TIERS)


def test_write_report(ten_customers, tmp_path):
    churned, prob = ten_customers
    fig = _evaluate(churned, prob, lead_days=pd.Series(30.0, index=prob.index))
    fig |= {"model": "gbm-v2", "as_of": "2024-06-30", "baselines": {"recency": {"auc": 0.61}}}
    out = tmp_path / "not" / "yet"
    paths = write_report(fig, churned, prob, out, title="Holdout evaluation")

    assert set(paths) == {"metrics", "report", "roc", "pr", "calibration", "tiers"}
    assert all(path.parent == out and path.is_file() for path in paths.values())
    for name in ("roc", "pr", "calibration", "tiers"):
        png = paths[name].read_bytes()
        assert paths[name].name == f"{name}.png"
        assert png.startswith(PNG_SIGNATURE)
        assert len(png) > 5_000
    assert json.loads(paths["metrics"].read_text(encoding="utf-8")) == fig

    report = paths["report"].read_text(encoding="utf-8")
    assert report.startswith("# Holdout evaluation\n")
    for name in ("roc", "pr", "calibration", "tiers"):
        assert f"]({name}.png)" in report
    assert "| AUC | 0.7500 |" in report
    assert "| blue | 0.1000 | 24 | 2 | 8 | 0.3750 | 0.7500 | 0.5000 | 0.8333 |" in report
    assert "median 30.0 (p25 30.0, p75 30.0, mean 30.0; 3 warned churners)" in report
    assert "| model | gbm-v2 |" in report
    assert "| baselines.recency.auc | 0.6100 |" in report


def test_write_report_with_one_class(ten_customers, tmp_path):
    _, prob = ten_customers
    churned = pd.Series(0, index=prob.index)
    paths = write_report(_evaluate(churned, prob), churned, prob, tmp_path)
    assert paths["roc"].read_bytes().startswith(PNG_SIGNATURE)
    assert "| AUC | n/a |" in paths["report"].read_text(encoding="utf-8")
