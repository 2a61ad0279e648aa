"""How the JDDC baseline sample's turns in the chat gold set were drawn, redone.

    python bench/chat_gold_draw.py --support-dir ../shared/data/support-text \
        --corpus-dir ../shared/data/chinese-nlp-corpus --out runs/chat_gold_candidates.jsonl

Reads ``bench/data/jddc_baseline`` (see its README.md), tells customer turns from agent
turns (:class:`~churnsignal.nlp.support_chat.AuthorReader`, trained on the 0.1 % sample's
flagged turns), and keeps each distinct customer turn after an agent's turn once, with its
context and split, under SPEC's split rule: reserved turns never; a train turn sharing a
12-character window with test or reserved text of any source never; a test turn sharing one
with text the shipped models already learned from (train reviews, the support text, the
first sample's gold rows and the labelled questions) never; a text already in the gold set
never. Then draws ``--test`` test and ``--train`` train turns at random (``--seed``), and
for each later labelling round ``--more-train`` more train turns from the rest (with its
``--more-seed``), as labelled, and likewise ``--more-test`` more test turns (``--more-test-seed``:
the second test round, every test candidate left), and writes them (without labels) to ``--out``. Prints one
JSON object: the authors' accuracy on the 0.1 % sample (stretches built from half its
sessions, the reader trained on the other half, and the other way round), candidates and
drawn turns per split, and whether the drawn ids are the gold set's.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from churnsignal.nlp.corpus import load_labelled
from churnsignal.nlp.support_chat import (
    BASELINE_FILES,
    BASELINE_SAMPLE,
    AuthorReader,
    ChatTurn,
    customer_turns,
    jddc_sample,
    read_jddc,
    read_jddc_stretches,
    stretch_turns,
)
from churnsignal.nlp.support_text import (
    held_out_of,
    read_atec,
    read_bq,
    read_crosswoz,
    read_jddc_text,
    read_posts,
    support_corpus,
)
from churnsignal.nlp.training.chat import read_gold, read_questions


def author_accuracy(turns: list[ChatTurn]) -> float:
    """Share of turns given their right author on Q A Q A Q stretches cut from flagged sessions."""
    sessions: dict[str, list[ChatTurn]] = {}
    for turn in turns:
        if turn.text:
            sessions.setdefault(turn.session, []).append(turn)
    names = sorted(sessions)
    random.Random(0).shuffle(names)
    halves = names[: len(names) // 2], names[len(names) // 2:]
    right = total = 0
    for train, test in (halves, halves[::-1]):
        reader = AuthorReader([t for name in train for t in sessions[name]])
        for name in test:
            for stretch in _stretches(sessions[name]):
                guessed = reader.authors([t.text for t in stretch])
                right += sum(g == t.author for g, t in zip(guessed, stretch))
                total += len(stretch)
    return right / total


def _stretches(session: list[ChatTurn]) -> list[list[ChatTurn]]:
    """Q A Q A Q stretches of one session, cut as the baseline's files were (blocks of one
    author's consecutive turns, five at a time, the next block skipped)."""
    blocks: list[list[ChatTurn]] = []
    for turn in session:
        if blocks and blocks[-1][0].author == turn.author:
            blocks[-1].append(turn)
        else:
            blocks.append([turn])
    start = next((i for i, b in enumerate(blocks) if b[0].author == "customer"), len(blocks))
    return [[t for b in blocks[i:i + 5] for t in b] for i in range(start, len(blocks) - 4, 6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--support-dir", type=Path, required=True)
    parser.add_argument("--corpus-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--more-train", type=int, nargs="*", default=[2400, 2800, 2800, 3200, 2800, 2800, 2800, 937])
    parser.add_argument("--more-seed", type=int, nargs="*", default=[14, 16, 18, 20, 22, 24, 26, 28])
    parser.add_argument("--more-test", type=int, nargs="*", default=[759])
    parser.add_argument("--more-test-seed", type=int, nargs="*", default=[30])
    args = parser.parse_args()
    first = read_jddc(args.support_dir / "jddc_chat_0.1per.txt")
    reader = AuthorReader(first)
    turns = [t for name in BASELINE_FILES for session in stretch_turns(
        read_jddc_stretches(BASELINE_SAMPLE / name), reader, f"b-{name.split('.')[0]}-") for t in session]
    labelled = load_labelled(args.corpus_dir)
    raw = [*read_atec(args.support_dir), *read_bq(args.support_dir), *read_crosswoz(args.support_dir),
           *read_posts(args.support_dir), *read_jddc_text(args.support_dir)]
    review_held_out = [i.text for i in labelled if i.split != "train"]
    gold = [r for split in ("train", "test") for r in read_gold(split) if jddc_sample(r["id"]) == "0.1per"]
    trained = [*(i.text for i in labelled if i.split == "train"),
               *(t for texts in support_corpus(args.support_dir, review_held_out).values() for t in texts),
               *(r["text"] for r in gold), *(r["text"] for r in read_questions())]
    known = {r["text"] for r in gold}
    candidates = [c for c in customer_turns(turns, [*review_held_out, *held_out_of(raw)], trained, answered_only=True)
                  if c.text not in known]
    rng = random.Random(args.seed)
    drawn = {split: rng.sample([c for c in candidates if c.split == split], n)
             for split, n in (("test", args.test), ("train", args.train))}
    if len(args.more_train) != len(args.more_seed) or len(args.more_test) != len(args.more_test_seed):
        parser.error("give one --more-seed per --more-train and one --more-test-seed per --more-test")
    for split, counts, seeds in (("train", args.more_train, args.more_seed), ("test", args.more_test, args.more_test_seed)):
        for count, seed in zip(counts, seeds):
            taken = {c.id for c in drawn[split]}
            rest = [c for c in candidates if c.split == split and c.id not in taken]
            drawn[split] += random.Random(seed).sample(rest, count)
    with open(args.out, "w", encoding="utf-8") as handle:
        for split in ("train", "test"):
            for c in drawn[split]:
                row = {"id": c.id, "split": c.split, "text": c.text,
                       "context": [f"{t.author}: {t.text}" for t in c.context]}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    in_gold = {split: {r["id"] for r in read_gold(split) if jddc_sample(r["id"]) == "baseline"} for split in drawn}
    print(json.dumps({
        "bench": "chat_gold_draw",
        "author_accuracy_on_the_flagged_sample": round(author_accuracy(first), 4),
        "stretches_turns": len(turns),
        "candidates": {split: sum(c.split == split for c in candidates) for split in ("train", "test")},
        "drawn": {split: len(rows) for split, rows in drawn.items()},
        "drawn_are_the_gold_sets": {split: {c.id for c in rows} == in_gold[split] for split, rows in drawn.items()},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
