"""The roll-ups, daily and per customer (SQLite and PostgreSQL): the trend views read the same
numbers from them as from the events, under every filter (a tier's from the per-customer ones,
following the customers' latest tiers); the worker counts each message once, even when two
workers analyse it at once; an identity link moves a customer's rows; ``churnsignal qa
rebuild-rollups`` recounts them."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import String, cast, delete, func, select, update

from churnsignal.cli import main
from churnsignal.config import Settings
from churnsignal.nlp.complaints import is_complaint
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Customer, CustomerRollup, DailyRollup, Delivery, Event, utcnow
from churnsignal import rollups
from churnsignal.webhook.pages import rollup_views, trends
from churnsignal.webhook.pages.filters import Filters
from churnsignal.worker import pipeline

FILTERS = [{}, {"source": "chatwoot"}, {"channel": "email"}, {"topic": "REFUND"}, {"topic": "OTHER"},
           {"category": "数码"}, {"category": "-"}, {"by": "week"}, {"source": "zendesk", "topic": "LOGISTICS"},
           {"channel": "chat", "category": "服饰", "by": "week"}, {"source": "nowhere"}]
# Under a tier: the seeded customers are at every tier, and some at none.
TIER_FILTERS = [{"tier": "red"}, {"tier": "yellow"}, {"tier": "blue", "topic": "LOGISTICS"},
                {"tier": "red", "source": "chatwoot", "by": "week"}, {"tier": "blue", "channel": "email"},
                {"tier": "yellow", "category": "食品"}, {"tier": "red", "category": "-", "topic": "OTHER"}]


def rolled(store) -> dict[str, dict[tuple, tuple[int, ...]]]:
    """Every roll-up row, daily and per customer, by key."""
    with store.session() as session:
        return {"daily": {(r.day, r.source, r.channel, r.category, r.topic): (r.messages, r.customer_turns,
                                                                               r.complaints)
                          for r in session.scalars(select(DailyRollup))},
                "customers": {(r.customer_id, r.day, r.source, r.channel, r.category, r.topic): (r.customer_turns,
                                                                                                r.complaints)
                              for r in session.scalars(select(CustomerRollup))}}


def figures(session, filters: Filters, settings: Settings, basis: str) -> dict[str, dict]:
    found = {"volume": trends.volume(session, filters, settings, basis),
             "negative-share": trends.negative_share(session, filters, settings, basis),
             **{f"heatmap-{across}": trends.heatmap(session, filters, settings, across, basis)
                for across in ("source", "channel", "category")}}
    assert {table.basis for table in found.values()} == {basis}
    daily = trends.daily_complaints(session, filters, settings, 28, basis)
    return {name: {"rows": t.rows, "chart": t.chart} for name, t in found.items()} | {"daily": daily}


@pytest.mark.parametrize("days", [28, 45])
def test_every_trend_view_reads_the_same_numbers_from_the_rollups_as_from_the_events(seeded_store, days):
    settings = Settings()
    today = utcnow().date()
    with seeded_store.session() as session:
        for narrower in FILTERS + TIER_FILTERS:
            filters = Filters(since=today - timedelta(days=days - 1), until=today, **narrower)
            from_events = figures(session, filters, settings, rollup_views.EVENTS)
            # The per-customer roll-ups add up to the daily ones too.
            bases = [rollup_views.CUSTOMER_ROLLUPS] + ([] if filters.tier else [rollup_views.ROLLUPS])
            for basis in bases:
                assert figures(session, filters, settings, basis) == from_events, (narrower, basis)
            if narrower in ({}, {"tier": "red"}):
                assert sum(n for *_, n in from_events["volume"]["rows"]) > (100 if not narrower else 20)


def test_days_in_the_configured_zone_and_a_changed_threshold_are_recounted(seeded_store):
    shanghai = Settings(qa={"timezone": "Asia/Shanghai"}, sentiment={"neutral_high": 0.8})
    today = utcnow().date()
    filters = Filters(since=today - timedelta(days=30), until=today, zone="Asia/Shanghai")
    red = replace(filters, tier="red")
    with seeded_store.session() as session:
        assert figures(session, filters, shanghai, rollup_views.ROLLUPS) != figures(session, filters, shanghai,
                                                                               rollup_views.EVENTS)
        assert figures(session, red, shanghai, rollup_views.CUSTOMER_ROLLUPS) != figures(session, red, shanghai,
                                                                                    rollup_views.EVENTS)
    rollups.rebuild(seeded_store, shanghai)
    with seeded_store.session() as session:
        assert figures(session, filters, shanghai, rollup_views.ROLLUPS) == figures(session, filters, shanghai,
                                                                               rollup_views.EVENTS)
        assert figures(session, red, shanghai, rollup_views.CUSTOMER_ROLLUPS) == figures(session, red, shanghai,
                                                                                    rollup_views.EVENTS)


def test_a_rebuild_since_a_day_recounts_that_day_and_after_only(seeded_store):
    before = rolled(seeded_store)
    cut = utcnow().date() - timedelta(days=10)
    with seeded_store.session() as session:
        session.execute(delete(DailyRollup))
        session.execute(delete(CustomerRollup))
    recounted = rollups.rebuild(seeded_store, Settings(), since=cut)
    after = rolled(seeded_store)
    assert after == {"daily": {key: counts for key, counts in before["daily"].items() if key[0] >= cut},
                     "customers": {key: counts for key, counts in before["customers"].items() if key[1] >= cut}}
    assert recounted == (len(after["daily"]), len(after["customers"])) and min(recounted) > 0
    rollups.rebuild(seeded_store, Settings(), since=cut)
    assert rolled(seeded_store) == after


def test_under_a_tier_filter_the_views_sum_the_per_customer_rollups(seeded_store):
    today = utcnow().date()
    filters = Filters(since=today - timedelta(days=27), until=today, tier="red")
    with seeded_store.session() as session:
        assert trends.volume(session, filters, Settings()).basis == rollup_views.CUSTOMER_ROLLUPS
        assert trends.volume(session, replace(filters, tier=None), Settings()).basis == rollup_views.ROLLUPS
        # The daily roll-ups know no customer: asked for a tier, they refuse rather than ignore it.
        with pytest.raises(ValueError, match="per-customer"):
            trends.volume(session, filters, Settings(), rollup_views.ROLLUPS)


def test_a_customer_whose_tier_changes_counts_under_the_new_tier_at_once(seeded_store):
    settings = Settings()
    today = utcnow().date()
    red, blue = (Filters(since=today - timedelta(days=39), until=today, tier=tier) for tier in ("red", "blue"))
    with seeded_store.session() as session:
        before = {f: figures(session, f, settings, rollup_views.CUSTOMER_ROLLUPS) for f in (red, blue)}
        session.execute(update(Customer).where(Customer.customer_id == "c0").values(tier="blue"))
    with seeded_store.session() as session:
        for filters in (red, blue):
            after = figures(session, filters, settings, rollup_views.CUSTOMER_ROLLUPS)
            assert after != before[filters] and after == figures(session, filters, settings, rollup_views.EVENTS)


def test_an_identity_link_moves_the_customers_rows_with_their_messages(seeded_store):
    """What :func:`churnsignal.webhook.identity.adopt` does: c6's messages become c3's, then its rows.

    Both last bought the same category (the rows keep the category they were counted with).
    """
    with seeded_store.session() as session:
        moved = session.scalar(select(func.count()).where(Event.customer_id == "c6", Event.author == "customer"))
        session.execute(update(Event).where(Event.customer_id == "c6").values(customer_id="c3"))
        rollups.move_customer(session, "c6", "c3")
    counted = rolled(seeded_store)
    assert moved > 0 and not any(key[0] == "c6" for key in counted["customers"])
    rollups.rebuild(seeded_store, Settings())
    assert rolled(seeded_store) == counted


def queued(store, texts: list[tuple[str, str]], days_ago: int = 0) -> list[int]:
    """Queued events as the webhook stores them: (author, text), the text masked."""
    now = utcnow() - timedelta(days=days_ago)
    # One minute apart and all on one day: a run just after midnight would split them over two.
    now = max(now, now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=len(texts)))
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        events = [Event(delivery_id=delivery.id, source="zendesk", external_id=f"r{days_ago}-{n}", ticket_id="T1",
                        customer_id="c-1", author=author, channel="chat", text=mask_pii(text).text,
                        created_at=now - timedelta(minutes=n), received_at=now, status="queued")
                  for n, (author, text) in enumerate(texts)]
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


MESSAGES = [("customer", "快递一个星期都没到，客服也不回消息，我要退款"), ("customer", "质量太差了，用了两天就坏了"),
            ("customer", "好的，谢谢"), ("agent", "您好，快递已经在路上了"), ("customer", "   ")]


def test_the_worker_counts_each_message_once_as_it_analyses(store, tmp_path: Path):
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    ids = queued(store, MESSAGES)
    pipeline.analyse(store, ids, settings)
    counted = rolled(store)
    with store.session() as session:
        complaints = session.scalar(select(func.count()).where(Event.author == "customer",
                                                               Event.negative_prob >= settings.sentiment.neutral_high))
    [every] = [counts for key, counts in counted["daily"].items() if key[4] == rollups.ALL]
    assert every == (5, 3, complaints) and complaints >= 2
    [mine] = [counts for key, counts in counted["customers"].items() if key[0] == "c-1" and key[5] == rollups.ALL]
    assert mine == (3, complaints)
    # Analysed again (a redelivered task): nothing more is counted.
    assert pipeline.analyse(store, ids, settings) == []
    assert rolled(store) == counted
    rollups.rebuild(store, settings)
    assert rolled(store) == counted


def test_two_workers_analysing_the_same_messages_count_them_once(store, tmp_path: Path):
    settings = Settings(fusion={"cache_dir": str(tmp_path / "cache")})
    pipeline.analyse(store, queued(store, MESSAGES[:1], days_ago=1), settings)  # the models, loaded once
    ids = queued(store, MESSAGES * 4)
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    took: list[list[int]] = []

    def work() -> None:
        start.wait()
        try:
            took.append(sorted(pipeline.analyse(store, ids, settings)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Both found the messages waiting and analysed them: each message was counted by one.
    assert errors == [] and took == [sorted(ids), sorted(ids)]
    counted = rolled(store)
    assert sum(c[0] for key, c in counted["daily"].items() if key[4] == rollups.ALL) == len(ids) + 1
    # Three customer turns the sentiment read in each copy of MESSAGES, and in the first batch's one message.
    assert sum(c[0] for key, c in counted["customers"].items() if key[5] == rollups.ALL) == 3 * 4 + 1
    rollups.rebuild(store, settings)
    assert rolled(store) == counted


def test_the_rebuild_command_recounts_the_configured_store(configured):
    seeded_store = configured
    expected = rolled(seeded_store)
    with seeded_store.session() as session:
        session.execute(delete(DailyRollup))
        session.execute(delete(CustomerRollup))
    since = (utcnow().date() - timedelta(days=3)).isoformat()
    answer = CliRunner().invoke(main, ["qa", "rebuild-rollups", "--since", since])
    assert answer.exit_code == 0, answer.output
    recounted = rolled(seeded_store)
    assert recounted == {"daily": {k: v for k, v in expected["daily"].items() if k[0].isoformat() >= since},
                         "customers": {k: v for k, v in expected["customers"].items() if k[1].isoformat() >= since}}
    assert (f"{len(recounted['daily'])} daily and {len(recounted['customers'])} per-customer roll-up rows "
            f"recounted from {since}") in answer.stdout
    answer = CliRunner().invoke(main, ["qa", "rebuild-rollups", "--since", "yesterday"])
    assert answer.exit_code == 2 and "--since" in answer.output
    assert CliRunner().invoke(main, ["qa", "rebuild-rollups"]).exit_code == 0
    assert rolled(seeded_store) == expected


def newest_complaints(session, filters: Filters, settings: Settings) -> list[Event]:
    """The complaints under ``filters``, newest first, read one by one from every event."""
    tiers = dict(session.execute(select(Customer.customer_id, Customer.tier)).all())
    return [e for e in sorted(session.scalars(select(Event)).all(), key=lambda e: (e.created_at, e.id), reverse=True)
            if is_complaint(e.author, e.negative_prob, settings)
            and filters.start <= e.created_at < filters.end and filters.source in (None, e.source)
            and filters.channel in (None, e.channel) and filters.tier in (None, tiers.get(e.customer_id))
            and filters.topic in (None, *rollups.complaint_topics(e.entities))]


@pytest.mark.parametrize("narrower", [{}, {"topic": "LOGISTICS"}, {"topic": "PRICE", "source": "zendesk"},
                                      {"tier": "red"}, {"tier": "blue", "topic": "LOGISTICS"}])
def test_the_drill_down_reads_the_newest_complaints_batch_after_batch(seeded_store, narrower):
    settings = Settings()
    today = utcnow().date()
    filters = Filters(since=today - timedelta(days=39), until=today, **narrower)
    with seeded_store.session() as session:
        expected = [e.id for e in newest_complaints(session, filters, settings)]
        # Several batches of 20 (ties in time among the spike's messages included), and all of them.
        for limit in (3, 120, 10_000):
            shown = [m["event_id"] for m in trends.messages(session, filters, settings, limit=limit)]
            assert shown == expected[:limit]
    assert len(expected) > (120 if not narrower else 3)


@pytest.mark.parametrize("narrower", [{}, {"tier": "red"}, {"channel": "chat"}])
def test_each_spikes_examples_are_the_newest_complaints_of_its_topic_that_day(seeded_store, narrower):
    """The spikes' days are read together (one statement per batch for them all); each spike
    still shows the newest three of its own topic and day."""
    settings = Settings()
    today = utcnow().date()
    filters = Filters(since=today - timedelta(days=39), until=today, **narrower)
    with seeded_store.session() as session:
        # Texts that say which message they are: the examples show only text and entities.
        session.execute(update(Event).values(text=Event.text + "#" + cast(Event.id, String)))
        # Half the customers red: enough of the spikes' complaints to spike at that tier too.
        session.execute(update(Customer).where(Customer.customer_id.in_(["c0", "c2", "c4", "c6"])).values(tier="red"))
    with seeded_store.session() as session:
        found = trends.spike_rows(session, filters, settings)
        assert found
        for spike in found:
            day = date.fromisoformat(spike["day"])
            expected = newest_complaints(session, replace(filters, since=day, until=day, topic=spike["topic"]),
                                         settings)[:3]
            assert [example["text"] for example in spike["examples"]] == [e.text for e in expected]
            assert len(expected) == min(3, spike["count"])
    if not narrower:
        assert len({spike["day"] for spike in found}) > 1
