"""Personal-data masking, run before a message is stored, logged or analysed.

Every later step sees only ``mask_pii(text).text``. Numbers that carry a check digit
(resident IDs, bank cards) are masked only when it is valid, so the order and tracking
numbers that complaints are about survive. Order numbers are deliberately not masked.

Text is read with its full-width ASCII forms as half-width (``１３８``, ``＠``, ``（0755）``),
one character for one, so spans index the original. What is not masked is kept as written:
the masked text differs from the original only where a placeholder stands.

>>> mask_pii("我的手机号是13812345678，快递一直不到").text
'我的手机号是[PHONE]，快递一直不到'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

from stdnum import luhn
from stdnum.iso7064 import mod_11_2

from churnsignal.nlp.normalize import half_width


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
# 20-digit order number from passing for a phone number. An 18-character ID may be
# written in its groups: region, birth date, sequence and check digit (6-8-4).
_ID = r"(?<!\d)(?:\d{6}(?:\d{8}| \d{8} |-\d{8}-)\d{3}[\dXx]|\d{15})(?!\d)"
_CARD = r"(?<!\d)\d{4}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?(?!\d)"
_MOBILE = r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ .-]?\d{4}){2}"
# An area code is set off by brackets or a hyphen: a bare run of 10 to 12 digits is as
# likely an order number.
_AREA_CODE = r"0\d{2,3}"
_LANDLINE = rf"(?:\({_AREA_CODE}\) ?|{_AREA_CODE}-)\d{{3,4}}-?\d{{4}}"
_PHONE = rf"(?<!\d)(?:{_MOBILE}|{_LANDLINE})(?!\d)"
# A letter or digit outside ASCII (Chinese names, internationalised domains); (?u:) because
# the detectors otherwise read \w and \d as ASCII only.
_WIDE = r"(?u:[^\W\x00-\x7f])"
# Possessive quantifiers and the look-behinds keep a long run without "@" linear to scan.
# An ASCII local part starts with a letter or digit, so the "+@x.y" left beside a masked
# address ("[EMAIL]+@x.y") is not a second address: masking stays idempotent. A Chinese
# local part cannot be told from the words before it, so its whole run is masked
# ("邮箱是张三@例子.中国" becomes "[EMAIL]"): a few words too many rather than a name too few.
_LOCAL = rf"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*+|(?<!{_WIDE}){_WIDE}++"
# A domain label is all ASCII or all not, so "a@example.com吧" ends before "吧".
_LABEL = rf"(?:[A-Za-z0-9-]++|{_WIDE}++)"
_EMAIL = rf"(?:{_LOCAL})@{_LABEL}(?:\.{_LABEL})+"

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
# Where there is no road: township (乡, 镇, 街道), village or community (村, 社区, 屯), then
# group and house numbers. A bare region is not an address, and a place name holds none
# of 的了是在这那, so "北京市朝阳区的小镇" stays a sentence.
_PLACE = rf"(?:(?![的了是在这那])[{_HAN}])"
_TOWNSHIP = rf"{_PLACE}{{2,8}}?(?:乡|镇|街道)"
_VILLAGE = rf"{_PLACE}{{2,8}}?(?:村|社区|屯)"
_PLOT = r"(?:\d{1,4}|[一二三四五六七八九十]{1,3})[组队号]"
_RURAL_ADDRESS = rf"{_REGION}(?:{_TOWNSHIP}(?:{_VILLAGE})?|{_VILLAGE})(?:{_PLOT}){{0,3}}"
_BORN_SINCE = date(1900, 1, 1)


def _valid_id(number: str) -> bool:
    """A region code that could be one, a real birth date and, on 18 characters, the ISO 7064
    MOD 11-2 check digit; 15-digit IDs (born 19YY) have no check digit.

    The region is not looked up: a table (python-stdnum's) lags behind new and renamed
    districts and rejected real IDs, and the check digit and date already keep order numbers out.
    """
    number = re.sub(r"[ -]", "", number).upper()
    if number[0] not in "12345678":
        return False
    if len(number) == 15:
        return _plausible_birth("19" + number[6:12])
    return _plausible_birth(number[6:14]) and mod_11_2.is_valid(number)


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return _BORN_SINCE <= born <= date.today()


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
        ("address", _RURAL_ADDRESS, _always),
    ]
)


def mask_pii(text: str) -> MaskedText:
    """Replace personal data with ``[PHONE]``, ``[ID]``, ``[CARD]``, ``[EMAIL]``, ``[ADDRESS]``.

    A hit that loses to a longer one overlapping it may still hold personal data of its
    own (the email in "110101 19900307 4477a@qq.com" ran into the ID), so detection runs
    again on what is left, the hits blanked out, until it finds nothing: masking the
    output finds nothing either.
    """
    found: tuple[PiiSpan, ...] = ()
    seen = half_width(text)
    while more := _without_overlaps(_candidates(seen), len(seen)):
        found = tuple(sorted(found + more, key=lambda span: span.start))
        # NULs of the hit's length keep offsets, and no detector reads a NUL as part of
        # anything, just as none reads a placeholder's brackets.
        seen = _spliced(seen, more, lambda span: "\0" * (span.end - span.start))
    return MaskedText(_spliced(text, found, placeholder), found)


def placeholder(span: PiiSpan) -> str:
    """What stands for ``span`` in the masked text: ``[PHONE]`` for a phone number."""
    return f"[{span.kind.upper()}]"


def _spliced(text: str, found: tuple[PiiSpan, ...], fill: Callable[[PiiSpan], str]) -> str:
    """``text`` with each span (sorted, apart) replaced by ``fill(span)``."""
    parts: list[str] = []
    last = 0
    for span in found:
        parts += [text[last : span.start], fill(span)]
        last = span.end
    return "".join(parts) + text[last:]


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


# Every kind of personal data masked; each stands in masked text as its placeholder, "[PHONE]".
KINDS = tuple(dict.fromkeys(kind for kind, _pattern, _valid in _DETECTORS))
