"""The sentiment operating point (``sentiment.neutral_high``), chosen on the chat dev quarter.

    python bench/operating_point.py [--model DIR] [--most 0.10]

The rule the shipped default comes from: the lowest ``negative_prob`` cut-off, on a grid of
0.01, at which at most ``--most`` of the chat dev quarter's calm or happy turns
(:func:`~churnsignal.nlp.training.chat.is_chat_dev` of the normalised text, never trained on by the BERT or the
n-grams) are labelled negative in **each** JDDC sample, read in dialogue and read alone. A
business's chat can differ from the dev mix as the two samples differ from each other, so
the cut-off must hold on each. Only dev turns are read; the test split is never opened.
Prints one JSON object: the cut-off, the same rule pooled over both samples, and at the
cut-off each sample's and reading's share of calm or happy turns labelled negative and of
complaints caught.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from churnsignal.nlp.sentiment import SentimentModel, shipped_model_dir
from churnsignal.nlp.support_chat import jddc_sample
from churnsignal.nlp.training.chat import gold_examples, is_chat_dev, train_gold

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def lowest_cut(negative: list[np.ndarray], calm: list[np.ndarray], most: float) -> float | None:
    """The lowest grid cut-off at which every group labels at most ``most`` of its calm turns negative."""
    for cut in GRID:
        if all((p[c] >= cut).mean() <= most for p, c in zip(negative, calm)):
            return float(cut)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--most", type=float, default=0.10, help="share of calm or happy turns allowed to read negative")
    args = parser.parse_args()
    rows = train_gold()
    examples = gold_examples(rows)
    dev = [e for e in examples if is_chat_dev(e.text)]
    rows = [r for r, e in zip(rows, examples) if is_chat_dev(e.text)]
    texts = [e.text for e in dev]
    samples = np.array([jddc_sample(r["id"]) for r in rows])
    calm = np.array([e.label != 0 for e in dev])
    model = SentimentModel(args.model or shipped_model_dir())
    readings = {"in_dialogue": model.probabilities(texts, [e.turns for e in dev])["negative"],
                "alone": model.probabilities(texts)["negative"]}
    groups = [(sample, reading) for sample in sorted(set(samples)) for reading in readings]
    per_sample = lowest_cut([readings[r][samples == s] for s, r in groups],
                            [calm[samples == s] for s, r in groups], args.most)
    pooled = lowest_cut(list(readings.values()), [calm] * len(readings), args.most)
    at_cut = {f"{s} {r}": {"turns": int((samples == s).sum()),
                           "calm_labelled_negative": round(float((readings[r][(samples == s) & calm] >= per_sample).mean()), 4),
                           "complaints_caught": round(float((readings[r][(samples == s) & ~calm] >= per_sample).mean()), 4)}
              for s, r in groups} if per_sample is not None else {}
    print(json.dumps({"bench": "operating_point", "model": model.info, "dev_turns": len(dev), "most": args.most,
                      "neutral_high": per_sample, "pooled_rule_would_give": pooled, "at_neutral_high": at_cut},
                     ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
