"""The migrations are the only way the schema is made: they must agree with the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.database import for_dialect
from app.extensions import db


def test_models_and_migrations_agree(ctx):
    with db.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": for_dialect(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), db.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_database_is_at_the_newest_revision(ctx):
    from alembic.script import ScriptDirectory

    config = ctx.extensions["migrate"].migrate.get_config(ctx.extensions["migrate"].directory)
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head


def test_audit_chain_starts_at_genesis(ctx):
    row = db.session.execute(sa.text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    assert row.seq == 0 and row.hash == "0" * 64


def test_migrations_downgrade_and_upgrade_cleanly(app):
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        downgrade(revision="base")
        assert "users" not in sa.inspect(db.engine).get_table_names()
        upgrade()
        assert {"users", "audit_events", "outbox_messages"} <= set(sa.inspect(db.engine).get_table_names())
