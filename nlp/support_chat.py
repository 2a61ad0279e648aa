"""Real support chat (JDDC, JD.com customer service) as customer turns with their context.

Reviews are opinions; chat turns are mostly questions and requests. The support-chat gold
set (``bench/data/chat_gold_*.jsonl*``, labelled by the guide in model_cards/sentiment.md)
is drawn from here. SPEC's split rule binds these turns as it binds the reviews: a turn's
split is :func:`churnsignal.nlp.corpus.split_of` of its ``.strip()``-ed text, reserved
turns are never used, and a train turn that shares a 12-character window with any test or
reserved text of any source is dropped.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

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


def customer_turns(turns: list[ChatTurn], held_out_texts: Iterable[str] = (), trained_texts: Iterable[str] = (),
                   answered_only: bool = False) -> list[CustomerTurn]:
    """Each distinct customer text once (its first occurrence), with context and split.

    Reserved turns are left out. Train turns sharing a 12-character window with a test or
    reserved turn, or with any of ``held_out_texts`` (the other sources' test and reserved
    texts), are left out too. ``trained_texts`` are what shipped models already learned
    from: a test turn sharing a window with one is left out, the same rule seen from the
    other side for a test set drawn after training. ``answered_only`` keeps only turns
    after an agent's turn (a stretch of a session whose start is not known).
    """
    by_session: dict[str, list[ChatTurn]] = {}
    for turn in turns:
        by_session.setdefault(turn.session, []).append(turn)
    first: dict[str, CustomerTurn] = {}
    for session_turns in by_session.values():
        for position, turn in enumerate(session_turns):
            if turn.author != "customer" or not turn.text or turn.text in first:
                continue
            if answered_only and not any(t.author == "agent" for t in session_turns[:position]):
                continue
            context = tuple(session_turns[max(0, position - CONTEXT_TURNS):position])
            first[turn.text] = CustomerTurn(f"{turn.session}:{turn.index}", turn.text, context, split_of(turn.text))
    held_out = {w for text in held_out_texts for w in windows(text)}
    held_out |= {w for item in first.values() if item.split != "train" for w in windows(item.text)}
    trained = {w for text in trained_texts for w in windows(text)}
    return [item for item in first.values()
            if (item.split == "test" and not any(w in trained for w in windows(item.text)))
            or (item.split == "train" and not any(w in held_out for w in windows(item.text)))]


# The JDDC organisers' seq2seq baseline ships a second, larger sample of the same service
# chat (about 10,000 sessions, none of them in the 0.1 % sample) in another layout: each
# line of its ``train.enc``/``test.enc`` is one stretch of a session, customer turns, agent
# turns, customer turns, agent turns, customer turns (Q A Q A Q), every turn followed by a
# comma and no author given. Its placeholders differ slightly from the 0.1 % sample's.
_BASELINE_MARKUP = (
    (re.compile(r"#E-[a-z]\[数字x\]"), ""),  # emoticon codes, which the 0.1 % sample drops
    (re.compile(r"\[ORDERID_\d+\]"), "[订单x]"),
    (re.compile(r"\[USERID_\d+\]"), "[用户x]"),
    (re.compile(r"&nbsp;"), " "),
)
# Q A Q A Q: blocks 0, 2 and 4 are the customer's.
_BLOCKS = 5
# The copy kept with the gold set (see its README.md).
BASELINE_SAMPLE = Path(__file__).resolve().parents[1] / "bench" / "data" / "jddc_baseline"
BASELINE_FILES = ("train.enc.gz", "test.enc.gz")


def read_jddc_stretches(path: Path) -> list[tuple[str, ...]]:
    """The baseline sample's lines as turn texts, in order, markup made like the 0.1 % sample's.

    ``path`` may be gzipped (``.gz``), as the copy in ``bench/data/jddc_baseline`` is.
    """
    stretches = []
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            texts = []
            for part in line.rstrip("\r\n").split(","):
                for pattern, replacement in _BASELINE_MARKUP:
                    part = pattern.sub(replacement, part)
                if part.strip():
                    texts.append(part.strip())
            stretches.append(tuple(texts))
    return stretches


class AuthorReader:
    """Tells customer turns from agent turns where a file does not say which is which.

    A character n-gram logistic regression learns the two registers from a sample whose
    turns are flagged (the 0.1 % sample); on a Q A Q A Q stretch the authors are then the
    split into five alternating blocks that the model finds likeliest (dynamic programming).
    """

    def __init__(self, turns: Iterable[ChatTurn]) -> None:
        turns = [t for t in turns if t.text]
        self._vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        features = self._vectorizer.fit_transform([t.text for t in turns])
        self._model = LogisticRegression(C=4.0, max_iter=2000).fit(features, [t.author == "agent" for t in turns])

    def authors(self, texts: Sequence[str]) -> tuple[str, ...] | None:
        """``customer``/``agent`` per text of one Q A Q A Q stretch; None if it has under five turns."""
        if len(texts) < _BLOCKS:
            return None
        # Column 0: log P(customer), column 1: log P(agent); block b is an agent's when b is odd.
        log_p = self._model.predict_log_proba(self._vectorizer.transform(list(texts)))
        best = np.full((len(texts), _BLOCKS), -np.inf)
        came_from = np.zeros((len(texts), _BLOCKS), dtype=int)
        best[0, 0] = log_p[0, 0]
        for i in range(1, len(texts)):
            for block in range(_BLOCKS):
                stay, advance = best[i - 1, block], best[i - 1, block - 1] if block else -np.inf
                came_from[i, block] = block if stay >= advance else block - 1
                best[i, block] = max(stay, advance) + log_p[i, block % 2]
        block, path = _BLOCKS - 1, []
        for i in range(len(texts) - 1, -1, -1):
            path.append(block)
            block = came_from[i, block]
        return tuple("agent" if b % 2 else "customer" for b in reversed(path))


def stretch_turns(stretches: Sequence[Sequence[str]], reader: AuthorReader, prefix: str) -> list[list[ChatTurn]]:
    """Each stretch as turns with authors; ``prefix`` names the file in the turns' ids."""
    sessions = []
    for number, texts in enumerate(stretches, start=1):
        authors = reader.authors(texts)
        if authors is not None:
            sessions.append([ChatTurn(f"{prefix}{number}", i, a, t) for i, (a, t) in enumerate(zip(authors, texts))])
    return sessions


def jddc_sample(turn_id: str) -> str:
    """Which JDDC sample a gold row's turn comes from: ``baseline`` or ``0.1per``."""
    return "baseline" if turn_id.startswith(("b-train-", "b-test-")) else "0.1per"


def baseline_held_out(folder: Path = BASELINE_SAMPLE) -> list[str]:
    """The baseline sample's test and reserved turn texts, customers' and agents' alike:
    for the overlap filter only (no train text may share a 12-character window with one)."""
    texts = {t for name in BASELINE_FILES for stretch in read_jddc_stretches(folder / name) for t in stretch}
    return sorted(t for t in texts if split_of(t) != "train")
