"""Customer-service text other than the JDDC chat: questions and posts, under SPEC's split rule.

The files in ``../shared/data/support-text/`` (README there) carry no sentiment labels for
support chat, but they are the domain: Alipay/WeBank customer-service questions (ATEC, BQ),
travel inquiries (CrossWOZ user turns), Weibo sentences and car-forum posts. They feed the
sentiment model's masked-LM adaptation, and the ATEC/BQ/CrossWOZ questions are the calm
inquiries it learns as neutral. Every text goes through the same rule as the reviews: split
by :func:`churnsignal.nlp.corpus.split_of`, reserved never used, and train text sharing a
12-character window with any test or reserved text dropped.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from churnsignal.nlp.corpus import split_of, windows

_SENTENCE = re.compile(r"<sentence[^>]*>(.*?)</sentence>", re.S)


def read_atec(folder: Path) -> Iterator[str]:
    for name in ("atec_nlp_sim_train.csv.gz", "atec_nlp_sim_train_add.csv.gz"):
        with gzip.open(folder / name, "rt", encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) == 4 and row[0] != "id":
                    yield from (row[1], row[2])


def read_bq(folder: Path) -> Iterator[str]:
    for name in ("bq_dev.csv", "bq_test.csv"):
        with open(folder / name, encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                yield from (row["sentence1"], row["sentence2"])


def read_crosswoz(folder: Path, roles: tuple[str, ...] = ("usr",)) -> Iterator[str]:
    for name in ("crosswoz_val.json.zip", "crosswoz_test.json.zip"):
        with zipfile.ZipFile(folder / name) as archive:
            dialogues = json.load(archive.open(archive.namelist()[0]))
        for dialogue in dialogues.values():
            yield from (m["content"] for m in dialogue["messages"] if m["role"] in roles)


def read_posts(folder: Path) -> Iterator[str]:
    """Weibo sentences (NLPCC 2014) and car-forum posts (BDCI 2018): unlabelled prose here."""
    for name in ("nlpcc2014_emotion_test_labelled.xml", "nlpcc2014_expression_train.xml"):
        yield from _SENTENCE.findall((folder / name).read_text(encoding="utf-8"))
    with open(folder / "bdci_car_2018_train.csv", encoding="utf-8", newline="") as handle:
        yield from (row["content"] for row in csv.DictReader(handle))


def read_jddc_text(folder: Path) -> Iterator[str]:
    """Every JDDC turn, customers' and agents' (for masked-LM: agents write the domain too)."""
    with open(folder / "jddc_chat_0.1per.txt", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) == 7:
                yield row[6]


def train_texts(texts: Iterable[str], held_out_texts: Iterable[str] = ()) -> list[str]:
    """Distinct stripped train-split texts not sharing a 12-character window with any
    test or reserved text among ``texts`` or in ``held_out_texts``."""
    distinct = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    held_out = {w for text in held_out_texts for w in windows(text)}
    held_out |= {w for text in distinct if split_of(text) != "train" for w in windows(text)}
    return [t for t in distinct if split_of(t) == "train" and not any(w in held_out for w in windows(t))]


def held_out_of(texts: Iterable[str]) -> list[str]:
    """The test and reserved texts among ``texts`` (only ever used by the overlap filter)."""
    return [t for t in dict.fromkeys(x.strip() for x in texts) if t and split_of(t) != "train"]


def support_corpus(folder: Path, held_out_texts: Iterable[str] = ()) -> dict[str, list[str]]:
    """Train-split text per source: ``atec``, ``bq``, ``crosswoz`` (customer questions),
    ``posts`` and ``jddc`` (all turns). The overlap filter runs across every source."""
    folder = Path(folder)
    raw = {"atec": list(read_atec(folder)), "bq": list(read_bq(folder)), "crosswoz": list(read_crosswoz(folder)),
           "posts": list(read_posts(folder)), "jddc": list(read_jddc_text(folder))}
    held_out = [*held_out_texts, *(t for texts in raw.values() for t in held_out_of(texts))]
    return {source: train_texts(texts, held_out) for source, texts in raw.items()}
