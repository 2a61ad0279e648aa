"""How high can a purchase-only churn model go on CDNOW? Evidence for where the AUC levels off.

``bench/cdnow.py`` measures the fusion model against its baselines; this measures the
data. Same protocol (features before 1997-10-01, churned = no purchase up to 1998-06-30,
the 80/20 split and 5 folds with seed 0), and the fusion model's ranking: its BG/NBD
features, then the same gradient boosting. Platt calibration is left out because it does
not change the order of customers, so the AUC is the model's.

- ``learning_curve``: test AUC when training on 1/8 .. all of the training customers.
- ``in_sample_auc``: the model on the very customers it was fitted to.
- ``test_auc_bootstrap``: how far one 4,714-customer test split can move by chance.
- ``buyers``: one-time against repeat buyers: share, churn rate, AUC within each group.
- ``cells``: score = churn rate of the customer's recency × frequency × tenure cell,
  measured on the scored customers' own labels (an optimistic reference, not a method)
  and cross-fitted (rates from the other folds only).
- ``richer_targets``: gradient boosting trained on how many days each training customer
  bought in the holdout (Poisson), alone and rank-averaged with the classifier.

    python bench/cdnow_ceiling.py [--cdnow PATH] > cdnow_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from cdnow import AS_OF, HOLDOUT_END, cdnow
from churnsignal.fusion.model import BetaGeoFeatures, ChurnModel
from churnsignal.fusion.simulation import cdnow_transactions

SEED = 0
BOOTSTRAPS = 1000


def boosting(n: int, regressor: bool = False):
    """The fusion model's own gradient boosting for ``n`` customers; a Poisson regressor when asked."""
    gbm = ChurnModel(seed=SEED)._pipeline(n).named_steps["gbm"]
    if not regressor:
        return gbm
    params = {k: v for k, v in gbm.get_params().items() if k != "class_weight"}
    return HistGradientBoostingRegressor(**{**params, "loss": "poisson"})


def with_bgnbd(features: pd.DataFrame, train: pd.Index) -> pd.DataFrame:
    """Every customer's features plus BG/NBD features fitted on ``train`` only.

    Columns CDNOW never fills (categories, refunds) are dropped, as ``ChurnModel`` does.
    """
    known = features.loc[:, features.notna().any()]
    return BetaGeoFeatures().fit(known.loc[train]).transform(known)


def splits(index: pd.Index, churned: pd.Series):
    """The bench's 80/20 split, then its 5 folds."""
    train, test = train_test_split(index, test_size=0.2, random_state=SEED, stratify=churned)
    yield "test", train, test
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=SEED).split(index, churned):
        yield "cv", index[fit], index[held]


def learning_curve(X: pd.DataFrame, churned: pd.Series, train: pd.Index, test: pd.Index) -> list[dict]:
    rng = np.random.default_rng(SEED)
    out = []
    for share in (0.125, 0.25, 0.5, 1.0):
        some = pd.Index(rng.choice(train, int(share * len(train)), replace=False)) if share < 1 else train
        model = boosting(len(some)).fit(X.loc[some], churned.loc[some])
        out.append({"training_customers": len(some),
                    "test_auc": round(roc_auc_score(churned.loc[test], model.predict_proba(X.loc[test])[:, 1]), 4)})
    return out


def bootstrap(y: np.ndarray, score: np.ndarray) -> dict:
    rng = np.random.default_rng(SEED)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(BOOTSTRAPS)]
    aucs = np.array([roc_auc_score(y[i], score[i]) for i in draws])
    return {"test_auc": round(roc_auc_score(y, score), 4), "standard_error": round(float(aucs.std()), 4),
            "interval_95": [round(float(v), 4) for v in np.percentile(aucs, [2.5, 97.5])]}


def buyers(y: np.ndarray, score: np.ndarray, purchase_days: np.ndarray) -> dict:
    out = {}
    for name, group in (("one_time", purchase_days == 1), ("repeat", purchase_days > 1)):
        out[name] = {"share": round(float(group.mean()), 4), "churn_rate": round(float(y[group].mean()), 4),
                     "auc_within": round(roc_auc_score(y[group], score[group]), 4)}
    tied = score.copy()
    tied[purchase_days == 1] = score[purchase_days == 1].mean()
    out["auc_with_one_time_buyers_tied"] = round(roc_auc_score(y, tied), 4)
    return out


def cells(features: pd.DataFrame, churned: pd.Series) -> list[dict]:
    out = []
    frequency = features["purchase_days"].clip(upper=12).astype(int).astype(str)
    for recency_bins, tenure_bins in ((6, 3), (12, 3), (24, 6), (52, 12), (100, 30)):
        recency = pd.qcut(features["recency_days"], recency_bins, labels=False, duplicates="drop").astype(str)
        tenure = pd.qcut(features["tenure_days"], tenure_bins, labels=False, duplicates="drop").astype(str)
        cell = frequency + "_" + recency + "_" + tenure
        own_labels = churned.groupby(cell).transform("mean")
        crossed = pd.Series(np.nan, index=features.index)
        for fit, held in StratifiedKFold(5, shuffle=True, random_state=SEED).split(features, churned):
            rates = churned.iloc[fit].groupby(cell.iloc[fit]).mean()
            crossed.iloc[held] = cell.iloc[held].map(rates).fillna(churned.iloc[fit].mean()).to_numpy()
        out.append({"cells": int(cell.nunique()), "auc_on_own_labels": round(roc_auc_score(churned, own_labels), 4),
                    "auc_cross_fitted": round(roc_auc_score(churned, crossed), 4)})
    return out


def richer_targets(features: pd.DataFrame, churned: pd.Series, holdout_days: pd.Series) -> dict:
    """Classifier, Poisson on holdout purchase days, and their rank average: test and 5-fold CV AUC."""
    scores: dict[str, dict[str, list[float]]] = {m: {"test": [], "cv": []} for m in ("classifier", "poisson", "both")}
    for part, train, held in splits(features.index, churned):
        X = with_bgnbd(features, train)
        classifier = boosting(len(train)).fit(X.loc[train], churned.loc[train]).predict_proba(X.loc[held])[:, 1]
        # Fewer expected purchase days means more likely gone.
        poisson = -boosting(len(train), regressor=True).fit(X.loc[train], holdout_days.loc[train]).predict(X.loc[held])
        y = churned.loc[held]
        for name, score in (("classifier", classifier), ("poisson", poisson),
                            ("both", rankdata(classifier) + rankdata(poisson))):
            scores[name][part].append(roc_auc_score(y, score))
    return {name: {"test_auc": round(s["test"][0], 4), "cv_auc": round(float(np.mean(s["cv"])), 4),
                   "cv_sd": round(float(np.std(s["cv"])), 4)} for name, s in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdnow", type=Path, help="CDNOW_master.txt (default: the copy inside lifetimes)")
    args = parser.parse_args()
    started = time.perf_counter()
    features, churned = cdnow(args.cdnow)
    transactions = cdnow_transactions(args.cdnow)
    holdout = transactions[(transactions["date"] >= AS_OF) & (transactions["date"] < HOLDOUT_END)]
    # Read only for training customers: the targets of a model, never its features.
    holdout_days = holdout.groupby("customer_id")["date"].nunique().reindex(features.index).fillna(0)
    train, test = train_test_split(features.index, test_size=0.2, random_state=SEED, stratify=churned)
    X = with_bgnbd(features, train)
    model = boosting(len(train)).fit(X.loc[train], churned.loc[train])
    score = model.predict_proba(X.loc[test])[:, 1]
    y = churned.loc[test].to_numpy()
    print(json.dumps({
        "benchmark": "CDNOW ceiling", "customers": len(features), "churn_rate": round(float(churned.mean()), 4),
        "learning_curve": learning_curve(X, churned, train, test),
        "in_sample_auc": round(roc_auc_score(churned.loc[train], model.predict_proba(X.loc[train])[:, 1]), 4),
        "test_auc_bootstrap": bootstrap(y, score),
        "buyers": buyers(y, score, features.loc[test, "purchase_days"].to_numpy()),
        "cells": cells(features, churned),
        "richer_targets": richer_targets(features, churned, holdout_days),
        "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
