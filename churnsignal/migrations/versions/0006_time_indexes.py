"""Indexes on the times the QA workspace filters by: a range of days reads only those days.

Revision ID: 0006
Revises: 0005
"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_events_created_at', 'events', ['created_at'])
    op.create_index('ix_scores_scored_at', 'scores', ['scored_at'])
    op.create_index('ix_alerts_created_at', 'alerts', ['created_at'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_alerts_created_at', table_name='alerts')
    op.drop_index('ix_scores_scored_at', table_name='scores')
    op.drop_index('ix_events_created_at', table_name='events')
