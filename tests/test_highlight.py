"""highlighted(): a stored message as a page shows it, entities and hidden personal data marked, nothing live."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnsignal.webhook.highlight import highlighted


def span(start: int, end: int, label: str = "LOGISTICS") -> dict:
    return {"start": start, "end": end, "label": label}


def test_an_entity_is_marked_with_its_label_and_placeholders_as_personal_data() -> None:
    text = "快递没到，电话[PHONE]"
    assert highlighted(text, [span(0, 2)]) == (
        '<mark class="entity entity-LOGISTICS">快递</mark>没到，电话<mark class="pii">[PHONE]</mark>')


def test_markup_in_the_text_stays_text_inside_and_outside_a_span() -> None:
    text = "<script>alert(1)</script>质量太差&"
    html = str(highlighted(text, [span(0, 8, "QUALITY"), span(25, 27, "QUALITY")]))
    assert "<script>" not in html
    assert html == ('<mark class="entity entity-QUALITY">&lt;script&gt;</mark>alert(1)&lt;/script&gt;'
                    '<mark class="entity entity-QUALITY">质量</mark>太差&amp;')


def test_adjacent_spans_are_both_marked_and_an_overlapping_one_is_left_out() -> None:
    text = "客服态度太差退款"
    assert highlighted(text, [span(6, 8, "REFUND"), span(0, 2, "SERVICE"), span(1, 4, "SERVICE"),
                              span(2, 6, "SERVICE")]) == (
        '<mark class="entity entity-SERVICE">客服</mark><mark class="entity entity-SERVICE">态度太差</mark>'
        '<mark class="entity entity-REFUND">退款</mark>')
    # Two starting together: the longer one is kept.
    assert highlighted("物流太慢", [span(0, 2), span(0, 4)]) == '<mark class="entity entity-LOGISTICS">物流太慢</mark>'


def test_spans_at_both_ends_of_the_text() -> None:
    assert highlighted("快递", [span(0, 2)]) == '<mark class="entity entity-LOGISTICS">快递</mark>'
    assert highlighted("退款50元", [span(0, 2, "REFUND"), span(2, 5, "MONEY")]) == (
        '<mark class="entity entity-REFUND">退款</mark><mark class="entity entity-MONEY">50元</mark>')


@pytest.mark.parametrize("spans", [None, []])
def test_without_spans_the_text_is_escaped_and_placeholders_marked(spans) -> None:
    assert highlighted("a<b [EMAIL]", spans) == 'a&lt;b <mark class="pii">[EMAIL]</mark>'


def test_an_entity_holding_a_placeholder_marks_both_and_one_cutting_it_is_left_out() -> None:
    text = "寄到[ADDRESS]了"
    assert highlighted(text, [span(0, 11)]) == (
        '<mark class="entity entity-LOGISTICS">寄到<mark class="pii">[ADDRESS]</mark></mark>了')
    assert highlighted(text, [span(0, 5)]) == '寄到<mark class="pii">[ADDRESS]</mark>了'


@pytest.mark.parametrize("bad", [
    span(3, 2), span(-1, 2), span(0, 99), span(2, 2), {"start": "0", "end": 2, "label": "QUALITY"},
    {"start": 0, "end": 2.0, "label": "QUALITY"}, {"start": 0, "end": 2}, span(0, 2, 'X" onmouseover="alert(1)'),
    span(0, 2, "quality"), "0-2", None,
])
def test_a_stored_span_that_does_not_fit_is_left_out(bad) -> None:
    assert highlighted("质量太差", [bad]) == "质量太差"


def test_text_stored_unmasked_is_masked_and_the_spans_moved_past_the_placeholder() -> None:
    text = "电话13812345678，快递没到"
    assert highlighted(text, [span(2, 13, "ORDER_ID"), span(14, 16)]) == (
        '电话<mark class="pii">[PHONE]</mark>，<mark class="entity entity-LOGISTICS">快递</mark>没到')


def test_importing_it_loads_no_model() -> None:
    code = "import sys, churnsignal.webhook.highlight; print(sorted({'torch', 'spacy', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
