"""scale indexes: a pharmacy's queue (prescriptions by pharmacy, state and time in state) and users by role

Revision ID: 0018_scale_indexes
Revises: 0017_worker_heartbeats
Create Date: 2026-12-11 10:00:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '0018_scale_indexes'
down_revision = '0017_worker_heartbeats'
branch_labels = None
depends_on = None


def upgrade():
    # Plain CREATE INDEX on both engines (no batch table copy: the tables keep their triggers).
    op.create_index('ix_prescriptions_pharmacy_queue', 'prescriptions', ['pharmacy_id', 'status', 'status_changed_at'],
                    unique=False)
    op.create_index(op.f('ix_users_role'), 'users', ['role'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_users_role'), table_name='users')
    op.drop_index('ix_prescriptions_pharmacy_queue', table_name='prescriptions')
