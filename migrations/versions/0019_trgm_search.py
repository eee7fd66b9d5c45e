"""trigram search: patient search by part of a name or email uses an index on PostgreSQL

Revision ID: 0019_trgm_search
Revises: 0018_scale_indexes
Create Date: 2026-12-06 22:00:00

Reception's and clinicians' patient search matches `lower(full_name) LIKE '%term%' OR email LIKE '%term%'`.
A B-tree cannot serve a leading wildcard, so on 100,000 patients each search was a sequential scan (60 ms).
pg_trgm's GIN indexes serve both conditions (a bitmap OR of two index scans). pg_trgm is a trusted extension
(PostgreSQL 13+): the database owner may create it. SQLite has no equivalent and needs none at one clinic's size.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '0019_trgm_search'
down_revision = '0018_scale_indexes'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_users_full_name_trgm ON users USING gin (lower(full_name) gin_trgm_ops)")
    op.execute("CREATE INDEX ix_users_email_trgm ON users USING gin (email gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_users_email_trgm")
    op.execute("DROP INDEX IF EXISTS ix_users_full_name_trgm")
    # The extension stays: other databases' objects may use it, and it holds no data.
