"""Who marked an alert handled, and when: the audit row QA reads (issue 15).

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'alert_handlings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('handled_by', sa.String(length=200), nullable=False),
        sa.Column('handled_at', sa.DateTime(), nullable=False),
        sa.Column('via', sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_alert_handlings_alert_id', 'alert_handlings', ['alert_id'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_alert_handlings_alert_id', table_name='alert_handlings')
    op.drop_table('alert_handlings')
