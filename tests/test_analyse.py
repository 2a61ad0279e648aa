"""``churnsignal.nlp.analyse`` with the shipped models, offline."""

from __future__ import annotations

import json

import pytest

from churnsignal.config import ANALYSED_BY_CHARS, OWN_NAMES_CHARS
from churnsignal.nlp import analyse

NEGATIVE = ["快递三天都没到，客服也不回消息，我要退款", "太差了，质量很烂，再也不买了", "送餐慢了一个多小时，饭都凉了，差评"]
POSITIVE = ["非常好，很满意，下次还来", "味道很好，送餐也快，好评", "质量很好，物流很快，推荐购买"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any attempt to reach a model hub fails instead of silently downloading.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_clear_cut_sentences_get_the_right_label() -> None:
    results = analyse(NEGATIVE + POSITIVE)
    assert [r["sentiment"]["label"] for r in results] == ["negative"] * 3 + ["positive"] * 3
    assert all(r["sentiment"]["negative_prob"] > 0.8 for r in results[:3])
    assert all(r["sentiment"]["negative_prob"] < 0.2 for r in results[3:])


# Support chat, written here (not drawn from the gold set): calm inquiries and requests,
# complaints (polite ones and complaints made as questions included) and thanks.
INQUIRIES = ["这个什么时候发货", "发票开了吗", "我想改一下收货地址", "能退差价吗", "请问这款咖啡机什么时候补货？想再买一台送人",
             "好的", "在吗", "[订单x]", "我想取消这个订单，拍错了"]
COMPLAINTS = ["等了一个星期了还没到，到底怎么回事", "皮鞋太宽了，不合脚，我要求退货", "为什么我的退款还没到账，都半个月了",
              "收到的杯子是碎的，你们怎么包装的", "客服一直不回复，太让人失望了"]
THANKS = ["谢谢亲，辛苦了", "好的谢谢，很满意"]


def test_clear_cut_chat_turns_get_the_right_label() -> None:
    results = analyse(INQUIRIES + COMPLAINTS + THANKS)
    labels = [r["sentiment"]["label"] for r in results]
    assert labels == ["neutral"] * len(INQUIRIES) + ["negative"] * len(COMPLAINTS) + ["positive"] * len(THANKS)
    for result in results:
        probs = result["sentiment"]["probs"]
        assert set(probs) == {"negative", "neutral", "positive"} and abs(sum(probs.values()) - 1) < 1e-3
        assert probs["negative"] == result["sentiment"]["negative_prob"]


def test_the_turns_before_a_message_are_read_with_it() -> None:
    follow_up = "还没到"
    context = [("customer", "我的快递三天了怎么还没有发货"), ("agent", "亲，已经在催了，请再耐心等待一下")]
    alone, in_dialogue = analyse([follow_up, follow_up], contexts=[[], context])
    assert alone["sentiment"]["negative_prob"] != in_dialogue["sentiment"]["negative_prob"]
    assert alone["masked_text"] == in_dialogue["masked_text"] == follow_up


def test_a_complaint_is_read_whole() -> None:
    result = analyse([NEGATIVE[0]])[0]
    labels = {e["label"] for e in result["entities"]}
    assert {"LOGISTICS", "SERVICE", "REFUND"} <= labels
    for entity in result["entities"]:
        assert result["masked_text"][entity["start"]:entity["end"]] == entity["text"]
    assert result["negative_word_share"] >= 0.0 and set(result["emotions"]) >= {"anger", "disgust"}
    assert result["model"]["sentiment"]["name"] and result["model"]["entities"]["name"]


def test_personal_data_never_reaches_the_result() -> None:
    text = "我的手机号１３９１２３４５６７８，邮箱wang.lei@example.com，快递一直没到"
    result = analyse([text])[0]
    dumped = json.dumps(result, ensure_ascii=False)
    assert "13912345678" not in dumped and "１３９１２３４５６７８" not in dumped and "wang.lei" not in dumped
    assert "[PHONE]" in result["masked_text"] and "[EMAIL]" in result["masked_text"]
    assert result["pii"] == ["email", "phone"]


def test_traditional_and_full_width_text_is_normalised() -> None:
    result = analyse(["服務態度太差了，ＡＢＣ"])[0]
    assert result["masked_text"] == "服务态度太差了，ABC"
    assert result["sentiment"]["label"] == "negative"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_gets_a_clear_error_not_a_guess(text: str) -> None:
    result = analyse([text, "很好"])
    assert result[0]["sentiment"] is None and "empty" in result[0]["error"]
    assert result[1]["sentiment"]["label"] in {"positive", "neutral"}


def test_very_long_and_non_chinese_text() -> None:
    long_text = "物流太慢了，客服也不理人。" * 8000
    results = analyse([long_text, "The parcel never arrived.", "🙂🙂🙂", "1234567"])
    assert results[0]["truncated"] is True and results[0]["sentiment"]["label"] == "negative"
    assert all(0.0 <= r["sentiment"]["negative_prob"] <= 1.0 for r in results)


def test_a_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="text 1 is int"):
        analyse(["好", 3])  # type: ignore[list-item]


def test_the_platforms_own_names_are_set_once_for_every_reading() -> None:
    from churnsignal.config import Settings
    from churnsignal.fusion.text import analysed_by

    text = "在京东买的，淘宝上便宜多了"
    plain, own = Settings(), Settings(entities={"own_names": [" 京东 "]})
    competitors = [{e["text"] for e in r["entities"] if e["label"] == "COMPETITOR"}
                   for r in (analyse([text], plain)[0], analyse([text], own)[0])]
    assert competitors == [{"京东", "淘宝"}, {"淘宝"}]
    # Messages stored under other names are read again by `qa reanalyse`.
    assert " own 京东" in analysed_by(own) and analysed_by(own).replace(" own 京东", "") == analysed_by(plain)
    # As many own names as allowed, with a cut-off of many digits, still fit events.analysed_by
    # and still tell settings apart.
    many = [f"{n:02d}店铺名字很长啊" for n in range(10)]
    assert len(",".join(many)) <= OWN_NAMES_CHARS
    longest = [analysed_by(Settings(entities={"own_names": names}, sentiment={"neutral_high": 0.3512345}))
               for names in (many, many[:-1] + ["99店铺名字很长啊"])]
    assert max(map(len, longest)) <= ANALYSED_BY_CHARS and longest[0] != longest[1]


def test_an_empty_or_too_long_own_names_list_is_refused() -> None:
    from pydantic import ValidationError

    from churnsignal.config import Settings

    with pytest.raises(ValidationError, match="entities.own_names holds an empty name"):
        Settings(entities={"own_names": ["京东", " "]})
    # They are recorded with every analysed message: a list longer than the column holds is refused.
    assert Settings(entities={"own_names": ["京东商城自营旗舰店"] * 10}).entities.own_names
    with pytest.raises(ValidationError, match="at most 100 characters together"):
        Settings(entities={"own_names": ["京东商城自营旗舰店"] * 11})
