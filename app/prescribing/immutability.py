"""Signed means unchangeable: refuse, at flush time, any write that would alter what was signed.

Services never try; this catches a bug or a stray script before it reaches the database. A
signed prescription may still move through its states (status, the paper original's posting
and receipt, the reason it ended); its content, its items and its signature may not change.
Plan versions are never updated or deleted: a change is a new version.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.prescribing.models import Prescription, PrescriptionItem, SigningCertificate, TreatmentPlanVersion

#: Columns that may change after signing: the workflow's, never the prescription's content.
LIFECYCLE = frozenset({"status", "status_changed_at", "ended_reason", "paper_posted_at", "paper_carrier",
                       "paper_tracking", "paper_received_at"})


class ImmutableRecordError(RuntimeError):
    pass


def _loaded_value(obj, attribute: str):
    history = sa.inspect(obj).attrs[attribute].history
    if history.deleted:
        return history.deleted[0]
    if history.unchanged:
        return history.unchanged[0]
    return getattr(obj, attribute)


def _changed(obj) -> set[str]:
    state = sa.inspect(obj)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


def _check(session: Session, _flush_context, _instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, TreatmentPlanVersion):
            raise ImmutableRecordError("A treatment plan version cannot be changed: save a new version.")
        if isinstance(obj, Prescription) and _loaded_value(obj, "status") != "draft":
            touched = _changed(obj) - LIFECYCLE - {"items"}
            if obj in session.deleted or touched:
                raise ImmutableRecordError(f"A signed prescription cannot be changed ({', '.join(sorted(touched))}).")
        if isinstance(obj, SigningCertificate) and (obj in session.deleted or _changed(obj) - {"active"}):
            raise ImmutableRecordError("A certificate cannot be changed; issue a new one.")
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, PrescriptionItem):
            with session.no_autoflush:
                parent = obj.prescription if obj.prescription is not None else session.get(Prescription,
                                                                                           obj.prescription_id)
            if parent is not None and _loaded_value(parent, "status") != "draft":
                raise ImmutableRecordError("The items of a signed prescription cannot be changed.")


def install() -> None:
    if not sa.event.contains(Session, "before_flush", _check):
        sa.event.listen(Session, "before_flush", _check)
