"""The hand-labelled support text, described: turns per split and label, and how far two labellers agree.

    python bench/chat_gold.py

Reads ``bench/data/chat_gold_train.jsonl.gz`` and ``chat_gold_test.jsonl`` (JDDC customer
turns from two samples, labelled by the guide in model_cards/sentiment.md) and
``bench/data/chat_gold_second.jsonl``
(a blind sample labelled a second time, independently), and the same for the labelled
ATEC/BQ questions (``questions_train.jsonl``, ``questions_second.jsonl``). Prints one JSON
object: counts, and Cohen's kappa with the confusion between the two labellings of each
sample, for the whole set and per JDDC sample (``by_sample``), and how many train rows the
split rule keeps out of training. ``votes`` describes each split's own votes: every turn
was labelled twice, blind, and a third time where the two differed; its ``label`` is
their majority.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sklearn.metrics import cohen_kappa_score, confusion_matrix

from churnsignal.nlp.support_chat import jddc_sample
from churnsignal.nlp.training.chat import read_gold, train_gold

DATA = Path(__file__).resolve().parent / "data"
LABELS = ("negative", "neutral", "positive")


def read(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def agreement(first: dict[str, str], second: list[dict]) -> dict:
    """Raw agreement, Cohen's kappa and the confusion of two independent labellings."""
    pairs = [(first[row["id"]], row["label"]) for row in second]
    a, b = zip(*pairs)
    return {"double_labelled": len(pairs), "agreement": round(sum(x == y for x, y in pairs) / len(pairs), 3),
            "cohen_kappa": round(float(cohen_kappa_score(a, b, labels=list(LABELS))), 3),
            "confusion_first_by_second": {label: dict(zip(LABELS, map(int, row)))
                                          for label, row in zip(LABELS, confusion_matrix(a, b, labels=list(LABELS)))}}


def votes(rows: list[dict]) -> dict:
    """How a split's independent labels agree, and what the majority changed."""
    first = {row["id"]: row["votes"][0] for row in rows}
    third = [row for row in rows if len(row["votes"]) == 3]
    return {**agreement(first, [{"id": row["id"], "label": row["votes"][1]} for row in rows]),
            "third_label": len(third),
            "third_sided_with": dict(Counter("first" if row["votes"][2] == row["votes"][0] else
                                             "second" if row["votes"][2] == row["votes"][1] else "neither"
                                             for row in third)),
            "changed_from_first": dict(Counter(f"{row['votes'][0]} -> {row['label']}" for row in rows
                                               if row["label"] != row["votes"][0]))}


def counts(rows: list[dict]) -> dict[str, int]:
    return {label: Counter(r["label"] for r in rows)[label] for label in LABELS}


def main() -> None:
    gold = {split: read_gold(split) for split in ("train", "test")}
    # The second labelling was compared with the first label, as it was given.
    first = {row["id"]: row.get("votes", [row["label"]])[0] for rows in gold.values() for row in rows}
    second = read("chat_gold_second.jsonl")
    questions = read("questions_train.jsonl")
    print(json.dumps({
        "bench": "chat_gold",
        "turns": {split: len(rows) for split, rows in gold.items()},
        "labels": {split: counts(rows) for split, rows in gold.items()},
        "by_sample": {sample: {"turns": {split: sum(jddc_sample(r["id"]) == sample for r in rows)
                                         for split, rows in gold.items()},
                               "labels": {split: counts([r for r in rows if jddc_sample(r["id"]) == sample])
                                          for split, rows in gold.items()},
                               **agreement(first, [r for r in second if jddc_sample(r["id"]) == sample])}
                      for sample in ("0.1per", "baseline")},
        "train_rows_the_split_rule_keeps_out_of_training": len(gold["train"]) - len(train_gold()),
        **agreement(first, second),
        "votes": {split: votes(rows) for split, rows in gold.items()},
        "questions": {"texts": len(questions), "labels": counts(questions),
                      **agreement({row["id"]: row["label"] for row in questions}, read("questions_second.jsonl"))},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
