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
    return _SPACES.sub(" ", _folded(text)).strip()


def origins(text: str) -> list[int] | None:
    """For each character of ``normalize(text)``, the index in ``text`` it was made from.

    What a model finds in the normalised text is shown in the text as stored, so its
    offsets have to be carried back. Folding is one character for one (OpenCC's t2s
    tables map every phrase to one of equal length); only whitespace runs and the ends
    move characters. None if a future OpenCC table changed a length: then there is no
    honest answer, and the caller shows the text without positions.
    """
    folded = _folded(text)
    if len(folded) != len(text):
        return None
    kept: list[int] = []
    last = 0
    for run in _SPACES.finditer(folded):
        kept += range(last, run.start() + 1)  # a run becomes its first character, as a space
        last = run.end()
    kept += range(last, len(folded))
    # strip(): a run at either end is one space there, the only kind of space strip() can remove.
    start = 1 if kept and folded[kept[0]].isspace() else 0
    end = len(kept) - 1 if len(kept) > start and folded[kept[-1]].isspace() else len(kept)
    return kept[start:end]


def _folded(text: str) -> str:
    """Lone surrogates replaced, full-width forms folded, traditional made simplified: one character for one."""
    return _t2s().convert(_SURROGATES.sub("\ufffd", text).translate(_TABLE))
