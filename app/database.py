"""Database plumbing shared by every domain: UTC timestamps, engine set-up, write transactions.

Services write through `transaction()`. On SQLite it begins with BEGIN IMMEDIATE, so two
writers queue for the lock instead of one failing when it tries to upgrade a stale read
snapshot; on PostgreSQL it is an ordinary transaction. Nested calls join the outer one.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from app.extensions import db

_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("verity_sqlite_immediate", default=False)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python; naive UTC in SQLite, timestamptz in PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def configure_engine(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, a busy timeout, and our own BEGIN so writers can ask for IMMEDIATE."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (pysqlite recipe)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


@contextmanager
def transaction() -> Iterator[sa.orm.Session]:
    """One unit of work: commit on success, roll back on any error. Re-entrant."""
    session = db.session()  # the request's (or job's) Session behind the scoped proxy
    if session.info.get("verity_tx"):
        yield session
        return
    if session.in_transaction():
        # Only services write, so an open transaction here holds reads alone: end it so the
        # write transaction starts on fresh data (and, on SQLite, with the write lock).
        session.commit()
    token = _immediate.set(True)
    session.info["verity_tx"] = True
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop("verity_tx", None)
        _immediate.reset(token)


def for_dialect(dialect: str):
    """Alembic `include_object` hook: leave out schema objects declared for another engine only
    (`Index(...).ddl_if(dialect="postgresql")`), which autogenerate would otherwise report as missing."""
    def include(obj, _name, _type, _reflected, _compare_to) -> bool:
        wanted = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        if wanted is None:
            return True
        return dialect in ((wanted,) if isinstance(wanted, str) else tuple(wanted))
    return include
