"""Scores record whether the customer's window held a service signal (issue 13).

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: nullable, so scores stored before it read as 'not known'."""
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('service_signal', sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_column('service_signal')
