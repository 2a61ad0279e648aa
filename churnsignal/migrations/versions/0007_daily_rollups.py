"""Daily roll-ups of the QA workspace's trend figures, kept by the worker (issue 15, part 3).

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'daily_rollups',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(length=80), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('category', sa.String(length=200), nullable=False),
        sa.Column('topic', sa.String(length=16), nullable=False),
        sa.Column('messages', sa.Integer(), nullable=False),
        sa.Column('customer_turns', sa.Integer(), nullable=False),
        sa.Column('complaints', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'source', 'channel', 'category', 'topic'),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('daily_rollups')
