"""Topics read from the dialogue: a complaint that names no topic takes the ones its turns before make clear.

The shipped reader (``nlp/models/entities/dialogue_topics.*``) is read through ``analyse``
as the worker reads; its training is run on the gold set's development turns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from churnsignal.cli import main
from churnsignal.config import Settings
from churnsignal.fusion.text import analysed_by
from churnsignal.nlp.analysis import analyse
from churnsignal.nlp.dialogue_topics import READ, DialogueTopics
from churnsignal.nlp.entities import load
from churnsignal.nlp.training.dialogue_topics import CUTOFFS, PRECISION, choose_cutoff, read_gold, train_dialogue_topics

GOLD = Path(__file__).resolve().parents[1] / "bench" / "data" / "chat_topics.jsonl"
PARCEL = [("customer", "我的快递三天了怎么还没有发货，到底怎么回事"), ("agent", "亲，非常抱歉，已经帮您催促仓库了")]
WAITING = [("customer", "你好，我想问下退款的事"), ("agent", "您好，请稍等"), ("customer", "在吗")]


def read(text: str, before: list[tuple[str, str]], settings: Settings | None = None) -> dict:
    return analyse([text], settings, [before])[0]


@pytest.mark.parametrize(("text", "before", "topic"), [("怎么还没好", PARCEL, "LOGISTICS"),
                                                        ("还要等多久啊，太慢了", PARCEL, "LOGISTICS"),
                                                        ("人呢", WAITING, "SERVICE")])
def test_a_complaint_that_names_nothing_takes_the_topic_its_dialogue_makes_clear(text, before, topic) -> None:
    result = read(text, before)
    assert result["sentiment"]["label"] == "negative" and not result["entities"]
    assert result["dialogue_topics"] == [topic]
    # Alone, the same words say nothing of what went wrong.
    assert analyse([text])[0]["dialogue_topics"] == []


def test_what_a_complaint_names_itself_is_not_overruled_by_its_dialogue() -> None:
    result = read("快递太慢了", [("customer", "手机屏幕有坏点"), ("agent", "请您提供下订单号")])
    assert {e["label"] for e in result["entities"]} == {"LOGISTICS"} and result["dialogue_topics"] == []


def test_calm_turns_are_no_complaints_and_take_no_topic() -> None:
    result = read("好的，谢谢", PARCEL)
    assert result["sentiment"]["label"] != "negative" and result["dialogue_topics"] == []


def test_reading_the_dialogue_for_topics_can_be_switched_off() -> None:
    off = Settings(entities={"dialogue_topics": False})
    assert read("怎么还没好", PARCEL, off)["dialogue_topics"] == []
    # Messages read without it are read again by `qa reanalyse` when it is switched on, and
    # so are they when complaints start elsewhere (it reads complaints only).
    assert " topics " not in analysed_by(off) and analysed_by(off) != analysed_by(Settings())
    assert analysed_by(Settings(sentiment={"neutral_high": 0.5})) != analysed_by(Settings())


def test_an_entity_pipeline_without_a_reader_reads_topics_from_words_only(tmp_path: Path) -> None:
    from churnsignal.nlp.entities import SHIPPED_MODEL

    pipeline = tmp_path / "entities"
    shutil.copytree(Path(str(SHIPPED_MODEL)), pipeline, ignore=shutil.ignore_patterns("dialogue_topics.*"))
    settings = Settings(entities={"model_dir": str(pipeline)})
    assert read("怎么还没好", PARCEL, settings)["dialogue_topics"] == []
    assert " topics " not in analysed_by(settings) and " topics " in analysed_by(Settings())


def test_a_saved_reader_reads_as_it_was_fitted_and_refuses_other_features(tmp_path: Path) -> None:
    texts = ["快递怎么还没到", "还没发货", "东西坏了", "质量太差", "客服不理人", "人呢"] * 3
    turns = [[("customer", ("LOGISTICS",))], [], [("agent", ())], [], [("customer", ("SERVICE",))], []] * 3
    topics = [["LOGISTICS"], ["LOGISTICS"], ["QUALITY"], ["QUALITY"], ["SERVICE"], ["SERVICE"]] * 3
    fitted = DialogueTopics(C=10.0, cutoff=0.4, version="t").fit(texts, turns, topics)
    fitted.save(tmp_path)
    loaded = DialogueTopics.load(tmp_path)
    assert loaded.info() == {"version": "t", "fingerprint": loaded.fingerprint, "cutoff": 0.4}
    # Another reader saved under the same version is told apart (events.analysed_by, cache keys).
    DialogueTopics(C=1.0, cutoff=0.4, version="t").fit(texts, turns, topics).save(tmp_path / "other")
    assert len(loaded.fingerprint) == 12 and DialogueTopics.load(tmp_path / "other").fingerprint != loaded.fingerprint
    assert np.allclose(loaded.probabilities(texts, turns), fitted.probabilities(texts, turns), atol=0.01)
    assert loaded.read(texts[:3], turns[:3]) == [("LOGISTICS",), ("LOGISTICS",), ("QUALITY",)]
    assert "COMPETITOR" not in READ
    config = json.loads((tmp_path / "dialogue_topics.json").read_text())
    (tmp_path / "dialogue_topics.json").write_text(json.dumps(config | {"features": 1024}))
    with pytest.raises(ValueError, match="other features"):
        DialogueTopics.load(tmp_path)


def test_the_cutoff_is_the_lowest_at_which_added_topics_are_right_often_enough() -> None:
    # Four complaints naming nothing, with turns before; the reader is sure of two, unsure of two.
    probs = np.zeros((4, len(READ)), dtype=np.float32)
    logistics = READ.index("LOGISTICS")
    probs[:, logistics] = [0.95, 0.92, 0.50, 0.42]
    gold = [{"LOGISTICS"}, {"LOGISTICS"}, {"LOGISTICS"}, {"REFUND"}]
    turns = [[("customer", ())]] * 4
    cutoff, table = choose_cutoff(probs, [()] * 4, turns, gold)
    # At 0.40 three of four added topics are right (0.75); below, the same.
    assert cutoff == 0.30 and PRECISION == 0.75
    gold[2] = {"REFUND"}
    cutoff, table = choose_cutoff(probs, [()] * 4, turns, gold)
    # Now only from 0.55 (two of two) are they right often enough.
    assert cutoff == 0.55 and [row["added"] for row in table if row["cutoff"] in (0.3, 0.45, 0.55)] == [4, 3, 2]
    # A complaint that names its topic, or has no turns before, is not asked.
    assert choose_cutoff(probs, [("QUALITY",)] * 4, turns, gold)[0] is None
    assert choose_cutoff(probs, [()] * 4, [[]] * 4, gold)[0] is None


def test_training_on_the_development_complaints_beats_their_words_alone(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    rows = [row for row in read_gold(GOLD) if row.get("round", 1) == 1]
    gold.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    report = train_dialogue_topics(gold, tmp_path / "out", load(), ["京东"], C=128.0, version="t")
    assert report["complaints"] == len(rows) >= 400 and report["cutoff"] in CUTOFFS
    validated = report["cross_validated"]
    assert validated["with_the_dialogue"]["f1"] > validated["named_only"]["f1"] + 0.05
    assert validated["with_the_dialogue"]["with_a_topic_named"] > validated["named_only"]["with_a_topic_named"]
    assert DialogueTopics.load(tmp_path / "out").cutoff == report["cutoff"]


def test_training_without_train_complaints_says_so(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"split": "test", "text": "怎么还没到", "context": [], "topics": []}) + "\n")
    result = CliRunner().invoke(main, ["train", "dialogue-topics", "--gold", str(gold), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no train-split complaints" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("line", "says"), [
    ("not json", "line 2: not JSON"),
    (json.dumps({"text": "还没到", "context": ["客户说: 你好"], "topics": []}), 'line 2: "context" must be'),
    (json.dumps({"text": "还没到", "context": [], "topics": ["DELIVERY"]}), 'line 2: "topics" must be'),
    (json.dumps(["还没到"]), 'line 2: expected an object with a string "text"'),
])
def test_a_bad_line_of_labelled_complaints_is_named_and_nothing_is_trained(tmp_path: Path, line, says) -> None:
    gold = tmp_path / "gold.jsonl"
    good = {"text": "怎么还没到", "context": ["customer: 我的快递呢", "agent: 请稍等"], "topics": ["LOGISTICS"]}
    gold.write_text(json.dumps(good, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["train", "dialogue-topics", "--gold", str(gold), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_labelled_complaints_without_a_split_are_train_ones(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    rows = [{"text": "怎么还没到", "context": ["customer: 我的快递呢"], "topics": ["LOGISTICS"]},
            {"text": "人呢", "split": "test", "topics": ["SERVICE"]}]
    gold.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert [row["text"] for row in read_gold(gold)] == ["怎么还没到"]
    assert [row["text"] for row in read_gold(gold, "test")] == ["人呢"]
