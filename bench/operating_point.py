"""The sentiment operating point (``sentiment.neutral_high``), chosen on the chat dev quarter.

    python bench/operating_point.py --work runs/chat-0.2.6 [--model DIR] [--most 0.10]

The rule the shipped default comes from: the lowest ``negative_prob`` cut-off, on a grid of
0.01, at which at most ``--most`` of the chat dev quarter's calm or happy turns
(:func:`~churnsignal.nlp.training.chat.is_chat_dev` of the normalised text, never trained on
by the BERT) are labelled negative in **each** JDDC sample, read in dialogue as the worker
reads a ticket. A business's chat can differ from the dev mix as the two samples differ
from each other, so the cut-off must hold on each. Up to 0.2.5 the rule also asked it of
each turn read alone (``--alone-too``); the figures read alone at the cut-off are printed
either way.

A model whose n-grams learned from the dev quarter (``ngram_dev_folds`` in its
``churnsignal.json``, 0.2.6 on) reads each dev turn with the n-grams of its cross-fitting
fold, which never saw it: ``--work`` is the training folder that holds them
(``folds-N/``). Only dev turns are read; the test split is never opened. Prints one JSON
object: the cut-off, the same rule pooled over both samples and with the turns read
alone too, and at the cut-off each sample's and reading's share of calm or happy turns
labelled negative and of complaints caught.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from churnsignal.nlp.sentiment import CARD, SentimentModel, shipped_model_dir
from churnsignal.nlp.support_chat import jddc_sample
from churnsignal.nlp.training.chat import dev_fold, fold_readers, gold_examples, is_chat_dev, train_gold

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
READINGS = ("in_dialogue", "alone")


def lowest_cut(negative: list[np.ndarray], calm: list[np.ndarray], most: float) -> float | None:
    """The lowest grid cut-off at which every group labels at most ``most`` of its calm turns negative."""
    for cut in GRID:
        if all((p[c] >= cut).mean() <= most for p, c in zip(negative, calm)):
            return float(cut)
    return None


def dev_readings(model: SentimentModel, readers: list[SentimentModel], texts: list[str],
                 turns: list[tuple[tuple[str, str], ...]]) -> dict[str, np.ndarray]:
    """Each dev turn's ``negative_prob`` in dialogue and alone, read by its fold's reader
    (by ``model`` itself when its n-grams never saw dev)."""
    out = {reading: np.zeros(len(texts)) for reading in READINGS}
    folds = np.array([dev_fold(t, len(readers)) for t in texts]) if readers else np.zeros(len(texts), dtype=int)
    for k, reader in enumerate(readers or [model]):
        rows = np.flatnonzero(folds == k)
        chosen = [texts[i] for i in rows]
        out["in_dialogue"][rows] = reader.probabilities(chosen, [turns[i] for i in rows])["negative"]
        out["alone"][rows] = reader.probabilities(chosen)["negative"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--work", type=Path, default=None, help="the training folder holding the cross-fitted n-grams")
    parser.add_argument("--most", type=float, default=0.10, help="share of calm or happy turns allowed to read negative")
    parser.add_argument("--alone-too", action="store_true", help="the rule up to 0.2.5: hold it read alone as well")
    args = parser.parse_args()
    directory = args.model or shipped_model_dir()
    folds = json.loads((directory / CARD).read_text()).get("ngram_dev_folds", 0) if (directory / CARD).is_file() else 0
    if folds and args.work is None:
        sys.exit(f"{directory}: its n-grams learned from the dev quarter ({folds} folds); "
                 "give --work, the training folder that holds their folds-N/")
    rows = train_gold()
    examples = gold_examples(rows)
    dev = [e for e in examples if is_chat_dev(e.text)]
    rows = [r for r, e in zip(rows, examples) if is_chat_dev(e.text)]
    samples = np.array([jddc_sample(r["id"]) for r in rows])
    calm = np.array([e.label != 0 for e in dev])
    model = SentimentModel(directory)
    try:
        readers = fold_readers(model, args.work, folds) if folds else []
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    readings = dev_readings(model, readers, [e.text for e in dev], [e.turns for e in dev])

    def rule(kept: tuple[str, ...], per_sample: bool = True) -> float | None:
        groups = [(s, r) for s in sorted(set(samples)) for r in kept] if per_sample else [(None, r) for r in kept]
        chosen = [samples == s if s else np.ones(len(dev), dtype=bool) for s, _ in groups]
        return lowest_cut([readings[r][c] for (_, r), c in zip(groups, chosen)], [calm[c] for c in chosen], args.most)

    kept = READINGS if args.alone_too else ("in_dialogue",)
    cut = rule(kept)
    at_cut = {f"{s} {r}": {"turns": int((samples == s).sum()),
                           "calm_labelled_negative": round(float((readings[r][(samples == s) & calm] >= cut).mean()), 4),
                           "complaints_caught": round(float((readings[r][(samples == s) & ~calm] >= cut).mean()), 4)}
              for s in sorted(set(samples)) for r in READINGS} if cut is not None else {}
    both = {"calm_labelled_negative": round(float((readings["in_dialogue"][calm] >= cut).mean()), 4),
            "complaints_caught": round(float((readings["in_dialogue"][~calm] >= cut).mean()), 4)} if cut is not None else {}
    print(json.dumps({"bench": "operating_point", "model": model.info, "dev_turns": len(dev), "cross_fitted_folds": folds,
                      "most": args.most, "readings_held": list(kept), "neutral_high": cut,
                      "pooled_rule_would_give": rule(kept, per_sample=False),
                      "with_alone_too_would_give": rule(READINGS), "at_neutral_high": at_cut,
                      "at_neutral_high_in_dialogue_both_samples": both}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
