"""Prescribing's public services: the builder's drafts, the lifecycle after signing, repeat requests,
the CD prescription log, and what other domains ask of prescribing.

Other domains call only this module (and `states.apply` for the workflow):
`checklist_steps(patient)`, `prescriptions_for_patient(patient)`, `stock_for(pharmacy_id, ids)`,
`get(id)`, `by_public_id(public_id)`, `record_original_received(...)`, `can_view_prescription(user, p)`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import url_for

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import services as patients
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient
from app.prescribing import formulary, notifications, rules, states
from app.prescribing.formulary import StockLevel, stock_for  # noqa: F401  (re-exported for other domains)
from app.prescribing.models import Prescription, PrescriptionItem, RepeatRequest
from app.prescribing.quantities import in_words_and_figures
from app.prescribing.signing import Signed, SigningBlocked, SigningError, sign  # noqa: F401  (re-exported)

S = states.State


class PrescribingError(ValueError):
    """A refusal fit to show the person; `errors` maps form fields to messages when there are several."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


def get(prescription_id: int) -> Prescription | None:
    return db.session.get(Prescription, prescription_id)


def by_public_id(public_id: str) -> Prescription | None:
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalar(sa.select(Prescription).where(Prescription.public_id == public_id))


def can_view_prescription(user: User, prescription: Prescription) -> bool:
    """Staff who may see a prescription's full content: the patient's clinician or its prescriber,
    the front desk and admins, and pharmacists of the pharmacy it was sent to. The patient sees
    their own (without the PDF's signature material)."""
    if user.role is Role.PHARMACIST:
        return prescription.pharmacy_id is not None and user.pharmacy_id == prescription.pharmacy_id \
            and prescription.status != S.DRAFT
    if user.role is Role.CLINICIAN:
        patient = patients.get(prescription.patient_id)
        return prescription.prescriber_id == user.id or (patient is not None and patient.clinician_id == user.id)
    if user.role is Role.PATIENT:
        patient = patients.for_user(user)
        return patient is not None and patient.id == prescription.patient_id
    return user.role in (Role.RECEPTION, Role.ADMIN)


# The builder ----------------------------------------------------------------------------------

def draft_for(patient: Patient, clinician: User) -> Prescription | None:
    return db.session.scalar(sa.select(Prescription).where(
        Prescription.patient_id == patient.id, Prescription.prescriber_id == clinician.id,
        Prescription.status == S.DRAFT).order_by(Prescription.id.desc()).limit(1))


def _new_draft(patient: Patient, clinician: User, session, *, supersedes: Prescription | None = None) -> Prescription:
    draft = Prescription(public_id=secrets.token_hex(12), patient_id=patient.id, prescriber_id=clinician.id,
                         status=S.DRAFT.value, supersedes_id=supersedes.id if supersedes else None)
    session.add(draft)
    session.flush()
    audit.record("prescription.draft_started", subject=("prescription", draft.id), patient_id=patient.id,
                 detail={"supersedes": supersedes.public_id if supersedes else None})
    return draft


def _own_draft(prescription: Prescription, clinician: User) -> None:
    if prescription.status != S.DRAFT:
        raise PrescribingError("This prescription has been signed or discarded: it cannot be changed. Cancel it or "
                               "write a new one.")
    if prescription.prescriber_id != clinician.id:
        raise PrescribingError("Only the clinician who started this draft can change it.")


def _item_values(line: rules.Line) -> dict[str, Any]:
    return {"product_id": line.product.id, "product_name": line.product.name,
            "form_label": formulary.form_of(line.product).label, "strength": formulary.strength(line.product),
            "dmd_code": line.product.dmd_code, "dose": line.dose, "quantity": line.quantity, "unit": line.unit,
            "quantity_text": in_words_and_figures(line.quantity, line.unit), "days_supply": line.days_supply,
            "justification": line.justification}


def add_item(patient: Patient, clinician: User, values: dict[str, Any]) -> Prescription:
    """Add a line to the clinician's draft for this patient (starting the draft if there is none)."""
    line, errors = rules.line_errors(values)
    if line is None:
        raise PrescribingError("Check the item: " + " ".join(errors.values()), errors)
    with transaction() as session:
        draft = draft_for(patient, clinician) or _new_draft(patient, clinician, session)
        if len(draft.items) >= rules.MAX_LINES:
            raise PrescribingError(f"One prescription holds at most {rules.MAX_LINES} items.")
        item = PrescriptionItem(prescription_id=draft.id, line=max((i.line for i in draft.items), default=0) + 1,
                                **_item_values(line))
        draft.items.append(item)
        draft.revision += 1
        session.flush()
        audit.record("prescription.item_added", subject=("prescription", draft.id), patient_id=patient.id,
                     detail={"line": item.line, "product_id": line.product.id})
    return draft


def update_item(prescription: Prescription, item_id: int, clinician: User, values: dict[str, Any]) -> Prescription:
    _own_draft(prescription, clinician)
    item = next((i for i in prescription.items if i.id == item_id), None)
    if item is None:
        raise PrescribingError("That item is not on this prescription.")
    line, errors = rules.line_errors(values)
    if line is None:
        raise PrescribingError("Check the item: " + " ".join(errors.values()), errors)
    with transaction():
        for key, value in _item_values(line).items():
            setattr(item, key, value)
        prescription.revision += 1
        audit.record("prescription.item_changed", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"line": item.line, "product_id": line.product.id})
    return prescription


def remove_item(prescription: Prescription, item_id: int, clinician: User) -> Prescription:
    _own_draft(prescription, clinician)
    item = next((i for i in prescription.items if i.id == item_id), None)
    if item is None:
        raise PrescribingError("That item is not on this prescription.")
    with transaction():
        prescription.items.remove(item)
        prescription.revision += 1
        audit.record("prescription.item_removed", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"line": item.line})
    return prescription


@dataclass
class Check:
    """What the builder shows as the prescriber types."""

    #: Field -> message for the line being typed (it could not be added as it is).
    errors: dict[str, str]
    #: Why the draft (with the line being typed) may not be signed.
    blocks: list[rules.Block]
    #: The line's total quantity in words and figures, for confirmation.
    words: str | None = None


def check(patient: Patient, clinician: User, draft: Prescription | None, values: dict[str, Any] | None,
          *, editing_item_id: int | None = None) -> Check:
    """Run every rule on the draft plus the line being typed (or replacing the line being edited)."""
    lines = [rules.line_of(i) for i in (draft.items if draft else []) if i.id != editing_item_id]
    errors: dict[str, str] = {}
    words = None
    if values and any(str(values.get(k) or "").strip() for k in ("product_id", "quantity", "dose", "days_supply")):
        line, errors = rules.line_errors(values)
        if line is not None:
            lines.append(line)
            words = in_words_and_figures(line.quantity, line.unit)
    exclude = {draft.id} if draft else set()
    if draft and draft.supersedes_id:
        exclude.add(draft.supersedes_id)
    return Check(errors, rules.blocking_reasons(patient, clinician, lines, exclude=exclude), words)


def discard(prescription: Prescription, clinician: User) -> None:
    _own_draft(prescription, clinician)
    states.apply(prescription, S.CANCELLED, actor_role=states.CLINICIAN, detail={"reason": "draft discarded"})


# After signing --------------------------------------------------------------------------------

def cancel(prescription: Prescription, clinician: User, reason: str) -> Prescription:
    """Cancel a signed prescription with a reason; the pharmacy and the patient are told."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise PrescribingError("Give the reason for cancelling: the pharmacy and the record keep it.")
    if states.state_of(prescription) is S.DRAFT:
        raise PrescribingError("This is a draft: discard it instead.")
    try:
        states.apply(prescription, S.CANCELLED, actor_role=clinician.role.value, detail={"reason": reason[:1000]})
    except states.TransitionError as exc:
        raise PrescribingError(str(exc)) from exc
    return prescription


def start_superseding(prescription: Prescription, clinician: User) -> Prescription:
    """A draft replacing `prescription` (e.g. out of stock), prefilled with its items.

    The old one stays live until the new one is signed; then it becomes superseded in the same transaction.
    """
    if states.state_of(prescription) not in states.BEFORE_SUPPLY:
        raise PrescribingError("Only a prescription not yet supplied can be replaced.")
    patient = patients.get(prescription.patient_id)
    with transaction() as session:
        if draft_for(patient, clinician) is not None:
            raise PrescribingError("You already have a draft for this patient: finish or discard it first.")
        draft = _new_draft(patient, clinician, session, supersedes=prescription)
        _copy_items(prescription, draft)
    return draft


def _copy_items(source: Prescription, draft: Prescription) -> None:
    for item in source.items:
        product = formulary.get(item.product_id)
        if product is None or not product.active:
            continue  # withdrawn since: the clinician chooses another
        draft.items.append(PrescriptionItem(
            line=item.line, product_id=item.product_id, product_name=product.name,
            form_label=formulary.form_of(product).label, strength=formulary.strength(product),
            dmd_code=product.dmd_code, dose=item.dose, quantity=item.quantity, unit=item.unit,
            quantity_text=item.quantity_text, days_supply=item.days_supply, justification=item.justification))
    draft.revision += 1


def record_posting(prescription: Prescription, *, carrier: str, tracking: str) -> Prescription:
    """Staff posted the wet-signed FP10PCD to the pharmacy."""
    carrier, tracking = " ".join((carrier or "").split()), "".join((tracking or "").split()).upper()
    errors = {}
    if not prescription.paper_original:
        raise PrescribingError("This prescription's electronic copy is the legal original: nothing is posted.")
    if states.state_of(prescription) not in states.BEFORE_SUPPLY:
        raise PrescribingError("This prescription is no longer live: there is nothing to post.")
    if not carrier or len(carrier) > 60:
        errors["carrier"] = "Enter the carrier, e.g. Royal Mail Special Delivery"
    if not (4 <= len(tracking) <= 40) or not tracking.isalnum():
        errors["tracking"] = "Enter the tracking number (letters and digits)"
    if errors:
        raise PrescribingError("Check the posting details.", errors)
    with transaction():
        prescription.paper_posted_at = utcnow()
        prescription.paper_carrier = carrier
        prescription.paper_tracking = tracking
        audit.record("prescription.original_posted", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"carrier": carrier, "tracking": tracking})
        notifications.enqueue_for_pharmacy(prescription, f"original_posted:{tracking}")
    return prescription


def record_original_received(prescription: Prescription, *, matches: bool, note: str = "") -> Prescription:
    """The pharmacy has the paper original: if it matches, supply may go ahead; if not, it is rejected."""
    if not prescription.paper_original:
        raise PrescribingError("This prescription's electronic copy is the legal original.")
    if states.state_of(prescription) not in states.AT_PHARMACY:
        raise PrescribingError("The pharmacy does not hold this prescription now.")
    with transaction():
        audit.record("prescription.original_received", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"matches": matches, "note": note[:500] or None})
        if matches:
            prescription.paper_received_at = utcnow()
        else:
            states.apply(prescription, S.REJECTED, actor_role=states.PHARMACY,
                         detail={"reason": f"The paper original does not match the electronic copy. {note}".strip()})
    return prescription


def expire_due(now: dt.datetime | None = None) -> int:
    """Expire every live prescription past its 28 days (the worker runs this)."""
    now = now or utcnow()
    due = list(db.session.scalars(sa.select(Prescription).where(
        Prescription.status.in_([s.value for s in states.BEFORE_SUPPLY]), Prescription.valid_until <= now)
        .order_by(Prescription.id).limit(500)))
    expired = 0
    for prescription in due:
        try:
            states.apply(prescription, S.EXPIRED, actor_role=states.SYSTEM, detail={"reason": "28 days passed"})
            expired += 1
        except states.TransitionError:
            continue  # moved meanwhile (dispensed, cancelled): nothing to do
    return expired


# Reading --------------------------------------------------------------------------------------

def prescriptions_for_patient(patient: Patient, *, include_drafts: bool = False) -> list[Prescription]:
    query = sa.select(Prescription).where(Prescription.patient_id == patient.id) \
        .order_by(Prescription.signed_at.desc().nulls_first(), Prescription.id.desc())
    if not include_drafts:
        query = query.where(Prescription.signed_at.is_not(None))
    return list(db.session.scalars(query))


def by_status(statuses, *, pharmacy_id: int | None = None, answered_by: User | None = None,
              limit: int = 500) -> list[Prescription]:
    """Signed prescriptions in the given states, longest in their state first: the pharmacy's queue, the
    pipeline board, a prescriber's alerts (`answered_by`: they wrote it or are the patient's clinician)."""
    from app.patients.models import Patient as PatientModel

    query = sa.select(Prescription).where(Prescription.status.in_([str(getattr(s, "value", s)) for s in statuses]),
                                          Prescription.signed_at.is_not(None)) \
        .order_by(Prescription.status_changed_at, Prescription.id).limit(limit)
    if pharmacy_id is not None:
        query = query.where(Prescription.pharmacy_id == pharmacy_id)
    if answered_by is not None:
        query = query.where(sa.or_(Prescription.prescriber_id == answered_by.id, Prescription.patient_id.in_(
            sa.select(PatientModel.id).where(PatientModel.clinician_id == answered_by.id))))
    return list(db.session.scalars(query))


def live_prescription(patient: Patient) -> Prescription | None:
    open_states = [s.value for s in states.LIVE - {S.DELIVERED}]
    return db.session.scalar(sa.select(Prescription).where(
        Prescription.patient_id == patient.id, Prescription.status.in_(open_states))
        .order_by(Prescription.signed_at.desc()).limit(1))


def checklist_steps(patient: Patient) -> list[Step]:
    """The dashboard's notice: "Prescription issued" while the patient has a live prescription."""
    live = live_prescription(patient)
    if live is None:
        return []
    state = states.state_of(live)
    return [Step("prescription", "Prescription issued", StepStatus.WAITING, state.patient_label,
                 url_for("prescribing.my_prescriptions"), "See your prescription", order=80)]


def log_rows(start: dt.date, end: dt.date, *, prescriber: User | None) -> list[tuple[Prescription, PrescriptionItem,
                                                                                     str, User]]:
    """The controlled-drug prescription log: every item signed between two dates (inclusive)."""
    from app.auth.models import User as UserModel
    from app.patients.models import Patient as PatientModel

    since = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    patient_user = sa.orm.aliased(UserModel)
    prescriber_user = sa.orm.aliased(UserModel)
    query = (sa.select(Prescription, PrescriptionItem, patient_user.full_name, prescriber_user)
             .join(PrescriptionItem, PrescriptionItem.prescription_id == Prescription.id)
             .join(PatientModel, PatientModel.id == Prescription.patient_id)
             .join(patient_user, patient_user.id == PatientModel.user_id)
             .join(prescriber_user, prescriber_user.id == Prescription.prescriber_id)
             .where(Prescription.signed_at >= since, Prescription.signed_at < until)
             .order_by(Prescription.signed_at, Prescription.id, PrescriptionItem.line))
    if prescriber is not None:
        query = query.where(Prescription.prescriber_id == prescriber.id)
    return [tuple(row) for row in db.session.execute(query).all()]


# Repeat requests ------------------------------------------------------------------------------

def request_repeat(patient: Patient, prescription: Prescription, note: str) -> RepeatRequest:
    """The patient asks for a repeat; a clinician always reviews it (never automatic)."""
    if prescription.patient_id != patient.id or prescription.signed_at is None:
        raise PrescribingError("You can ask for a repeat of your own prescriptions only.")
    note = " ".join((note or "").split())[:1000]
    with transaction() as session:
        waiting = session.scalar(sa.select(RepeatRequest).where(RepeatRequest.patient_id == patient.id,
                                                                RepeatRequest.status.in_(("pending", "started"))))
        if waiting is not None:
            raise PrescribingError("You already have a repeat request with your clinician. We will tell you when "
                                   "they have looked at it.")
        request = RepeatRequest(patient_id=patient.id, prescription_id=prescription.id, note=note or None)
        session.add(request)
        session.flush()
        audit.record("prescription.repeat_requested", subject=("repeat_request", request.id), patient_id=patient.id,
                     detail={"prescription": prescription.public_id})
        if patient.clinician_id:
            from app.notifications import services as notifications

            notifications.notify(patient.clinician_id, "prescriber.repeat_requested",
                                 key=f"repeat_request:{request.id}:clinician",
                                 link=notifications.link_to("prescribing.repeat_queue"), context={"note": note})
    return request


def repeat_requests_for(clinician: User) -> list[tuple[RepeatRequest, Patient, User]]:
    from app.patients.models import Patient as PatientModel

    rows = db.session.execute(
        sa.select(RepeatRequest, PatientModel, User).join(PatientModel, PatientModel.id == RepeatRequest.patient_id)
        .join(User, User.id == PatientModel.user_id)
        .where(PatientModel.clinician_id == clinician.id, RepeatRequest.status.in_(("pending", "started")))
        .order_by(RepeatRequest.requested_at)).all()
    return [tuple(row) for row in rows]


def repeat_requests_of(patient: Patient) -> list[RepeatRequest]:
    return list(db.session.scalars(sa.select(RepeatRequest).where(RepeatRequest.patient_id == patient.id)
                                   .order_by(RepeatRequest.id.desc())))


def get_repeat_request(request_id: int) -> RepeatRequest | None:
    return db.session.get(RepeatRequest, request_id)


def start_repeat(request: RepeatRequest, clinician: User) -> Prescription:
    """The clinician reviews the request by opening a draft prefilled from the earlier prescription."""
    patient = patients.get(request.patient_id)
    if patient.clinician_id != clinician.id:
        raise PrescribingError("Only the patient's clinician reviews their repeat requests.")
    if request.status != "pending":
        raise PrescribingError("This request has already been reviewed.")
    with transaction() as session:
        if draft_for(patient, clinician) is not None:
            raise PrescribingError("You already have a draft for this patient: finish or discard it first.")
        draft = _new_draft(patient, clinician, session)
        _copy_items(db.session.get(Prescription, request.prescription_id), draft)
        request.status, request.decided_by_id, request.decided_at = "started", clinician.id, utcnow()
        request.new_prescription_id = draft.id
        audit.record("prescription.repeat_started", subject=("repeat_request", request.id), patient_id=patient.id)
    return draft


def decline_repeat(request: RepeatRequest, clinician: User, note: str) -> RepeatRequest:
    patient = patients.get(request.patient_id)
    if patient.clinician_id != clinician.id:
        raise PrescribingError("Only the patient's clinician reviews their repeat requests.")
    note = " ".join((note or "").split())
    if not note:
        raise PrescribingError("Tell the patient why (they will read it in their account).")
    if request.status not in ("pending", "started"):
        raise PrescribingError("This request has already been reviewed.")
    with transaction():
        request.status, request.decided_by_id, request.decided_at = "declined", clinician.id, utcnow()
        request.decision_note = note[:1000]
        audit.record("prescription.repeat_declined", subject=("repeat_request", request.id), patient_id=patient.id)
        from app.notifications import services as notifications

        notifications.notify(patient, "prescription.repeat_declined", key=f"repeat_request:{request.id}:declined",
                             link=notifications.link_to("prescribing.my_prescriptions"),
                             context={"note": request.decision_note})
    return request


# The pharmacy message and the worker ----------------------------------------------------------
# The "pharmacy.prescription" outbox messages (notifications.PHARMACY_KIND) are delivered by the
# pharmacy domain (app/pharmacy/delivery.py): portal pharmacies' prescriptions become transmitted,
# API pharmacies are pushed a signed webhook and acknowledge it.


def _register_worker_jobs() -> None:
    from app.worker import periodic

    periodic("prescribing.expire", 300)(expire_due)


_register_worker_jobs()

