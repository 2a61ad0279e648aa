"""History files: what is accepted, and a clear error naming file, line and column otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from churnsignal.fusion.inputs import InputError, parse_time, read_events, read_labels, read_orders


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_orders_any_row_order_optional_columns_and_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", "customer_id,order_id,ordered_at,amount,category,status\n"
                 "c2,o3,2024-03-01T10:00:00+08:00,3,,\n"
                 "c1,o1,2024-01-05,10.5,图书,paid\n"
                 "c1,o2,2024-02-05,4,图书,refunded\n")
    orders = read_orders(path)
    assert list(orders.columns) == ["customer_id", "order_id", "ordered_at", "amount", "category", "status"]
    assert orders.loc[0, "ordered_at"] == pd.Timestamp("2024-03-01 02:00")  # +08:00 read as UTC
    assert orders["status"].tolist() == ["paid", "paid", "refunded"]
    assert orders["category"].isna().tolist() == [True, False, False]


def test_orders_without_optional_columns_are_paid(tmp_path: Path) -> None:
    orders = read_orders(write(tmp_path, "o.csv", "customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-05,1\n"))
    assert orders["status"].tolist() == ["paid"]
    assert orders["category"].isna().all()


@pytest.mark.parametrize(("content", "message"), [
    ("customer_id,order_id,amount\nc1,o1,3\n", "missing column(s) ordered_at"),
    ("customer_id,order_id,ordered_at,amount\nc1,o1,yesterday,3\n", "line 2, column ordered_at: 'yesterday'"),
    ("customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,1\nc1,o2,2024-13-01,1\n",
     "line 3, column ordered_at"),
    ("customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,-3\n", "line 2, column amount: -3 is negative"),
    ("customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,ten\n", "line 2, column amount: 'ten' is not a number"),
    ("customer_id,order_id,ordered_at,amount\n,o1,2024-01-01,1\n", "line 2, column customer_id: empty"),
    ("customer_id,order_id,ordered_at,amount,status\nc1,o1,2024-01-01,1,lost\n", "column status: 'lost'"),
    ("customer_id,order_id,ordered_at,amount\n", "no orders (only a header)"),
    ("", "the file is empty"),
])
def test_bad_orders_name_file_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, "orders.csv", content)
    with pytest.raises(InputError) as caught:
        read_orders(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_many_problems_are_summarised(tmp_path: Path) -> None:
    rows = "".join(f"c{i},o{i},never,1\n" for i in range(30))
    with pytest.raises(InputError) as caught:
        read_orders(write(tmp_path, "o.csv", "customer_id,order_id,ordered_at,amount\n" + rows))
    assert "and 20 more problem(s)" in str(caught.value)


def test_orders_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not UTF-8"):
        read_orders(write(tmp_path, "o.csv", "customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,1\n".encode()
                          + "张三,o2,2024-01-01,1\n".encode("gbk")))


def test_events_defaults_and_types(tmp_path: Path) -> None:
    lines = [{"customer_id": 7, "created_at": "2024-01-02T08:00:00Z", "text": "物流太慢了"},
             {"customer_id": "c1", "created_at": "2024-01-03", "text": "", "channel": "ticket", "ticket_id": 12,
              "author": "agent", "rating": 2}]
    path = write(tmp_path, "e.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    events = read_events(path)
    assert events["customer_id"].tolist() == ["7", "c1"]
    assert events["channel"].tolist() == ["chat", "ticket"]
    assert events["author"].tolist() == ["customer", "agent"]
    assert events["ticket_id"].isna().tolist() == [True, False] and events["ticket_id"].iloc[1] == "12"
    assert events["rating"].iloc[1] == 2.0 and pd.isna(events["rating"].iloc[0])
    assert events["ticket_status"].isna().all()


def test_events_may_carry_the_ticket_status(tmp_path: Path) -> None:
    lines = [{"customer_id": "c1", "created_at": "2024-01-02", "text": "还没到", "ticket_id": 1, "ticket_status": "open"},
             {"customer_id": "c1", "created_at": "2024-01-03", "text": "已补发", "ticket_id": 1, "author": "agent",
              "ticket_status": "solved"}]
    path = write(tmp_path, "e.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    assert read_events(path)["ticket_status"].tolist() == ["open", "solved"]


@pytest.mark.parametrize(("line", "message"), [
    (b'{"customer_id": "c1", "created_at": "2024-01-01"}', "line 2, field text: missing"),
    (b'{"customer_id": "c1", "created_at": "soon", "text": "x"}', "line 2, column created_at: 'soon'"),
    (b'{"customer_id": "c1", "created_at": "2024-01-01", "text": 5}', "line 2, field text: expected a string"),
    (b'{"customer_id": "c1", "created_at": "2024-01-01", "text": "x", "channel": "fax"}', "field channel: 'fax'"),
    (b'{"customer_id": "c1", "created_at": "2024-01-01", "text": "x", "author": "bot"}', "field author: 'bot'"),
    (b'{"customer_id": "c1", "created_at": "2024-01-01", "text": "x", "rating": "5"}', "field rating"),
    (b'{"customer_id": "", "created_at": "2024-01-01", "text": "x"}', "field customer_id"),
    (b'{"customer_id": "c1", "created_at": "2024-01-01", "text": "x", "ticket_status": "closed"}',
     "field ticket_status: 'closed' is not one of open, pending, solved"),
    (b'[1, 2]', "line 2: expected a JSON object"),
    (b'{"customer_id": ', "line 2, column"),
    (b'{"customer_id": "c1", "text": "\xff"}', "line 2, byte"),
])
def test_bad_events_name_the_line(tmp_path: Path, line: bytes, message: str) -> None:
    good = b'{"customer_id": "c1", "created_at": "2024-01-01", "text": "ok"}\n'
    path = write(tmp_path, "e.jsonl", good + line + b"\n")
    with pytest.raises(InputError) as caught:
        read_events(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_empty_events_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no events"):
        read_events(write(tmp_path, "e.jsonl", "\n\n"))


def test_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "customer_id,churned,churned_at\nc1,1,2024-05-01\nc2,0,\n")
    labels = read_labels(path, ["c1", "c2", "c3"])
    assert labels["churned"].to_dict() == {"c1": 1, "c2": 0}
    assert labels.loc["c1", "churned_at"] == pd.Timestamp("2024-05-01") and pd.isna(labels.loc["c2", "churned_at"])


@pytest.mark.parametrize(("content", "message"), [
    ("customer_id,churned\nc1,yes\n", "line 2, column churned: 'yes' is not 0 or 1"),
    ("customer_id,churned\nc1,1\nc9,0\n", "line 3, column customer_id: 'c9' has no orders"),
    ("customer_id,churned\nc1,1\nc1,0\n", "'c1' is labelled again (first on line 2)"),
    ("customer_id\nc1\n", "missing column(s) churned"),
    ("customer_id,churned,churned_at\nc1,1,later\n", "column churned_at: 'later'"),
])
def test_bad_labels(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_labels(write(tmp_path, "l.csv", content), ["c1", "c2"])
    assert message in str(caught.value)


def test_missing_file_and_as_of() -> None:
    with pytest.raises(InputError, match="no such file"):
        read_orders(Path("/nonexistent/orders.csv"))
    assert parse_time("2024-01-01T08:00:00+08:00") == pd.Timestamp("2024-01-01 00:00")
    with pytest.raises(InputError, match="--as-of: 'next week'"):
        parse_time("next week")
