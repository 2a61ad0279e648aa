"""Support-chat turns: context, one entry per distinct text, and SPEC's split rule."""

from __future__ import annotations

import hashlib
from itertools import count
from pathlib import Path

import pytest

from churnsignal.nlp.support_chat import CONTEXT_TURNS, customer_turns, read_jddc


def digit(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[-1]


def text_in(split_digits: str, stem: str) -> str:
    """A text built from ``stem`` whose SHA-1 ends in one of ``split_digits`` (found here, not by the code)."""
    return next(f"{stem}{n}" for n in count() if digit(f"{stem}{n}") in split_digits)


# At least 12 characters each: the overlap rule compares 12-character windows.
TEST = text_in("0", "快递什么时候能送到我家里已经等了好几天")
RESERVED = text_in("1", "发票开了吗")
TRAIN = text_in("23456789abcdef", "你好我想改一下这个订单的收货地址可以吗")
GREETING = text_in("23456789abcdef", "你好")
# Shares a 12-character window with the test turn, so it may not train.
LEAKY = text_in("23456789abcdef", TEST + "谢谢")


def jddc(tmp_path: Path, rows: list[tuple[str, int, str]]) -> Path:
    path = tmp_path / "chat.txt"
    path.write_text("".join(f"{s}\tU\t{a}\t0\t0\tnan\t{t}\n" for s, a, t in rows), encoding="utf-8")
    return path


def test_turns_keep_their_session_context_and_split(tmp_path: Path) -> None:
    rows = [("s1", 0, GREETING), ("s1", 1, "您好"), ("s1", 0, TEST), ("s1", 1, "稍等"), ("s1", 0, TRAIN),
            ("s2", 0, f"  {TRAIN}  "), ("s2", 0, RESERVED), ("s2", 0, LEAKY)]
    turns = read_jddc(jddc(tmp_path, rows))
    assert [(t.session, t.index, t.author) for t in turns[:3]] == [("s1", 0, "customer"), ("s1", 1, "agent"),
                                                                    ("s1", 2, "customer")]
    found = {c.text: c for c in customer_turns(turns)}
    # Reserved turns are never drawn; a train turn overlapping a test turn is dropped;
    # a text written twice is drawn once, where it first appears.
    assert set(found) == {GREETING, TEST, TRAIN}
    assert (found[TEST].split, found[TRAIN].split, found[TRAIN].id) == ("test", "train", "s1:4")
    assert CONTEXT_TURNS == 4
    assert [(t.author, t.text) for t in found[TRAIN].context] == [
        ("customer", GREETING), ("agent", "您好"), ("customer", TEST), ("agent", "稍等")]
    assert found[GREETING].context == ()


def test_other_sources_held_out_text_keeps_a_turn_out_of_train(tmp_path: Path) -> None:
    turns = read_jddc(jddc(tmp_path, [("s", 0, TRAIN)]))
    assert [c.text for c in customer_turns(turns)] == [TRAIN]
    assert customer_turns(turns, held_out_texts=["前面" + TRAIN[:12] + "后面"]) == []


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text("s\tU\t0\t0\t0\tnan\t你好\nbroken line\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_jddc(path)
