"""Join the consultation, pharmacy, messaging and outcomes branches

Revision ID: 0015_join_branches
Revises: 0010_consult, 0012_pharmacy, 0013_messaging, 0014_outcomes
Create Date: 2026-12-06 18:40:00

"""

revision = '0015_join_branches'
down_revision = ('0010_consult', '0012_pharmacy', '0013_messaging', '0014_outcomes')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
