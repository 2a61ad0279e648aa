"""The Alembic migrations and the ORM models describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from churnsignal.store import Base


def test_migrations_match_the_models(store):
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_pull_cursor_is_kept_per_stream_and_moves_on(store):
    assert store.cursor("wecom", "wkA") is None
    store.save_cursor("wecom", "wkA", "4gw7MepFLfgF2VC5npN")
    store.save_cursor("wecom", "wkB", "other")
    store.save_cursor("wecom", "wkA", "next")
    assert (store.cursor("wecom", "wkA"), store.cursor("wecom", "wkB")) == ("next", "other")
