"""What the product sees in a support message: ``analyse(texts) -> list[dict]``.

Order matters: text is normalised first (so full-width digits cannot hide a phone
number), then masked, and every later step — sentiment, entities, lexicon — sees
only the masked text. ``masked_text`` is that text; entity offsets index into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from churnsignal.config import Settings, get_settings
from churnsignal.nlp import entities, lexicon
from churnsignal.nlp.complaints import is_negative, negative_from, topics
from churnsignal.nlp.dialogue_topics import DialogueTopics
from churnsignal.nlp.masking import MaskedText, mask_pii, placeholder
from churnsignal.nlp.normalize import normalize, origins
from churnsignal.nlp.sentiment import SentimentModel, load_sentiment
from churnsignal.nlp.support_chat import CONTEXT_TURNS

# A helpdesk ticket is rarely longer than a few thousand characters; beyond this we read
# the head and say so rather than spend seconds on a pasted log file.
MAX_CHARS = 20_000


def masked_text(text: str) -> MaskedText:
    """What every later step reads, and the only form of a message ever shown: normalised, masked, its head."""
    return mask_pii(normalize(text[:MAX_CHARS]))


def stored_spans(text: str, entities: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``entities`` of ``text`` (offsets into ``masked_text(text)``, as ``analyse`` gives them) as
    ``{"start", "end", "label"}`` offsets into ``text`` itself.

    The store keeps a message masked but not normalised, while the model read it
    normalised: whitespace runs collapsed, ends stripped, and anything the masker finds
    only in the normalised form replaced by a placeholder. An entity is carried back
    through both steps, so it can be shown in the stored text; a placeholder's characters
    all come from the whole span it hides. None where ``origins`` cannot say.
    """
    head = text[:MAX_CHARS]
    folded = origins(head)
    if folded is None:
        return None
    # For each character of the masked text: the [start, end) in ``text`` it was made from.
    bounds: list[tuple[int, int]] = []
    last = 0
    for span in mask_pii(normalize(head)).found:
        bounds += [(i, i + 1) for i in folded[last:span.start]]
        bounds += [(folded[span.start], folded[span.end - 1] + 1)] * len(placeholder(span))
        last = span.end
    bounds += [(i, i + 1) for i in folded[last:]]
    return [{"start": bounds[e["start"]][0], "end": bounds[e["end"] - 1][1], "label": e["label"]} for e in entities]


def sentiment_label(probs: dict[str, float], settings: Settings) -> str:
    """negative / neutral / positive from the class probabilities.

    Negative is decided by ``is_negative`` alone, so a label and a complaint never
    disagree. Otherwise a model with a learned neutral class says which of the other two
    is likelier; a two-class model's probability is read against the configured band.
    """
    if is_negative(probs["negative"], settings):
        return "negative"
    if "neutral" in probs and "positive" in probs:
        return "neutral" if probs["neutral"] >= probs["positive"] else "positive"
    return "positive" if probs["negative"] < settings.sentiment.neutral_low else "neutral"


def masked_turns(turns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The turns before a message as the model reads them: ``(author, masked text)``, oldest first."""
    return [(author, masked_text(text).text) for author, text in turns if text.strip()]


def sentiment_model(settings: Settings) -> SentimentModel:
    s = settings.sentiment
    if s.threads:
        torch.set_num_threads(s.threads)
    return load_sentiment(s.model_dir, s.max_tokens, s.batch_size, s.negative_label, s.quantize)


def dialogue_reader(settings: Settings) -> DialogueTopics | None:
    """The reader of topics from the dialogue these settings use, or None (switched off, or none saved)."""
    return entities.dialogue_reader(settings.entities.model_dir) if settings.entities.dialogue_topics else None


def model_versions(settings: Settings | None = None) -> dict[str, dict]:
    """Name and version of each model ``analyse`` uses with these settings (loaded once per process)."""
    settings = settings or get_settings()
    pipeline = entities.load(settings.entities.model_dir)
    own = {"own_names": settings.entities.own_names} if settings.entities.own_names else {}
    reader = dialogue_reader(settings)
    # It reads complaints only, so which turns it read depends on where complaints start.
    topics = ({"dialogue_topics": reader.info() | {"complaints_from": negative_from(settings)}}
              if reader is not None else {})
    return {"sentiment": sentiment_model(settings).info, "entities": entities.info(pipeline) | own | topics}


def topics_from_dialogue(found: Sequence[list[dict]], negative: Sequence[bool], texts: Sequence[str],
                         context: Sequence[Sequence[tuple[str, str]]] | None,
                         settings: Settings) -> list[tuple[str, ...]]:
    """For each complaint (``negative``) whose entities ``found`` name no topic and that has turns
    before it, the topics those turns make clear (``nlp/dialogue_topics.py``); () for the rest.

    The turns are read by the same entity pipeline, with the same own names, as the message;
    each distinct text once, and not at all where it is one of ``texts`` (a ticket's turns
    often arrive in one batch), which keeps reading a dialogue about as fast as not.
    """
    reader = dialogue_reader(settings)
    out: list[tuple[str, ...]] = [()] * len(texts)
    if reader is None or context is None:
        return out
    asked = [i for i in range(len(texts))
             if negative[i] and context[i] and not topics(e["label"] for e in found[i])]
    if not asked:
        return out
    turns = [context[i][-CONTEXT_TURNS:] for i in asked]
    named = {text: topics(e["label"] for e in spans) for text, spans in zip(texts, found)}
    unread = list(dict.fromkeys(said for before in turns for _, said in before if said not in named))
    named |= {text: topics(e["label"] for e in spans) for text, spans in zip(unread, entities.extract(
        unread, entities.load(settings.entities.model_dir), own_names=settings.entities.own_names))}
    before = [[(author, named[said]) for author, said in turns_of] for turns_of in turns]
    for i, read in zip(asked, reader.read([texts[i] for i in asked], before)):
        out[i] = read
    return out


def analyse(texts: Sequence[str], settings: Settings | None = None,
            contexts: Sequence[Sequence[tuple[str, str]]] | None = None,
            channels: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """Analyse a batch of support messages; one result dict per text, same order.

    ``contexts``, when given, holds for each text the ``(author, text)`` turns before it in
    its ticket (oldest first): the sentiment then reads the message in its dialogue, so
    "还没到" after a complaint about a late parcel reads differently from a first question
    (``SentimentModel.probabilities``), and a complaint whose entities name no topic gets
    the topics those turns make clear (``dialogue_topics``). ``channels``, when given, holds each text's
    helpdesk channel: a ``"review"`` is read alone, as a review.

    Raises ``TypeError`` for a non-string item; empty or whitespace-only texts get a
    result whose ``sentiment`` is ``None`` and an ``error`` saying why, so a batch is
    never lost for one bad message.
    """
    settings = settings or get_settings()
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {position} is {type(text).__name__}, expected str")
    for name, given in (("contexts", contexts), ("channels", channels)):
        if given is not None and len(given) != len(texts):
            raise ValueError(f"{len(given)} {name} for {len(texts)} texts")
    masked = [masked_text(text) for text in texts]
    readable = [i for i, m in enumerate(masked) if m.text]
    model = sentiment_model(settings)
    context = [masked_turns(contexts[i]) for i in readable] if contexts is not None else None
    channel = [channels[i] for i in readable] if channels is not None else None
    probs = model.probabilities([masked[i].text for i in readable], context, channel)
    pipeline = entities.load(settings.entities.model_dir)
    docs = list(pipeline.pipe([masked[i].text for i in readable], batch_size=256))
    found = [entities.spans(doc, settings.entities.own_names) for doc in docs]
    negative = [is_negative(round(float(p), 4), settings) for p in probs["negative"]]  # as the label reads it
    from_dialogue = topics_from_dialogue(found, negative, [masked[i].text for i in readable], context, settings)
    results: list[dict[str, Any]] = [_empty(m.text) for m in masked]
    models = model_versions(settings)
    for position, (i, doc) in enumerate(zip(readable, docs)):
        tokens = [t.text for t in doc]
        classes = {name: round(float(p[position]), 4) for name, p in probs.items()}
        results[i] = {
            "sentiment": {"label": sentiment_label(classes, settings), "negative_prob": classes["negative"],
                          "probs": classes},
            "entities": found[position],
            "dialogue_topics": list(from_dialogue[position]),
            "negative_word_share": round(lexicon.negative_word_share(tokens), 4),
            "emotions": lexicon.emotions(tokens),
            "masked_text": masked[i].text,
            "pii": sorted({span.kind for span in masked[i].found}),
            "truncated": len(texts[i]) > MAX_CHARS,
        }
    for result in results:
        result["model"] = models
    return results


def _empty(masked_text: str) -> dict[str, Any]:
    return {"sentiment": None, "entities": [], "dialogue_topics": [], "negative_word_share": 0.0, "emotions": {},
            "masked_text": masked_text, "pii": [], "truncated": False, "error": "empty text: nothing to analyse"}
