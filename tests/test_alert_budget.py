"""Tier cut-offs fitted to an alert budget (``fusion train --alert-rate``) hold it on new customers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from churnsignal.cli import main
from churnsignal.config import FusionSettings, Settings
from churnsignal.fusion import simulation, text
from churnsignal.fusion.inputs import InputError
from churnsignal.fusion.scoring import score
from churnsignal.fusion.tiers import fit_alert_rate
from churnsignal.fusion.training import features_as_of, train

RATE = 0.10


def test_the_posted_tier_sits_at_the_quantile_and_the_others_keep_their_ratios() -> None:
    proba = pd.Series(np.linspace(0.0, 0.99, 1000))
    tiers = FusionSettings().tiers   # red 0.70, yellow 0.30, blue 0.10
    cuts = fit_alert_rate(proba, tiers, "yellow", RATE)
    assert set(cuts) == {"high_frequency", "low_frequency"}
    red, yellow, blue = cuts["low_frequency"]
    assert (proba > yellow).mean() == pytest.approx(RATE, abs=0.002)
    odds = lambda p: p / (1 - p)  # noqa: E731
    # In odds, so that a high budget cut-off leaves red reachable.
    assert red < 1 and odds(red) / odds(yellow) == pytest.approx(odds(0.70) / odds(0.30), rel=1e-4)
    assert odds(blue) / odds(yellow) == pytest.approx(odds(0.10) / odds(0.30), rel=1e-4)


def test_cutoffs_fitted_to_an_alert_rate_hold_it_on_held_out_customers(tmp_path: Path, monkeypatch) -> None:
    pool = simulation.sentence_pool(None)
    # What the cut-offs are fitted to does not depend on how well the BERT reads: a reader
    # that knows which sentences are complaints keeps the test fast.
    negative = set(pool.negative) | set(pool.competitor)
    monkeypatch.setattr(text, "_analyse", lambda texts, _settings, _contexts, _reviews: [
        {"negative_prob": 0.9 if t in negative else 0.1, "negative_word_share": 0.0, "labels": {},
         "spans": []} for t in texts])
    sim = simulation.simulate(simulation.cdnow_transactions(), pool, simulation.SimulationParams(customers=None),
                              seed=3)
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    labels = sim.labels.set_index("customer_id")
    held_out = labels.sample(frac=0.5, random_state=0).index
    fitted_on = labels.index.difference(held_out)
    model = train(sim.orders, sim.events, labels.loc[fitted_on], sim.as_of, settings, seed=0, alert_rate=RATE)
    assert model.info["alert_rate"] == RATE
    features = features_as_of(sim.orders, sim.events, sim.as_of, settings, model.feature_settings)
    writing = features.index[features["messages"] > 0].intersection(held_out)
    assert len(writing) > 500
    tiers = score(model, sim.orders, sim.events, sim.as_of, settings).set_index("customer_id").loc[writing, "tier"]
    assert abs(tiers.isin(["red", "yellow"]).mean() - RATE) <= 0.03
    with pytest.raises(InputError, match="not both"):
        train(sim.orders, sim.events, labels, sim.as_of, settings, alert_rate=RATE, target_false_alarm=0.05)
    with pytest.raises(InputError, match="needs --events"):
        train(sim.orders, None, labels, sim.as_of, settings, alert_rate=RATE)


def test_the_command_refuses_both_ways_of_fitting_cut_offs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fusion", "train", "--orders", "o.csv", "--labels", "l.csv",
                                       "--as-of", "2026-01-01", "--out", str(tmp_path / "m.zip"),
                                       "--target-false-alarm", "0.05", "--alert-rate", "0.1"])
    assert result.exit_code == 2
    assert "--target-false-alarm and --alert-rate" in result.output
