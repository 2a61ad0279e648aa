"""The spike rule: a topic's day against the Poisson tail of its own previous 28 days."""

from collections import Counter
from datetime import date, timedelta

from scipy.stats import poisson

from churnsignal.webhook.pages.spikes import BASELINE_DAYS, MIN_COUNT, P_VALUE, find_spikes, is_spike

DAY = date(2026, 3, 1)


def history(per_day: int, today: int, topic_days: int = BASELINE_DAYS) -> Counter:
    counts = Counter({DAY - timedelta(days=n): per_day for n in range(1, topic_days + 1)})
    counts[DAY] = today
    return counts


def test_a_day_far_above_its_baseline_is_a_spike_with_its_rise():
    [spike] = find_spikes({"LOGISTICS": history(1, 9)}, [DAY])
    assert (spike.topic, spike.day, spike.count, spike.baseline) == ("LOGISTICS", DAY, 9, 1.0)
    assert spike.rise == 8 and spike.ratio == 9
    assert spike.p_value == poisson.sf(8, 1.0) < P_VALUE


def test_a_busy_topic_at_its_usual_level_is_not_a_spike():
    assert find_spikes({"REFUND": history(10, 12)}, [DAY]) == []


def test_the_tail_decides_between_neighbouring_counts():
    # Against a baseline of 2 a day: 6 has P(X >= 6) = 0.0166, 7 has 0.0045.
    assert is_spike(6, 2.0)[0] is False
    assert is_spike(7, 2.0)[0] is True


def test_few_complaints_are_never_a_spike_however_quiet_the_topic():
    assert is_spike(MIN_COUNT - 1, 0.0) == (False, 0.0)
    assert is_spike(MIN_COUNT, 0.0) == (True, 0.0)
    assert find_spikes({"PRICE": history(0, MIN_COUNT - 1)}, [DAY]) == []


def test_the_baseline_is_the_mean_of_the_previous_days_only_zeros_included():
    counts = Counter({DAY - timedelta(days=1): 14, DAY - timedelta(days=BASELINE_DAYS + 1): 500, DAY: 5})
    [spike] = find_spikes({"QUALITY": counts}, [DAY])
    # 14 complaints over 28 days (the 500 is older than the window; today is not in it).
    assert spike.baseline == 0.5


def test_spikes_are_listed_largest_rise_first():
    found = find_spikes({"A": history(0, 4), "B": history(0, 10)}, [DAY])
    assert [s.topic for s in found] == ["B", "A"]
