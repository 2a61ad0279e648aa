"""The support-chat recipe end to end on tiny data: every stage runs, resumes, and ships a
directory the product loads (``churnsignal train chat-sentiment``)."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_sentiment_model import tiny_bert
from transformers import BertForSequenceClassification

from churnsignal.cli import main

from churnsignal.nlp.corpus import split_of
from churnsignal.nlp.ngram import NgramSentiment
from churnsignal.nlp.sentiment import ClassBlend, SentimentModel
from churnsignal.nlp.support_chat import baseline_held_out
from churnsignal.nlp.training import chat
from churnsignal.nlp.training.chat import ChatRecipe, assemble, train_chat_sentiment
from churnsignal.nlp.training.chat import train_gold as every_train_gold

# Real chat gold turns, but few: the recipe's n-grams (cross-fitted) and blends run in seconds.
TINY_GOLD = 2400

QUESTIONS = ["花呗怎么还款", "借呗额度怎么提升", "为什么我的花呗不能用了", "怎么更改绑定的手机号", "微粒贷可以提前还吗"]
TURNS = ["你好，这个什么时候发货", "快递三天了还没到", "好的谢谢", "我想改一下收货地址", "东西坏了怎么办"]


def support_text(folder: Path) -> Path:
    """The six support-text files in their published layouts, a few rows each."""
    folder.mkdir()
    for name in ("atec_nlp_sim_train.csv.gz", "atec_nlp_sim_train_add.csv.gz"):
        with gzip.open(folder / name, "wt", encoding="utf-8") as handle:
            handle.write("id\tquery0\tquery1\tlabel\n")
            handle.writelines(f"{i}\t{q}\t{q}吗\t0\n" for i, q in enumerate(QUESTIONS))
    for name in ("bq_dev.csv", "bq_test.csv"):
        with open(folder / name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence1", "sentence2", "label"])
            writer.writerows([q + "呢", q + "啊", 0] for q in QUESTIONS)
    for name in ("crosswoz_val.json.zip", "crosswoz_test.json.zip"):
        dialogues = {str(i): {"messages": [{"role": "usr", "content": f"请推荐一家餐馆{i}"},
                                           {"role": "sys", "content": "好的"}]} for i in range(5)}
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr(name.replace(".zip", ""), json.dumps(dialogues, ensure_ascii=False))
    sentences = "".join(f'<sentence id="{i}" opinionated="N">{t}</sentence>' for i, t in enumerate(TURNS))
    for name in ("nlpcc2014_emotion_test_labelled.xml", "nlpcc2014_expression_train.xml"):
        (folder / name).write_text(f"<TestData><weibo id='1'>{sentences}</weibo></TestData>", encoding="utf-8")
    with open(folder / "bdci_car_2018_train.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["content_id", "content", "subject", "sentiment_value", "sentiment_word"])
        writer.writerows([i, f"这车的油耗还可以{i}", "油耗", 0, ""] for i in range(5))
    (folder / "jddc_chat_0.1per.txt").write_text(
        "".join(f"s1\tU\t{i % 2}\t0\t0\tnan\t{t}\n" for i, t in enumerate(TURNS)), encoding="utf-8")
    return folder


@pytest.fixture(scope="module", autouse=True)
def tiny_gold() -> Iterator[list[dict]]:
    """The first ``TINY_GOLD`` chat gold train rows stand in for the 25,000."""
    rows = every_train_gold()[:TINY_GOLD]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat, "train_gold", lambda: rows)
        yield rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, ChatRecipe]:
    root = tmp_path_factory.mktemp("chat")
    base, support = tiny_bert(root / "base", {0: "positive", 1: "negative"}), support_text(root / "support")
    recipe = ChatRecipe(mlm_steps=2, mlm_batch=4, mlm_block=32, ft_reviews=100, ft_chat_repeats=1,
                        ft_question_repeats=1, ft_travel=5, ft_epochs=0.03, ft_batch=64, ngram_dev_folds=2,
                        checkpoint_minutes=0)
    train_chat_sentiment(root / "work", base, None, support, recipe)
    return root / "work", base, support, recipe


def test_every_stage_writes_its_output(trained: tuple[Path, Path, Path, ChatRecipe]) -> None:
    work, *_ = trained
    assert (work / "adapted" / "model.safetensors").is_file()
    assert json.loads((work / "adapted" / "support_text.json").read_text())["texts"]["atec"] > 0
    assert (work / "chat-sentiment" / "model.safetensors").is_file()
    assert (work / "ngram" / "ngram.json").is_file()
    assert (work / "chat-ngram" / "chat_ngram.json").is_file()
    assert (work / "context-ngram" / "context_ngram.json").is_file()
    assert (work / "review" / "ngram" / "ngram.json").is_file()
    # Each cross-fitting fold has n-grams that left its dev turns out.
    for fold in ("0", "1"):
        assert (work / "folds-2" / fold / "ngram" / "ngram.json").is_file()
        assert (work / "folds-2" / fold / "chat-ngram" / "chat_ngram.json").is_file()
        assert (work / "folds-2" / fold / "context-ngram" / "context_ngram.json").is_file()


def test_the_ngrams_learn_from_every_dev_turn_but_their_folds() -> None:
    recipe = ChatRecipe(ngram_dev_folds=2)
    texts = [e.text for e in chat.gold_examples(chat.train_gold()[:400])]
    dev, fit = [t for t in texts if chat.is_chat_dev(t)], [t for t in texts if not chat.is_chat_dev(t)]
    assert dev and fit
    assert all(chat.ngram_learns_from(t, recipe, leave_out) for t in fit for leave_out in (None, 0, 1))
    assert all(chat.ngram_learns_from(t, recipe, None) for t in dev)
    for t in dev:
        fold = chat.dev_fold(t, 2)
        assert not chat.ngram_learns_from(t, recipe, fold) and chat.ngram_learns_from(t, recipe, 1 - fold)
    assert {chat.dev_fold(t, 2) for t in dev} == {0, 1}
    # Without cross-fitting the n-grams never see dev, as up to 0.2.5.
    assert not any(chat.ngram_learns_from(t, replace(recipe, ngram_dev_folds=0), None) for t in dev)


def test_the_blend_reads_each_dev_turn_with_ngrams_that_never_saw_it(trained, tmp_path: Path, monkeypatch) -> None:
    work, base, support, recipe = trained
    assemble(work, base, None, support, tmp_path / "out", recipe, name="tiny", version="t")
    model, dev = SentimentModel(tmp_path / "out"), chat.dev_examples(None)
    folds = chat.fold_readers(model, work, 2)
    assert folds[0].model is model.model and folds[0].chat_ngram is not model.chat_ngram
    read = []
    columns = chat.blend_columns
    monkeypatch.setattr(chat, "blend_columns", lambda reader, examples: read.append((reader, examples)) or columns(reader, examples))
    blend, figures = chat.fit_blend(model, dev, folds)
    (first, reviews), *by_fold = read
    assert first is model and reviews and not any(e.source == "chat" for e in reviews)
    assert [reader for reader, _ in by_fold] == folds
    for k, (_, turns) in enumerate(by_fold):
        assert turns and all(e.source == "chat" and chat.dev_fold(e.text, 2) == k for e in turns)
    assert sum(len(turns) for _, turns in by_fold) == figures["chat in dialogue"]["texts"] == sum(e.source == "chat" for e in dev)
    assert blend.bert_pair
    with pytest.raises(FileNotFoundError, match="3 folds"):
        chat.fold_readers(model, work, 3)


def test_the_shipped_directory_loads_with_three_calibrated_classes(trained, tmp_path: Path) -> None:
    work, base, support, recipe = trained
    card = assemble(work, base, None, support, tmp_path / "out", recipe, name="tiny", version="t")
    assert card["classes"] == ["negative", "neutral", "positive"] and card["dev"]["chat in dialogue"]["texts"] > 0
    assert card["ngram_dev_folds"] == 2
    model = SentimentModel(tmp_path / "out")
    assert isinstance(model.blend, ClassBlend) and model.has_neutral and model.reads_context and model.blend.chat_ngram
    assert model.blend.context_ngram and model.context_ngram is not None and model.blend.bert_pair
    assert model.reads_reviews and card["dev"]["reviews read as reviews"]["texts"] > 0
    probs = model.probabilities(["这个什么时候发货", "太差了"], [[("customer", "你好")], []], ["chat", "review"])
    np.testing.assert_allclose(sum(probs.values()), 1.0, atol=1e-5)
    # The review n-gram is the base recipe's n-gram half on the reviews alone.
    review_only = NgramSentiment.load(work / "review" / "ngram")
    np.testing.assert_allclose(model.review_ngram.decision_function(["太差了"]), review_only.decision_function(["太差了"]))


def test_a_finished_run_is_not_trained_again(trained) -> None:
    work, base, support, recipe = trained
    before = (work / "chat-sentiment" / "model.safetensors").stat().st_mtime_ns
    train_chat_sentiment(work, base, None, support, recipe)
    assert (work / "chat-sentiment" / "model.safetensors").stat().st_mtime_ns == before


def test_a_folder_with_the_finished_stages_only_needs_the_blend(trained, tmp_path: Path, monkeypatch) -> None:
    """How 0.2.1 was made from 0.2.0: its BERT and n-gram copied into a folder, the blend fitted again."""
    work, base, support, recipe = trained
    again = tmp_path / "again"
    for stage in ("chat-sentiment", "ngram", "chat-ngram", "context-ngram", "review", "folds-2"):
        shutil.copytree(work / stage, again / stage)
    monkeypatch.setattr(chat, "adapt", lambda *args: pytest.fail("masked-LM ran again"))
    monkeypatch.setattr(chat, "finetune", lambda *args: pytest.fail("fine-tuning ran again"))
    monkeypatch.setattr(NgramSentiment, "fit", lambda *args: pytest.fail("an n-gram was fitted again"))
    assert train_chat_sentiment(again, base, None, support, recipe) == again / "chat-sentiment"
    card = assemble(again, base, None, support, tmp_path / "out", recipe, name="tiny", version="t2")
    assert SentimentModel(tmp_path / "out").reads_context and card["version"] == "t2"


def test_continuing_fine_tunes_the_given_model_head_included(trained, tmp_path: Path, monkeypatch) -> None:
    """How 0.2.5 was made: 0.2.4's BERT and head fine-tuned further, no masked-LM, no new head."""
    work, base, support, recipe = trained
    start = tmp_path / "start"
    assemble(work, base, None, support, start, recipe, name="tiny", version="t")
    monkeypatch.setattr(chat, "adapt", lambda *args: pytest.fail("masked-LM ran"))
    continued = replace(ChatRecipe.continuing(start, epochs=0.03), ft_reviews=100, ft_travel=5, ft_batch=64,
                        ngram_dev_folds=0, checkpoint_minutes=0)
    tuned = train_chat_sentiment(tmp_path / "work", start, None, support, continued)
    before = BertForSequenceClassification.from_pretrained(start).classifier.weight.float()
    after = BertForSequenceClassification.from_pretrained(tuned).classifier.weight
    # A few AdamW steps at lr 5e-5 move each weight by about 5e-5 each; a new head would be drawn afresh.
    assert not torch.equal(before, after) and torch.allclose(before, after, atol=1e-3)
    assert json.loads((tuned / "recipe.json").read_text())["ft_from"] == str(start)


def test_the_cli_refuses_a_continued_run_it_cannot_do(tmp_path: Path) -> None:
    model, support = tmp_path / "model", tmp_path / "support"
    model.mkdir(), support.mkdir()
    command = ["train", "chat-sentiment", "--support-dir", str(support), "--continue-from", str(model)]
    with_base = CliRunner().invoke(main, [*command, "--base", str(model), "--out", str(tmp_path / "out")])
    onto_itself = CliRunner().invoke(main, [*command, "--out", str(model)])
    assert with_base.exit_code == onto_itself.exit_code == 2
    assert "exclude each other" in with_base.output and "must not be --out" in onto_itself.output
    assert model.is_dir()


def test_no_train_text_shares_a_window_with_the_baseline_samples_held_out_turns() -> None:
    """The first chat gold rows and the reviews were split before the JDDC baseline sample
    came; the recipe applies the overlap rule to them against it."""
    held_out = baseline_held_out()
    assert held_out and all(split_of(t) != "train" for t in held_out)
    long_one = next(t for t in held_out if len(t) >= 20)
    assert not chat.clear_of_baseline("前面" + long_one[2:16] + "后面") and chat.clear_of_baseline("好的谢谢")
    rows, kept = chat.read_gold("train"), every_train_gold()
    assert 0 < len(rows) - len(kept) < len(rows) / 100 and all(chat.clear_of_baseline(r["text"]) for r in kept)
