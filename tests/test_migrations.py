"""The Alembic migrations and the ORM models describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from churnsignal.store import Base


def test_migrations_match_the_models(store):
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_sync_cursor_round_trips(store):
    from churnsignal.store import SyncCursor, utcnow

    with store.session() as session:
        session.add(SyncCursor(source="wecom", stream="wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw", cursor="4gw7MepFLfgF2VC5npN", updated_at=utcnow()))
    with store.session() as session:
        assert session.get(SyncCursor, ("wecom", "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw")).cursor == "4gw7MepFLfgF2VC5npN"
