"""Every pharmacy-side step on a prescription, for the portal workspace and the API alike.

Each step goes through the prescription state machine (app/prescribing/states.py) with the actor
"pharmacy"; a move it refuses (out of order, illegal, a guard such as "the paper original first")
is refused here with its message and recorded in the audit trail as `pharmacy.step_refused`.
Stock is held and taken in the same transaction as the transition that needs it, so a refused
transition leaves the stock as it was.

Portal pharmacies: opening a prescription's first action (allocate, out of stock, query) marks it
received first, since a pharmacist acting on it has it. API pharmacies report "received" themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.audit import services as audit
from app.auth.models import User
from app.database import transaction, utcnow
from app.pharmacy import inventory, shipping
from app.pharmacy.models import API, Pharmacy, StockOut, ThreadMessage
from app.prescribing import formulary, notifications, states  # noqa: F401  (notifications: see install())
from app.prescribing.models import Prescription

S = states.State
PHARMACY = states.PHARMACY


class WorkflowError(ValueError):
    """A step refused; `status` is the HTTP status the API answers with, `errors` maps form fields."""

    def __init__(self, message: str, *, status: int = 409, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


def held_by(prescription: Prescription | None, pharmacy: Pharmacy) -> bool:
    """The pharmacy may act on (and see) a prescription sent to it, once signed."""
    return prescription is not None and prescription.pharmacy_id == pharmacy.id and prescription.signed_at is not None


def _refused(prescription: Prescription, step: str, reason: str, status: int) -> None:
    with transaction():
        audit.record("pharmacy.step_refused", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id,
                     detail={"step": step, "reason": reason[:500], "state": prescription.status, "status": status})


def _run(prescription: Prescription, pharmacy: Pharmacy, step: str, action: Callable[[], Any]) -> Any:
    """Run one step in one transaction; turn refusals into WorkflowError, audited after the rollback."""
    if not held_by(prescription, pharmacy):
        raise WorkflowError("No such prescription was sent to this pharmacy.", status=404)
    try:
        with transaction():
            return action()
    except states.TransitionError as exc:
        error = WorkflowError(str(exc), status=409)
    except inventory.InventoryError as exc:
        error = WorkflowError(str(exc), status=409 if isinstance(exc, inventory.NotEnoughStock) else 400,
                              errors=exc.errors)
    except shipping.ShippingError as exc:
        error = WorkflowError(str(exc), status=exc.status, errors=exc.errors)
    except WorkflowError as exc:
        error = exc
    _refused(prescription, step, str(error), error.status)
    raise error


def _detail(pharmacy: Pharmacy, **extra: Any) -> dict[str, Any]:
    return {"channel": "api" if pharmacy.connection == API else "portal", "pharmacy": pharmacy.id, **extra}


def _receive_if_new(prescription: Prescription, pharmacy: Pharmacy) -> None:
    """Signed (not yet pushed) or transmitted: the pharmacy has it now."""
    if states.state_of(prescription) is S.SIGNED:
        states.apply(prescription, S.TRANSMITTED, actor_role=PHARMACY, detail=_detail(pharmacy, via="pull"))
    if states.state_of(prescription) is S.TRANSMITTED:
        states.apply(prescription, S.RECEIVED, actor_role=PHARMACY, detail=_detail(pharmacy))


def receive(prescription: Prescription, pharmacy: Pharmacy) -> Prescription:
    def action():
        if states.state_of(prescription) not in (S.SIGNED, S.TRANSMITTED):
            raise states.TransitionError(f"This prescription is already “{states.state_of(prescription).label}”: "
                                         "it was received before.")
        _receive_if_new(prescription, pharmacy)
        return prescription

    return _run(prescription, pharmacy, "received", action)


def _resolve_stock_out(prescription: Prescription, resolution: str) -> None:
    from app.pharmacy import stockouts

    stockouts.resolve(prescription, resolution)


def allocate(prescription: Prescription, pharmacy: Pharmacy, *, user: User | None = None) -> Prescription:
    """Portal: hold the packs (never below zero) and move to stock allocated. API: the move only."""
    def action():
        if pharmacy.connection != API:
            _receive_if_new(prescription, pharmacy)
            came_from = states.state_of(prescription)
            if came_from not in (S.RECEIVED, S.OUT_OF_STOCK):  # before the stock: say what is really wrong
                raise states.TransitionError(f"A prescription cannot go from “{came_from.label}” to “Stock "
                                             "allocated”.")
            packs = sum(a.packs for a in inventory.allocate(prescription, pharmacy))
        else:
            came_from = states.state_of(prescription)
            packs = None
        states.apply(prescription, S.STOCK_ALLOCATED, actor_role=PHARMACY, detail=_detail(pharmacy, packs=packs))
        if came_from is S.OUT_OF_STOCK:
            _resolve_stock_out(prescription, "allocated")
        return prescription

    return _run(prescription, pharmacy, "stock_allocated", action)


def out_of_stock(prescription: Prescription, pharmacy: Pharmacy, *, products: list[int] | None = None,
                 offered: list[int] | None = None, note: str = "") -> StockOut:
    """The pharmacy cannot supply: which products, and what it can offer instead. The prescriber is alerted."""
    item_products = {item.product_id for item in prescription.items}
    out = sorted(set(products or []) or item_products)
    offers = sorted(set(offered or []))

    def action():
        if not set(out) <= item_products:
            raise WorkflowError("Only products on this prescription can be out of stock.", status=400,
                                errors={"products": "Choose products on the prescription"})
        for product_id in offers:
            product = formulary.get(product_id)
            if product is None or not product.active or product_id in out:
                raise WorkflowError(f"Product {product_id} cannot be offered: offer active formulary products "
                                    "other than the ones out of stock.", status=400,
                                    errors={"offered": "Offer other products from the formulary"})
        if pharmacy.connection != API:
            _receive_if_new(prescription, pharmacy)
        states.apply(prescription, S.OUT_OF_STOCK, actor_role=PHARMACY,
                     detail=_detail(pharmacy, products=out, offered=offers))
        from app.pharmacy import stockouts

        return stockouts.record(prescription, pharmacy, out, offers, note)

    return _run(prescription, pharmacy, "out_of_stock", action)


def query(prescription: Prescription, pharmacy: Pharmacy, question: str, *, user: User | None = None) -> ThreadMessage:
    """A question for the prescriber; the prescription waits (queried) until the pharmacy goes on."""
    question = (question or "").strip()

    def action():
        if len(question) < 5 or len(question) > 4000:
            raise WorkflowError("Write the question for the prescriber (5 to 4000 characters).", status=400,
                                errors={"question": "Write your question"})
        if pharmacy.connection != API:
            _receive_if_new(prescription, pharmacy)
        states.apply(prescription, S.QUERIED, actor_role=PHARMACY,
                     detail=_detail(pharmacy, reason="question to the prescriber (see the thread)"))
        return add_message(prescription, "query", "pharmacy", question, user=user)

    return _run(prescription, pharmacy, "queried", action)


def add_message(prescription: Prescription, kind: str, side: str, body: str, *, user: User | None) -> ThreadMessage:
    from app.pharmacy import stockouts

    return stockouts.add_message(prescription, kind, side, body, user=user)


def original_received(prescription: Prescription, pharmacy: Pharmacy, *, matches: bool, note: str = "") -> Prescription:
    from app.prescribing import services as prescribing

    def action():
        try:
            prescribing.record_original_received(prescription, matches=matches, note=note[:500])
        except prescribing.PrescribingError as exc:
            raise WorkflowError(str(exc)) from exc
        return prescription

    return _run(prescription, pharmacy, "original_received", action)


def await_original(prescription: Prescription, pharmacy: Pharmacy) -> Prescription:
    return _run(prescription, pharmacy, "awaiting_original", lambda: states.apply(
        prescription, S.AWAITING_ORIGINAL, actor_role=PHARMACY, detail=_detail(pharmacy)))


def verify(prescription: Prescription, pharmacy: Pharmacy) -> Prescription:
    """Clinically verified: the pharmacist's check of the prescription (the paper original first, where it is one)."""
    return _run(prescription, pharmacy, "clinically_verified", lambda: states.apply(
        prescription, S.CLINICALLY_VERIFIED, actor_role=PHARMACY, detail=_detail(pharmacy)))


def dispense(prescription: Prescription, pharmacy: Pharmacy, *, user: User | None = None,
             batches: list[str] | None = None) -> Prescription:
    """Portal: the held packs leave the shelf and the CD register gets its entries. API: the batches it reports."""
    def action():
        if pharmacy.connection != API:
            current = states.state_of(prescription)
            if current is not S.CLINICALLY_VERIFIED:  # before the stock: say what is really wrong
                raise states.TransitionError(f"A prescription cannot go from “{current.label}” to “Dispensed”: "
                                             "it must be clinically verified first.")
            entries = inventory.dispense(prescription, pharmacy, user=user)
            numbers = sorted({e.batch_number for e in entries})
        else:
            numbers = sorted({str(b).strip().upper()[:40] for b in (batches or []) if str(b).strip()})
        states.apply(prescription, S.DISPENSED, actor_role=PHARMACY, detail=_detail(pharmacy, batches=numbers))
        return prescription

    return _run(prescription, pharmacy, "dispensed", action)


def dispatch(prescription: Prescription, pharmacy: Pharmacy, *, carrier: str, tracking: str) -> shipping.Shipment:
    """Book the parcel: carrier and tracking number (after a returned parcel: a new dispatch of the same one)."""
    def action():
        found, number = shipping.clean(carrier, tracking)
        state = states.state_of(prescription)
        if state is S.DISPATCHED:
            latest = shipping.shipment_for(prescription)
            if latest is None or latest.status not in (shipping.RETURNED, shipping.FAILED_ATTEMPT):
                raise WorkflowError("This prescription is already on its way: a new dispatch is booked only after "
                                    "the parcel came back or delivery failed.")
            shipment = shipping.book(prescription, found, number, source="pharmacy")
            audit.record("pharmacy.redispatched", subject=("prescription", prescription.id),
                         patient_id=prescription.patient_id,
                         detail={"carrier": found.key, "tracking": number, "previous": latest.tracking_number})
            return shipment
        states.apply(prescription, S.DISPATCHED, actor_role=PHARMACY,
                     detail=_detail(pharmacy, carrier=found.name, tracking=number))
        return shipping.book(prescription, found, number, source="pharmacy")

    return _run(prescription, pharmacy, "dispatched", action)


def delivery_event(prescription: Prescription, pharmacy: Pharmacy, status: str, *, note: str = "") -> shipping.Shipment:
    """The pharmacy reports what happened to the parcel (delivered, returned, ...)."""
    def action():
        shipment = shipping.shipment_for(prescription)
        if shipment is None or states.state_of(prescription) not in (S.DISPATCHED, S.DELIVERED):
            raise states.TransitionError(f"A prescription that is “{states.state_of(prescription).label}” has no "
                                         "parcel on its way.")
        return shipping.record_event(shipment, status, source="pharmacy", occurred_at=utcnow(), note=note)

    return _run(prescription, pharmacy, status, action)


def reject(prescription: Prescription, pharmacy: Pharmacy, reason: str) -> Prescription:
    reason = " ".join((reason or "").split())

    def action():
        if len(reason) < 5:
            raise WorkflowError("Give the reason for rejecting it: the prescriber and the patient are told.",
                                status=400, errors={"reason": "Give the reason"})
        return states.apply(prescription, S.REJECTED, actor_role=PHARMACY, detail=_detail(pharmacy, reason=reason))

    return _run(prescription, pharmacy, "rejected", action)


def on_ended(prescription: Prescription, state: states.State, _audience: str) -> None:
    """A state-machine notifier: a prescription that will not be dispensed gives back any stock held for it,
    and its stock-out (if any) is closed. Idempotent: called once per audience of the transition."""
    if state in (S.CANCELLED, S.EXPIRED, S.REJECTED, S.SUPERSEDED):
        inventory.release(prescription)
        from app.pharmacy import stockouts

        stockouts.resolve(prescription, "superseded" if state is S.SUPERSEDED else "ended")


def install() -> None:
    """Join the state machine's notifiers. prescribing.notifications, imported above, replaces the list when
    it is imported: importing it first means that has happened and will not drop ours afterwards."""
    if on_ended not in states.notifiers:
        states.notifiers.append(on_ended)


install()
