"""search and queue indexes: patient search by part of a name or email (trigrams, PostgreSQL); a pharmacy's queue page

Revision ID: 0019_trgm_search
Revises: 0018_scale_indexes
Create Date: 2026-12-06 22:00:00

Reception's and clinicians' patient search matches `lower(full_name) LIKE '%term%' OR email LIKE '%term%'`.
A B-tree cannot serve a leading wildcard, so on 100,000 patients each search was a sequential scan (60 ms).
pg_trgm's GIN indexes serve both conditions (a bitmap OR of two index scans). pg_trgm is a trusted extension
(PostgreSQL 13+): the database owner may create it. SQLite has no equivalent and needs none at one clinic's size.

A pharmacy's queue page is its live prescriptions newest first, 50 at a time. `(pharmacy_id, status,
status_changed_at)` serves the counts by state, but the page had to gather and sort every live prescription of the
pharmacy (4,600 at 100,000 patients: 42 ms). `(pharmacy_id, status_changed_at, id)` read backwards yields them in
page order, skipping the few in other states: 1 ms.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '0019_trgm_search'
down_revision = '0018_scale_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_prescriptions_pharmacy_recent', 'prescriptions', ['pharmacy_id', 'status_changed_at', 'id'],
                    unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_users_full_name_trgm ON users USING gin (lower(full_name) gin_trgm_ops)")
    op.execute("CREATE INDEX ix_users_email_trgm ON users USING gin (email gin_trgm_ops)")


def downgrade():
    op.drop_index('ix_prescriptions_pharmacy_recent', table_name='prescriptions')
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_users_email_trgm")
    op.execute("DROP INDEX IF EXISTS ix_users_full_name_trgm")
    # The extension stays: other databases' objects may use it, and it holds no data.
