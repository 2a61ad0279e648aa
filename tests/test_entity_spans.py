"""Where each entity is in a stored message: the worker keeps it over ``events.text``, the badge marks it.

The worker tests read with the shipped models (the BERT and the entity pipeline), on
SQLite and on the real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.fusion import text as fusion_text
from churnsignal.nlp.analysis import analyse, stored_spans
from churnsignal.nlp.masking import mask_pii
from churnsignal.nlp.normalize import normalize
from churnsignal.store import Delivery, Event, utcnow
from churnsignal.worker import pipeline

PLAIN = "快递一个星期都没到，客服也不回消息，我要退款，电话13812345678，邮箱wang.lei@example.com"
# Traditional characters, full-width digits, whitespace runs at the ends and inside.
WIDE = "  發貨後三天還沒到，  客服　　態度太差  退款５０元 手机１３９１２３４５６７８  "
# The store masks what it recognises; doubled spaces hide this phone number until the
# model's normalising folds them, so the model reads a placeholder the stored text lacks.
FOLDED_PHONE = "电话138  1234  5678，快递还没到，质量太差，我要退款"


def add_events(store, messages: list[tuple[str, str]]) -> list[int]:
    """Queued events as the webhook stores them: (author, text), the text masked."""
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        events = [Event(delivery_id=delivery.id, source="zendesk", external_id=f"m{n}", ticket_id="T1",
                        customer_id="c-1", author=author, channel="chat", text=mask_pii(text).text,
                        created_at=now - timedelta(minutes=10 - n), received_at=now, status="queued")
                  for n, (author, text) in enumerate(messages)]
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


def stored(store, ids: list[int]) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id)))


def test_the_worker_stores_entity_positions_over_the_stored_masked_text(store, tmp_path: Path) -> None:
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    ids = add_events(store, [("customer", PLAIN), ("customer", WIDE), ("customer", FOLDED_PHONE),
                             ("agent", "您好，快递已经在路上了"), ("customer", "   ")])
    assert sorted(pipeline.analyse(store, ids, settings)) == sorted(ids)
    plain, wide, folded, agent, blank = stored(store, ids)
    assert "[PHONE]" in plain.text and "[EMAIL]" in plain.text and "１３９" not in wide.text
    assert "138  1234  5678" in folded.text

    for event in (plain, wide, folded):
        # What the model found, in the text it read.
        entities = analyse([event.text], settings)[0]["entities"]
        assert entities and [s["label"] for s in event.entity_spans] == [e["label"] for e in entities]
        assert [normalize(event.text[s["start"]:s["end"]]) for s in event.entity_spans] == [
            e["text"] for e in entities]
        assert event.entities  # the topic counts the fusion reads are still there
    # Where nothing but the model's own folding changes the text, the stored words are the entity words.
    words = {(s["label"], plain.text[s["start"]:s["end"]]) for s in plain.entity_spans}
    assert {("LOGISTICS", "快递"), ("SERVICE", "客服"), ("REFUND", "退款")} <= words
    assert ("MONEY", "５０元") in {(s["label"], wide.text[s["start"]:s["end"]]) for s in wide.entity_spans}
    assert ("REFUND", "退款") in {(s["label"], folded.text[s["start"]:s["end"]]) for s in folded.entity_spans}
    assert agent.entity_spans is None and blank.entity_spans is None


@pytest.mark.parametrize("text", [PLAIN, WIDE, FOLDED_PHONE, "物流\n\n\t太慢了" * 3, "訂單１２３４５６７８９０１２ 還沒發貨"])
def test_positions_carried_back_from_the_text_the_model_read(text: str) -> None:
    kept = mask_pii(text).text
    result = analyse([kept])[0]
    spans = stored_spans(kept, result["entities"])
    assert len(spans) == len(result["entities"]) > 0
    for entity, span in zip(result["entities"], spans):
        assert normalize(kept[span["start"]:span["end"]]) == entity["text"]
        assert kept[span["start"]] == kept[span["start"]:].lstrip()[0]  # never starts on a space


def test_analysis_cached_before_positions_is_read_again(tmp_path: Path, monkeypatch) -> None:
    """Entries of the old formats (no positions; no turns before the message; not told
    whether it was read as a review) under their keys must not be taken for this one."""
    from churnsignal.nlp import analysis

    versions = {"stand-in": {"version": "1"}}
    monkeypatch.setattr(analysis, "model_versions", lambda settings: versions)
    monkeypatch.setattr(fusion_text, "_analyse", lambda texts, settings, _contexts, _reviews: [
        {"negative_prob": 0.9, "negative_word_share": 0.0, "labels": {"LOGISTICS": 1},
         "spans": [{"start": 0, "end": 2, "label": "LOGISTICS"}]} for _ in texts])
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    message = "快递没到"
    dumped = json.dumps(versions, sort_keys=True)
    no_positions = hashlib.sha256(f"{dumped}\n{message}".encode()).hexdigest()
    no_turns = hashlib.sha256(f"2\n{dumped}\n{message}".encode()).hexdigest()
    no_channel = hashlib.sha256(f"3\n{dumped}\n{message}\n\x1f".encode()).hexdigest()
    (tmp_path / "cache").mkdir()
    with sqlite3.connect(tmp_path / "cache" / "analysis.sqlite") as cache:
        cache.execute("CREATE TABLE signals (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        cache.execute("INSERT INTO signals VALUES (?, ?)", (no_positions, json.dumps(
            {"negative_prob": 0.1, "negative_word_share": 0.0, "labels": {}})))
        for key, prob in ((no_turns, 0.2), (no_channel, 0.3)):
            cache.execute("INSERT INTO signals VALUES (?, ?)", (key, json.dumps(
                {"negative_prob": prob, "negative_word_share": 0.0, "labels": {}, "spans": []})))
    events = pd.DataFrame([{"customer_id": "c", "created_at": pd.Timestamp("2026-11-01"), "ticket_id": None, "channel": "chat",
                            "author": "customer", "text": message}])
    analysed = fusion_text.analyse_events(events, settings)
    assert analysed["entity_spans"].tolist() == [[{"start": 0, "end": 2, "label": "LOGISTICS"}]]
    assert analysed["negative_prob"].tolist() == [0.9]


def test_the_badge_marks_the_entities_of_the_latest_complaint(store, tmp_path: Path, redis_url: str) -> None:
    from churnsignal.webhook.app import create_app
    from churnsignal.webhook.badge_links import sign_link

    secret = "badge-secret-" + "x" * 32
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": "t"},
                        identity={"pepper": "test-pepper"}, fusion={"cache_dir": str(tmp_path / "cache")},
                        badge={"enabled": True, "secret": secret})
    [complaint] = add_events(store, [("customer", PLAIN)])
    pipeline.analyse(store, [complaint], settings)
    [event] = stored(store, [complaint])
    client = create_app(settings, store=store).test_client()
    page = client.get(sign_link(settings.badge.secret, "zendesk", "T1", 60).path()).get_data(as_text=True)
    latest = page.split('<blockquote class="complaint">', 1)[1].split("</blockquote>", 1)[0]
    assert latest.startswith('<mark class="entity entity-LOGISTICS">快递</mark>')
    for span in event.entity_spans:
        word = event.text[span["start"]:span["end"]]
        assert f'<mark class="entity entity-{span["label"]}">{word}</mark>' in latest
    assert '<mark class="pii">[PHONE]</mark>' in latest and '<mark class="pii">[EMAIL]</mark>' in latest
    assert "13812345678" not in page and "wang.lei" not in page
