"""The support-chat gold set, described: turns per split and label, and how far two labellers agree.

    python bench/chat_gold.py

Reads ``bench/data/chat_gold_{train,test}.jsonl`` (JDDC customer turns labelled by the guide
in model_cards/sentiment.md) and ``bench/data/chat_gold_second.jsonl`` (a blind sample
labelled a second time, independently) and prints one JSON object: counts, and Cohen's
kappa with the confusion between the two labellings of the sample.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sklearn.metrics import cohen_kappa_score, confusion_matrix

DATA = Path(__file__).resolve().parent / "data"
LABELS = ("negative", "neutral", "positive")


def read(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main() -> None:
    gold = {split: read(f"chat_gold_{split}.jsonl") for split in ("train", "test")}
    first = {row["id"]: row["label"] for rows in gold.values() for row in rows}
    second = read("chat_gold_second.jsonl")
    pairs = [(first[row["id"]], row["label"]) for row in second]
    a, b = zip(*pairs)
    print(json.dumps({
        "bench": "chat_gold",
        "turns": {split: len(rows) for split, rows in gold.items()},
        "labels": {split: {label: Counter(r["label"] for r in rows)[label] for label in LABELS}
                   for split, rows in gold.items()},
        "double_labelled": len(pairs),
        "agreement": round(sum(x == y for x, y in pairs) / len(pairs), 3),
        "cohen_kappa": round(float(cohen_kappa_score(a, b, labels=list(LABELS))), 3),
        "confusion_first_by_second": {label: dict(zip(LABELS, map(int, row)))
                                      for label, row in zip(LABELS, confusion_matrix(a, b, labels=list(LABELS)))},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
