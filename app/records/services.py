"""Medical records requests: the patient authorises, staff request, chase and attach what arrives."""

from __future__ import annotations

from typing import IO

import sqlalchemy as sa
from flask import url_for

from app.audit import services as audit
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import details
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient
from app.records.models import AUTHORISED, CANCELLED, CHASED, OPEN_STATES, RECEIVED, REQUESTED, RecordsRequest


class RecordsError(ValueError):
    pass


def open_request(patient: Patient) -> RecordsRequest | None:
    return db.session.scalar(sa.select(RecordsRequest).where(
        RecordsRequest.patient_id == patient.id, RecordsRequest.status.in_(OPEN_STATES)))


def latest(patient: Patient) -> RecordsRequest | None:
    return db.session.scalar(sa.select(RecordsRequest).where(RecordsRequest.patient_id == patient.id)
                             .order_by(RecordsRequest.id.desc()).limit(1))


def authorise(patient: Patient) -> RecordsRequest:
    if details.missing(patient, "records"):
        raise RecordsError("Tell us your GP practice first.")
    with transaction() as session:
        existing = open_request(patient)
        if existing is not None:
            return existing
        request = RecordsRequest(patient_id=patient.id, gp_practice=patient.gp_practice)
        session.add(request)
        session.flush()
        audit.record("records.authorised", subject=("records_request", request.id), patient_id=patient.id)
    return request


_ALLOWED = {
    "requested": (AUTHORISED,),
    "chased": (REQUESTED, CHASED),
    "cancelled": OPEN_STATES,
}


def advance(request: RecordsRequest, to: str) -> None:
    """Staff record progress. A conditional UPDATE makes double clicks and races harmless."""
    if to not in _ALLOWED:
        raise RecordsError("That is not a step of a records request.")
    now = utcnow()
    values: dict = {"status": to, "updated_at": now}
    if to == REQUESTED:
        values["requested_at"] = now
    if to == CHASED:
        values["last_chased_at"] = now
        values["times_chased"] = RecordsRequest.times_chased + 1
    with transaction() as session:
        changed = session.execute(sa.update(RecordsRequest).where(
            RecordsRequest.id == request.id, RecordsRequest.status.in_(_ALLOWED[to])).values(**values)).rowcount
        if not changed:
            raise RecordsError("This request has moved on since you opened it. Reload to see where it is.")
        audit.record(f"records.{to}", subject=("records_request", request.id), patient_id=request.patient_id)
    db.session.refresh(request)


def attach(request: RecordsRequest, *, filename: str, stream: IO[bytes], uploaded_by: int) -> RecordsRequest:
    """Store the summary the GP sent (same checks and encryption as any document) and close the request."""
    from app.documents import services as documents

    if request.status not in OPEN_STATES:
        raise RecordsError("This request is already closed.")
    with transaction() as session:
        document = documents.store_file(patient_id=request.patient_id, kind="medical_summary", filename=filename,
                                        stream=stream, uploaded_by=uploaded_by)
        changed = session.execute(sa.update(RecordsRequest).where(
            RecordsRequest.id == request.id, RecordsRequest.status.in_(OPEN_STATES)).values(
            status=RECEIVED, received_at=utcnow(), document_id=document.id, updated_at=utcnow())).rowcount
        if not changed:
            raise RecordsError("This request is already closed.")
        audit.record("records.received", subject=("records_request", request.id), patient_id=request.patient_id,
                     detail={"document_id": document.id})
    db.session.refresh(request)
    return request


def open_requests() -> list[tuple[RecordsRequest, Patient]]:
    return list(db.session.execute(
        sa.select(RecordsRequest, Patient).join(Patient, Patient.id == RecordsRequest.patient_id)
        .where(RecordsRequest.status.in_(OPEN_STATES)).order_by(RecordsRequest.authorised_at)).tuples())


def get(request_id: int) -> RecordsRequest | None:
    return db.session.get(RecordsRequest, request_id)


STATUS_TEXT = {
    AUTHORISED: "We will ask your GP practice for your records shortly.",
    REQUESTED: "We have asked your GP practice. Practices usually reply within 2 weeks.",
    CHASED: "We have reminded your GP practice. We will keep asking until they reply.",
    RECEIVED: "Your GP practice sent your records. Your clinician will read them before your consultation.",
    CANCELLED: "This request was cancelled.",
}


def checklist_steps(patient: Patient) -> list[Step]:
    request = latest(patient)
    title = "Records from your GP (optional)"
    if request is None or request.status == CANCELLED:
        return [Step("records", title, StepStatus.OPTIONAL,
                     "If you do not have a medical summary to upload, we can ask your GP for one.",
                     url_for("records.authorise"), "Ask us to get your records", order=60)]
    status = StepStatus.DONE if request.status == RECEIVED else StepStatus.WAITING
    return [Step("records", title, status, STATUS_TEXT[request.status], url_for("records.authorise"), None,
                 order=60)]
