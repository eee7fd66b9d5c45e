"""Worker heartbeats and the readiness checks behind `/readyz`.

Heartbeats live in a table (`worker_heartbeats`) rather than Redis: it works the same in the
embedded layout (SQLite, no Redis) and the scaled one, and readiness already asks the database.
A heartbeat is operational bookkeeping, not a change to anyone's record: it is not audited.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.database import transaction, utcnow
from app.extensions import db
from app.observability.models import WorkerHeartbeat

#: Rows of workers that died without saying so are dropped after this.
FORGET_AFTER = dt.timedelta(days=1)
#: How long the Redis check may take before Redis counts as down.
REDIS_TIMEOUT_SECONDS = 2.0


def beat(name: str, *, host: str, pid: int, started_at: dt.datetime) -> None:
    """Record that the worker `name` is alive now (one upsert), and forget long-dead workers."""
    now = utcnow()
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(WorkerHeartbeat).values(name=name, host=host, pid=pid, started_at=started_at, last_seen=now)
    statement = statement.on_conflict_do_update(
        index_elements=[WorkerHeartbeat.name],
        set_={"host": statement.excluded.host, "pid": statement.excluded.pid,
              "started_at": statement.excluded.started_at, "last_seen": statement.excluded.last_seen})
    with transaction() as session:
        session.execute(statement)
        session.execute(sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < now - FORGET_AFTER))


def forget(name: str) -> None:
    with transaction() as session:
        session.execute(sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def heartbeats() -> list[WorkerHeartbeat]:
    return list(db.session.scalars(sa.select(WorkerHeartbeat).order_by(WorkerHeartbeat.name)))


class Heartbeat:
    """The worker loop's heartbeat: `maybe()` each cycle writes at most every `every_seconds`."""

    def __init__(self, every_seconds: float, name: str | None = None) -> None:
        self.every = every_seconds
        self.host, self.pid = socket.gethostname()[:100], os.getpid()
        #: host:pid, as on the outbox attempts the worker makes.
        self.name = name or f"{self.host[:60]}:{self.pid}"
        self.started_at = utcnow()
        self._last: float | None = None

    def maybe(self) -> None:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every:
            beat(self.name, host=self.host, pid=self.pid, started_at=self.started_at)
            self._last = now

    def stop(self) -> None:
        forget(self.name)


# Readiness -------------------------------------------------------------------------------------

@dataclass
class Readiness:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if check["status"] not in ("ok", "not configured")]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ready" if self.ok else "unavailable", "checks": self.checks}
        if not self.ok:
            body["failed"] = self.failed
        return body


def _database() -> dict[str, Any]:
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        db.session.rollback()
        return {"status": "unavailable", "error": type(exc).__name__}
    return {"status": "ok", "engine": db.engine.dialect.name}


def _redis(url: str | None) -> dict[str, Any]:
    if not url:
        return {"status": "not configured"}
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                  socket_timeout=REDIS_TIMEOUT_SECONDS)
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"status": "unavailable", "error": type(exc).__name__}
    finally:
        client.close()
    return {"status": "ok"}


def _worker(limit_seconds: float) -> dict[str, Any]:
    if limit_seconds <= 0:
        return {"status": "not configured"}
    newest = db.session.scalar(sa.select(sa.func.max(WorkerHeartbeat.last_seen)))
    if newest is None:
        return {"status": "missing", "limit_seconds": limit_seconds}
    age = max((utcnow() - newest).total_seconds(), 0.0)
    fresh = db.session.scalar(sa.select(sa.func.count()).select_from(WorkerHeartbeat).where(
        WorkerHeartbeat.last_seen >= utcnow() - dt.timedelta(seconds=limit_seconds)))
    return {"status": "ok" if age <= limit_seconds else "stale", "age_seconds": round(age, 1),
            "limit_seconds": limit_seconds, "fresh_workers": fresh}


def readiness(config: dict[str, Any]) -> Readiness:
    """Database, Redis (when REDIS_URL is set) and a worker heartbeat newer than READY_WORKER_SECONDS."""
    result = Readiness()
    result.checks["database"] = _database()
    result.checks["redis"] = _redis(config.get("REDIS_URL"))
    if result.checks["database"]["status"] == "ok":
        result.checks["worker"] = _worker(float(config.get("READY_WORKER_SECONDS") or 0))
    else:
        result.checks["worker"] = {"status": "unknown", "error": "the database did not answer"}
    return result
