"""A stored message as people see it: masked, escaped, its entities and hidden personal data marked.

One way for every page (the agent's badge, the QA drill-down): ``highlighted(text, spans)``
takes ``events.text`` and ``events.entity_spans`` and returns safe HTML. It imports no
model, so a page can use it without loading torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from churnsignal.nlp.masking import mask_pii, placeholder

# What mask_pii leaves in place of personal data.
PLACEHOLDER = re.compile(r"\[(?:PHONE|ID|CARD|EMAIL|ADDRESS)\]")
# An entity label as the entity pipeline names them (nlp.entities.LABELS); it becomes a CSS class.
_LABEL = re.compile(r"[A-Z][A-Z_]*")


def highlighted(text: str, spans: Sequence[Any] | None = None) -> Markup:
    """``text`` masked (again: the page trusts no one), HTML-escaped, each entity span wrapped
    in ``<mark class="entity entity-LABEL">`` and each placeholder in ``<mark class="pii">``.

    ``spans`` are ``{"start", "end", "label"}`` offsets into ``text`` (``events.entity_spans``);
    None shows the text with only its placeholders marked. Spans come from a stored JSON
    column, so one that does not fit is left out rather than trusted: out of range, crossing
    an earlier span, cutting a placeholder, hiding personal data masked only now, or with a
    label that is not a plain name.
    """
    masked, moved = _remasked(text, _well_formed(spans or [], len(text)))
    holders = [m.span() for m in PLACEHOLDER.finditer(masked)]
    parts: list[Markup] = []
    last = 0
    for start, end, label in moved:
        if start < last or any(s < start < e or s < end < e for s, e in holders):
            continue
        parts += [_with_placeholders(masked[last:start]),
                  Markup('<mark class="entity entity-{}">{}</mark>').format(label,
                                                                           _with_placeholders(masked[start:end]))]
        last = end
    parts.append(_with_placeholders(masked[last:]))
    return Markup("").join(parts)


def _well_formed(spans: Sequence[Any], size: int) -> list[tuple[int, int, str]]:
    """The spans that are what they claim, in text order (the longer first where two start together)."""
    kept = [(s["start"], s["end"], s["label"]) for s in spans
            if isinstance(s, dict) and type(s.get("start")) is int and type(s.get("end")) is int
            and isinstance(s.get("label"), str) and _LABEL.fullmatch(s["label"])
            and 0 <= s["start"] < s["end"] <= size]
    return sorted(kept, key=lambda span: (span[0], -span[1]))


def _remasked(text: str, spans: list[tuple[int, int, str]]) -> tuple[str, list[tuple[int, int, str]]]:
    """``text`` masked, and ``spans`` moved past the placeholders that masking put in; a span
    touching what was masked only now is dropped (what it marked is hidden)."""
    masked = mask_pii(text)
    moved = []
    for start, end, label in spans:
        if any(hit.start < end and start < hit.end for hit in masked.found):
            continue
        shift = sum(len(placeholder(hit)) - (hit.end - hit.start) for hit in masked.found if hit.end <= start)
        moved.append((start + shift, end + shift, label))
    return masked.text, moved


def _with_placeholders(text: str) -> Markup:
    parts: list[Markup] = []
    last = 0
    for match in PLACEHOLDER.finditer(text):
        parts += [escape(text[last:match.start()]), Markup('<mark class="pii">{}</mark>').format(match.group())]
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)
