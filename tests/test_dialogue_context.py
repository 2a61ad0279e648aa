"""A customer's turn is read after the turns before it on its ticket, and a review alone, as
a review: by ``analyse``, by the worker, and by scoring later, alike.

The worker tests read with the shipped models on SQLite and on the real PostgreSQL (the
``store`` fixture).
"""

from __future__ import annotations

from datetime import timedelta
from itertools import count
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.fusion import text as fusion_text
from churnsignal.fusion.features import FROM_DIALOGUE, latest_complaints
from churnsignal.fusion.text import analyse_events, ticket_contexts
from churnsignal.nlp.analysis import analyse
from churnsignal.store import Delivery, Event, utcnow
from churnsignal.worker import pipeline

COMPLAINT = "我的快递三天了怎么还没有发货，到底怎么回事"
REPLY = "亲，非常抱歉，已经帮您催促仓库了"
CHASING = "还没到"
# Seconds since the first event written here: events of later calls come later.
_CLOCK = count()


def add(store, rows: list[tuple[str, str, str]], status: str = "queued", channel: str = "chat") -> list[int]:
    """Events (ticket, author, text), a second apart, in order, after those of earlier calls."""
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        events = [Event(delivery_id=delivery.id, source="zendesk", external_id=f"x{now.timestamp()}-{n}", ticket_id=ticket,
                        customer_id="c-1", author=author, channel=channel, text=text,
                        created_at=now - timedelta(minutes=30) + timedelta(seconds=next(_CLOCK)), received_at=now,
                        status=status)
                  for n, (ticket, author, text) in enumerate(rows)]
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


def probs(store, ids: list[int]) -> list[float]:
    with store.session() as session:
        return [session.get(Event, i).negative_prob for i in ids]


def test_the_shipped_model_reads_a_chasing_turn_after_a_complaint() -> None:
    first, after = (r["sentiment"]["negative_prob"] for r in
                    analyse([CHASING, CHASING], contexts=[[("agent", "您好")], [("customer", COMPLAINT), ("agent", REPLY)]]))
    assert after > first


def test_the_worker_reads_each_turn_after_the_earlier_turns_of_its_ticket(store, tmp_path: Path, monkeypatch) -> None:
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    read: list[str] = []
    analyse_texts = fusion_text._analyse
    monkeypatch.setattr(fusion_text, "_analyse", lambda texts, *rest: read.extend(texts) or analyse_texts(texts, *rest))
    # The complaint was analysed in an earlier batch; the chasing turn comes now, on its ticket
    # and, alone, on another ticket of the same customer.
    earlier = add(store, [("T1", "customer", COMPLAINT), ("T1", "agent", REPLY)])
    pipeline.analyse(store, earlier, settings)
    chasing, elsewhere = add(store, [("T1", "customer", CHASING), ("T2", "customer", CHASING)])
    # Another worker, with a cache of its own: the ticket's history is read as turns, not analysed again.
    read.clear()
    pipeline.analyse(store, [chasing, elsewhere], Settings(fusion={"cache_dir": str(tmp_path / "other-worker")}))
    assert read == [CHASING, CHASING]
    in_dialogue, alone = (r["sentiment"]["negative_prob"] for r in
                          analyse([CHASING, CHASING], settings, [[("customer", COMPLAINT), ("agent", REPLY)], []]))
    assert probs(store, [chasing, elsewhere]) == pytest.approx([in_dialogue, alone], abs=1e-4)
    assert in_dialogue > alone
    # Scoring reads the customer's stored history later: the same reading, from the cache.
    with store.session() as session:
        history = pipeline.support_events(session, "c-1")
    again = analyse_events(history, settings)
    assert sorted(again.loc[again["author"] == "customer", "negative_prob"].round(4)) == pytest.approx(
        sorted(p for p in probs(store, [earlier[0], chasing, elsewhere])), abs=1e-4)


def test_a_batch_of_more_tickets_than_a_query_can_name_reads_each_after_its_turns(store, tmp_path: Path) -> None:
    # SQLite refuses an expression over 1,000 deep: one condition per ticket hit it at ~990.
    tickets = [f"T{n}" for n in range(1200)]
    add(store, [(ticket, "customer", COMPLAINT) for ticket in tickets], status="analysed")
    chasing = add(store, [(ticket, "customer", CHASING) for ticket in tickets] + [("new", "customer", CHASING)])
    pipeline.analyse(store, chasing, Settings(fusion={"cache_dir": str(tmp_path / "cache")}))
    *after_complaint, first_turn = probs(store, chasing)
    assert None not in after_complaint and min(after_complaint) > first_turn


def test_the_worker_reads_a_review_as_a_review(store, tmp_path: Path) -> None:
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    text = "位置不错，服务一般，下次可能不会再来了"
    [review] = add(store, [("R1", "customer", text)], channel="review")
    [ticket] = add(store, [("T1", "customer", text)], channel="email")
    pipeline.analyse(store, [review, ticket], settings)
    as_review, as_ticket = (r["sentiment"]["negative_prob"] for r in
                            analyse([text, text], settings, channels=["review", "ticket"]))
    assert probs(store, [review, ticket]) == pytest.approx([as_review, as_ticket], abs=1e-4)
    assert abs(as_review - as_ticket) > 0.01
    # Scoring later reads the stored review the same way, from the cache.
    with store.session() as session:
        history = pipeline.support_events(session, "c-1")
    again = analyse_events(history, settings)
    assert sorted(again["negative_prob"].round(4)) == pytest.approx(sorted([as_review, as_ticket]), abs=1e-4)


def test_turns_queued_together_are_read_in_their_order(store, tmp_path: Path) -> None:
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    ids = add(store, [("T1", "customer", COMPLAINT), ("T1", "agent", REPLY), ("T1", "customer", CHASING)])
    pipeline.analyse(store, ids, settings)
    expected = [r["sentiment"]["negative_prob"] for r in
                analyse([COMPLAINT, CHASING], settings, [[], [("customer", COMPLAINT), ("agent", REPLY)]])]
    complaint, _, chasing = probs(store, ids)
    assert [complaint, chasing] == pytest.approx(expected, abs=1e-4)


def test_the_worker_stores_the_topic_a_complaints_dialogue_makes_clear(store, tmp_path: Path) -> None:
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    wordless = "怎么还没好"
    ids = add(store, [("T1", "customer", COMPLAINT), ("T1", "agent", REPLY), ("T1", "customer", wordless),
                      ("T2", "customer", wordless)])
    pipeline.analyse(store, ids, settings)
    with store.session() as session:
        stored = [session.get(Event, i) for i in (ids[2], ids[3])]
        # After the parcel complaint it is a delivery complaint, though it names no word of it
        # (no span shows one); the same words opening a ticket name nothing.
        assert [(e.entities, e.entity_spans) for e in stored] == [({"LOGISTICS": 1}, []), ({}, [])]
        history = pipeline.support_events(session, "c-1")
    # Scoring reads the same topics, and quotes the complaint from its beginning for them.
    analysed = analyse_events(history, settings)
    quotes = latest_complaints(analysed, analysed["created_at"].max() + timedelta(seconds=1))
    assert quotes.loc["c-1", "LOGISTICS"] == wordless and quotes.loc["c-1", FROM_DIALOGUE.format(topic="LOGISTICS")]
    assert analysed.loc[analysed["text"] == wordless, "LOGISTICS"].tolist() == [1, 0]


def test_ticket_contexts_keep_the_last_turns_of_customer_and_agent_per_ticket() -> None:
    at = pd.Timestamp("2026-11-01 10:00")
    rows = [("c", "T", "customer", "一", 0), ("c", "T", "bot", "系统消息", 1), ("c", "T", "agent", "二", 2),
            ("c", "U", "customer", "别的工单", 3), ("d", "T", "customer", "别的客户", 4),
            ("c", "T", "customer", "三", 5), ("c", "T", "agent", "四", 6), ("c", "T", "customer", "五", 7),
            ("c", None, "customer", "没有工单", 8), ("c", "T", "customer", "零", -1), ("c", "R", "customer", "评价", 9)]
    events = pd.DataFrame([{"customer_id": c, "ticket_id": t, "author": a, "text": x, "created_at": at + pd.Timedelta(minutes=m),
                            "channel": "review" if t == "R" else "chat"}
                           for c, t, a, x, m in rows]).iloc[::-1]  # out of time order on purpose
    turns = ticket_contexts(events).sort_index().tolist()
    assert turns[9] == () and turns[3] == () and turns[4] == ()
    assert turns[8] == () and turns[10] == ()  # no ticket, a review: no dialogue
    assert turns[0] == (("customer", "零"),) and turns[2] == (("customer", "零"), ("customer", "一"))
    assert turns[7] == (("customer", "一"), ("agent", "二"), ("customer", "三"), ("agent", "四"))
    assert turns[5] == (("customer", "零"), ("customer", "一"), ("agent", "二"))
