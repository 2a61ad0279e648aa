"""Probabilities → warning tiers, with optional cut-offs fitted per customer segment.

SPEC: fixed thresholds raise false alarms when behaviour shifts (a promotion season, a
segment that buys weekly), so a model can carry its own cut-offs per segment, fitted on
out-of-fold scores to hold a target false-alarm rate at the top tier, or an alert budget
(a share of writing customers at the lowest posted tier or above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta

from churnsignal.config import Tier
from churnsignal.fusion.evaluation import tier_of
from churnsignal.fusion.features import MONTH_DAYS, QUARTER_DAYS

# Fewer customers than this in a segment and a fitted cut-off is noise: keep the configured ones.
MIN_SEGMENT = 50
# A cut-off that holds the target exactly on the scores it was fitted to exceeds it on new
# customers about half the time; it is fitted to hold it with this confidence instead.
CONFIDENCE = 0.9


SEGMENTS = ("high_frequency", "low_frequency")


def segment_of(features: pd.DataFrame, high_frequency_orders_per_month: float) -> pd.Series:
    """``high_frequency`` or ``low_frequency`` per customer, as the text windows are chosen."""
    per_month = features["orders_90d"] / (QUARTER_DAYS / MONTH_DAYS)
    return pd.Series(np.where(per_month >= high_frequency_orders_per_month, *SEGMENTS), index=features.index)


def fit_cutoffs(proba: pd.Series, churned: pd.Series, segments: pd.Series, tiers: Sequence[Tier],
                target_false_alarm: float) -> dict[str, list[float]]:
    """Per segment, the cut-offs that hold ``target_false_alarm`` at the top tier.

    The top cut-off is the lowest one whose false-alarm rate on the segment's retained
    customers stays within the target by a one-sided ``CONFIDENCE`` Clopper-Pearson bound,
    so it holds on customers it was not fitted to, not only on these scores. The lower
    tiers keep their configured ratios to it, so their order (and their meaning relative
    to each other) is unchanged.
    """
    fitted: dict[str, list[float]] = {}
    for segment in sorted(segments.unique()):
        members = segments == segment
        retained = np.sort(proba[members & (churned == 0)].to_numpy())[::-1]
        if members.sum() < MIN_SEGMENT or len(retained) == 0:
            continue
        allowed = allowed_false_alarms(len(retained), target_false_alarm)
        top = float(retained[allowed]) if allowed < len(retained) else 0.0
        scale = top / tiers[0].above if tiers[0].above > 0 else 1.0
        # Rounded up, so the customer the top cut-off sits on stays below it.
        fitted[segment] = [min(math.ceil(t.above * scale * 1e6) / 1e6, 0.999999) for t in tiers]
    return fitted


def fit_alert_rate(proba: pd.Series, tiers: Sequence[Tier], lowest_posted: str, alert_rate: float
                   ) -> dict[str, list[float]]:
    """Cut-offs that put about ``alert_rate`` of the customers scored in ``proba`` at the
    ``lowest_posted`` tier or above, the same in every segment.

    Churn base rates differ per business (70 % in CDNOW), so configured probabilities
    alert almost everyone in some; a budget of alerts is what a support team can answer.
    ``proba`` should be out-of-fold scores of the customers who would be scored live
    (those who write). That tier's cut-off is their ``1 - alert_rate`` quantile; the other
    tiers keep their configured ratios to it in odds, not in probability: where the budget
    puts yellow at 0.8 a probability ratio would put red at 1.87, out of reach, while the
    odds ratio puts it at 0.96 (and blue at 0.51).
    """
    index = [t.name for t in tiers].index(lowest_posted)
    cut = min(float(np.quantile(proba.to_numpy(), 1 - alert_rate, method="higher")), 0.999999)
    scale = _odds(cut) / _odds(tiers[index].above) if tiers[index].above > 0 else 1.0
    cuts = [_odds(t.above) * scale for t in tiers]
    # Rounded up, so the customer a cut-off sits on stays below it.
    return dict.fromkeys(SEGMENTS, [min(math.ceil(c / (1 + c) * 1e6) / 1e6, 0.999999) for c in cuts])


def _odds(p: float) -> float:
    return p / (1 - p)


def allowed_false_alarms(retained: int, target_false_alarm: float) -> int:
    """The most false alarms among ``retained`` customers whose rate is within the target at ``CONFIDENCE``."""
    alarms = np.arange(retained)
    upper = beta.ppf(CONFIDENCE, alarms + 1, retained - alarms)
    within = np.flatnonzero(upper <= target_false_alarm)
    return int(within[-1]) if len(within) else 0


def assign(proba: pd.Series, segments: pd.Series, tiers: Sequence[Tier],
           cutoffs: dict[str, list[float]] | None = None) -> pd.Series:
    """Tier name (or ``none``) per customer: configured cut-offs, or the segment's fitted ones."""
    out = pd.Series(tier_of(proba.to_numpy(), tiers), index=proba.index, dtype=object)
    for segment, cuts in (cutoffs or {}).items():
        members = (segments == segment).to_numpy()
        own = [t.model_copy(update={"above": c}) for t, c in zip(tiers, cuts)]
        out[members] = tier_of(proba.to_numpy()[members], own)
    return out

