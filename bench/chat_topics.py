"""What real support-chat complaints are about, and how often the topics an alert names are right.

    python bench/chat_topics.py [--split test|train] [--round 1|2|3] [--model DIR] [--own-names 京东]

Reads ``bench/data/chat_topics.jsonl``: JDDC customer turns that the chat gold set labels
complaints, each given the topics it complains about by the guide in model_cards/entities.md.
Every test-split complaint and 400 train-split ones for development (round 1) were labelled
blind by two labellers, and by a third where the two differed; ``topics`` is the per-topic
majority. 1,600 more train-split complaints (round 2), and then the other 4,009 (round 3), were
labelled once, to train the reader of topics from the dialogue, and 200 of each round a second
time, blind, for the agreement figure.

A complaint's topics, as the fusion, the alerts and the QA pages count them, are the topic
labels among the entities the extractor finds in it (``churnsignal.nlp.complaints.topics``)
and, where those name none, the topics the reader finds in the turns before it.
Prints one JSON object for the chosen split: how far the labellers agree (Cohen's kappa per
topic, over each turn's yes/no for it, on the turns labelled twice), and for the extractor
without and with ``entities.own_names`` (JDDC is JD.com's chat, so ``京东`` is its own
platform), and on the test split with the dialogue read too: per topic precision, recall and
F1, the share of complaints with a topic named, and the share of those whose every named topic
is right; and how often the topics the reader added are right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.metrics import cohen_kappa_score

from churnsignal.nlp.complaints import TOPICS
from churnsignal.nlp.entities import dialogue_reader, load
from churnsignal.nlp.training.dialogue_topics import combined, named_topics, turns_before

GOLD = Path(__file__).resolve().parent / "data" / "chat_topics.jsonl"


def read(split: str) -> list[dict]:
    with open(GOLD, encoding="utf-8") as handle:
        return [row for row in map(json.loads, handle) if row["split"] == split]


def agreement(rows: list[dict]) -> dict:
    """The first two labellers: same topics exactly, and Cohen's kappa per topic and pooled."""
    first, second = [set(row["votes"][0]) for row in rows], [set(row["votes"][1]) for row in rows]

    def kappa(names: tuple[str, ...]) -> float:
        a = [name in labels for labels in first for name in names]
        b = [name in labels for labels in second for name in names]
        return round(float(cohen_kappa_score(a, b)), 3)

    return {"labelled_twice": len(rows), "same_topics": round(sum(a == b for a, b in zip(first, second)) / len(rows), 3),
            "third_label": sum(len(row["votes"]) == 3 for row in rows),
            "cohen_kappa_pooled": kappa(TOPICS), "cohen_kappa": {name: kappa((name,)) for name in TOPICS}}


def score(gold: list[set[str]], named: list[set[str]]) -> dict:
    """Per topic P/R/F1, micro over topics, and what an agent sees per complaint."""
    def prf(tp: int, predicted: int, true: int) -> dict[str, float | int]:
        p, r = tp / predicted if predicted else 0.0, tp / true if true else 0.0
        return {"gold": true, "named": predicted, "precision": round(p, 3), "recall": round(r, 3),
                "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0}

    per = {name: prf(sum(name in g and name in n for g, n in zip(gold, named)), sum(name in n for n in named),
                     sum(name in g for g in gold)) for name in TOPICS}
    with_topic = [n for n in named if n]
    return {"complaints": len(gold),
            "with_a_gold_topic": round(sum(bool(g) for g in gold) / len(gold), 3),
            "with_a_topic_named": round(len(with_topic) / len(gold), 3),
            "named_all_right": round(sum(bool(n) and n <= g for g, n in zip(gold, named)) / max(len(with_topic), 1), 3),
            "micro": prf(sum(len(g & n) for g, n in zip(gold, named)), sum(map(len, named)), sum(map(len, gold))),
            "per_topic": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="test: the evaluation; train: the development and training turns")
    parser.add_argument("--round", type=int, choices=(1, 2, 3), default=None,
                        help="train only: 1, the 400 development turns labelled twice; 2 and 3, the 1,600 and "
                             "4,009 labelled to train the reader of topics from the dialogue (default: all)")
    parser.add_argument("--model", type=Path, default=None, help="entity pipeline directory (default: the shipped one)")
    parser.add_argument("--own-names", nargs="*", default=["京东"], help="the platform's own names (default: 京东)")
    args = parser.parse_args()
    rows = [row for row in read(args.split) if args.round in (None, row.get("round", 1))]
    nlp = load(args.model)
    gold = [set(row["topics"]) for row in rows]
    texts = [row["text"] for row in rows]
    readings = {"without_own_names": [], "with_own_names": args.own_names}
    report = {"bench": "chat_topics", "split": args.split, "round": args.round, "entities": nlp.meta.get("version"),
              "labellers": agreement([row for row in rows if len(row["votes"]) > 1]),
              **{reading: {"own_names": own, **score(gold, [set(n) for n in named_topics(texts, nlp, own)])}
                 for reading, own in readings.items()}}
    reader = dialogue_reader(args.model)
    if reader is not None and args.split == "test":
        # What the product gives a complaint: what its words name, else what its dialogue says.
        turns = turns_before([row["context"] for row in rows], nlp, args.own_names)
        named = named_topics(texts, nlp, args.own_names)
        given = combined(named, reader.read(texts, turns), turns)
        # The topics the reader gave, on complaints whose words named none: how often right.
        added = [(g, n) for g, n, words in zip(gold, given, named) if n and not words]
        right = sum(len(g & n) for g, n in added)
        report["with_the_dialogue"] = {
            "own_names": args.own_names, "dialogue_topics": reader.info(), **score(gold, given),
            "added_by_the_reader": {"complaints": len(added), "topics": sum(len(n) for _, n in added), "right": right,
                                    "precision": round(right / max(sum(len(n) for _, n in added), 1), 3)}}
    elif reader is not None:
        report["with_the_dialogue"] = ("the reader learned from the train split; its cross-validated figures are "
                                       "printed by `churnsignal train dialogue-topics`")
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
