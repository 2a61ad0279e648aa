"""Spikes: a topic's complaints on one day far above its own recent normal.

The rule, stated once: a day's count ``c`` for a topic is a spike when ``c >= MIN_COUNT``
and, if complaints of that topic arrived as a Poisson process at the mean daily rate ``λ``
of the previous ``BASELINE_DAYS`` days, a day with ``c`` or more would have probability
below ``P_VALUE``: ``P(X >= c | Poisson(λ)) < P_VALUE``. Days without complaints count as
zeros in the mean; a topic with no history (λ = 0) spikes at ``MIN_COUNT``. The minimum
keeps a quiet topic's one or two complaints from being called a spike however low λ is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from scipy.stats import poisson

BASELINE_DAYS = 28
P_VALUE = 0.01
MIN_COUNT = 3


@dataclass(frozen=True)
class Spike:
    topic: str
    day: date
    count: int
    # Mean complaints per day over the BASELINE_DAYS before.
    baseline: float
    p_value: float

    @property
    def rise(self) -> float:
        """Complaints above the baseline that day."""
        return self.count - self.baseline

    @property
    def ratio(self) -> float | None:
        """How many times the baseline; None when the baseline is zero."""
        return self.count / self.baseline if self.baseline else None


def is_spike(count: int, baseline: float) -> tuple[bool, float]:
    """Whether ``count`` is a spike against a mean daily ``baseline``, and its tail probability."""
    [p_value] = tail_probabilities(np.array([count]), np.array([baseline]))
    return bool(count >= MIN_COUNT and p_value < P_VALUE), float(p_value)


def tail_probabilities(counts: np.ndarray, baselines: np.ndarray) -> np.ndarray:
    """``P(X >= count | Poisson(baseline))`` for each pair; with no baseline, 0 for any complaint and 1 for none.

    One call for a topic's whole range: a year of days is one array, not 365 calls into scipy.
    """
    rates = np.where(baselines > 0, baselines, 1.0)
    return np.where(baselines > 0, poisson.sf(counts - 1, rates), np.where(counts > 0, 0.0, 1.0))


def find_spikes(daily: dict[str, Counter[date]], days: list[date]) -> list[Spike]:
    """Every spike of every topic on ``days``; ``daily`` must hold the BASELINE_DAYS before them too.

    Largest rise first.
    """
    found: list[Spike] = []
    if not days:
        return found
    # Every day from BASELINE_DAYS before the first to the last, so that each day's baseline is
    # a difference of two running sums (a year of days summed 28 at a time took 0.05 s).
    first = min(days) - timedelta(days=BASELINE_DAYS)
    span = [first + timedelta(days=n) for n in range((max(days) - first).days + 1)]
    at = np.array([(day - first).days for day in days])
    for topic, counts in daily.items():
        running = np.concatenate(([0], np.cumsum([counts[day] for day in span])))
        observed = running[at + 1] - running[at]
        baselines = (running[at] - running[at - BASELINE_DAYS]) / BASELINE_DAYS
        p_values = tail_probabilities(observed, baselines)
        for day, count, baseline, p_value in zip(days, observed, baselines, p_values):
            if count >= MIN_COUNT and p_value < P_VALUE:
                found.append(Spike(topic, day, int(count), float(baseline), float(p_value)))
    return sorted(found, key=lambda s: (-s.rise, s.day, s.topic))
