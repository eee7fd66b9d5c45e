"""PostgreSQL roles: the application connects as a role that can only append to the audit trail.

Two roles, as PostgreSQL's documentation advises for applications (ddl-priv):

- the *owner* (migration) role owns every table; it runs `flask db upgrade`, `flask db roles`,
  `flask restore`; only it could switch the audit triggers off, so its credentials stay with the
  people who deploy, never in a running process;
- the *app* role (`VERITY_DB_APP_ROLE`) is what the web, signaling and background processes connect
  as. It reads and writes the ordinary tables, but on `audit_events` it has SELECT and INSERT only,
  on `audit_head` SELECT and UPDATE of (seq, hash) only (every append moves the head; a trigger
  refuses to move it backwards), and on `alembic_version` SELECT only. Not owning anything, it
  cannot drop, truncate, alter or disable a trigger.

`grant_app_role` is idempotent: migration 0016 calls it when `VERITY_DB_APP_ROLE` is set, and
`flask db roles` runs it again at any time. Default privileges give the app role the ordinary
grants on tables that later migrations (run by the owner) create; a later migration that adds a
table the app may only append to narrows it the way this module does for the audit table.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

#: The tables the app may only append to or read, and what it may do there.
NARROW = {
    "audit_events": ["GRANT SELECT, INSERT ON {table} TO {role}"],
    "audit_head": ["GRANT SELECT ON {table} TO {role}", "GRANT UPDATE (seq, hash) ON {table} TO {role}"],
    "alembic_version": ["GRANT SELECT ON {table} TO {role}"],
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class RoleError(RuntimeError):
    """The app role cannot be set up as asked; the message says what to do."""


def grant_app_role(conn: sa.Connection, role: str, *, create: bool = False) -> list[str]:
    """Grant `role` what the application needs and no more; return the statements run.

    Run as the owner of the tables (they are the only one who can grant on them).
    """
    if conn.dialect.name != "postgresql":
        raise RoleError("database roles are a PostgreSQL feature; SQLite has none")
    if not _NAME.match(role):
        raise RoleError(f"{role!r} is not a plain role name (letters, digits and underscores)")
    owner = conn.scalar(sa.text("SELECT current_user"))
    if role == owner:
        raise RoleError(f"the app role must not be the owner ({owner}) that runs the migrations")
    table_owner = conn.scalar(sa.text("SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() "
                                      "AND tablename = 'audit_events'"))
    if table_owner is None:
        raise RoleError("there is no audit_events table here: run `flask db upgrade` first")
    if not conn.scalar(sa.text("SELECT pg_has_role(current_user, :owner, 'USAGE')"), {"owner": table_owner}):
        # PostgreSQL only warns when someone else's GRANT grants nothing: refuse instead of pretending.
        raise RoleError(f"run this as the tables' owner ({table_owner}), not as {owner}")
    found = conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    quote = conn.dialect.identifier_preparer.quote
    role_q = quote(role)
    statements: list[str] = []
    if found is None:
        if not create:
            raise RoleError(f"role {role} does not exist: create it (CREATE ROLE {role_q} LOGIN PASSWORD '...'), "
                            "or run `flask db roles --create` as a role allowed to create roles")
        statements.append(f"CREATE ROLE {role_q} LOGIN")
    elif found.rolsuper:
        raise RoleError(f"role {role} is a superuser: a superuser passes every check, so it cannot be the app role")
    elif conn.scalar(sa.text("SELECT pg_has_role(:role, current_user, 'MEMBER')"), {"role": role}):
        raise RoleError(f"role {role} is a member of {owner}: it would act as the owner")
    schema = quote(conn.scalar(sa.text("SELECT current_schema()")))
    statements += [
        f"GRANT USAGE ON SCHEMA {schema} TO {role_q}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role_q}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role_q}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_q}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role_q}",
    ]
    tables = set(sa.inspect(conn).get_table_names())
    for table, grants in NARROW.items():
        if table not in tables:
            continue
        statements.append(f"REVOKE ALL ON {quote(table)} FROM {role_q}")
        statements += [grant.format(table=quote(table), role=role_q) for grant in grants]
    for statement in statements:
        conn.exec_driver_sql(statement)
    return statements
