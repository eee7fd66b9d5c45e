"""Join the passkeys, sessions and billing branches

Revision ID: 0023_join_branches
Revises: 0020_passkeys, 0021_sessions, 0022_billing
Create Date: 2026-12-06 23:00:00

"""

revision = '0023_join_branches'
down_revision = ('0020_passkeys', '0021_sessions', '0022_billing')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
