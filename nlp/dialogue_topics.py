"""What a complaint that names no topic is about, read from the turns before it.

Half of real support-chat complaints name no topic in their own words: "怎么还没好", "人呢",
"都三天了" mean something only after "我的快递到哪了" or "请您稍等". Human labellers, reading the
turns before, give most of them a topic (model_cards/entities.md, "Topics read from the
dialogue"). This reader learns that from labelled complaints: a logistic regression per topic
over the complaint's characters and over which topics the entity extractor finds in each of
the turns before it, the customer's and the agent's apart.

It never names a competitor (a rival platform is named or it is not) and is asked only about a
complaint whose own text names no topic and that has turns before it: what the text says
outright stays what the complaint is about. Saved as arrays in safetensors beside the entity
pipeline, like the sentiment n-grams: no pickles to trust.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression

from churnsignal.nlp.complaints import TOPICS

# The topics it may read from a dialogue: every topic but COMPETITOR.
READ = tuple(topic for topic in TOPICS if topic != "COMPETITOR")
# Char 1–3-grams hashed into this many columns: 2,000 labelled complaints hold a few tens of
# thousands of distinct n-grams, and the file has to stay small (model_cards/entities.md).
FEATURES = 2**15
AUTHORS = ("customer", "agent")
# One column per (author, topic) named in the turns before; a turn counts once per topic.
TURN_COLUMNS = tuple(f"{author}:{topic}" for author in AUTHORS for topic in TOPICS)
FILE = "dialogue_topics"

Turns = Sequence[tuple[str, Sequence[str]]]
"""The turns before a complaint as the reader takes them: ``(author, topics named in it)``, oldest first."""


def _chars() -> HashingVectorizer:
    return HashingVectorizer(analyzer="char", ngram_range=(1, 3), n_features=FEATURES, alternate_sign=False,
                             norm=None, lowercase=True)


def _turn_columns(turns: Sequence[Turns]) -> sp.csr_matrix:
    """How many of the turns before each complaint name each topic, per author."""
    index = {name: i for i, name in enumerate(TURN_COLUMNS)}
    counts = np.zeros((len(turns), len(TURN_COLUMNS)), dtype=np.float32)
    for row, before in enumerate(turns):
        for author, named in before:
            for topic in set(named):
                if f"{author}:{topic}" in index:
                    counts[row, index[f"{author}:{topic}"]] += 1
    return sp.csr_matrix(counts)


class DialogueTopics:
    """Per topic, the probability that a complaint is about it, given its text and the turns before it."""

    def __init__(self, C: float = 16.0, cutoff: float = 0.5, version: str = "unversioned") -> None:
        self.C = C
        self.cutoff = cutoff
        self.version = version
        # Of the saved files, once loaded: two readers retrained under one version differ here.
        self.fingerprint = ""
        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.coef = np.zeros((len(READ), FEATURES + len(TURN_COLUMNS)), dtype=np.float32)
        self.intercept = np.zeros(len(READ), dtype=np.float32)

    def _features(self, texts: Sequence[str], turns: Sequence[Turns]) -> sp.csr_matrix:
        return sp.hstack([self.tfidf.transform(_chars().transform(texts)), _turn_columns(turns)], format="csr")

    def fit(self, texts: Sequence[str], turns: Sequence[Turns], topics: Sequence[Sequence[str]]) -> DialogueTopics:
        """Learn from complaints and the topics labellers gave them (a topic none or all of them have: never, always)."""
        self.tfidf.fit(_chars().transform(texts))
        features = self._features(texts, turns)
        for k, topic in enumerate(READ):
            about = np.array([topic in given for given in topics])
            if about.all() or not about.any():
                self.coef[k], self.intercept[k] = 0.0, (20.0 if about.all() else -20.0)
                continue
            model = LogisticRegression(C=self.C, max_iter=3000).fit(features, about)
            self.coef[k], self.intercept[k] = model.coef_[0], model.intercept_[0]
        return self

    def probabilities(self, texts: Sequence[str], turns: Sequence[Turns]) -> np.ndarray:
        """Rows: complaints; columns: ``READ``."""
        if not texts:
            return np.zeros((0, len(READ)), dtype=np.float32)
        logits = self._features(texts, turns) @ self.coef.T + self.intercept
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def read(self, texts: Sequence[str], turns: Sequence[Turns]) -> list[tuple[str, ...]]:
        """The topics at or above the cut-off, per complaint, in ``READ`` order."""
        return [tuple(topic for topic, p in zip(READ, row) if p >= self.cutoff)
                for row in self.probabilities(texts, turns)]

    def info(self) -> dict:
        return {"version": self.version, "fingerprint": self.fingerprint, "cutoff": self.cutoff}

    def save(self, directory: Path) -> None:
        """Write ``dialogue_topics.safetensors`` and ``.json`` into ``directory`` (an entity pipeline's)."""
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"idf": self.tfidf.idf_.astype(np.float16), "coef": self.coef.astype(np.float16),
                   "intercept": self.intercept.astype(np.float32)}, str(directory / f"{FILE}.safetensors"))
        (directory / f"{FILE}.json").write_text(json.dumps(
            {"version": self.version, "C": self.C, "cutoff": self.cutoff, "features": FEATURES, "topics": list(READ),
             "turn_columns": list(TURN_COLUMNS)}, indent=1) + "\n")

    @staticmethod
    def saved_in(directory: Path) -> bool:
        return (directory / f"{FILE}.json").is_file()

    @classmethod
    def load(cls, directory: Path) -> DialogueTopics:
        config = json.loads((directory / f"{FILE}.json").read_text())
        if (config["features"], config["topics"], config["turn_columns"]) != (FEATURES, list(READ), list(TURN_COLUMNS)):
            raise ValueError(f"{directory / FILE}.json was written for other features or topics than this version reads")
        arrays = load_file(str(directory / f"{FILE}.safetensors"))
        reader = cls(C=config["C"], cutoff=config["cutoff"], version=config["version"])
        digest = hashlib.sha256()
        for suffix in ("json", "safetensors"):
            digest.update((directory / f"{FILE}.{suffix}").read_bytes())
        reader.fingerprint = digest.hexdigest()[:12]
        reader.tfidf.idf_ = arrays["idf"].astype(np.float64)
        reader.coef = arrays["coef"].astype(np.float32)
        reader.intercept = arrays["intercept"].astype(np.float32)
        return reader
