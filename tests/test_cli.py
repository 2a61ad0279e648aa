"""``churnsignal analyse`` on the command line: output shape and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.nlp.analysis import analyse


@pytest.fixture(autouse=True)
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def invoke(*args: str, input: bytes | str | None = None, **env: str):
    return CliRunner().invoke(main, ["analyse", *args], input=input, env=env or None)


def test_one_text_prints_one_json_object() -> None:
    result = invoke("快递三天都没到，客服也不回消息，我要退款")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["sentiment"]["label"] == "negative"


def test_jsonl_keeps_order_and_reports_each_bad_line() -> None:
    lines = [
        json.dumps({"id": "a", "text": "太差了，再也不买了"}, ensure_ascii=False).encode(),
        b'{"id": "b", "text": "\xff\xfe broken"}',
        b"not json at all",
        json.dumps({"id": "d"}).encode(),
        json.dumps({"id": "e", "text": ""}).encode(),
        json.dumps({"id": "f", "text": "很满意" * 40_000}, ensure_ascii=False).encode(),
        json.dumps({"text": "The parcel never arrived."}).encode(),
        b"",
    ]
    result = invoke("--jsonl", input=b"\n".join(lines) + b"\n")
    assert result.exit_code == 0
    assert "Traceback" not in result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines)
    assert out[0]["id"] == "a" and out[0]["sentiment"]["label"] == "negative"
    assert out[1] == {"line": 2, "error": "invalid UTF-8 at byte 21"}
    assert out[2]["line"] == 3 and out[2]["error"].startswith("not JSON")
    assert out[3]["line"] == 4 and "text" in out[3]["error"]
    assert out[4]["id"] == "e" and "empty" in out[4]["error"]
    assert out[5]["id"] == "f" and out[5]["truncated"] is True
    assert "id" not in out[6] and out[6]["sentiment"] is not None
    assert out[7]["line"] == 8
    assert "5 line(s) could not be analysed" in result.stderr


def test_jsonl_lines_may_carry_the_turns_before_them() -> None:
    context = [{"author": "customer", "text": "我的快递三天了怎么还没有发货"}, {"author": "agent", "text": "亲，稍等"}]
    lines = [{"id": "a", "text": "还没到", "context": context}, {"id": "b", "text": "还没到"},
             {"id": "c", "text": "还没到", "context": [{"author": "customer"}]}, {"id": "d", "text": "还没到", "context": "早上问过"},
             {"id": "e", "text": "还没到", "context": []}]
    result = invoke("--jsonl", input="".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    out = [json.loads(line) for line in result.stdout.splitlines()]
    negative = [o["sentiment"]["negative_prob"] if o.get("sentiment") else None for o in out]
    # Read in its dialogue it moves; without "context" or with an empty one it is read alone.
    assert negative[0] != negative[1]
    # (int8 activations are quantised per batch: a text read in another batch moves a little)
    assert negative[1] == pytest.approx(negative[4], abs=0.005)
    assert negative[1] == pytest.approx(analyse(["还没到"])[0]["sentiment"]["negative_prob"], abs=0.005)
    assert [o.get("line") for o in out] == [None, None, 3, 4, None]
    assert all("context" in o["error"] for o in out[2:4])


def test_a_review_is_read_as_a_review() -> None:
    text = "位置不错，服务一般，下次可能不会再来了"
    lines = [{"id": "r", "text": text, "channel": "review"}, {"id": "c", "text": text},
             {"id": "t", "text": text, "channel": "ticket"}, {"id": "x", "text": text, "channel": "email"}]
    result = invoke("--jsonl", input="".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    out = [json.loads(line) for line in result.stdout.splitlines()]
    review, chat = (r["sentiment"]["negative_prob"] for r in analyse([text, text], channels=["review", "chat"]))
    # (int8 activations are quantised per batch: a text read in another batch moves a little)
    assert out[0]["sentiment"]["negative_prob"] == pytest.approx(review, abs=0.005)
    assert out[1]["sentiment"]["negative_prob"] == out[2]["sentiment"]["negative_prob"] == pytest.approx(chat, abs=0.005)
    assert abs(review - chat) > 0.01
    assert out[3]["line"] == 4 and "channel" in out[3]["error"] and result.exit_code == 0
    one = invoke("--channel", "review", text)
    assert json.loads(one.stdout)["sentiment"]["negative_prob"] == pytest.approx(review, abs=0.005)
    # --channel is the default of --jsonl lines that do not name one.
    lines = invoke("--jsonl", "--channel", "review", input=json.dumps({"text": text}, ensure_ascii=False)
                   + "\n" + json.dumps({"text": text, "channel": "chat"}, ensure_ascii=False) + "\n")
    assert [json.loads(line)["sentiment"]["negative_prob"] for line in lines.stdout.splitlines()] == pytest.approx(
        [review, chat], abs=0.005)
    unknown = invoke("--channel", "email", text)
    assert unknown.exit_code == 2 and "--channel" in unknown.output


def test_table_format_is_one_readable_line_per_message() -> None:
    result = invoke("--jsonl", "--format", "table", input='{"id": "t1", "text": "等了两个小时，饭都凉了"}\n')
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    assert line.startswith("t1") and "negative" in line and "饭都凉了" in line


def test_jsonl_with_turns_before_gives_a_wordless_complaint_its_dialogues_topic() -> None:
    line = {"id": "t2", "text": "怎么还没好", "context": [{"author": "customer", "text": "我的快递三天了怎么还没有发货"},
                                                         {"author": "agent", "text": "已经帮您催促仓库了"}]}
    given = json.dumps(line, ensure_ascii=False) + "\n"
    [result] = [json.loads(out) for out in invoke("--jsonl", input=given).stdout.splitlines()]
    assert result["entities"] == [] and result["dialogue_topics"] == ["LOGISTICS"]
    [row] = invoke("--jsonl", "--format", "table", input=given).stdout.splitlines()
    assert row.startswith("t2") and row.endswith("[LOGISTICS from the turns before]")


@pytest.mark.parametrize("args", [(), ("some text", "--jsonl")])
def test_text_or_jsonl_not_both_nor_neither(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and "either one TEXT or --jsonl" in result.output


def test_empty_text_argument_is_a_usage_error() -> None:
    result = invoke("  ")
    assert result.exit_code == 2 and "empty" in result.output


def test_bad_configuration_is_a_message_not_a_traceback() -> None:
    result = invoke("好", CHURNSIGNAL_SENTIMENT__NEUTRAL_LOW="0.9", CHURNSIGNAL_SENTIMENT__NEUTRAL_HIGH="0.1")
    assert result.exit_code == 1 and "configuration" in result.output and "neutral_low" in result.output


def test_a_missing_model_directory_is_a_message(tmp_path) -> None:
    result = invoke("好", CHURNSIGNAL_SENTIMENT__MODEL_DIR=str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "cannot load a model" in result.output and "config.json" in result.output


@pytest.mark.parametrize(("value", "says"), [("京东", "lists and objects in environment variables are JSON"),
                                             ('["京东", ""]', "entities.own_names holds an empty name")])
def test_a_setting_that_cannot_be_read_is_a_message_not_a_traceback(value: str, says: str) -> None:
    result = invoke("京东快递太慢了", CHURNSIGNAL_ENTITIES__OWN_NAMES=value)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: configuration:") and says in result.output


def test_the_platforms_own_names_from_the_environment() -> None:
    result = invoke("京东快递太慢了，淘宝便宜多了", CHURNSIGNAL_ENTITIES__OWN_NAMES='["京东"]')
    assert result.exit_code == 0, result.output
    competitors = [e["text"] for e in json.loads(result.stdout)["entities"] if e["label"] == "COMPETITOR"]
    assert competitors == ["淘宝"]
