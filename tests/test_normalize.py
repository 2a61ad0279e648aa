"""normalize(): what every model sees, so what it folds and what it keeps both matter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnsignal.nlp import normalize as normalize_module
from churnsignal.nlp.normalize import normalize, origins


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


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(list("發貨後還沒到服務態度太差乾隆１２ＡＢａ＠　 \t\n\r\x0b\x1c好😡"))
               | st.characters(exclude_categories=())))
def test_origins_point_at_the_characters_normalize_kept(text: str) -> None:
    kept = origins(text)
    assert kept is not None and kept == sorted(set(kept)) and all(0 <= i < len(text) for i in kept)
    picked = "".join(text[i] for i in kept)
    assert len(picked) == len(normalize(text)) and normalize(picked) == normalize(text)


def test_origins_over_spaces_full_width_and_traditional_text() -> None:
    text = "  發貨\t\n 太慢，退款５０元  "
    assert normalize(text) == "发货 太慢，退款50元"
    assert origins(text) == [2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14]


def test_origins_give_up_if_folding_ever_changes_a_length(monkeypatch) -> None:
    class Longer:
        def convert(self, text: str) -> str:
            return text + "!"

    monkeypatch.setattr(normalize_module, "_t2s", lambda: Longer())
    assert origins("好") is None
