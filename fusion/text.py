"""Customer messages → per-message signals, through ``churnsignal analyse``, computed once.

Scoring the same history again (a new ``--as-of``, evaluation after training) must not
run the BERT again over every message, so each message's signals are cached on disk,
keyed by a hash of the text, the turns before it on its ticket (the sentiment reads them),
the versions of the models that read it and the cache's own format. The cache holds no
text, only numbers, entity counts and entity positions, so it holds no personal data either; the masked text a reason quotes is masked again on every
read (a regular expression, not a model).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from churnsignal.config import ANALYSED_BY_CHARS, Settings
from churnsignal.nlp.complaints import TOPICS, is_complaint, topics

BATCH = 256
# Part of every cache key: entries written in another format (1: before entity positions,
# 2: before the turns before a message, 3: before reviews were read as reviews) are never
# read as this one.
CACHE_FORMAT = 4


def analyse_events(events: pd.DataFrame, settings: Settings, only: pd.Series | None = None) -> pd.DataFrame:
    """The non-empty customer messages and all agent messages of ``events``, with signals as columns.

    Adds ``negative_prob``, ``negative_word_share``, ``is_complaint`` (``nlp/complaints.py``),
    ``masked_text``, ``entity_spans`` (``{"start", "end", "label"}`` offsets into ``text`` as
    given, see ``nlp.analysis.stored_spans``) and one mention-count column per topic in
    ``TOPICS``. Each customer message is read after the turns before it on its ticket
    (:func:`ticket_contexts`), and a review alone, as a review; so ``events`` should hold a
    ticket's earlier turns too: a worker and a later scoring of the same history then read a
    message alike. ``only``, when given, marks the rows to analyse; the others are read only
    as turns before them (the worker's new messages and their tickets' history). Agent
    messages are not customer signal: they are not analysed (their signals are empty) and
    are kept only for when they were written, which is how slow first responses are seen.
    Bot messages, our own alert notes among them, are dropped, except for the ticket status
    one carries (``ticket_status``: a helpdesk reports a resolved conversation with a system
    message), which is kept the same way.
    """
    from churnsignal.nlp.analysis import masked_text, model_versions

    written = (events["author"] == "customer") & (events["text"].str.strip() != "")
    if only is not None:
        written &= only
    messages = events[written].copy()
    contexts = ticket_contexts(events)[written]
    versions = json.dumps(model_versions(settings), sort_keys=True)
    reviews = (messages["channel"] == "review").tolist()
    keys = [_key(versions, text, turns, review) for text, turns, review in zip(messages["text"], contexts, reviews)]
    with closing(_open_cache(settings.fusion.cache_dir)) as cache:
        signals = _cached(cache, keys)
        missing = sorted({k for k in keys if k not in signals})
        read = dict(zip(keys, zip(messages["text"], contexts, reviews)))
        for batch in _batches(missing, "analysing messages"):
            fresh = _analyse([read[k][0] for k in batch], settings, [read[k][1] for k in batch],
                             [read[k][2] for k in batch])
            cache.executemany("INSERT OR REPLACE INTO signals VALUES (?, ?)",
                              [(k, json.dumps(s)) for k, s in zip(batch, fresh)])
            cache.commit()
            signals.update(zip(batch, fresh))
    rows = [signals[k] for k in keys]
    messages["negative_prob"] = [r["negative_prob"] for r in rows]
    messages["negative_word_share"] = [r["negative_word_share"] for r in rows]
    messages["is_complaint"] = pd.Series([is_complaint(author, prob, settings) for author, prob
                                          in zip(messages["author"], messages["negative_prob"])],
                                         index=messages.index, dtype=bool)
    messages["masked_text"] = [masked_text(text).text for text in messages["text"]]
    messages["entity_spans"] = [r["spans"] for r in rows]
    for topic in TOPICS:
        messages[topic] = [r["labels"].get(topic, 0) for r in rows]
    # Not the customer's turns: never complaints, whatever they say (nlp/complaints.py).
    kept = events["author"] == "agent"
    if "ticket_status" in events:
        kept |= (events["author"] == "bot") & events["ticket_status"].notna()
    replies = events[kept].assign(is_complaint=False, entity_spans=None, **{topic: 0 for topic in TOPICS})
    return pd.concat([messages, replies]).sort_index()


def analysed_by(settings: Settings) -> str:
    """The models that read messages with these settings, in a few words: what ``events.analysed_by`` records.

    It changes whenever their reading of a message may change, as this module's cache keys
    do: another sentiment model directory (its fingerprint hashes every file, the model card
    with its version included), int8 or not, another entity pipeline or version, other
    ``entities.own_names`` (they decide which platform mentions are competitors), topics read
    from the dialogue or not, and from which ``negative_prob`` (they are read for complaints
    only). A stored
    message with another value was read by other models and is read again by ``churnsignal
    qa reanalyse``.
    """
    from churnsignal.nlp.analysis import model_versions

    models = model_versions(settings)
    sentiment, found = models["sentiment"], models["entities"]
    said = (f"sentiment {sentiment['version']} {sentiment['fingerprint']}{' int8' if sentiment['quantized'] else ''}; "
            f"entities {found['name']} {found['version']}"
            + (f" own {','.join(found['own_names'])}" if found.get("own_names") else "")
            + (" topics {version} {fingerprint} from {complaints_from}".format_map(found["dialogue_topics"])
               if found.get("dialogue_topics") else ""))
    if len(said) <= ANALYSED_BY_CHARS:
        return said
    # Long names (a pipeline's, many own names) must still fit the column and tell settings apart.
    return f"{said[:ANALYSED_BY_CHARS - 14]}… {hashlib.sha256(said.encode()).hexdigest()[:12]}"


def ticket_contexts(events: pd.DataFrame) -> pd.Series:
    """Per row, the ``(author, text)`` turns before it on its ticket, oldest first.

    A ticket is a customer's ``ticket_id``; its turns are the customer's and the agents'
    (bots' are not conversation), in time order, the last ``CONTEXT_TURNS`` kept: what the
    sentiment model reads (``nlp/sentiment.py``). A review, or a row without a ticket, has
    none: it is not a turn of a dialogue.
    """
    from churnsignal.nlp.sentiment import CONTEXT_TURNS

    turns: list[tuple[tuple[str, str], ...]] = [()] * len(events)
    rows = events.reset_index(drop=True)
    said = rows[rows["ticket_id"].notna() & rows["author"].isin(("customer", "agent")) & (rows["channel"] != "review")]
    for _, ticket in said.sort_values("created_at", kind="stable").groupby(["customer_id", "ticket_id"], sort=False):
        history = list(zip(ticket["author"], ticket["text"]))
        for k, position in enumerate(ticket.index):
            turns[position] = tuple(history[max(0, k - CONTEXT_TURNS):k])
    return pd.Series(turns, index=events.index, dtype=object)


def _key(versions: str, text: str, turns: tuple[tuple[str, str], ...], review: bool) -> str:
    """The cache key of one reading: the models, the text, the turns before it, and
    whether it was read as a review (chat and ticket messages are read alike)."""
    before = "\n".join(f"{author}\t{said}" for author, said in turns)
    return hashlib.sha256(f"{CACHE_FORMAT}\n{versions}\n{review:d}\n{text}\n\x1f{before}".encode()).hexdigest()


def _analyse(texts: list[str], settings: Settings, contexts: list[tuple[tuple[str, str], ...]],
             reviews: list[bool]) -> list[dict]:
    from churnsignal.nlp.analysis import analyse, stored_spans
    from churnsignal.nlp.sentiment import REVIEW

    channels = [REVIEW if review else None for review in reviews]
    out = []
    for text, result in zip(texts, analyse(texts, settings, contexts, channels)):
        # A topic read from the dialogue counts as named once: the store keeps, per topic, how
        # many times a message names it, and the text itself names it nowhere (no span).
        mentions = Counter(e["label"] for e in result["entities"]) + Counter(result["dialogue_topics"])
        out.append({"negative_prob": result["sentiment"]["negative_prob"],
                    "negative_word_share": result["negative_word_share"],
                    "labels": {topic: mentions[topic] for topic in topics(mentions)},
                    "spans": stored_spans(text, result["entities"])})
    return out


def _open_cache(folder: Path) -> sqlite3.Connection:
    folder.mkdir(parents=True, exist_ok=True)
    cache = sqlite3.connect(folder / "analysis.sqlite")
    cache.execute("CREATE TABLE IF NOT EXISTS signals (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return cache


def _cached(cache: sqlite3.Connection, keys: list[str]) -> dict[str, dict]:
    wanted = sorted(set(keys))
    found: dict[str, dict] = {}
    # SQLite caps the number of bound parameters; ask in slices.
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        query = f"SELECT key, value FROM signals WHERE key IN ({','.join('?' * len(part))})"
        found.update((k, json.loads(v)) for k, v in cache.execute(query, part))
    return found


def _batches(keys: list[str], what: str) -> Iterator[list[str]]:
    # leave=None: kept on the terminal when alone, gone when done under another bar
    # (``churnsignal qa reanalyse`` reads batch after batch under its own).
    with tqdm(total=len(keys), desc=what, unit="msg", disable=None, leave=None) as bar:
        for start in range(0, len(keys), BATCH):
            yield keys[start:start + BATCH]
            bar.update(min(BATCH, len(keys) - start))
