"""CDNOW churn benchmark (real purchases): the fusion model, purchase-only, against its baselines.

Calibration to 1997-09-30, holdout to 1998-06-30; churned = no purchase in the holdout.
The fusion model (purchase features only: CDNOW has no support text) is trained on 80 %
of the customers and reported on the other 20 % (fixed seed), and by 5-fold
cross-validation. In the same run: BG/NBD expected purchases (pymc-marketing; SPEC's
reference AUC 0.763) and gradient boosting on the four raw RFM columns (0.766).

    python bench/cdnow.py [--cdnow PATH] [--folds 5] > cdnow.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from churnsignal.config import Settings
from churnsignal.fusion.evaluation import evaluate, tier_of
from churnsignal.fusion.features import purchase_features
from churnsignal.fusion.model import BetaGeoFeatures, ChurnModel
from churnsignal.fusion.simulation import cdnow_orders, cdnow_transactions

AS_OF = pd.Timestamp("1997-10-01")
HOLDOUT_END = pd.Timestamp("1998-07-01")
BAR = 0.78
RFM = ["recency_days", "purchase_days", "monetary", "tenure_days"]


def cdnow(path: Path | None) -> tuple[pd.DataFrame, pd.Series]:
    """Purchase features as of 1997-10-01 and the holdout label of every CDNOW customer."""
    orders = cdnow_orders(cdnow_transactions(path))
    features = purchase_features(orders, AS_OF)
    holdout = orders[(orders["ordered_at"] >= AS_OF) & (orders["ordered_at"] < HOLDOUT_END)]
    churned = pd.Series((~features.index.isin(holdout["customer_id"])).astype(int), index=features.index)
    return features, churned


def scores(features: pd.DataFrame, churned: pd.Series, train: pd.Index, test: pd.Index, seed: int) -> dict:
    """Churn scores on ``test`` of the fusion model and both baselines, trained on ``train``."""
    fusion = ChurnModel(seed=seed).fit(features.loc[train], churned.loc[train])
    bgnbd = BetaGeoFeatures().fit(features.loc[train])
    rfm = GradientBoostingClassifier(random_state=seed).fit(features.loc[train, RFM], churned.loc[train])
    return {
        "fusion": fusion.predict_proba(features.loc[test])[:, 1],
        # Fewer expected purchases means more likely gone.
        "bgnbd_expected_purchases": -bgnbd.transform(features.loc[test])["bgnbd_expected_purchases"].to_numpy(),
        "gb_rfm": rfm.predict_proba(features.loc[test, RFM])[:, 1],
    }


def quality(y: np.ndarray, by_model: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: {"auc": round(roc_auc_score(y, s), 4), "pr_auc": round(average_precision_score(y, s), 4)}
            for name, s in by_model.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdnow", type=Path, help="CDNOW_master.txt (default: the copy inside lifetimes)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    features, churned = cdnow(args.cdnow)
    train, test = train_test_split(features.index, test_size=0.2, random_state=args.seed, stratify=churned)
    held_out = scores(features, churned, train, test, args.seed)
    tiers = Settings().fusion.tiers
    fusion_test = pd.Series(held_out["fusion"], index=test)
    tiered = evaluate(churned.loc[test], fusion_test, pd.Series(tier_of(fusion_test, tiers), index=test), tiers)
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    per_fold = []
    for fold_train, fold_test in folds.split(features, churned):
        fold = scores(features, churned, features.index[fold_train], features.index[fold_test], args.seed)
        per_fold.append(quality(churned.iloc[fold_test].to_numpy(), fold))
    cv = {name: {"auc_mean": round(float(np.mean([f[name]["auc"] for f in per_fold])), 4),
                 "auc_std": round(float(np.std([f[name]["auc"] for f in per_fold])), 4),
                 "pr_auc_mean": round(float(np.mean([f[name]["pr_auc"] for f in per_fold])), 4)}
          for name in per_fold[0]}
    test_quality = quality(churned.loc[test].to_numpy(), held_out)
    print(json.dumps({
        "benchmark": "cdnow", "as_of": AS_OF.date().isoformat(), "holdout_end": "1998-06-30",
        "customers": len(features), "churn_rate": round(float(churned.mean()), 4),
        "train_customers": len(train), "test_customers": len(test),
        "test": test_quality, f"cv{args.folds}": cv,
        "fusion_test_tiers": {k: tiered[k] for k in ("tiers", "coverage")},
        "bar": {"fusion_auc_at_least": BAR, "met_on_test": test_quality["fusion"]["auc"] >= BAR,
                "met_in_cv": cv["fusion"]["auc_mean"] >= BAR},
        "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
