"""Events record which models analysed them, so a model upgrade can read old messages again.

After the sentiment or entity model is replaced, the messages already stored keep the old
model's signals, and the QA workspace's trends, roll-ups and drill-downs keep counting its
complaints. ``analysed_by`` names the models that wrote a message's signals
(``fusion.text.analysed_by``); ``churnsignal qa reanalyse`` reads again those another model
wrote. Nullable: the messages analysed before this were read by models nothing recorded, and
are read again like any other model's.

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('analysed_by', sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('analysed_by')
