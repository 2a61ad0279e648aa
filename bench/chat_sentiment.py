"""Sentiment on real support chat: the gold test split of JDDC customer turns.

    python bench/chat_sentiment.py --baseline runs/sentiment-0.1.0

Scores ``bench/data/chat_gold_test.jsonl`` (JDDC customer turns from two samples, labelled
by the guide in model_cards/sentiment.md; ``by_sample`` gives the figures per sample, and
``by_round`` per labelling round of the test split: the first 1,087 turns, and the 759
labelled after 0.2.6 had been chosen and measured on them, rows marked ``"round": 2``) with
the shipped model (each turn read after the turns before it, as the worker reads it, and
read alone), the 0.1.0 model it was adapted from, and the strongest n-gram trained on the
same data as the shipped BERT (its n-gram part: char 1–4 + word 1–2 TF-IDF and logistic
regression on reviews, chat gold train and labelled questions) and its chat n-gram (the
same on the chat gold fit turns and labelled questions only). Prints one
JSON object: AUC of ``negative_prob`` for negative against the rest, per-class
precision/recall/F1, the share of neutral and positive turns labelled negative and the
share of negative turns labelled negative. Each turn's label is the majority of its
independent labels (``votes``: every test turn labelled twice, blind, and a third time
where the two differed); ``first_labels`` gives the same rows against the first label
alone, the gold set up to 0.2.6. Only test turns are scored; nothing here chose
anything. Each row's labels come from its operating point: the configured one for the
shipped model and its n-grams, 0.1.0's own band (negative at 0.65) for 0.1.0. The
0.1.0 model is in git history:
``mkdir -p runs/sentiment-0.1.0 && git archive 5c25bfe nlp/models/sentiment | tar -x -C runs/sentiment-0.1.0 --strip-components=3``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from churnsignal.config import Settings, get_settings
from churnsignal.nlp.analysis import sentiment_label
from churnsignal.nlp.sentiment import SentimentModel, shipped_model_dir
from churnsignal.nlp.support_chat import jddc_sample
from churnsignal.nlp.training.chat import LABELS, gold_examples, read_gold

# 0.1.0 shipped with this neutral band; its rows are labelled by it, as 0.1.0 labelled them.
BAND_0_1_0 = Settings(sentiment={"neutral_low": 0.35, "neutral_high": 0.65})
# The bar on the gold test split.
BAR = {"auc": 0.90, "others_labelled_negative_at_most": 0.10, "negatives_labelled_negative_at_least": 0.75}


def figures(y: np.ndarray, probs: dict[str, np.ndarray], settings: Settings) -> dict:
    """``y`` indexes LABELS; ``probs`` maps class names to probabilities (negative always);
    labels are given as ``analyse`` gives them under ``settings``."""
    labels = [sentiment_label({k: float(v[i]) for k, v in probs.items()}, settings) for i in range(len(y))]
    predicted = np.array([LABELS.index(label) for label in labels])
    negative = y == 0
    p, r, f, n = precision_recall_fscore_support(y, predicted, labels=[0, 1, 2], zero_division=0)
    return {
        "auc": round(float(roc_auc_score(negative, probs["negative"])), 4),
        "others_labelled_negative": round(float((predicted[~negative] == 0).mean()), 4),
        "negatives_labelled_negative": round(float((predicted[negative] == 0).mean()), 4),
        "per_class": {LABELS[k]: {"precision": round(float(p[k]), 4), "recall": round(float(r[k]), 4),
                                  "f1": round(float(f[k]), 4), "turns": int(n[k])} for k in range(3)},
        "accuracy": round(float((predicted == y).mean()), 4),
    }


def meets(row: dict) -> dict[str, bool]:
    return {"auc": row["auc"] >= BAR["auc"],
            "others_labelled_negative": row["others_labelled_negative"] <= BAR["others_labelled_negative_at_most"],
            "negatives_labelled_negative": row["negatives_labelled_negative"] >= BAR["negatives_labelled_negative_at_least"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--baseline", type=Path, default=Path("runs/sentiment-0.1.0"), help="the 0.1.0 model directory")
    args = parser.parse_args()
    if not (args.baseline / "config.json").is_file():
        sys.exit(f"{args.baseline}: no 0.1.0 model there; see this script's docstring for the git archive line")
    gold = read_gold("test")
    test = gold_examples(gold)
    texts, y = [e.text for e in test], np.array([e.label for e in test])
    samples = np.array([jddc_sample(r["id"]) for r in gold])
    rounds = np.array([f"round {r.get('round', 1)}" for r in gold])
    model = SentimentModel(args.model or shipped_model_dir())
    settings = get_settings()
    probabilities = {
        "shipped_in_dialogue": (model.probabilities(texts, [e.turns for e in test]), settings),
        "shipped_alone": (model.probabilities(texts), settings),
        "baseline_0.1.0": (SentimentModel(args.baseline).probabilities(texts), BAND_0_1_0),
    }
    for name, ngram in (("ngram_same_data", model.ngram), ("chat_ngram", model.chat_ngram)):
        if ngram is not None:
            probabilities[name] = ({"negative": 1 / (1 + np.exp(-ngram.decision_function(texts)))}, settings)
    rows = {name: figures(y, probs, s) for name, (probs, s) in probabilities.items()}
    first = np.array([LABELS.index(r["votes"][0]) for r in gold])
    first_labels = {"labels": {name: int((first == k).sum()) for k, name in enumerate(LABELS)},
                    "rows": {name: figures(first, probs, s) for name, (probs, s) in probabilities.items()}}
    by = {name: {group: {"turns": int((groups == group).sum()),
                         **{row: figures(y[groups == group], {k: v[groups == group] for k, v in probs.items()}, s)
                            for row, (probs, s) in probabilities.items()}}
                 for group in sorted(set(groups))}
          for name, groups in (("by_sample", samples), ("by_round", rounds))}
    print(json.dumps({"bench": "chat_sentiment", "model": model.info, "turns": len(test),
                      "labels": {name: int((y == k).sum()) for k, name in enumerate(LABELS)},
                      "rows": rows, "bar": BAR, "meets": {name: meets(row) for name, row in rows.items()},
                      **by, "first_labels": first_labels}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
