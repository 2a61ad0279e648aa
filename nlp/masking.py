"""Personal-data masking, run before a message is stored, logged or analysed.

Every later step sees only ``mask_pii(text).text``. Numbers that carry a check digit
(resident IDs, bank cards) are masked only when it is valid, so the order and tracking
numbers that complaints are about survive. Order numbers are deliberately not masked.

>>> mask_pii("我的手机号是13812345678，快递一直不到").text
'我的手机号是[PHONE]，快递一直不到'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stdnum import luhn
from stdnum.cn import ric


@dataclass(frozen=True)
class PiiSpan:
    """One masked hit; ``start`` and ``end`` index the original, unmasked text."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class MaskedText:
    text: str
    found: tuple[PiiSpan, ...] = ()


# Digit runs are only matched whole: (?<!\d) and (?!\d) keep an 11-digit prefix of a
# 20-digit order number from passing for a phone number.
_ID = r"(?<!\d)(?:\d{17}[\dXx]|\d{15})(?!\d)"
_CARD = r"(?<!\d)\d{4}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?(?!\d)"
_MOBILE = r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}"
_LANDLINE = r"0\d{2,3}-\d{7,8}"
_PHONE = rf"(?<!\d)(?:{_MOBILE}|{_LANDLINE})(?!\d)"
# Possessive quantifiers and the look-behind keep a long run without "@" linear to scan.
# The local part starts with a letter or digit, so the "+@x.y" left beside a masked
# address ("[EMAIL]+@x.y") is not a second address: masking stays idempotent.
_EMAIL = r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*+@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+"

_HAN = "\u4e00-\u9fff"
_PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北"
    "|湖南|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
# Bounded repeats keep a long run of region-like text from backtracking quadratically.
# Region names are taken as two characters before 市/区/县 so that "我住在杭州市" masks
# "杭州市", not the verb before it; a three-character name leaves its first character.
_REGION = rf"(?:(?:{_PROVINCES})(?:省|市|自治区)?|[{_HAN}]{{2}}(?:省|市|新区|区|县)){{1,4}}"
_ROAD = rf"[{_HAN}A-Za-z0-9]{{1,10}}?(?:大街|大道|路|街|巷|弄|胡同)"
_NUMBER = r"\d+(?:-\d+)?[号弄](?:\d+号)?"
_UNIT = rf"(?:[{_HAN}A-Za-z]{{0,12}}?[A-Za-z\d]{{1,8}}(?:号楼|单元|座|栋|幢|楼|层|室|号)){{0,4}}"
_ADDRESS = _REGION + _ROAD + _NUMBER + _UNIT


def _valid_id(number: str) -> bool:
    """18-digit IDs by their check digit; 15-digit ones have none, so check them as
    their 18-digit form (birth date and region code)."""
    if len(number) == 15:
        body = number[:6] + "19" + number[6:]
        number = body + ric.calc_check_digit(body + "0")  # it ignores the digit in last place
    return ric.is_valid(number)


def _valid_card(number: str) -> bool:
    return luhn.is_valid(re.sub(r"[ -]", "", number))


def _always(_: str) -> bool:
    return True


# Priority order: it breaks ties between overlapping hits of the same length.
_DETECTORS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = tuple(
    (kind, re.compile(pattern, re.ASCII), valid)
    for kind, pattern, valid in [
        ("id", _ID, _valid_id),
        ("card", _CARD, _valid_card),
        ("phone", _PHONE, _always),
        ("email", _EMAIL, _always),
        ("address", _ADDRESS, _always),
    ]
)


def mask_pii(text: str) -> MaskedText:
    """Replace personal data with ``[PHONE]``, ``[ID]``, ``[CARD]``, ``[EMAIL]``, ``[ADDRESS]``."""
    found = _without_overlaps(_candidates(text), len(text))
    parts: list[str] = []
    last = 0
    for span in found:
        parts += [text[last : span.start], f"[{span.kind.upper()}]"]
        last = span.end
    return MaskedText("".join(parts) + text[last:], found)


def _candidates(text: str) -> Iterator[tuple[int, PiiSpan]]:
    for rank, (kind, pattern, valid) in enumerate(_DETECTORS):
        for match in pattern.finditer(text):
            if valid(match.group()):
                yield rank, PiiSpan(kind, *match.span())


def _without_overlaps(candidates: Iterator[tuple[int, PiiSpan]], size: int) -> tuple[PiiSpan, ...]:
    """Keep the longest hit where hits overlap, so an ID beats the phone-like digits in it
    and "13812345678@163.com" is one email, not a phone number with a domain left over."""
    taken = bytearray(size)
    kept: list[PiiSpan] = []
    for _, span in sorted(candidates, key=lambda c: (c[1].start - c[1].end, c[0])):
        if not any(taken[span.start : span.end]):
            taken[span.start : span.end] = b"\1" * (span.end - span.start)
            kept.append(span)
    return tuple(sorted(kept, key=lambda span: span.start))
