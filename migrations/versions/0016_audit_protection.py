"""audit protection: the chain head only moves forward; the app role's narrow grants

The audit entries' no-update/no-delete/no-truncate triggers (0001) are asserted ENABLE ALWAYS again,
so they fire under session_replication_role = replica too. The chain head gets triggers of its own:
it can be updated (every append moves it) but never moved backwards, deleted or truncated.

On PostgreSQL, when VERITY_DB_APP_ROLE names the role the application connects as, that role is
granted what the application needs, with SELECT and INSERT only on the audit entries (app/db_roles.py;
`flask db roles` does the same at any time).

Revision ID: 0016_audit_protection
Revises: 0015_join_branches
Create Date: 2027-01-18 09:00:00

"""
import os

from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_audit_protection'
down_revision = '0015_join_branches'
branch_labels = None
depends_on = None

ENTRY_TRIGGERS = ("audit_events_no_update", "audit_events_no_delete", "audit_events_no_truncate")
HEAD_TRIGGERS = ("audit_head_forward_only", "audit_head_no_delete", "audit_head_no_truncate")


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in ENTRY_TRIGGERS:
            op.execute(f"ALTER TABLE audit_events ENABLE ALWAYS TRIGGER {name}")
        op.execute("""
            CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq >= OLD.seq THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION 'the audit chain head only moves forward (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$;
        """)
        op.execute("CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
                   "FOR EACH ROW EXECUTE FUNCTION audit_head_guard()")
        op.execute("CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
                   "FOR EACH ROW EXECUTE FUNCTION audit_head_guard()")
        op.execute("CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard()")
        for name in HEAD_TRIGGERS:
            op.execute(f"ALTER TABLE audit_head ENABLE ALWAYS TRIGGER {name}")
        role = _app_role()
        if role:
            from app.db_roles import grant_app_role

            grant_app_role(op.get_bind(), role)
    else:
        op.execute("CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
                   "WHEN NEW.id <> OLD.id OR NEW.seq < OLD.seq "
                   "BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward (UPDATE refused)'); END")
        op.execute("CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
                   "BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward (DELETE refused)'); END")


def _app_role():
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.config.get("DB_APP_ROLE")
    return os.environ.get("VERITY_DB_APP_ROLE")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in HEAD_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON audit_head")
        op.execute("DROP FUNCTION IF EXISTS audit_head_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_head_forward_only")
        op.execute("DROP TRIGGER IF EXISTS audit_head_no_delete")
