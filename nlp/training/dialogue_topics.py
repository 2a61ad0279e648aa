"""Train the reader of topics from the dialogue (``nlp/dialogue_topics.py``) on labelled complaints.

    churnsignal train dialogue-topics --gold bench/data/chat_topics.jsonl --own-names 京东 \
        --out nlp/models/entities --version 0.1.2

Learns from the train split of the chat topic gold set only. Its cut-off is not a guess: the
complaints are read five-fold cross-validated, and the cut-off is the lowest probability, on
a 0.05 grid, at which the topics the reader adds are right at least ``PRECISION`` of the time,
so that three in four topics an agent sees from it are right. The report gives, at that cut-off,
what an agent would see with and without it (the measures of ``bench/chat_topics.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold
from spacy.language import Language

from churnsignal.nlp.complaints import TOPICS, topics
from churnsignal.nlp.dialogue_topics import AUTHORS, READ, DialogueTopics, Turns
from churnsignal.nlp.entities import extract
from churnsignal.nlp.support_chat import CONTEXT_TURNS

PRECISION = 0.75
CUTOFFS = tuple(round(0.30 + 0.05 * k, 2) for k in range(13))  # 0.30 … 0.90
FOLDS = 5


def read_gold(path: Path, split: str = "train") -> list[dict]:
    """The labelled complaints of one split: ``text``, ``context`` ("customer: …" turns) and ``topics``.

    A line without a ``split`` is a train one (your own labelled complaints); a line that is
    not such a complaint is refused with its number, before anything is trained.
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}, line {number}: not JSON") from None
            if problem := _problem(row):
                raise ValueError(f"{path}, line {number}: {problem}")
            if row.get("split", "train") == split:
                rows.append(row)
    return rows


def _problem(row: object) -> str | None:
    """What keeps one line from being a labelled complaint, or None."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        return 'expected an object with a string "text"'
    context, given = row.get("context", []), row.get("topics")
    if not isinstance(context, list) or not all(
            isinstance(turn, str) and turn.split(": ", 1)[0] in AUTHORS and ": " in turn for turn in context):
        return '"context" must be a list of "customer: …" or "agent: …" turns'
    if not isinstance(given, list) or not set(given) <= set(TOPICS):
        return f'"topics" must be a list of {", ".join(TOPICS)}'
    return None


def turns_before(contexts: Sequence[Sequence[str]], nlp: Language, own_names: Sequence[str] = ()) -> list[Turns]:
    """Each complaint's last ``CONTEXT_TURNS`` turns as ``(author, topics named in it)``, as the product reads them."""
    kept = [[turn.split(": ", 1) for turn in context[-CONTEXT_TURNS:]] for context in contexts]
    found = iter(extract([text for context in kept for _, text in context], nlp, own_names=own_names))
    return [[(author, topics(e["label"] for e in next(found))) for author, _ in context] for context in kept]


def named_topics(texts: Sequence[str], nlp: Language, own_names: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """What each complaint's own words name (``complaints.topics`` of its entities)."""
    return [topics(e["label"] for e in found) for found in extract(list(texts), nlp, own_names=own_names)]


def out_of_fold(rows: Sequence[dict], turns: Sequence[Turns], C: float, seed: int = 0) -> np.ndarray:
    """Each complaint's probabilities from a reader that never saw it (``FOLDS``-fold)."""
    texts = [row["text"] for row in rows]
    probs = np.zeros((len(rows), len(READ)), dtype=np.float32)
    for fit, held in KFold(FOLDS, shuffle=True, random_state=seed).split(texts):
        reader = DialogueTopics(C=C).fit([texts[i] for i in fit], [turns[i] for i in fit],
                                         [rows[i]["topics"] for i in fit])
        probs[held] = reader.probabilities([texts[i] for i in held], [turns[i] for i in held])
    return probs


def combined(named: Sequence[Sequence[str]], read: Sequence[Sequence[str]], turns: Sequence[Turns]) -> list[set[str]]:
    """What the product gives a complaint: what its words name, else what the dialogue says."""
    return [set(n) if n or not before else set(r) for n, r, before in zip(named, read, turns)]


def measures(gold: Sequence[set[str]], given: Sequence[set[str]]) -> dict:
    """Share of complaints with a topic, share of those all right, micro precision/recall/F1."""
    right, said, true = (sum(len(g & n) for g, n in zip(gold, given)), sum(map(len, given)), sum(map(len, gold)))
    p, r = right / said if said else 0.0, right / true if true else 0.0
    with_topic = sum(bool(n) for n in given)
    return {"with_a_topic_named": round(with_topic / len(gold), 3),
            "named_all_right": round(sum(bool(n) and n <= g for g, n in zip(gold, given)) / max(with_topic, 1), 3),
            "precision": round(p, 3), "recall": round(r, 3), "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0}


def choose_cutoff(probs: np.ndarray, named: Sequence[Sequence[str]], turns: Sequence[Turns],
                  gold: Sequence[set[str]]) -> tuple[float | None, list[dict]]:
    """The lowest cut-off at which the reader's added topics are right ``PRECISION`` of the time (None: at none)."""
    asked = [not n and bool(before) for n, before in zip(named, turns)]
    table = []
    for cutoff in CUTOFFS:
        added = [(set(t for t, p in zip(READ, row) if p >= cutoff), g) for row, g, a in zip(probs, gold, asked) if a]
        said = sum(len(a) for a, _ in added)
        table.append({"cutoff": cutoff, "added": said,
                      "added_precision": round(sum(len(a & g) for a, g in added) / said, 3) if said else None})
    chosen = next((row["cutoff"] for row in table if row["added_precision"] is not None
                   and row["added_precision"] >= PRECISION), None)
    return chosen, table


def train_dialogue_topics(gold_path: Path, out: Path, nlp: Language, own_names: Sequence[str] = (),
                          C: float = 16.0, version: str = "unversioned") -> dict:
    """Cross-validate, choose the cut-off, fit on every train complaint and save into ``out``; returns the report."""
    rows = read_gold(gold_path)
    if not rows:
        raise ValueError(f"{gold_path}: no train-split complaints to learn from")
    turns = turns_before([row.get("context", []) for row in rows], nlp, own_names)
    named = named_topics([row["text"] for row in rows], nlp, own_names)
    gold = [set(row["topics"]) for row in rows]
    probs = out_of_fold(rows, turns, C)
    cutoff, table = choose_cutoff(probs, named, turns, gold)
    if cutoff is None:
        raise ValueError(f"no cut-off makes the added topics right {PRECISION:.0%} of the time: nothing saved")
    read = [tuple(t for t, p in zip(READ, row) if p >= cutoff) for row in probs]
    reader = DialogueTopics(C=C, cutoff=cutoff, version=version).fit(
        [row["text"] for row in rows], turns, [row["topics"] for row in rows])
    reader.save(out)
    return {"complaints": len(rows), "C": C, "cutoff": cutoff, "cutoffs": table,
            "cross_validated": {"named_only": measures(gold, [set(n) for n in named]),
                                "with_the_dialogue": measures(gold, combined(named, read, turns))}}
