"""The stock-out path and the pharmacy <-> clinic thread.

When a pharmacy reports a prescription out of stock, the prescriber sees it at once (an alert on their
pages, besides the state machine's email) with the alternatives in stock at the pharmacy that fit the
patient's treatment plan. Two clicks replace the prescription: "Replace with <alternative>" starts the
superseding draft with the alternative in place of the missing product, and "Sign" (step-up) signs it;
the old one becomes superseded and unusable in the same transaction. Or the prescription can be
redirected to another partner pharmacy that has the stock and that the patient agreed to share with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.outbox import services as outbox
from app.patients import services as patients
from app.pharmacy import inventory
from app.pharmacy import services as pharmacies
from app.pharmacy.models import API, Pharmacy, StockOut, ThreadMessage
from app.prescribing import formulary, notifications, plans, states
from app.prescribing.models import Prescription, PrescriptionItem, Product

S = states.State
KINDS = ("query", "answer", "note")


class StockOutError(ValueError):
    pass


# Recording and resolving --------------------------------------------------------------------

def record(prescription: Prescription, pharmacy: Pharmacy, products: list[int], offered: list[int],
           note: str = "") -> StockOut:
    with transaction() as session:
        row = StockOut(prescription_id=prescription.id, pharmacy_id=pharmacy.id, products=products, offered=offered,
                       note=" ".join((note or "").split())[:2000] or None)
        session.add(row)
        session.flush()
        audit.record("pharmacy.stock_out", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"products": products, "offered": offered})
    return row


def open_stock_out(prescription: Prescription) -> StockOut | None:
    return db.session.scalar(sa.select(StockOut).where(StockOut.prescription_id == prescription.id,
                                                       StockOut.resolved_at.is_(None))
                             .order_by(StockOut.id.desc()).limit(1))


def latest_stock_out(prescription: Prescription) -> StockOut | None:
    return db.session.scalar(sa.select(StockOut).where(StockOut.prescription_id == prescription.id)
                             .order_by(StockOut.id.desc()).limit(1))


def resolve(prescription: Prescription, resolution: str) -> None:
    row = open_stock_out(prescription)
    if row is None:
        return
    with transaction():
        row.resolved_at, row.resolution = utcnow(), resolution
        audit.record("pharmacy.stock_out_resolved", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"resolution": resolution})


def products_named(ids: list[int]) -> list[Product]:
    return [p for p in (formulary.get(i) for i in ids) if p is not None]


# Alternatives -------------------------------------------------------------------------------

@dataclass
class Alternative:
    product: Product
    #: Packs available at the pharmacy (None: in stock, count not published).
    packs: int | None
    #: The pharmacy offered it.
    offered: bool
    #: In the patient's current treatment plan, with the same quantity within its dose range.
    fits_plan: bool


@dataclass
class Shortage:
    item: PrescriptionItem
    product: Product
    alternatives: list[Alternative] = field(default_factory=list)


def _in_stock(pharmacy_id: int, product: Product, quantity: Decimal) -> tuple[bool, int | None]:
    level = inventory.live_stock(pharmacy_id, [product.id]).get(product.id)
    if level is None or not level.in_stock:
        return False, None
    if level.packs is None:
        return True, None
    return level.packs >= inventory.packs_for(quantity, product), level.packs


def shortages(prescription: Prescription) -> list[Shortage]:
    """Each line the pharmacy is out of, with the alternatives in stock there (those that fit the plan first)."""
    row = latest_stock_out(prescription)
    if row is None:
        return []
    patient = patients.get(prescription.patient_id)
    version = plans.current(patient)
    allowed = plans.allowances(version) if version else {}
    result = []
    for item in prescription.items:
        if item.product_id not in row.products:
            continue
        product = formulary.get(item.product_id)
        shortage = Shortage(item, product)
        candidates = {pid for pid in allowed} | set(row.offered)
        for candidate_id in sorted(candidates - {product.id}):
            candidate = formulary.get(candidate_id)
            if candidate is None or not candidate.active or formulary.unit_of(candidate) != item.unit:
                continue
            ok, packs = _in_stock(row.pharmacy_id, candidate, item.quantity)
            if not ok:
                continue
            allowance = allowed.get(candidate_id)
            fits = allowance is not None and item.quantity <= allowance.dose_max * item.days_supply
            shortage.alternatives.append(Alternative(candidate, packs, candidate_id in row.offered, fits))
        shortage.alternatives.sort(key=lambda a: (not a.fits_plan, not a.offered, a.product.name))
        result.append(shortage)
    return result


@dataclass
class Elsewhere:
    pharmacy: Pharmacy
    #: The patient agreed to share prescriptions with it (needed to redirect).
    consented: bool


def pharmacies_with_stock(prescription: Prescription) -> list[Elsewhere]:
    """Other active partner pharmacies with stock of every line of the prescription."""
    patient = patients.get(prescription.patient_id)
    found = []
    for pharmacy in pharmacies.active_pharmacies():
        if pharmacy.id == prescription.pharmacy_id:
            continue
        if all(_in_stock(pharmacy.id, formulary.get(item.product_id), item.quantity)[0] for item in prescription.items):
            found.append(Elsewhere(pharmacy, pharmacies.patient_may_share_with(patient, pharmacy.id)))
    return found


# Acting on it (the prescriber) --------------------------------------------------------------

def may_act(user: User, prescription: Prescription) -> bool:
    """The prescriber, or the patient's clinician, answers for a prescription."""
    if user.role is not Role.CLINICIAN:
        return False
    if prescription.prescriber_id == user.id:
        return True
    patient = patients.get(prescription.patient_id)
    return patient is not None and patient.clinician_id == user.id


def supersede_with(prescription: Prescription, clinician: User, replacements: dict[int, int]) -> Prescription:
    """Click one of two: a superseding draft with `replacements` ({line: product_id}) in place of the missing
    products, everything else as before. The second click signs it (prescribing's signing page)."""
    from app.prescribing import services as prescribing

    if states.state_of(prescription) is not S.OUT_OF_STOCK and open_stock_out(prescription) is None:
        raise StockOutError("This prescription is not waiting on a stock-out.")
    choices = {(s.item.line, a.product.id) for s in shortages(prescription) for a in s.alternatives if a.fits_plan}
    for line, product_id in replacements.items():
        if (line, product_id) not in choices:
            raise StockOutError("That alternative is not in stock at the pharmacy or does not fit the treatment "
                                "plan any more. Choose another, or change the plan first.")
    with transaction():
        try:
            draft = prescribing.start_superseding(prescription, clinician)
            for item in list(draft.items):
                if item.line in replacements:
                    prescribing.update_item(draft, item.id, clinician, {
                        "product_id": str(replacements[item.line]), "quantity": str(item.quantity),
                        "unit": item.unit, "days_supply": str(item.days_supply), "dose": item.dose,
                        "justification": item.justification or ""})
        except prescribing.PrescribingError as exc:
            raise StockOutError(str(exc)) from exc
        audit.record("pharmacy.alternative_chosen", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id,
                     detail={"draft": draft.id, "replacements": {str(k): v for k, v in replacements.items()}})
    return draft


def redirect(prescription: Prescription, clinician: User, pharmacy_id: int) -> Prescription:
    """Click one of two: the patient's nomination moves to a pharmacy with stock (one they agreed to share with)
    and a superseding draft of the same items is started; signing it sends it there."""
    from app.prescribing import services as prescribing

    if states.state_of(prescription) not in states.BEFORE_SUPPLY:
        raise StockOutError("Only a prescription not yet supplied can be redirected.")
    target = {e.pharmacy.id: e for e in pharmacies_with_stock(prescription)}.get(pharmacy_id)
    if target is None:
        raise StockOutError("That pharmacy does not have the stock (or is not a partner): choose another.")
    if not target.consented:
        raise StockOutError(f"The patient has not agreed to share prescriptions with {target.pharmacy.name}. Ask them "
                            "to choose it as their pharmacy in their account; then redirect.")
    patient = patients.get(prescription.patient_id)
    with transaction():
        try:
            draft = prescribing.start_superseding(prescription, clinician)
        except prescribing.PrescribingError as exc:
            raise StockOutError(str(exc)) from exc
        patients.nominate_pharmacy(patient, target.pharmacy.id)
        audit.record("pharmacy.redirect_started", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"draft": draft.id, "to": target.pharmacy.id,
                                                                  "from": prescription.pharmacy_id})
    return draft


# The thread ---------------------------------------------------------------------------------

def thread(prescription: Prescription) -> list[ThreadMessage]:
    return list(db.session.scalars(sa.select(ThreadMessage).where(ThreadMessage.prescription_id == prescription.id)
                                   .order_by(ThreadMessage.id)))


def add_message(prescription: Prescription, kind: str, side: str, body: str, *, user: User | None) -> ThreadMessage:
    """A query (pharmacy), an answer or a note (clinic). An API pharmacy's system is sent the clinic's messages."""
    body = (body or "").strip()
    if kind not in KINDS or side not in ("pharmacy", "clinic"):
        raise StockOutError("Unknown kind of message.")
    if not 2 <= len(body) <= 4000:
        raise StockOutError("Write the message (up to 4,000 characters).")
    with transaction() as session:
        message = ThreadMessage(prescription_id=prescription.id, kind=kind, side=side, body=body,
                                author_id=user.id if user else None)
        session.add(message)
        session.flush()
        audit.record(f"pharmacy.thread_{kind}", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id, detail={"message": message.id, "side": side})
        pharmacy = pharmacies.get(prescription.pharmacy_id) if prescription.pharmacy_id else None
        if side == "clinic" and pharmacy is not None and pharmacy.connection == API:
            notifications.enqueue_for_pharmacy(prescription, f"message:{message.id}")
        if side == "pharmacy":
            _tell_prescriber(prescription, message)
    return message


def _tell_prescriber(prescription: Prescription, message: ThreadMessage) -> None:
    from app.notifications import services as notices

    if prescription.prescriber_id is not None:
        notices.notify(prescription.prescriber_id, "prescriber.queried", key=f"pharmacy-thread:{message.id}:prescriber",
                       link=notices.link_to("pharmacy.clinic_view", prescription_id=prescription.id),
                       context={"reference": prescription.public_id})


def unanswered_query(prescription: Prescription) -> ThreadMessage | None:
    messages = thread(prescription)
    queries = [m for m in messages if m.kind == "query"]
    if not queries:
        return None
    last = queries[-1]
    answered = any(m.kind == "answer" and m.id > last.id for m in messages)
    return None if answered else last


# The prescriber's alerts --------------------------------------------------------------------

@dataclass
class Alert:
    kind: str  # "stock_out" or "query"
    prescription: Prescription
    patient_name: str
    since: object
    text: str


def alerts_for(clinician: User) -> list[Alert]:
    """Stock-outs and unanswered pharmacy queries on prescriptions this clinician answers for."""
    from app.prescribing import services as prescribing

    alerts: list[Alert] = []
    for prescription in prescribing.by_status(states.BEFORE_SUPPLY, answered_by=clinician):
        alert = alert_for_prescription(prescription)
        if alert is not None:
            alerts.append(alert)
    alerts.sort(key=lambda a: a.since)
    return alerts


def _patient_name(prescription: Prescription) -> str:
    patient = patients.get(prescription.patient_id)
    return patients.user_of(patient).full_name if patient else ""


def alert_for_prescription(prescription: Prescription) -> Alert | None:
    row = open_stock_out(prescription)
    if row is not None:
        return Alert("stock_out", prescription, _patient_name(prescription), row.reported_at,
                     "The pharmacy is out of " + ", ".join(p.name for p in products_named(row.products)))
    question = unanswered_query(prescription) if states.state_of(prescription) is S.QUERIED else None
    if question is not None:
        return Alert("query", prescription, _patient_name(prescription), question.at, "The pharmacy has a question")
    return None


def dead_letter_count() -> int:
    return len(outbox.dead_letters([notifications.PHARMACY_KIND]))
