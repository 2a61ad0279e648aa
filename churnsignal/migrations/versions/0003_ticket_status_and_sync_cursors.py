"""Events carry the ticket's status as the helpdesk reported it; pulls keep a cursor (issue 14).

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: the status is nullable, since not every helpdesk sends one."""
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ticket_status', sa.String(length=16), nullable=True))
    op.create_table(
        'sync_cursors',
        sa.Column('source', sa.String(length=80), nullable=False),
        sa.Column('stream', sa.String(length=200), nullable=False),
        sa.Column('cursor', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'stream'),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('sync_cursors')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('ticket_status')
