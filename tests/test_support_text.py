"""Customer-service questions and posts under SPEC's split rule (nlp/support_text.py)."""

from __future__ import annotations

import hashlib
from itertools import count

from churnsignal.nlp.corpus import split_of
from churnsignal.nlp.support_text import held_out_of, train_texts


def text_in(split_digits: str, stem: str) -> str:
    """A text built from ``stem`` whose SHA-1 ends in one of ``split_digits`` (found here, not by the code)."""
    return next(f"{stem}{n}" for n in count()
                if hashlib.sha1(f"{stem}{n}".encode()).hexdigest()[-1] in split_digits)


TEST = text_in("0", "花呗怎么还款才不会影响信用记录呢")
RESERVED = text_in("1", "借呗的额度为什么突然降低了这么多")
TRAIN = text_in("23456789abcdef", "怎么更改花呗绑定的手机号码")
LEAKY = text_in("23456789abcdef", "请问" + TEST)


def test_only_train_text_without_overlap_is_kept() -> None:
    kept = train_texts([TEST, RESERVED, f" {TRAIN} ", TRAIN, LEAKY, "   "])
    assert kept == [TRAIN]
    assert all(split_of(t) == "train" for t in kept)


def test_held_out_text_of_another_source_filters_too() -> None:
    other = text_in("0", "么更改花呗绑定的手机号码要多久")  # shares 12 characters with TRAIN
    assert train_texts([TRAIN], held_out_texts=[other]) == []


def test_held_out_of_lists_test_and_reserved_text_only() -> None:
    assert sorted(held_out_of([TEST, RESERVED, TRAIN, TEST])) == sorted([TEST, RESERVED])
