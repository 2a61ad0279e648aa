"""Support-chat turns: context, one entry per distinct text, and SPEC's split rule."""

from __future__ import annotations

import hashlib
from itertools import count
from pathlib import Path

import pytest

from churnsignal.nlp.support_chat import (
    CONTEXT_TURNS,
    AuthorReader,
    ChatTurn,
    customer_turns,
    jddc_sample,
    read_jddc,
    read_jddc_stretches,
    stretch_turns,
)


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


def test_a_test_turn_a_shipped_model_learned_from_is_left_out(tmp_path: Path) -> None:
    turns = read_jddc(jddc(tmp_path, [("s", 0, TEST), ("s", 0, TRAIN)]))
    assert {c.text for c in customer_turns(turns)} == {TEST, TRAIN}
    # Text a model trained on only ever keeps test turns out: train turns may share it.
    assert {c.text for c in customer_turns(turns, trained_texts=["前面" + TRAIN + "后面"])} == {TEST, TRAIN}
    # A test turn sharing a window with it would flatter that model, so it is not drawn.
    assert [c.text for c in customer_turns(turns, trained_texts=[TEST[3:20]])] == [TRAIN]


def test_answered_only_keeps_turns_after_an_agents_turn(tmp_path: Path) -> None:
    turns = read_jddc(jddc(tmp_path, [("s", 0, GREETING), ("s", 0, TEST), ("s", 1, "您好"), ("s", 0, TRAIN)]))
    assert [c.text for c in customer_turns(turns, answered_only=True)] == [TRAIN]


def test_the_baseline_samples_markup_is_made_like_the_first_samples(tmp_path: Path) -> None:
    path = tmp_path / "train.enc"
    path.write_text("订单[ORDERID_10005629]没到#E-s[数字x],,亲&nbsp;稍等,[USERID_7]还没,\n短,\n", encoding="utf-8")
    assert read_jddc_stretches(path) == [("订单[订单x]没到", "亲 稍等", "[用户x]还没"), ("短",)]


AGENT = ["有什么问题我可以帮您处理或解决呢?", "请您稍等一下，正在为您核实处理中哦~", "亲爱的客户，还麻烦您提供下订单号",
         "小妹为您看看，您稍等哦", "非常抱歉给您带来不便", "请问还有其他还可以帮到您的吗?"]
CUSTOMER = ["我的快递怎么还没到", "什么时候发货啊", "我要退货", "发票开了吗", "好的谢谢", "能便宜点吗"]


def flagged(rounds: int = 5) -> list[ChatTurn]:
    """A flagged sample where the two registers alternate, as in the 0.1 % sample."""
    return [ChatTurn(f"s{r}", 2 * i + side, author, text) for r in range(rounds)
            for i, pair in enumerate(zip(CUSTOMER, AGENT)) for side, (author, text) in enumerate(
                zip(("customer", "agent"), pair))]


def test_authors_are_read_as_five_alternating_blocks() -> None:
    reader = AuthorReader(flagged())
    stretch = ["我要退货", "能便宜点吗", "亲爱的客户，还麻烦您提供下订单号", "发票开了吗",
               "小妹为您看看，您稍等哦", "请您稍等一下，正在为您核实处理中哦~", "好的谢谢"]
    assert reader.authors(stretch) == ("customer", "customer", "agent", "customer", "agent", "agent", "customer")
    # The blocks hold even where one turn alone would read the other way: a stretch ends on the customer.
    assert reader.authors(stretch[:6] + ["非常抱歉给您带来不便"])[-1] == "customer"
    assert reader.authors(stretch[:4]) is None  # fewer turns than blocks: not a Q A Q A Q stretch


def test_stretches_become_sessions_with_ids_that_name_the_file() -> None:
    reader = AuthorReader(flagged())
    stretch = ("我要退货", "有什么问题我可以帮您处理或解决呢?", "发票开了吗", "小妹为您看看，您稍等哦", "好的谢谢")
    sessions = stretch_turns([stretch, ("太短",)], reader, "b-train-")
    assert len(sessions) == 1
    assert [(t.session, t.index, t.author) for t in sessions[0]][::2] == [
        ("b-train-1", 0, "customer"), ("b-train-1", 2, "customer"), ("b-train-1", 4, "customer")]
    assert [jddc_sample(i) for i in ("b-train-1:4", "b-test-9:2", "0064fdb15c185b2910cdf3bf72849ee3:8")] == [
        "baseline", "baseline", "0.1per"]
