"""The transactional outbox: enqueue in the caller's transaction, deliver from the worker.

Claiming uses a lease: a claimed message's `next_attempt_at` moves past the lease, so a worker
killed mid-delivery leaves it to be picked up again (at least once). On PostgreSQL the claim is
`FOR UPDATE SKIP LOCKED`, so several workers never take the same message at the same time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.database import transaction, utcnow
from app.extensions import db
from app.outbox.models import DEAD, DELIVERED, PENDING, OutboxMessage

log = logging.getLogger(__name__)

Handler = Callable[[OutboxMessage, dict[str, Any]], None]
_handlers: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn

    return register


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


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff with full jitter, capped at an hour."""
    ceiling = min(3600.0, 2.0 ** attempts)
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def claim(limit: int = 20) -> list[int]:
    now = utcnow()
    lease = dt.timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])
    with transaction() as session:
        query = (
            sa.select(OutboxMessage.id)
            .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at)
            .limit(limit)
        )
        if db.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if ids:
            session.execute(
                sa.update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(next_attempt_at=now + lease)
            )
    return ids


def deliver(message_id: int) -> bool:
    """Deliver one claimed message; record the outcome. True when delivered."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.status != PENDING:
        return False
    handle = _handlers.get(message.kind)
    error: str | None = None
    try:
        if handle is None:
            raise LookupError(f"no handler for outbox kind {message.kind!r}")
        handle(message, json.loads(message.payload))
    except Exception as exc:  # any failure is retried; the reason is kept on the message
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("outbox delivery failed", extra={"outbox_id": message_id, "kind": message.kind, "error": error})
    with transaction():
        message = db.session.get(OutboxMessage, message_id)
        message.attempts += 1
        if error is None:
            message.status = DELIVERED
            message.delivered_at = utcnow()
            message.last_error = None
        else:
            message.last_error = error
            if message.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
                message.status = DEAD
            else:
                message.next_attempt_at = utcnow() + backoff(message.attempts)
    return error is None


def run_once(limit: int = 20) -> int:
    """Claim and deliver what is due. Returns how many were delivered."""
    return sum(deliver(message_id) for message_id in claim(limit))


def depth() -> dict[str, int]:
    rows = db.session.execute(sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status))
    return {status: count for status, count in rows}


__all__ = ["DEAD", "DELIVERED", "PENDING", "claim", "deliver", "depth", "enqueue", "handler", "run_once"]
