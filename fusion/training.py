"""Train a fusion model from a user's own history files, as of a moment ``as_of``."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import version

import pandas as pd

from churnsignal.config import Settings
from churnsignal.fusion.artifact import FusionModel
from churnsignal.fusion.features import build_features
from churnsignal.fusion.inputs import InputError
from churnsignal.fusion.model import ChurnModel
from churnsignal.fusion.tiers import fit_alert_rate, fit_cutoffs, segment_of


def feature_settings(settings: Settings) -> dict[str, float]:
    """The settings that define what a feature means; a model keeps the ones it was trained with.

    What a complaint is belongs to ``nlp/complaints.py``, read at scoring as at training.
    """
    fusion = settings.fusion
    return {"high_frequency_orders_per_month": fusion.high_frequency_orders_per_month,
            "short_window_days": fusion.short_window_days, "long_window_days": fusion.long_window_days}


def analysed_as_of(events: pd.DataFrame | None, as_of: pd.Timestamp, settings: Settings) -> pd.DataFrame | None:
    """The events strictly before ``as_of`` with each message's signals (``fusion/text.py``)."""
    from churnsignal.fusion.text import analyse_events

    return None if events is None else analyse_events(events[events["created_at"] < as_of], settings)


def features_of(orders: pd.DataFrame, analysed: pd.DataFrame | None, as_of: pd.Timestamp,
                settings: Settings, defined_by: dict[str, float]) -> pd.DataFrame:
    """Every customer's features from the rows strictly before ``as_of``, events already analysed."""
    return build_features(orders, analysed, as_of, settings.fusion.model_copy(update=defined_by))


def features_as_of(orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
                   settings: Settings, defined_by: dict[str, float]) -> pd.DataFrame:
    """Every customer's features from the rows strictly before ``as_of``."""
    return features_of(orders, analysed_as_of(events, as_of, settings), as_of, settings, defined_by)


def train(orders: pd.DataFrame, events: pd.DataFrame | None, labels: pd.DataFrame, as_of: pd.Timestamp,
          settings: Settings, seed: int = 0, target_false_alarm: float | None = None,
          alert_rate: float | None = None) -> FusionModel:
    """Fit, calibrate and describe a model; labelled customers need an order before ``as_of``.

    With ``target_false_alarm`` the tier cut-offs are fitted per segment, with ``alert_rate``
    to an alert budget over the labelled customers who wrote in their window
    (``fusion/tiers.py``); one or the other.
    """
    if target_false_alarm is not None and alert_rate is not None:
        raise InputError("give --target-false-alarm or --alert-rate, not both: each sets the tier cut-offs")
    if alert_rate is not None and events is None:
        raise InputError("--alert-rate is a share of the customers who write to support: it needs --events")
    if alert_rate is not None and settings.alerts.lowest_posted_tier not in [t.name for t in settings.fusion.tiers]:
        raise InputError(f"--alert-rate fits the cut-off of alerts.lowest_posted_tier "
                         f"({settings.alerts.lowest_posted_tier!r}), which is not one of fusion.tiers")
    defined_by = feature_settings(settings)
    features = features_as_of(orders, events, as_of, settings, defined_by)
    known = labels.index.intersection(features.index)
    if len(known) < len(labels):
        missing = labels.index.difference(features.index)
        raise InputError(f"{len(missing)} labelled customer(s) have no order before {as_of.isoformat()} "
                         f"(e.g. {', '.join(map(str, missing[:3]))}): a model cannot learn from nothing; "
                         "label only customers with history before --as-of")
    X, churned = features.loc[known], labels.loc[known, "churned"]
    try:
        estimator = ChurnModel(seed=seed).fit(X, churned)
    except ValueError as exc:
        raise InputError(f"labels: {exc}") from exc
    cutoffs = None
    if target_false_alarm is not None:
        segments = segment_of(X, defined_by["high_frequency_orders_per_month"])
        cutoffs = fit_cutoffs(estimator.oof_proba_, churned, segments, settings.fusion.tiers, target_false_alarm)
    if alert_rate is not None:
        writing = estimator.oof_proba_[X["messages"] > 0]
        if writing.empty:
            raise InputError("--alert-rate: no labelled customer wrote to support in their window before --as-of")
        cutoffs = fit_alert_rate(writing, settings.fusion.tiers, settings.alerts.lowest_posted_tier, alert_rate)
    info = {"as_of": as_of.isoformat(), "seed": seed, "target_false_alarm": target_false_alarm,
            "alert_rate": alert_rate,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training": estimator.figures_, "tiers": [t.model_dump() for t in settings.fusion.tiers],
            "versions": {p: version(p) for p in ("pandas", "numpy", "pymc-marketing", "shap")}}
    return FusionModel(estimator, uses_text=events is not None, feature_settings=defined_by,
                       cutoffs=cutoffs, info=info)
