"""The audit trail: append entries to a SHA-256 hash chain, and verify the chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.audit import context
from app.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from app.database import transaction, utcnow
from app.extensions import db

HEAD_ID = 1


def canonical_detail(detail: dict[str, Any] | None) -> str:
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    actor_id: int | None,
    actor_role: str | None,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    patient_id: int | None,
    ip: str | None,
    user_agent: str | None,
    detail: str,
) -> str:
    """Hash of one entry: its fields as a JSON array, chained to the previous entry's hash."""
    body = json.dumps(
        [seq, at.astimezone(dt.UTC).isoformat(timespec="microseconds"), actor_id, actor_role, action,
         subject_type, subject_id, patient_id, ip, user_agent, detail],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def record(
    action: str,
    *,
    subject: tuple[str, object] | None = None,
    patient_id: int | None = None,
    detail: dict[str, Any] | None = None,
    actor: context.Actor | None = None,
) -> AuditEvent:
    """Append one entry, inside the caller's transaction (or a new one)."""
    who = actor or context.current()
    with transaction() as session:
        # The UPDATE takes the chain lock before we read the head: no two writers see the same head.
        row = session.execute(
            sa.update(AuditHead)
            .where(AuditHead.id == HEAD_ID)
            .values(seq=AuditHead.seq + 1)
            .returning(AuditHead.seq, AuditHead.hash)
        ).one()
        seq, prev_hash = row.seq, row.hash
        at = utcnow()
        subject_type, subject_id = (subject[0], str(subject[1])) if subject else (None, None)
        detail_text = canonical_detail(detail)
        ua = (who.user_agent or "")[:300] or None
        digest = entry_hash(prev_hash, seq, at, who.user_id, who.role, action, subject_type, subject_id,
                            patient_id, who.ip, ua, detail_text)
        event = AuditEvent(
            seq=seq, at=at, actor_id=who.user_id, actor_role=who.role, action=action,
            subject_type=subject_type, subject_id=subject_id, patient_id=patient_id,
            ip=who.ip, user_agent=ua, detail=detail_text, prev_hash=prev_hash, hash=digest,
        )
        session.add(event)
        session.execute(sa.update(AuditHead).where(AuditHead.id == HEAD_ID).values(hash=digest))
    return event


def lock_chain() -> None:
    """Take the chain's lock now, in the caller's transaction (held until it ends), without appending.

    For a service that takes a lock of its own which other writers may take after they have audited (billing's
    gapless number counters): taking the chain first keeps one lock order everywhere, so two such transactions
    queue instead of deadlocking. The no-op UPDATE keeps the head where it is (the forward-only trigger allows it).
    """
    with transaction() as session:
        session.execute(sa.update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq))


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None


_COLUMNS = (
    AuditEvent.seq, AuditEvent.at, AuditEvent.actor_id, AuditEvent.actor_role, AuditEvent.action,
    AuditEvent.subject_type, AuditEvent.subject_id, AuditEvent.patient_id, AuditEvent.ip,
    AuditEvent.user_agent, AuditEvent.detail, AuditEvent.prev_hash, AuditEvent.hash,
)


def _rows(batch: int) -> Iterable[sa.Row]:
    """Stream the chain in order in keyset batches: flat memory whatever its length."""
    after = 0
    while True:
        rows = db.session.execute(
            sa.select(*_COLUMNS).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def verify_chain(batch: int = 5000) -> VerifyResult:
    """Recompute every hash from the genesis; name the first entry that does not match."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for row in _rows(batch):
        if row.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"entry {expected_seq} is missing (next is {row.seq})")
        if row.prev_hash != prev_hash:
            return VerifyResult(False, checked, row.seq, "its link to the previous entry does not match")
        digest = entry_hash(prev_hash, row.seq, row.at, row.actor_id, row.actor_role, row.action,
                            row.subject_type, row.subject_id, row.patient_id, row.ip, row.user_agent, row.detail)
        if digest != row.hash:
            return VerifyResult(False, checked, row.seq, "its content does not match its hash")
        prev_hash = row.hash
        expected_seq += 1
        checked += 1
    head = db.session.execute(sa.select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).first()
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return VerifyResult(False, checked, checked + 1 if head.seq > checked else head.seq,
                            f"the chain head records {head.seq} entries but {checked} verify")
    return VerifyResult(True, checked)


@dataclass
class AuditFilter:
    actor_id: int | None = None
    patient_id: int | None = None
    action: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def search(filters: AuditFilter, *, before_seq: int | None = None, limit: int = 50) -> list[AuditEvent]:
    """Newest first, keyset-paged by `before_seq` so deep pages cost the same as the first."""
    query = sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if before_seq:
        query = query.where(AuditEvent.seq < before_seq)
    if filters.actor_id:
        query = query.where(AuditEvent.actor_id == filters.actor_id)
    if filters.patient_id:
        query = query.where(AuditEvent.patient_id == filters.patient_id)
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.date_from:
        start = dt.datetime.combine(filters.date_from, dt.time.min, tzinfo=dt.UTC)
        query = query.where(AuditEvent.at >= start)
    if filters.date_to:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        query = query.where(AuditEvent.at < end)
    return list(db.session.scalars(query))


def actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def last_detail(action: str, *, patient_id: int) -> dict[str, Any]:
    """The detail of a patient's newest entry of `action` ({} when there is none)."""
    detail = db.session.scalar(
        sa.select(AuditEvent.detail).where(AuditEvent.action == action, AuditEvent.patient_id == patient_id)
        .order_by(AuditEvent.seq.desc()).limit(1))
    return json.loads(detail) if detail else {}
