"""How good a churn model's warnings are: ``evaluate(...) -> dict``, ``write_report(...)``.

Backs ``churnsignal fusion evaluate``. Ranking quality (AUC, PR-AUC) says whether the
model orders customers well; the per-tier figures say what an agent working the alert
queue actually experiences: how many alerts are real (precision), how many churners
are caught (recall) and how many loyal customers are bothered (false-alarm rate).
Tier figures are cumulative — "at this tier or above" — because a customer flagged red
is also within the yellow queue's reach.

Every number in the result is a plain ``float`` rounded to 4 decimals, an ``int``, or
``None`` where the figure is undefined (one class only, no alerts): JSON has no NaN,
and a report that says "n/a" is more honest than one that says 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from churnsignal.config import Tier

NO_TIER = "none"
# Keys ``evaluate`` produces; anything else in the figures is shown under "Details".
_OWN_KEYS = ("customers", "churners", "churn_rate", "auc", "pr_auc", "brier", "tiers",
             "coverage", "lead_time_days")
# An extra entry larger than this (once flattened) stays in metrics.json only.
_MAX_DETAIL_ROWS = 20
_PLOTS = {"roc": "ROC curve", "pr": "Precision-recall curve",
          "calibration": "Reliability diagram", "tiers": "Alert quality per tier"}
_TIER_BARS = (("precision", "precision"), ("recall", "recall"), ("false_alarm_rate", "false-alarm rate"))


def tier_of(churn_prob: np.ndarray | pd.Series, tiers: Sequence[Tier]) -> np.ndarray:
    """Tier name per probability (highest tier whose cut-off it is strictly above), "none" below all."""
    prob = np.asarray(churn_prob, dtype=float)
    # np.select takes the first true condition, and tiers come highest cut-off first.
    return np.select([prob > t.above for t in tiers], [t.name for t in tiers], default=NO_TIER)


def evaluate(churned: pd.Series, churn_prob: pd.Series, tier: pd.Series, tiers: Sequence[Tier],
             lead_days: pd.Series | None = None) -> dict:
    """Score a churn model's probabilities and tiers against what customers actually did.

    ``tier`` is taken as given rather than recomputed from ``churn_prob``, because the
    tiers may have come from per-segment cut-offs. ``lead_days`` (days between warning
    and churn, NaN where unknown) is summarised over warned churners only: a warning
    nobody received has no lead time.
    """
    churned, churn_prob = _checked_labels_and_probs(churned, churn_prob)
    tier = _aligned("tier", tier, churned.index)
    unknown = set(tier.unique()) - {t.name for t in tiers} - {NO_TIER}
    if unknown:
        raise ValueError(f"tier holds names that are not configured tiers: {sorted(map(str, unknown))}")

    y = churned.to_numpy(dtype=int)
    p = churn_prob.to_numpy(dtype=float)
    warned = (tier != NO_TIER).to_numpy()
    two_classes = len(np.unique(y)) == 2
    return {
        "customers": len(y),
        "churners": int(y.sum()),
        "churn_rate": _num(_ratio(y.sum(), len(y))),
        "auc": _num(roc_auc_score(y, p)) if two_classes else None,
        "pr_auc": _num(average_precision_score(y, p)) if two_classes else None,
        "brier": _num(np.mean((p - y) ** 2)) if len(y) else None,
        "tiers": _tier_figures(y, tier.to_numpy(), tiers),
        "coverage": _num(_ratio((warned & (y == 1)).sum(), y.sum())),
        "lead_time_days": None if lead_days is None else _lead_time(
            _aligned("lead_days", lead_days, churned.index), warned & (y == 1)),
    }


def write_report(figures: dict, churned: pd.Series, churn_prob: pd.Series, out_dir: Path,
                 title: str = "churnsignal fusion evaluation") -> dict[str, Path]:
    """Write metrics.json, four PNG plots and a Markdown report that embeds them.

    ``figures`` is what ``evaluate`` returned, possibly with extra keys (model name, date,
    baselines) which the report lists under "Details". The curves need the raw labels
    and probabilities, hence ``churned`` and ``churn_prob``. Returns the written paths
    keyed ``metrics``, ``roc``, ``pr``, ``calibration``, ``tiers`` and ``report``.
    """
    churned, churn_prob = _checked_labels_and_probs(churned, churn_prob)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y = churned.to_numpy(dtype=int)
    p = churn_prob.to_numpy(dtype=float)

    paths = {"metrics": out_dir / "metrics.json"}
    # allow_nan=False: a NaN smuggled in through an extra key would make the file unreadable
    # to strict JSON parsers; better to fail here, where the cause is visible.
    paths["metrics"].write_text(json.dumps(figures, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                                encoding="utf-8")
    for name, draw in (("roc", _draw_roc), ("pr", _draw_pr), ("calibration", _draw_calibration)):
        paths[name] = _save(draw(y, p), out_dir / f"{name}.png")
    paths["tiers"] = _save(_draw_tiers(figures["tiers"]), out_dir / "tiers.png")
    paths["report"] = out_dir / "report.md"
    paths["report"].write_text(_markdown(figures, title), encoding="utf-8")
    return paths


# --- input checks -------------------------------------------------------------------------

def _checked_labels_and_probs(churned: pd.Series, churn_prob: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Reject labels other than 0/1 and probabilities outside [0, 1] before they skew a metric."""
    _reject_bad("churned", churned[~churned.isin([0, 1])], "be 0 or 1")
    churn_prob = _aligned("churn_prob", churn_prob, churned.index)
    _reject_bad("churn_prob", churn_prob[~churn_prob.between(0.0, 1.0)], "lie in [0, 1]")  # NaN fails too
    return churned, churn_prob


def _reject_bad(name: str, bad: pd.Series, rule: str) -> None:
    """Name the first offending customer, so the bad row can be found in the input."""
    if len(bad):
        raise ValueError(f"{name} must {rule}; found {bad.iloc[0]} for customer {bad.index[0]} "
                         f"({len(bad)} bad value(s))")


def _aligned(name: str, series: pd.Series, index: pd.Index) -> pd.Series:
    """``series`` in ``index``'s order; the same customers in another order are accepted."""
    if series.index.equals(index):
        return series
    if series.index.has_duplicates or index.has_duplicates or set(series.index) != set(index):
        raise ValueError(
            f"{name} must be indexed by the same customers as churned, each once: "
            f"{len(index.difference(series.index))} customer(s) missing from {name}, "
            f"{len(series.index.difference(index))} extra, duplicates: "
            f"{'yes' if series.index.has_duplicates or index.has_duplicates else 'no'}")
    return series.reindex(index)


# --- figures ------------------------------------------------------------------------------

def _tier_figures(y: np.ndarray, tier: np.ndarray, tiers: Sequence[Tier]) -> list[dict]:
    """One entry per tier, highest first; alert figures count this tier and every tier above."""
    churners = int(y.sum())
    non_churners = len(y) - churners
    rows = []
    for i, t in enumerate(tiers):
        alerted = np.isin(tier, [u.name for u in tiers[: i + 1]])
        hits = int((alerted & (y == 1)).sum())
        alerts = int(alerted.sum())
        precision = _ratio(hits, alerts)
        recall = _ratio(hits, churners)
        rows.append({
            "tier": t.name,
            "cut_off": _num(t.above),
            "response_hours": _num(t.response_hours),
            "customers_in_tier": int((tier == t.name).sum()),
            "alerts": alerts,
            "precision": _num(precision),
            "recall": _num(recall),
            "f1": _num(_f1(precision, recall)),
            "false_alarm_rate": _num(_ratio(alerts - hits, non_churners)),
        })
    return rows


def _lead_time(lead_days: pd.Series, warned_churner: np.ndarray) -> dict:
    """Median, mean and quartiles of lead time over warned churners whose churn date is known."""
    days = lead_days[warned_churner].dropna().to_numpy(dtype=float)
    if not days.size:
        return {"median": None, "mean": None, "p25": None, "p75": None, "warned_churners_with_date": 0}
    p25, median, p75 = np.percentile(days, [25, 50, 75])
    return {"median": _num(median), "mean": _num(days.mean()), "p25": _num(p25), "p75": _num(p75),
            "warned_churners_with_date": int(days.size)}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _num(value: Any) -> float | None:
    """A plain float rounded to 4 decimals, or None where numpy would have said NaN."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


# --- plots --------------------------------------------------------------------------------
# matplotlib.figure.Figure directly rather than pyplot: no global figure registry to leak
# into, and no backend to select, so this is safe in a worker or a test run.

def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, ax


def _one_class_note(ax: Any) -> None:
    ax.text(0.5, 0.5, "undefined: only one class present", ha="center", va="center",
            transform=ax.transAxes)


def _draw_roc(y: np.ndarray, p: np.ndarray) -> Figure:
    fig, ax = _axes("ROC curve", "False-alarm rate", "Recall")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"model (AUC {roc_auc_score(y, p):.3f})")
    else:
        _one_class_note(ax)
    ax.legend(loc="lower right")
    return fig


def _draw_pr(y: np.ndarray, p: np.ndarray) -> Figure:
    fig, ax = _axes("Precision-recall curve", "Recall", "Precision")
    if len(np.unique(y)) == 2:
        precision, recall, _ = precision_recall_curve(y, p)
        ax.step(recall, precision, where="post",
                label=f"model (AP {average_precision_score(y, p):.3f})")
        ax.axhline(y.mean(), linestyle="--", color="grey", label="churn rate")
        ax.legend(loc="upper right")
    else:
        _one_class_note(ax)
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    return fig


def _draw_calibration(y: np.ndarray, p: np.ndarray) -> Figure:
    fig, ax = _axes("Reliability diagram", "Mean predicted churn probability", "Observed churn rate")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    if len(y):
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label="model")
    ax.legend(loc="upper left")
    return fig


def _draw_tiers(tier_rows: list[dict]) -> Figure:
    fig, ax = _axes("Alert quality per tier (this tier or above)", "Tier", "Share")
    x = np.arange(len(tier_rows))
    width = 0.27
    for offset, (key, label) in zip((-width, 0.0, width), _TIER_BARS):
        # An undefined figure (None) becomes NaN, which matplotlib leaves as a gap, not a zero.
        heights = [np.nan if row[key] is None else row[key] for row in tier_rows]
        ax.bar(x + offset, heights, width, label=label)
    ax.set_xticks(x, [row["tier"] for row in tier_rows])
    # Headroom above 1 keeps the legend off the bars.
    ax.set_ylim(0, 1.2)
    ax.legend(loc="upper center", ncols=3, fontsize="small")
    return fig


# --- Markdown -----------------------------------------------------------------------------

def _markdown(figures: dict, title: str) -> str:
    sections = [f"# {title}", _headline(figures), _tier_table(figures["tiers"])]
    details = list(_details(figures))
    if details:
        sections.append("## Details\n\n" + _table(["Item", "Value"], details))
    sections.append("## Plots\n\n" + "\n\n".join(f"![{label}]({name}.png)" for name, label in _PLOTS.items()))
    return "\n\n".join(sections) + "\n"


def _headline(figures: dict) -> str:
    rows = [["Customers", figures["customers"]], ["Churners", figures["churners"]],
            ["Churn rate", figures["churn_rate"]], ["AUC", figures["auc"]],
            ["PR-AUC (average precision)", figures["pr_auc"]], ["Brier score", figures["brier"]],
            ["Coverage (churners warned)", figures["coverage"]],
            ["Lead time, days", _lead_time_text(figures["lead_time_days"])]]
    return "## Headline\n\n" + _table(["Measure", "Value"], rows)


def _lead_time_text(lead: dict | None) -> str:
    if lead is None:
        return "not measured"
    if not lead["warned_churners_with_date"]:
        return "no warned churner with a known churn date"
    return (f"median {lead['median']:.1f} (p25 {lead['p25']:.1f}, p75 {lead['p75']:.1f}, mean {lead['mean']:.1f}; "
            f"{lead['warned_churners_with_date']} warned churners)")


def _tier_table(tier_rows: list[dict]) -> str:
    header = ["Tier", "Cut-off (>)", "Respond within (h)", "In tier", "Alerts (this tier or above)",
              "Precision", "Recall", "F1", "False-alarm rate"]
    # Hours read better as "4" than as "4.0000".
    rows = [[r["tier"], r["cut_off"], f"{r['response_hours']:g}", r["customers_in_tier"], r["alerts"],
             r["precision"], r["recall"], r["f1"], r["false_alarm_rate"]] for r in tier_rows]
    return "## Tiers\n\n" + _table(header, rows)


def _details(figures: dict) -> Iterator[list]:
    """Rows for the keys ``evaluate`` did not produce, if they are small enough to read."""
    for key, value in figures.items():
        if key in _OWN_KEYS:
            continue
        rows = _flatten(str(key), value)
        if rows is not None and len(rows) <= _MAX_DETAIL_ROWS:
            yield from rows
        else:
            yield [key, "see metrics.json"]


def _flatten(key: str, value: Any) -> list[list] | None:
    """Dotted-key rows for a scalar or a dict of scalars; None for what has no one-line form."""
    if value is None or isinstance(value, str | int | float | bool):
        return [[key, value]]
    if not isinstance(value, dict):
        return None
    rows = []
    for inner_key, inner in value.items():
        inner_rows = _flatten(f"{key}.{inner_key}", inner)
        if inner_rows is None:
            return None
        rows += inner_rows
    return rows


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
