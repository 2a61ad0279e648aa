"""Real support chat (JDDC, JD.com customer service) as customer turns with their context.

Reviews are opinions; chat turns are mostly questions and requests. The support-chat gold
set (``bench/data/chat_gold_*.jsonl``, labelled by the guide in model_cards/sentiment.md)
is drawn from here. SPEC's split rule binds these turns as it binds the reviews: a turn's
split is :func:`churnsignal.nlp.corpus.split_of` of its ``.strip()``-ed text, reserved
turns are never used, and a train turn that shares a 12-character window with any test or
reserved text of any source is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from churnsignal.nlp.corpus import split_of, windows

# Turns before the customer's own that the labeller sees: enough to tell a follow-up
# ("还没到") from a first question.
CONTEXT_TURNS = 4


@dataclass(frozen=True)
class ChatTurn:
    """One turn of a session; ``author`` is ``customer`` or ``agent``."""

    session: str
    index: int
    author: str
    text: str


@dataclass(frozen=True)
class CustomerTurn:
    """A customer's turn with the turns before it in its session, and its split."""

    id: str
    text: str
    context: tuple[ChatTurn, ...]
    split: str


def read_jddc(path: Path) -> list[ChatTurn]:
    """The JDDC sample's turns in file order (TSV: session, user, is_agent, transferred, repeated, sku, text)."""
    turns: list[ChatTurn] = []
    index: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) != 7 or row[2] not in ("0", "1"):
                raise ValueError(f"{path}, line {number}: expected 7 tab-separated fields with is_agent 0 or 1")
            session = row[0]
            index[session] = index.get(session, -1) + 1
            turns.append(ChatTurn(session, index[session], "agent" if row[2] == "1" else "customer", row[6].strip()))
    return turns


def customer_turns(turns: list[ChatTurn], held_out_texts: Iterable[str] = ()) -> list[CustomerTurn]:
    """Each distinct customer text once (its first occurrence), with context and split.

    Reserved turns are left out. Train turns sharing a 12-character window with a test or
    reserved turn, or with any of ``held_out_texts`` (the other sources' test and reserved
    texts), are left out too.
    """
    by_session: dict[str, list[ChatTurn]] = {}
    for turn in turns:
        by_session.setdefault(turn.session, []).append(turn)
    first: dict[str, CustomerTurn] = {}
    for session_turns in by_session.values():
        for position, turn in enumerate(session_turns):
            if turn.author != "customer" or not turn.text or turn.text in first:
                continue
            context = tuple(session_turns[max(0, position - CONTEXT_TURNS):position])
            first[turn.text] = CustomerTurn(f"{turn.session}:{turn.index}", turn.text, context, split_of(turn.text))
    held_out = {w for text in held_out_texts for w in windows(text)}
    held_out |= {w for item in first.values() if item.split != "train" for w in windows(item.text)}
    return [item for item in first.values() if item.split == "test"
            or (item.split == "train" and not any(w in held_out for w in windows(item.text)))]
