"""Score customers with a trained fusion model: probability, tier, reasons, driver, action."""

from __future__ import annotations

import warnings

import pandas as pd

from churnsignal.config import Settings
from churnsignal.fusion.artifact import FusionModel
from churnsignal.fusion.features import latest_complaints
from churnsignal.fusion.reasons import explain
from churnsignal.fusion.service import service_signal
from churnsignal.fusion.tiers import assign, segment_of
from churnsignal.fusion.training import analysed_as_of, features_of

COLUMNS = ("customer_id", "churn_prob", "tier", "reasons", "driver", "action")


def score(model: FusionModel, orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
          settings: Settings) -> pd.DataFrame:
    """One row per customer with an order before ``as_of``, highest risk first (the CSV's columns)."""
    if not model.uses_text and events is not None:
        warnings.warn("this model was trained on purchases only: the events are not used", stacklevel=2)
        events = None
    return score_details(model, orders, events, as_of, settings)[list(COLUMNS)]


def score_details(model: FusionModel, orders: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp,
                  settings: Settings) -> pd.DataFrame:
    """:func:`score` plus ``reason_list`` and ``action_text`` as ``{"zh", "en"}`` dicts, for alerts,
    and ``service_signal`` (``fusion/service.py``; None without events).

    A purchase-only model does not read the events, but they still give the service signal.
    """
    if model.uses_text and events is None:
        warnings.warn("this model was trained with support events; without --events its text signals "
                      "read as 'no messages', which understates the risk of customers who complained",
                      stacklevel=2)
    analysed = analysed_as_of(events, as_of, settings)
    everything = features_of(orders, analysed, as_of, settings, model.feature_settings)
    features = everything.reindex(columns=model.features)
    if events is not None:
        unknown = set(events.loc[events["created_at"] < as_of, "customer_id"]) - set(features.index)
        if unknown:
            warnings.warn(f"{len(unknown)} customer(s) wrote messages but have no order before {as_of.isoformat()}: "
                          "not scored (check that orders and events use the same customer ids)", stacklevel=2)
    proba = pd.Series(model.estimator.predict_proba(features)[:, 1], index=features.index)
    tiers = settings.fusion.tiers
    cutoffs = model.cutoffs
    if cutoffs and any(len(cuts) != len(tiers) for cuts in cutoffs.values()):
        warnings.warn("the configured tiers changed since training: using them, not the model's fitted cut-offs",
                      stacklevel=2)
        cutoffs = None
    segments = segment_of(features, model.feature_settings["high_frequency_orders_per_month"])
    quotes = None if analysed is None else latest_complaints(analysed, as_of)
    why = explain(model.estimator.contributions(features), features, settings.fusion, quotes)
    signal = (service_signal(everything, analysed, as_of, settings.alerts.slow_first_response_hours).astype(object)
              if analysed is not None else pd.Series(None, index=features.index, dtype=object))
    out = pd.DataFrame({"churn_prob": proba.round(4), "tier": assign(proba, segments, tiers, cutoffs),
                        "service_signal": signal}).join(why)
    out.index.name = "customer_id"
    return out.reset_index().sort_values("churn_prob", ascending=False, kind="stable")
