"""Score the complaint-entity pipeline against the hand-labelled gold sentences.

    python bench/entities.py [--gold bench/data/entities_gold.jsonl] [--model DIR]

Prints one JSON object: exact-match (span and label) precision/recall/F1 per label and
micro-averaged, for the full pipeline and for its ``entity_ruler`` alone, and
``recall_on_spans_no_rule_matches``: the full pipeline's recall on the gold spans the rules
alone do not produce exactly, which is what the trained ``ner`` component is for.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import srsly

from churnsignal.nlp.entities import LABELS, load

DEFAULT_GOLD = Path(__file__).resolve().parent / "data" / "entities_gold.jsonl"
Span = tuple[int, int, str]


def _predict(nlp, texts: list[str]) -> list[set[Span]]:
    return [{(e.start_char, e.end_char, e.label_) for e in doc.ents} for doc in nlp.pipe(texts, batch_size=256)]


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "support": n_gold}


def score(gold: list[set[Span]], pred: list[set[Span]], no_rule: list[set[Span]]) -> dict:
    """Per-label and micro P/R/F1 of ``pred`` against ``gold``, and recall on ``no_rule`` spans."""
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        tp.update(s[2] for s in g & p)
        n_pred.update(s[2] for s in p)
        n_gold.update(s[2] for s in g)
    hits = sum(len(n & p) for n, p in zip(no_rule, pred))
    total = sum(len(n) for n in no_rule)
    return {
        "per_label": {label: _prf(tp[label], n_pred[label], n_gold[label]) for label in LABELS},
        "micro": _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values())),
        "recall_on_spans_no_rule_matches": round(hits / total, 4) if total else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--model", type=Path, default=None, help="pipeline directory (default: the shipped one)")
    args = parser.parse_args(argv)

    rows = list(srsly.read_jsonl(args.gold))
    texts = [r["text"] for r in rows]
    gold = [{(s, e, label) for s, e, label in r["entities"]} for r in rows]
    nlp = load(args.model)
    pipeline = _predict(nlp, texts)
    with nlp.select_pipes(disable=["ner"]):
        rules = _predict(nlp, texts)
    no_rule = [g - r for g, r in zip(gold, rules)]

    # Spans whose edges fall inside a jieba token can never be produced; report the ceiling.
    aligned = sum(doc.char_span(s, e) is not None for doc, g in zip(nlp.tokenizer.pipe(texts), gold) for s, e, _ in g)
    n_gold = sum(len(g) for g in gold)
    print(json.dumps({
        "gold": str(args.gold),
        "model": str(args.model or "shipped"),
        "sentences": len(rows),
        "gold_spans": n_gold,
        "gold_spans_no_rule_match": sum(len(n) for n in no_rule),
        "gold_spans_token_aligned": round(aligned / n_gold, 4) if n_gold else 0.0,
        "pipeline": score(gold, pipeline, no_rule),
        "rules_only": score(gold, rules, no_rule),
    }, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
