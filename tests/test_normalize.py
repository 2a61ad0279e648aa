"""normalize(): what every model sees, so what it folds and what it keeps both matter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnsignal.nlp.normalize import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("订单１２３４５", "订单12345"),
        ("ＡＢＣ ｘｙｚ", "ABC xyz"),
        ("＃１　号", "#1 号"),
        ("服務態度太差", "服务态度太差"),
        ("發貨後三天還沒到", "发货后三天还没到"),
        ("太慢了😡😡", "太慢了😡😡"),
        ("真的吗？！太差了，再也不买了。", "真的吗？！太差了，再也不买了。"),
        ("  多个\t\n空白　　 在这里  ", "多个 空白 在这里"),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_lone_surrogate_becomes_replacement_character() -> None:
    assert normalize("坏\ud800了") == "坏\ufffd了"


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=())))
def test_any_text_normalizes_to_a_fixed_point(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip()
    assert "  " not in once
