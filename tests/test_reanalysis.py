"""After a model upgrade, the stored messages another model read are read again (``churnsignal qa
reanalyse``): as the worker reads a new message, on SQLite and on the real PostgreSQL (the
``store`` fixture), with the roll-ups recounted as each batch is stored, agents' and bots'
messages left alone, an interrupted run resumed, and workers analysing meanwhile counted once.

"Another model" is simulated: the worker's reading is stored, then overwritten as an older model
would have left it (another ``analysed_by``, every probability turned upside down, other topics),
and the roll-ups counted from that.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import count
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import insert, inspect, select, update

from churnsignal import rollups
from churnsignal.cli import main
from churnsignal.config import Settings, get_settings
from churnsignal.fusion import text as fusion_text
from churnsignal.fusion.text import analysed_by
from churnsignal.nlp.analysis import analyse, model_versions
from churnsignal.nlp.complaints import is_complaint
from churnsignal.store import Delivery, Event, Store, alembic_config, latest_revision, utcnow
from churnsignal.webhook.pages import rollup_views
from churnsignal.webhook.pages.filters import Filters
from churnsignal.worker import pipeline
from test_rollups import figures, rolled

OLD_MODELS = "sentiment 0.1.0 0123456789ab int8; entities churnsignal_entities 0.0.9"
# (ticket, author, text): complaints, a chasing turn read after the complaint before it, calm
# turns, an agent's reply, one of our notes come back as a bot message, and an empty message.
DIALOGUE = [("T1", "customer", "我的快递三天了怎么还没有发货，到底怎么回事"), ("T1", "agent", "亲，非常抱歉，已经帮您催促仓库了"),
            ("T1", "customer", "还没到"), ("T2", "customer", "好的，谢谢"), ("T2", "customer", "质量太差了，用了两天就坏了"),
            ("T2", "bot", "客户流失风险：红色 (churnsignal alert 1)"), ("T2", "customer", "   "),
            ("T3", "customer", "请问这个有蓝色的吗")]
SIGNALS = ("negative_prob", "negative_word_share", "entities", "entity_spans", "analysed_by")
# Numbers each call of add, for its events' ids and tickets.
_CALLS = count()


def add(store, rows: list[tuple[str, str, str]], days_ago: int = 0) -> list[int]:
    """Queued events of customer c-1, as the webhook stores them, a minute apart in order, all on
    one day; the tickets are this call's own."""
    start = (utcnow() - timedelta(days=days_ago)).replace(hour=0, minute=1, second=0, microsecond=0)
    call = next(_CALLS)
    with store.session() as session:
        delivery = Delivery(source="zendesk", received_at=start, body="{}")
        session.add(delivery)
        session.flush()
        events = [Event(delivery_id=delivery.id, source="zendesk", external_id=f"r{call}-{n}",
                        ticket_id=f"{ticket}-{call}", customer_id="c-1", author=author, channel="chat", text=text,
                        created_at=start + timedelta(minutes=n), received_at=start, status="queued")
                  for n, (ticket, author, text) in enumerate(rows)]
        session.add_all(events)
        session.flush()
        return [e.id for e in events]


def stored(store) -> dict[int, dict]:
    """Every event's status, author and signals, by id."""
    with store.session() as session:
        return {e.id: {"status": e.status, "author": e.author, **{name: getattr(e, name) for name in SIGNALS}}
                for e in session.scalars(select(Event))}


def read_by_an_old_model(store, settings: Settings) -> None:
    """Leave every analysed message as another model would have: each probability turned upside
    down, other topics and no positions, its own ``analysed_by``; an agent's and a bot's message
    marked too (nothing may read them again); the roll-ups counted from that."""
    with store.session() as session:
        session.execute(update(Event).where(Event.status == "analysed").values(
            negative_prob=1 - Event.negative_prob, entities={"PRICE": 1}, entity_spans=None, analysed_by=OLD_MODELS))
        session.execute(update(Event).where(Event.author != "customer").values(negative_prob=0.9,
                                                                               analysed_by=OLD_MODELS))
    rollups.rebuild(store, settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(fusion={"cache_dir": str(tmp_path / "worker-cache")})


@pytest.fixture
def fresh(tmp_path: Path) -> Settings:
    """The same models with an empty analysis cache: what is read again is read by the models, not the cache."""
    return Settings(fusion={"cache_dir": str(tmp_path / "fresh-cache")})


def migrate(store, step, revision: str) -> None:
    """Take ``store`` to ``revision`` with Alembic's ``step`` (``command.upgrade`` or ``command.downgrade``)."""
    config = alembic_config(store.url)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def columns(store) -> set[str]:
    return {column["name"] for column in inspect(store.engine).get_columns("events")}


def test_the_migration_adds_the_column_and_the_worker_fills_it(database_url: str, settings: Settings) -> None:
    store = Store(database_url)
    migrate(store, command.upgrade, "0009")
    assert store.revision() == "0009" and "analysed_by" not in columns(store)
    now = utcnow()
    with store.engine.begin() as connection:
        delivery = connection.execute(insert(Delivery).values(source="zendesk", received_at=now,
                                                              body="{}")).inserted_primary_key[0]
        connection.execute(insert(Event.__table__).values(
            delivery_id=delivery, source="zendesk", external_id="before", ticket_id="T0", customer_id="c-1",
            author="customer", channel="chat", text="快递太慢了", created_at=now, received_at=now, status="analysed",
            analysed_at=now, negative_prob=0.9, negative_word_share=0.2, entities={"LOGISTICS": 1}))
    store.upgrade()
    assert store.revision() == latest_revision() == "0010"
    [before] = stored(store).values()
    assert before["analysed_by"] is None and before["negative_prob"] == 0.9

    ids = add(store, DIALOGUE)
    pipeline.analyse(store, ids, settings)
    events = stored(store)
    current = analysed_by(settings)
    by = [(author + ("" if text.strip() else " (empty)"), events[i]["analysed_by"])
          for (_, author, text), i in zip(DIALOGUE, ids)]
    assert by == [("customer", current), ("agent", None), ("customer", current), ("customer", current),
                  ("customer", current), ("bot", None), ("customer (empty)", None), ("customer", current)]
    models = model_versions(settings)
    assert current == (f"sentiment {models['sentiment']['version']} {models['sentiment']['fingerprint']} int8; "
                       f"entities {models['entities']['name']} {models['entities']['version']} "
                       f"topics {models['entities']['dialogue_topics']['version']} "
                       f"{models['entities']['dialogue_topics']['fingerprint']} from {settings.sentiment.neutral_high}")

    migrate(store, command.downgrade, "0009")
    assert "analysed_by" not in columns(store)
    store.dispose()


def test_messages_read_by_another_model_get_the_current_reading_and_the_rollups_follow(
        store, settings: Settings, fresh: Settings, monkeypatch) -> None:
    ids = add(store, DIALOGUE, days_ago=1) + add(store, DIALOGUE)
    pipeline.analyse(store, ids, settings)
    current, counted = stored(store), rolled(store)
    read_by_an_old_model(store, settings)
    old = stored(store)
    assert rolled(store) != counted
    customers = [i for i in ids if old[i]["status"] == "analysed"]
    others = [i for i in ids if i not in customers]
    expected_flips = sum(is_complaint("customer", old[i]["negative_prob"], settings)
                         != is_complaint("customer", current[i]["negative_prob"], settings) for i in customers)

    assert pipeline.outdated(store, fresh) == len(customers) == 10
    done = pipeline.reanalyse(store, fresh)

    assert (done.messages, done.flipped) == (len(customers), expected_flips) and expected_flips >= 2
    with store.session() as session:
        # The days the events were stored on, not the clock's: a run across midnight reads the same.
        days = {rollups.day_in(fresh.qa.timezone, at) for at in session.scalars(select(Event.created_at))}
    assert done.days == days and len(days) == 2
    again = stored(store)
    for i in customers:
        assert again[i]["negative_prob"] == pytest.approx(current[i]["negative_prob"], abs=1e-4)
        assert {name: again[i][name] for name in ("entities", "entity_spans", "analysed_by")} == {
            name: current[i][name] for name in ("entities", "entity_spans", "analysed_by")}
    # Agents', bots' and empty messages: exactly as they were, stale marks included.
    assert {i: again[i] for i in others} == {i: old[i] for i in others}
    assert rolled(store) == counted

    # Everything is current: a second run reads nothing, with no model.
    read: list[str] = []
    monkeypatch.setattr(fusion_text, "_analyse", lambda texts, *rest: read.extend(texts) or [])
    assert pipeline.outdated(store, fresh) == 0
    assert pipeline.reanalyse(store, fresh) == pipeline.Reread() and read == []
    assert stored(store) == again


def test_a_model_run_another_way_is_another_reading(store, settings: Settings, tmp_path: Path) -> None:
    """No simulation: the shipped model in full precision instead of int8 reads a little differently."""
    ids = add(store, DIALOGUE)
    pipeline.analyse(store, ids, settings)
    full = Settings(sentiment={"quantize": False}, fusion={"cache_dir": str(tmp_path / "fp32-cache")})
    assert analysed_by(full) != analysed_by(settings) and pipeline.outdated(store, full) == 5
    assert pipeline.reanalyse(store, full).messages == 5
    after = stored(store)
    texts = [text for _, author, text in DIALOGUE if author == "customer" and text.strip()]
    contexts = [[], [("customer", DIALOGUE[0][2]), ("agent", DIALOGUE[1][2])], [], [("customer", DIALOGUE[3][2])], []]
    expected = [r["sentiment"]["negative_prob"] for r in analyse(texts, full, contexts)]
    assert [after[i]["negative_prob"] for i in ids if after[i]["status"] == "analysed"] == pytest.approx(expected,
                                                                                                       abs=1e-4)
    assert {after[i]["analysed_by"] for i in ids if after[i]["status"] == "analysed"} == {analysed_by(full)}


def test_only_messages_from_the_day_given_are_read_again(store, settings: Settings, fresh: Settings) -> None:
    earlier, later = add(store, DIALOGUE, days_ago=3), add(store, DIALOGUE, days_ago=1)
    pipeline.analyse(store, earlier + later, settings)
    read_by_an_old_model(store, settings)
    old = stored(store)
    done = pipeline.reanalyse(store, fresh, since=utcnow().date() - timedelta(days=2))
    after = stored(store)
    assert done.messages == 5 and done.days == {utcnow().date() - timedelta(days=1)}
    assert {i: after[i] for i in earlier} == {i: old[i] for i in earlier}
    assert all(after[i]["analysed_by"] == analysed_by(fresh) for i in later if old[i]["status"] == "analysed")
    before = rolled(store)
    rollups.rebuild(store, settings)
    assert rolled(store) == before


def queue_again(store, event_id: int) -> None:
    """What webhook/identity.py's adopt does to a customer's latest message when it links their key."""
    with store.session() as session:
        session.execute(update(Event).where(Event.id == event_id).values(status="received"))


@pytest.mark.parametrize("when", ["before the run", "while its batch is read"])
def test_a_message_an_identity_link_queued_again_is_left_to_its_worker(store, settings: Settings, fresh: Settings,
                                                                       monkeypatch, when: str) -> None:
    ids = add(store, DIALOGUE)
    pipeline.analyse(store, ids, settings)
    read_by_an_old_model(store, settings)
    latest = ids[-1]
    old = stored(store)
    if when == "before the run":
        queue_again(store, latest)
    else:
        read = pipeline._read
        monkeypatch.setattr(pipeline, "_read", lambda *args: queue_again(store, latest) or read(*args))
    assert pipeline.reanalyse(store, fresh).messages == 4
    assert stored(store)[latest] == old[latest] | {"status": "received"}
    monkeypatch.undo()
    # The worker marks it done again, with the analysis it had; the next run reads it.
    pipeline.analyse(store, [latest], settings)
    assert pipeline.reanalyse(store, fresh).messages == 1
    assert stored(store)[latest]["analysed_by"] == analysed_by(fresh)


def test_an_interrupted_run_keeps_what_it_stored_and_the_next_reads_the_rest(
        store, settings: Settings, fresh: Settings, monkeypatch) -> None:
    ids = [i for days_ago in (2, 1, 0) for i in add(store, DIALOGUE, days_ago)]
    pipeline.analyse(store, ids, settings)
    current, counted = stored(store), rolled(store)
    read_by_an_old_model(store, settings)
    old = stored(store)
    customers = [i for i in ids if old[i]["status"] == "analysed"]
    recount = rollups.recount
    batches: list[tuple] = []

    def fails_in_the_second_batch(session, *args):
        batches.append(args)
        if len(batches) == 2:
            raise RuntimeError("the machine went down")
        return recount(session, *args)

    monkeypatch.setattr(rollups, "recount", fails_in_the_second_batch)
    with pytest.raises(RuntimeError, match="went down"):
        pipeline.reanalyse(store, fresh, batch_size=4)
    after = stored(store)
    # The first batch (the oldest four) is stored; the second, rolled back whole, is as it was.
    first = sorted(customers)[:4]
    assert all(after[i]["analysed_by"] == analysed_by(fresh) for i in first)
    assert {i: after[i] for i in ids if i not in first} == {i: old[i] for i in ids if i not in first}
    # The roll-ups agree with what is stored: a recount changes nothing.
    interrupted = rolled(store)
    rollups.rebuild(store, settings)
    assert rolled(store) == interrupted != counted

    monkeypatch.setattr(rollups, "recount", recount)
    assert pipeline.outdated(store, fresh) == len(customers) - 4
    done = pipeline.reanalyse(store, fresh, batch_size=4)
    assert done.messages == len(customers) - 4
    again = stored(store)
    assert all(again[i]["analysed_by"] == analysed_by(fresh) for i in customers)
    # Read four at a time, not all together as the worker read them: int8 inference scales each
    # batch's activations together, which moves a probability in the fourth decimal.
    assert [again[i]["negative_prob"] for i in customers] == pytest.approx(
        [current[i]["negative_prob"] for i in customers], abs=1e-3)
    assert rolled(store) == counted


def test_workers_analysing_meanwhile_are_counted_once(store, settings: Settings, fresh: Settings) -> None:
    old_ids = add(store, DIALOGUE * 3, days_ago=1) + add(store, DIALOGUE * 3)
    pipeline.analyse(store, old_ids, settings)
    read_by_an_old_model(store, settings)
    new_ids = add(store, DIALOGUE * 3)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(work) -> None:
        start.wait()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lambda: pipeline.reanalyse(store, fresh, batch_size=3),)),
               threading.Thread(target=run, args=(lambda: pipeline.analyse(store, new_ids, settings),))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = stored(store)
    customers = [e for e in events.values() if e["status"] == "analysed"]
    assert len(customers) == 5 * 3 * 3 and {e["analysed_by"] for e in customers} == {analysed_by(fresh)}
    counted = rolled(store)
    assert sum(c[0] for key, c in counted["daily"].items() if key[4] == rollups.ALL) == len(old_ids) + len(new_ids)
    assert sum(c[0] for key, c in counted["customers"].items() if key[5] == rollups.ALL) == len(customers)
    rollups.rebuild(store, settings)
    assert rolled(store) == counted


@pytest.fixture
def cli_env(monkeypatch, tmp_path: Path):
    """``use(url)``: the CLI's settings name that store, with a data folder and an analysis cache of the test's own."""
    def use(url: str) -> None:
        monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATA_DIR", str(tmp_path))
        monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABASE_URL", url)
        monkeypatch.setenv("CHURNSIGNAL_FUSION__CACHE_DIR", str(tmp_path / "cli-cache"))
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def test_the_command_reads_the_configured_store_again_and_says_what_changed(configured, cli_env) -> None:
    """The seeded workspace's messages were stored with no record of their models (and here with
    their probabilities turned upside down): the command reads the last three days' again."""
    store = configured
    cli_env(store.url)
    settings = Settings()
    with store.session() as session:
        session.execute(update(Event).where(Event.status == "analysed").values(negative_prob=1 - Event.negative_prob))
    rollups.rebuild(store, settings)
    since = utcnow().date() - timedelta(days=2)
    start = rollups.first_moment("UTC", since)
    old = stored(store)
    with store.session() as session:
        recent = {e.id: e.created_at for e in session.scalars(select(Event).where(Event.status == "analysed"))
                  if e.created_at >= start}

    answer = CliRunner().invoke(main, ["qa", "reanalyse", "--since", since.isoformat()])

    assert answer.exit_code == 0, answer.output
    after = stored(store)
    flipped = sum(is_complaint("customer", old[i]["negative_prob"], settings)
                  != is_complaint("customer", after[i]["negative_prob"], settings) for i in recent)
    first, last = (rollups.day_in("UTC", at) for at in (min(recent.values()), max(recent.values())))
    days = {first + timedelta(days=n) for n in range((last - first).days + 1)}
    counted = rolled(store)
    rows = (sum(key[0] in days for key in counted["daily"]), sum(key[1] in days for key in counted["customers"]))
    assert answer.stdout == (f"{len(recent)} message(s) read again with {analysed_by(settings)}: {flipped} changed "
                             f"between complaint and not; {rows[0]} daily and {rows[1]} per-customer roll-up rows "
                             f"recounted over {len(days)} day(s)\n")
    assert len(recent) > 10 and flipped > 0 and first == since and len(days) >= 2
    assert {after[i]["analysed_by"] for i in recent} == {analysed_by(settings)}
    assert {i: e for i, e in after.items() if i not in recent} == {i: e for i, e in old.items() if i not in recent}
    # The trend views read from the roll-ups what the messages now say.
    today = utcnow().date()
    with store.session() as session:
        for narrower in ({}, {"tier": "red"}, {"topic": "LOGISTICS"}):
            filters = Filters(since=today - timedelta(days=39), until=today, **narrower)
            basis = rollup_views.CUSTOMER_ROLLUPS if narrower.get("tier") else rollup_views.ROLLUPS
            assert figures(session, filters, settings, basis) == figures(session, filters, settings,
                                                                         rollup_views.EVENTS)

    answer = CliRunner().invoke(main, ["qa", "reanalyse", "--since", since.isoformat()])
    assert answer.exit_code == 0, answer.output
    assert answer.stdout.startswith("0 message(s) read again with ") and "recounted over 0 day(s)" in answer.stdout
    assert stored(store) == after


def test_a_store_not_migrated_to_this_version_is_refused_and_left_as_it_is(database_url: str, cli_env) -> None:
    cli_env(database_url)
    store = Store(database_url)
    answer = CliRunner().invoke(main, ["qa", "reanalyse"])
    assert answer.exit_code == 1 and "at migration (none: no tables)" in answer.output
    assert "run `churnsignal db upgrade` first" in answer.output and "Traceback" not in answer.output
    assert inspect(store.engine).get_table_names() == []
    migrate(store, command.upgrade, "0009")
    answer = CliRunner().invoke(main, ["qa", "reanalyse"])
    assert answer.exit_code == 1 and "is at migration 0009, and this version needs 0010" in answer.output
    assert store.revision() == "0009"
    store.dispose()


def test_without_its_models_the_command_says_so_and_changes_nothing(store, settings: Settings, cli_env,
                                                                    tmp_path: Path, monkeypatch) -> None:
    pipeline.analyse(store, add(store, DIALOGUE), settings)
    read_by_an_old_model(store, settings)
    old, counted = stored(store), rolled(store)
    cli_env(store.url)
    monkeypatch.setenv("CHURNSIGNAL_SENTIMENT__MODEL_DIR", str(tmp_path / "nowhere"))
    get_settings.cache_clear()
    answer = CliRunner().invoke(main, ["qa", "reanalyse"])
    assert answer.exit_code == 1 and "cannot load a model" in answer.output and "Traceback" not in answer.output
    assert (stored(store), rolled(store)) == (old, counted)


def test_an_unreachable_database_is_one_clear_message(cli_env) -> None:
    cli_env("postgresql+psycopg://postgres@127.0.0.1:1/none")
    answer = CliRunner().invoke(main, ["qa", "reanalyse"])
    assert answer.exit_code == 1
    assert "cannot open the database at postgresql+psycopg://postgres@127.0.0.1:1/none" in answer.output


def test_naming_the_platform_takes_its_mentions_out_of_the_stored_competitor_topics(store, settings: Settings,
                                                                                   tmp_path: Path) -> None:
    ids = add(store, [("T1", "customer", "京东快递太慢了，淘宝上早就到了"), ("T1", "customer", "在京东买的东西怎么还没发货")])
    pipeline.analyse(store, ids, settings)
    before = stored(store)
    assert all("COMPETITOR" in before[i]["entities"] for i in ids)
    own = Settings(entities={"own_names": ["京东"]}, fusion={"cache_dir": str(tmp_path / "own-cache")})
    assert pipeline.outdated(store, own) == 2 and pipeline.reanalyse(store, own).messages == 2
    after = stored(store)
    assert ["COMPETITOR" in after[i]["entities"] for i in ids] == [True, False]
    assert [after[i]["entities"].get("LOGISTICS", 0) > 0 for i in ids] == [True, True]
    assert {after[i]["analysed_by"] for i in ids} == {analysed_by(own)}
