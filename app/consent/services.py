"""Consent: versioned documents, explicit acceptance per version, withdrawal, re-asking.

A patient consents to each version explicitly; the record keeps which version, when and from
where. Publishing a new version leaves earlier acceptances in place but re-asks at next sign-in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import url_for

from app.audit import context
from app.audit import services as audit
from app.consent.models import ConsentDocument, ConsentRecord
from app.database import transaction
from app.extensions import db
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient

TEXTS = Path(__file__).parent / "texts"
KINDS = {
    "terms": "Terms of service",
    "privacy": "Privacy notice",
    "video": "Video consultations",
    "pharmacy_sharing": "Sharing prescriptions with your pharmacy",
}
#: Kinds every patient accepts; pharmacy_sharing is asked for the nominated pharmacy.
BASE_KINDS = ("terms", "privacy", "video")


class ConsentError(ValueError):
    pass


class State(enum.StrEnum):
    ACCEPTED = "accepted"
    NEEDED = "needed"
    NEW_VERSION = "new version"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class ConsentStatus:
    document: ConsentDocument
    state: State
    #: The version the patient last accepted, if any.
    accepted_version: int | None
    decided_at: object | None


def publish(kind: str, title: str, body: str, *, pharmacy_id: int | None = None) -> ConsentDocument:
    if kind not in KINDS:
        raise ConsentError(f"Unknown consent kind: {kind}")
    if (kind == "pharmacy_sharing") != (pharmacy_id is not None):
        raise ConsentError("Pharmacy data-sharing consent needs a pharmacy, and only it does.")
    if not title.strip() or not body.strip():
        raise ConsentError("A consent document needs a title and a text.")
    with transaction() as session:
        latest = current(kind, pharmacy_id)
        document = ConsentDocument(kind=kind, pharmacy_id=pharmacy_id, version=(latest.version + 1) if latest else 1,
                                   title=title.strip(), body=body.strip())
        session.add(document)
        session.flush()
        audit.record("consent.published", subject=("consent_document", document.id),
                     detail={"kind": kind, "version": document.version, "pharmacy_id": pharmacy_id})
    return document


def load_defaults() -> list[ConsentDocument]:
    """Publish version 1 of each kind that has none yet (idempotent), for every active pharmacy too."""
    from app.pharmacy import services as pharmacies

    created = []
    for kind in BASE_KINDS:
        if current(kind) is None:
            title, _, body = (TEXTS / f"{kind}.txt").read_text().partition("\n\n")
            created.append(publish(kind, title, body))
    for pharmacy in pharmacies.active_pharmacies():
        if current("pharmacy_sharing", pharmacy.id) is None:
            title, _, body = (TEXTS / "pharmacy_sharing.txt").read_text().partition("\n\n")
            created.append(publish("pharmacy_sharing", title.format(pharmacy=pharmacy.name),
                                   body.format(pharmacy=pharmacy.name), pharmacy_id=pharmacy.id))
    return created


def current(kind: str, pharmacy_id: int | None = None) -> ConsentDocument | None:
    query = (sa.select(ConsentDocument).where(ConsentDocument.kind == kind)
             .order_by(ConsentDocument.version.desc()).limit(1))
    query = query.where(ConsentDocument.pharmacy_id.is_(None) if pharmacy_id is None
                        else ConsentDocument.pharmacy_id == pharmacy_id)
    return db.session.scalar(query)


def required_documents(patient: Patient) -> list[ConsentDocument]:
    documents = [current(kind) for kind in BASE_KINDS]
    if patient.pharmacy_id is not None:
        documents.append(current("pharmacy_sharing", patient.pharmacy_id))
    return [d for d in documents if d is not None]


def _latest_decisions(patient: Patient) -> dict[tuple[str, int | None], tuple[ConsentRecord, ConsentDocument]]:
    rows = db.session.execute(
        sa.select(ConsentRecord, ConsentDocument)
        .join(ConsentDocument, ConsentDocument.id == ConsentRecord.document_id)
        .where(ConsentRecord.patient_id == patient.id)
        .order_by(ConsentRecord.id)
    ).all()
    latest: dict[tuple[str, int | None], tuple[ConsentRecord, ConsentDocument]] = {}
    for record, document in rows:
        latest[(document.kind, document.pharmacy_id)] = (record, document)
    return latest


def statuses(patient: Patient) -> list[ConsentStatus]:
    decisions = _latest_decisions(patient)
    result = []
    for document in required_documents(patient):
        decision = decisions.get((document.kind, document.pharmacy_id))
        if decision is None:
            result.append(ConsentStatus(document, State.NEEDED, None, None))
            continue
        record, decided = decision
        if record.decision == "withdrawn":
            state = State.WITHDRAWN
        elif decided.version < document.version:
            state = State.NEW_VERSION
        else:
            state = State.ACCEPTED
        result.append(ConsentStatus(document, state, decided.version if record.decision == "accepted" else None,
                                    record.at))
    return result


def outstanding(patient: Patient) -> list[ConsentDocument]:
    return [s.document for s in statuses(patient) if s.state is not State.ACCEPTED]


def needs_reacceptance(patient: Patient) -> bool:
    """True when a document the patient accepted has a newer version: asked again at sign-in."""
    return any(s.state is State.NEW_VERSION for s in statuses(patient))


def has_consent(patient: Patient, kind: str, pharmacy_id: int | None = None) -> bool:
    """The patient's latest decision accepts the current version (what prescribing checks)."""
    document = current(kind, pharmacy_id)
    return document is not None and any(
        s.document.id == document.id and s.state is State.ACCEPTED for s in statuses(patient))


def accept(patient: Patient, document_ids: list[int]) -> list[ConsentRecord]:
    """Accept exactly the given current versions; anything stale or not the patient's is refused."""
    wanted = {d.id: d for d in required_documents(patient)}
    unknown = [i for i in document_ids if i not in wanted]
    if unknown or not document_ids:
        raise ConsentError("That consent text has changed or is not yours to accept. Read the current one below.")
    actor = context.current()
    records = []
    with transaction() as session:
        for document_id in document_ids:
            record = ConsentRecord(patient_id=patient.id, document_id=document_id, decision="accepted",
                                   ip=actor.ip, user_agent=(actor.user_agent or "")[:300] or None)
            session.add(record)
            session.flush()
            records.append(record)
            document = wanted[document_id]
            audit.record("consent.accepted", subject=("consent_document", document_id), patient_id=patient.id,
                         detail={"kind": document.kind, "version": document.version})
    return records


def withdraw(patient: Patient, document_id: int) -> ConsentRecord:
    status = next((s for s in statuses(patient) if s.document.id == document_id), None)
    if status is None or status.state is State.NEEDED or status.state is State.WITHDRAWN:
        raise ConsentError("There is no consent of yours to withdraw there.")
    actor = context.current()
    with transaction() as session:
        record = ConsentRecord(patient_id=patient.id, document_id=document_id, decision="withdrawn",
                               ip=actor.ip, user_agent=(actor.user_agent or "")[:300] or None)
        session.add(record)
        audit.record("consent.withdrawn", subject=("consent_document", document_id), patient_id=patient.id,
                     detail={"kind": status.document.kind, "version": status.document.version})
    return record


def history(patient: Patient) -> list[tuple[ConsentRecord, ConsentDocument]]:
    return list(db.session.execute(
        sa.select(ConsentRecord, ConsentDocument)
        .join(ConsentDocument, ConsentDocument.id == ConsentRecord.document_id)
        .where(ConsentRecord.patient_id == patient.id)
        .order_by(ConsentRecord.id.desc())
    ).tuples())


def published() -> list[ConsentDocument]:
    return list(db.session.scalars(sa.select(ConsentDocument).order_by(
        ConsentDocument.kind, ConsentDocument.pharmacy_id, ConsentDocument.version.desc())))


def checklist_steps(patient: Patient) -> list[Step]:
    current_statuses = statuses(patient)
    waiting = [s for s in current_statuses if s.state is not State.ACCEPTED]
    if not current_statuses:
        return []
    if not waiting:
        return [Step("consents", "Agree to how we care for you", StepStatus.DONE,
                     "You have agreed to the terms, privacy notice and video consultations.",
                     url_for("consent.index"), None, order=50)]
    status = StepStatus.ACTION if any(s.state is State.NEW_VERSION for s in waiting) else StepStatus.TODO
    hint = (f"{len(waiting)} document{'s' if len(waiting) != 1 else ''} to read and agree to"
            + (", including an updated version." if status is StepStatus.ACTION else "."))
    return [Step("consents", "Agree to how we care for you", status, hint, url_for("consent.index"),
                 "Read and agree", order=50)]
