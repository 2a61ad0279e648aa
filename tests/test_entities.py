"""Complaint-entity extraction with the shipped pipeline (no corpus needed)."""

from __future__ import annotations

import pytest

from churnsignal.nlp.entities import LABELS, build_pipeline, extract, load


def spans(text: str) -> set[tuple[str, str]]:
    return {(e["text"], e["label"]) for e in extract([text])[0]}


def test_support_complaint_gets_every_topic():
    found = spans("快递三天都没到，客服也不回消息，我要退款")
    assert ("快递", "LOGISTICS") in found
    assert ("三天", "DURATION") in found
    assert ("不回消息", "SERVICE") in found
    assert ("退款", "REFUND") in found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("质量太差了，用了一个月就坏了", ("质量太差", "QUALITY")),
        ("买回来的苹果一点都不新鲜", ("不新鲜", "QUALITY")),
        ("送餐太慢了，饭都凉了", ("送餐太慢", "LOGISTICS")),
        ("客服态度非常差", ("客服态度非常差", "SERVICE")),
        ("申请退货一个星期了还没处理", ("退货", "REFUND")),
        ("东西不错就是价格偏贵", ("价格偏贵", "PRICE")),
        # Support chat says what went wrong in words reviews rarely use.
        ("怎么还没到", ("没到", "LOGISTICS")),
        ("你好  东西没收到", ("没收到", "LOGISTICS")),
        ("什么时候能到", ("什么时候能到", "LOGISTICS")),
        ("有显示没货", ("没货", "LOGISTICS")),
        ("洗衣机漏电", ("漏电", "QUALITY")),
        ("显示无信号", ("无信号", "QUALITY")),
        ("你是机器人啊", ("机器人", "SERVICE")),
        ("退的钱怎么还没到账", ("没到账", "REFUND")),
        ("在不在啊", ("在不在", "SERVICE")),
        ("我都说了多少遍了", ("说了多少遍", "SERVICE")),
        ("闪屏比较严重", ("闪屏", "QUALITY")),
        ("同样的东西在京东便宜多了", ("京东", "COMPETITOR")),
        ("订单号：2018010112345 到现在还没发货", ("订单号：2018010112345", "ORDER_ID")),
        ("一份炒饭要了38元", ("38元", "MONEY")),
        ("花了三十块钱就吃到这个", ("三十块钱", "MONEY")),
        ("等了一个多小时才送到", ("一个多小时", "DURATION")),
    ],
)
def test_each_label_in_a_clear_sentence(text, expected):
    assert expected in spans(text)


def test_offsets_index_the_given_text():
    texts = ["  快递 😡 三天都没到\n客服不回消息，¥199 白花了", "等了两个小时，送餐员态度很差，我要退钱！"]
    for text, entities in zip(texts, extract(texts)):
        assert entities
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"]
            assert e["label"] in LABELS


def test_empty_inputs():
    assert extract([]) == []
    assert extract([""]) == [[]]


def test_batches_keep_order():
    a, b = "物流太慢了", "价格太贵了"
    assert extract([a, b], batch_size=1) == [extract([a])[0], extract([b])[0]]


def test_long_text_does_not_crash():
    text = "送餐太慢了，等了两个小时，饭都凉了，客服也不理人。" * 900
    assert len(text) > 20_000
    entities = extract([text])[0]
    assert len(entities) >= 800
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)


def test_non_chinese_text_returns_a_list():
    result = extract(["The parcel arrived late and the screen is cracked. 12345", "🙂🙂🙂", "1234"])
    assert len(result) == 3
    assert all(isinstance(entities, list) for entities in result)


def test_shipped_pipeline_is_cached_and_ordered():
    nlp = load()
    assert load() is nlp
    assert nlp.pipe_names == ["ner", "entity_ruler"]
    assert set(nlp.get_pipe("ner").labels) == set(LABELS)


def test_rules_alone_work_from_the_committed_patterns():
    nlp = build_pipeline()
    with nlp.select_pipes(enable=["entity_ruler"]):
        doc = nlp("物流很快，但是质量太差了")
    assert {(e.text, e.label_) for e in doc.ents} == {("物流很快", "LOGISTICS"), ("质量太差", "QUALITY")}


def test_missing_model_dir_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path)


def test_the_platforms_own_names_are_no_competitor_mentions():
    text = "京东快递太慢了，淘宝上便宜多了"
    assert ("京东", "COMPETITOR") in spans(text)
    kept = {(e["text"], e["label"]) for e in extract([text], own_names=["京东"])[0]}
    assert ("京东", "COMPETITOR") not in kept
    assert ("淘宝", "COMPETITOR") in kept and "LOGISTICS" in {label for _, label in kept}
    # A name is found inside a longer mention of it.
    assert extract(["在京东商城买的"], own_names=["京东"]) == [[]]
