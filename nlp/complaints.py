"""What a complaint is, defined once: the fusion features, reasons and alerts all ask here.

A customer's turn is a complaint when the sentiment reads it as negative (``is_negative``,
defined here so that the web pages can ask without loading torch); its topics are the entity
labels in it that name what went wrong, or a competitor, and where it names none, the topics
its turns before make clear (``nlp/dialogue_topics.py``; stored with the others, so every count
sees both). Only the customer's own turns count: an agent's reply, a bot's message and our own
alert notes (which come back from the helpdesk stored as ``bot``, see ``webhook/inbound.py``)
may quote or answer angry words, but they are not the customer complaining.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from churnsignal.config import Settings

CUSTOMER = "customer"
# Entity labels of the complaint extractor (model_cards/entities.md) that say what a complaint
# is about; ORDER_ID, MONEY and DURATION say which or how much, not what went wrong.
TOPICS = ("QUALITY", "LOGISTICS", "REFUND", "SERVICE", "PRICE", "COMPETITOR")


def is_negative(negative_prob: float, settings: Settings) -> bool:
    """Whether the sentiment reads a message as negative: the one test every complaint rests on."""
    return negative_prob >= negative_from(settings)


def is_complaint(author: str, negative_prob: float | None, settings: Settings) -> bool:
    """Whether a turn is a complaint: the customer wrote it and the sentiment says negative.

    A turn the sentiment never read (an empty message, anyone else's) has no probability
    and is no complaint.
    """
    if author != CUSTOMER or negative_prob is None or math.isnan(negative_prob):
        return False
    return is_negative(negative_prob, settings)


def negative_from(settings: Settings) -> float:
    """The lowest ``negative_prob`` the sentiment reads as negative.

    ``is_negative`` draws its line here, and so does any query that counts complaints among
    stored turns in the database instead of one turn at a time in Python.
    """
    return settings.sentiment.neutral_high


def topics(entity_labels: Iterable[str]) -> tuple[str, ...]:
    """What a complaint is about: the topic labels among its entities, once each, in ``TOPICS`` order."""
    present = set(entity_labels)
    return tuple(topic for topic in TOPICS if topic in present)


def read_from_dialogue(message_topics: Iterable[str], spans: list[dict] | None) -> tuple[str, ...]:
    """Which of a stored message's topics no word of it names: they were read from the turns before it.

    ``spans`` are its stored entity positions (``events.entity_spans``). None where the store
    kept none (messages analysed before migration 0005): then no one can tell, and none is.
    """
    if spans is None:
        return ()
    named = {span["label"] for span in spans}
    return tuple(topic for topic in message_topics if topic in TOPICS and topic not in named)
