"""The committed support-chat gold set keeps SPEC's split rule and the guide's three labels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from churnsignal.nlp.complaints import TOPICS
from churnsignal.nlp.corpus import load_labelled, split_of, windows
from churnsignal.nlp.training.chat import read_gold

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


def read(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_each_turn_is_in_the_split_its_text_hashes_to_and_labelled_once() -> None:
    gold = {split: read_gold(split) for split in ("train", "test")}
    assert len(gold["train"]) >= 2000
    for split, rows in gold.items():
        assert all(split_of(row["text"]) == split == row["split"] for row in rows)
        assert all(row["label"] in ("negative", "neutral", "positive") for row in rows)
        assert all(row["text"] == row["text"].strip() and isinstance(row["context"], list) for row in rows)
    ids = [row["id"] for rows in gold.values() for row in rows]
    texts = [row["text"] for rows in gold.values() for row in rows]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)


def test_no_train_turn_shares_a_window_with_held_out_text() -> None:
    held_out = {w for row in read_gold("test") for w in windows(row["text"])}
    held_out |= {w for item in load_labelled() if item.split != "train" for w in windows(item.text)}
    assert not [row["text"] for row in read_gold("train") if any(w in held_out for w in windows(row["text"]))]


def test_the_second_labelling_is_of_gold_turns() -> None:
    gold = {row["id"] for split in ("train", "test") for row in read_gold(split)}
    second = read("chat_gold_second.jsonl")
    ids = [row["id"] for row in second]
    assert len(ids) >= 200 and len(set(ids)) == len(ids) and set(ids) <= gold


def test_each_turn_is_labelled_twice_and_its_label_is_the_majority() -> None:
    for row in read_gold("train") + read_gold("test"):
        first, second, *third = row["votes"]
        assert len(third) == (first != second), row["id"]
        counted = Counter(row["votes"]).most_common()
        majority = counted[0][0] if counted[0][1] >= 2 else first
        assert row["label"] == majority, row["id"]


def test_labelled_questions_are_train_split_text_without_overlap() -> None:
    rows = read("questions_train.jsonl")
    held_out = {w for item in load_labelled() if item.split != "train" for w in windows(item.text)}
    held_out |= {w for row in read_gold("test") for w in windows(row["text"])}
    assert len(rows) >= 2000 and len({row["text"] for row in rows}) == len(rows)
    assert all(split_of(row["text"]) == "train" and row["label"] in ("negative", "neutral", "positive") for row in rows)
    assert not [row["text"] for row in rows if any(w in held_out for w in windows(row["text"]))]
    second = read("questions_second.jsonl")
    assert len(second) >= 100 and {row["id"] for row in second} <= {row["id"] for row in rows}


def test_complaint_topics_are_of_gold_complaints_labelled_twice_by_majority() -> None:
    gold = {row["id"]: row for row in read_gold("train") + read_gold("test")}
    rows = read("chat_topics.jsonl")
    assert len({row["id"] for row in rows}) == len(rows)
    test = [row for row in rows if row["split"] == "test"]
    # Every complaint of the test split, and development turns from the train split only.
    assert {row["id"] for row in test} == {i for i, row in gold.items() if row["split"] == "test" and row["label"] == "negative"}
    assert len(rows) - len(test) >= 400 and {row["split"] for row in rows} == {"train", "test"}
    for row in rows:
        source = gold[row["id"]]
        assert (row["split"], row["text"], row["context"], source["label"]) == (source["split"], source["text"],
                                                                               source["context"], "negative")
        assert set().union(*row["votes"]) <= set(TOPICS)
        if row.get("round", 1) in (2, 3):
            # Training labels for the reader of topics from the dialogue: one labeller each, a
            # blind second one on a sample, for the agreement figure only.
            assert row["split"] == "train" and len(row["votes"]) in (1, 2) and row["topics"] == row["votes"][0]
            continue
        first, second, *third = map(set, row["votes"])
        assert len(third) == (first != second), row["id"]
        assert row["topics"] == [t for t in TOPICS if sum(t in v for v in row["votes"]) * 2 > len(row["votes"])], row["id"]
    assert all(sum(len(row["votes"]) == 2 for row in rows if row.get("round") == n) >= 200 for n in (2, 3))
    # Every train-split complaint of the gold set is labelled.
    assert {row["id"] for row in rows} >= {i for i, row in gold.items() if row["split"] == "train" and row["label"] == "negative"}
