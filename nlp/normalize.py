"""Text normalisation applied before any model sees a message."""

from __future__ import annotations

import re
from functools import cache

import opencc

_FULL_TO_HALF = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# Chinese punctuation carries tone (！？，) and the models were trained with it, so only
# full-width ASCII forms are folded, not every compatibility character as NFKC would.
_KEEP = {ord(c) for c in "，！？：；（）"}
_TABLE = {k: v for k, v in _FULL_TO_HALF.items() if k not in _KEEP}
_SPACES = re.compile(r"\s+")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def half_width(text: str) -> str:
    """Every full-width ASCII form (``１３８``, ``＠``, ``（``) and the ideographic space as its
    ASCII character, punctuation included, one character for one: an offset into the result
    is an offset into ``text``, which is what lets the masker report spans in the original.
    """
    return text.translate(_FULL_TO_HALF)


def normalize(text: str) -> str:
    """Full-width ASCII forms to half-width, traditional to simplified, whitespace collapsed.

    Emoji pass through unchanged: they are signal (😡 vs 😋). Never raises: lone
    surrogates (from a bad decode upstream) become U+FFFD before OpenCC sees them.
    """
    text = _SURROGATES.sub("\ufffd", text).translate(_TABLE)
    return _SPACES.sub(" ", _t2s().convert(text)).strip()
