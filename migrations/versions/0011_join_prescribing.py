"""Join the prescribing branch to the rest

Revision ID: 0011_join_prescribing
Revises: 0008_prescribing, 0009_records
Create Date: 2026-11-24 09:30:00

"""

revision = '0011_join_prescribing'
down_revision = ('0008_prescribing', '0009_records')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
