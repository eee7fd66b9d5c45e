"""The transactional outbox: enqueue in the caller's transaction, deliver from the worker.

Claiming uses a lease: a claimed message's `next_attempt_at` moves past the lease, so a worker
killed mid-delivery leaves it to be picked up again (at least once). On PostgreSQL the claim is
`FOR UPDATE SKIP LOCKED`, so several workers never take the same message at the same time.

Every attempt is kept (`OutboxAttempt`: when, how long, the outcome, the receiver's HTTP status and
the error), so a message that ends in the dead-letter state shows why, try by try. A handler may
return the receiver's HTTP status, or raise `DeliveryFailed(reason, http_status=...)`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.database import transaction, utcnow
from app.extensions import db
from app.outbox.models import DEAD, DELIVERED, FAILED, PENDING, OutboxAttempt, OutboxMessage

log = logging.getLogger(__name__)

Handler = Callable[[OutboxMessage, dict[str, Any]], "int | None"]
_handlers: dict[str, Handler] = {}
#: Backoff defaults (seconds); OUTBOX_BACKOFF_BASE_SECONDS and OUTBOX_BACKOFF_CAP_SECONDS override them.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0


class DeliveryFailed(RuntimeError):
    """A handler's refusal with the receiver's HTTP status, when there was one."""

    def __init__(self, reason: str, *, http_status: int | None = None):
        super().__init__(reason)
        self.http_status = http_status


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the deliverer of a kind; a later registration for the same kind replaces the earlier one."""
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn

    return register


def handler_for(kind: str) -> Handler | None:
    return _handlers.get(kind)


def enqueue(kind: str, key: str, payload: dict[str, Any]) -> OutboxMessage:
    """Add a message in the current transaction; the same key twice is the same message."""
    with transaction() as session:
        existing = session.scalar(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        if existing is not None:
            return existing
        message = OutboxMessage(kind=kind, idempotency_key=key, payload=json.dumps(payload, sort_keys=True))
        session.add(message)
        session.flush()
        return message


def _setting(name: str, default: float) -> float:
    """The app config, then VERITY_<name> in the environment (what a worker process is given), then the default."""
    value = current_app.config.get(name)
    if value is None:
        value = os.environ.get(f"VERITY_{name}")
    return float(value) if value is not None else default


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff with jitter (a random point in the upper half), capped (an hour by default)."""
    base = float(_setting("OUTBOX_BACKOFF_BASE_SECONDS", BACKOFF_BASE_SECONDS))
    cap = float(_setting("OUTBOX_BACKOFF_CAP_SECONDS", BACKOFF_CAP_SECONDS))
    ceiling = min(cap, base * 2.0 ** attempts)
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def claim(limit: int = 20, *, kinds: Iterable[str] | None = None) -> list[int]:
    now = utcnow()
    lease = dt.timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])
    with transaction() as session:
        query = (
            sa.select(OutboxMessage.id)
            .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at)
            .limit(limit)
        )
        if kinds is not None:
            query = query.where(OutboxMessage.kind.in_(list(kinds)))
        if db.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if ids:
            session.execute(
                sa.update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(next_attempt_at=now + lease)
            )
    return ids


def _worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


def deliver(message_id: int) -> bool:
    """Deliver one claimed message; record the attempt and the outcome. True when delivered."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.status != PENDING:
        return False
    handle = _handlers.get(message.kind)
    error: str | None = None
    http_status: int | None = None
    started_at, started = utcnow(), time.perf_counter()
    try:
        if handle is None:
            raise LookupError(f"no handler for outbox kind {message.kind!r}")
        answer = handle(message, json.loads(message.payload))
        http_status = answer if isinstance(answer, int) else None
    except Exception as exc:  # any failure is retried; the reason is kept on the message and the attempt
        db.session.rollback()  # whatever the handler left half-done is not ours to commit
        error = f"{type(exc).__name__}: {exc}"[:500]
        http_status = getattr(exc, "http_status", None)
        log.warning("outbox delivery failed", extra={"outbox_id": message_id, "kind": message.kind, "error": error})
    duration_ms = int((time.perf_counter() - started) * 1000)
    with transaction() as session:
        message = db.session.get(OutboxMessage, message_id)
        message.attempts += 1
        if error is None:
            outcome = DELIVERED
            message.status = DELIVERED
            message.delivered_at = utcnow()
            message.last_error = None
        else:
            message.last_error = error
            if message.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
                message.status = outcome = DEAD
            else:
                outcome = FAILED
                message.next_attempt_at = utcnow() + backoff(message.attempts)
        session.add(OutboxAttempt(message_id=message_id, started_at=started_at, duration_ms=duration_ms,
                                  outcome=outcome, http_status=http_status, error=error, worker=_worker_name()))
    return error is None


def run_once(limit: int = 20) -> int:
    """Claim and deliver what is due. Returns how many were delivered."""
    return sum(deliver(message_id) for message_id in claim(limit))


def depth() -> dict[str, int]:
    rows = db.session.execute(sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status))
    return {status: count for status, count in rows}


def oldest_pending_age() -> dt.timedelta | None:
    """How long the oldest message still to be delivered has waited (None when none is waiting)."""
    oldest = db.session.scalar(sa.select(sa.func.min(OutboxMessage.created_at)).where(OutboxMessage.status == PENDING))
    return None if oldest is None else max(utcnow() - oldest, dt.timedelta(0))


def get(message_id: int) -> OutboxMessage | None:
    return db.session.get(OutboxMessage, message_id)


def by_key(key: str) -> OutboxMessage | None:
    return db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key))


def with_key_prefix(kind: str, prefix: str) -> list[OutboxMessage]:
    """Messages of a kind whose idempotency keys start with `prefix` (e.g. one prescription's)."""
    return list(db.session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.kind == kind, OutboxMessage.idempotency_key.startswith(prefix, autoescape=True))
        .order_by(OutboxMessage.id)))


def dead_letters(kinds: Iterable[str] | None = None, *, limit: int = 100) -> list[OutboxMessage]:
    query = sa.select(OutboxMessage).where(OutboxMessage.status == DEAD).order_by(OutboxMessage.id.desc()).limit(limit)
    if kinds is not None:
        query = query.where(OutboxMessage.kind.in_(list(kinds)))
    return list(db.session.scalars(query))


def attempts_of(message_id: int) -> list[OutboxAttempt]:
    return list(db.session.scalars(sa.select(OutboxAttempt).where(OutboxAttempt.message_id == message_id)
                                   .order_by(OutboxAttempt.id)))


def retry(message: OutboxMessage) -> OutboxMessage:
    """Give a dead letter a fresh run of attempts (after the receiver was fixed); its history stays."""
    from app.audit import services as audit

    if message.status != DEAD:
        raise ValueError("Only a message that was given up on can be retried.")
    with transaction():
        message.status = PENDING
        message.attempts = 0
        message.next_attempt_at = utcnow()
        audit.record("outbox.retried", subject=("outbox_message", message.id), detail={"kind": message.kind})
    return message


__all__ = ["DEAD", "DELIVERED", "PENDING", "DeliveryFailed", "attempts_of", "by_key", "claim", "dead_letters",
           "deliver", "depth", "enqueue", "get", "handler", "retry", "run_once", "with_key_prefix"]
