"""The fusion model: purchase and text features → a calibrated churn probability.

A scikit-learn pipeline (BG/NBD features, then gradient boosting) fitted on all training
customers, with a Platt calibration fitted on out-of-fold scores: the out-of-fold scores
are also what the training figures and the per-segment cut-offs are measured on, so none
of them is measured on customers the model was fitted to.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits
from tqdm import tqdm

BGNBD_FEATURES = ("bgnbd_expected_purchases", "bgnbd_p_alive", "clv_12m")
FOLDS = 5
# Histories of a few thousand customers train 7x slower with OpenMP threads than without
# on a busy 2-core machine (measured: 27 s against 200 s for one training), so one thread.
THREADS = 1


class BetaGeoFeatures(TransformerMixin, BaseEstimator):
    """Add BG/NBD expected purchases over ``horizon_days``, P(alive) and a 12-month value.

    The BG/NBD population parameters are fitted (MAP, pymc-marketing) on the training
    customers only; any customer is then scored from their own frequency, recency and age.
    ``clv_12m`` is SPEC's V = T × P × F with T × F the expected purchases over a year and
    P the average order value.
    """

    def __init__(self, horizon_days: int = 90):
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y=None) -> BetaGeoFeatures:
        data = _rfm(X).dropna()
        model = _beta_geo(data)
        with _quiet():
            model.fit(method="map", progressbar=False)
        self.params_ = {name: float(model.fit_result[name].values.ravel()[0]) for name in ("r", "alpha", "a", "b")}
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        import arviz

        rfm = _rfm(X)
        known = rfm.dropna()
        out = X.copy()
        for name in BGNBD_FEATURES:
            out[name] = np.nan
        if not known.empty:
            model = _beta_geo(known)
            model.build_model()
            model.idata = arviz.from_dict(posterior={k: np.array([[v]]) for k, v in self.params_.items()})
            with _quiet():
                expected = model.expected_purchases(future_t=self.horizon_days).values.ravel()
                alive = model.expected_probability_alive().values.ravel()
                year = model.expected_purchases(future_t=365).values.ravel()
            rows = X.index.get_indexer(known.index)
            out.iloc[rows, out.columns.get_loc("bgnbd_expected_purchases")] = expected
            out.iloc[rows, out.columns.get_loc("bgnbd_p_alive")] = alive
            out.iloc[rows, out.columns.get_loc("clv_12m")] = year * X["avg_order_value"].iloc[rows].to_numpy()
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([*self.feature_names_in_, *BGNBD_FEATURES], dtype=object)


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Gradient boosting on purchase (and text) features with BG/NBD features, Platt-calibrated.

    ``predict_proba`` gives calibrated probabilities; ``contributions`` gives each
    feature's share of a customer's log-odds (SHAP), from which reasons are written.
    """

    def __init__(self, seed: int = 0, max_iter: int = 300, learning_rate: float = 0.03,
                 max_leaf_nodes: int = 8, l2_regularization: float = 1.0):
        self.seed = seed
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization

    @threadpool_limits.wrap(limits=THREADS, user_api="openmp")
    def fit(self, X: pd.DataFrame, y: pd.Series) -> ChurnModel:
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2 or np.bincount(y).min() < FOLDS:
            raise ValueError(f"training needs at least {FOLDS} churned and {FOLDS} retained customers")
        # A signal the history never has (no categories in the orders) cannot be learned from.
        X = X.loc[:, X.notna().any()]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.classes_ = np.array([0, 1])
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=self.seed).split(X, y)
        oof = np.empty(len(y))
        with tqdm(total=FOLDS + 1, desc="training (5 folds + final)", unit="fit", disable=None) as bar:
            for fit_rows, held_rows in folds:
                fold = self._pipeline(len(fit_rows)).fit(X.iloc[fit_rows], y[fit_rows])
                oof[held_rows] = fold.decision_function(X.iloc[held_rows])
                bar.update()
            self.pipeline_ = self._pipeline(len(y)).fit(X, y)
            bar.update()
        self.calibrator_ = LogisticRegression(C=1e6).fit(oof.reshape(-1, 1), y)
        self.oof_proba_ = pd.Series(self.calibrator_.predict_proba(oof.reshape(-1, 1))[:, 1], index=X.index)
        self.figures_ = training_figures(y, self.oof_proba_.to_numpy())
        return self

    @threadpool_limits.wrap(limits=THREADS, user_api="openmp")
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.pipeline_.decision_function(X[self.feature_names_in_])
        return self.calibrator_.predict_proba(raw.reshape(-1, 1))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each feature's additive share of each customer's log-odds of churn (SHAP values)."""
        import shap

        features = self.pipeline_.named_steps["bgnbd"].transform(X[self.feature_names_in_])
        explainer = shap.TreeExplainer(self.pipeline_.named_steps["gbm"])
        with _quiet():
            values = explainer.shap_values(features.to_numpy(dtype=float))
        return pd.DataFrame(values, index=X.index, columns=features.columns)

    def _pipeline(self, n: int) -> Pipeline:
        # Leaves of 80 customers suit CDNOW-sized data; small histories get smaller leaves.
        leaf = int(np.clip(n // 50, 5, 80))
        gbm = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=leaf, l2_regularization=self.l2_regularization, early_stopping=False,
            random_state=self.seed)
        return Pipeline([("bgnbd", BetaGeoFeatures()), ("gbm", gbm)])


def training_figures(y: np.ndarray, proba: np.ndarray) -> dict[str, float | int]:
    """Out-of-fold quality of a fitted model, recorded in its artifact."""
    return {"customers": int(len(y)), "churn_rate": round(float(np.mean(y)), 4),
            "oof_auc": round(float(roc_auc_score(y, proba)), 4),
            "oof_pr_auc": round(float(average_precision_score(y, proba)), 4),
            "oof_brier": round(float(brier_score_loss(y, proba)), 4)}


def _rfm(X: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD's inputs in days: repeat purchase days, age at last purchase, age now."""
    rfm = pd.DataFrame(index=X.index)
    rfm["customer_id"] = np.arange(len(X))
    rfm["frequency"] = X["purchase_days"] - 1
    rfm["T"] = X["tenure_days"]
    # One purchase day means no repeat: BG/NBD wants recency 0 then, whatever the hours say.
    rfm["recency"] = (X["tenure_days"] - X["recency_days"]).where(rfm["frequency"] > 0, 0.0)
    known = (rfm["frequency"] >= 0) & rfm["T"].notna()
    return rfm.where(known)


def _beta_geo(data: pd.DataFrame):
    with _quiet():
        from pymc_marketing.clv import BetaGeoModel

        return BetaGeoModel(data=data.assign(customer_id=np.arange(len(data))))


class _quiet(warnings.catch_warnings):
    """pymc/pytensor/arviz announce refactors and BLAS choices on every call; none is ours to act on."""

    def __enter__(self):
        super().__enter__()
        warnings.simplefilter("ignore")
        return self
