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
    p_value = float(poisson.sf(count - 1, baseline)) if baseline > 0 else (0.0 if count > 0 else 1.0)
    return count >= MIN_COUNT and p_value < P_VALUE, p_value


def find_spikes(daily: dict[str, Counter[date]], days: list[date]) -> list[Spike]:
    """Every spike of every topic on ``days``; ``daily`` must hold the BASELINE_DAYS before them too.

    Largest rise first.
    """
    found = []
    for topic, counts in daily.items():
        for day in days:
            baseline = sum(counts[day - timedelta(days=n)] for n in range(1, BASELINE_DAYS + 1)) / BASELINE_DAYS
            spike, p_value = is_spike(counts[day], baseline)
            if spike:
                found.append(Spike(topic, day, counts[day], baseline, p_value))
    return sorted(found, key=lambda s: (-s.rise, s.day, s.topic))
