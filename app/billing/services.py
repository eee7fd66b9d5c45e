"""Billing's services: the only writers of billing state, and what routes, other domains and the worker call.

- The price list (`set_price`, `price_for`), arrangements (`add_arrangement`), charges (`add_charge`).
- Invoices with gapless numbers (`issue_invoice`), credit notes (`credit`), statements (`statement`).
- Payments: staff-recorded (`record_payment`), online (`start_checkout`, then `apply_event` from the provider's
  webhook or `sandbox_pay`), refunds (`refund`).
- Scheduling's hooks (`check_may_book`, `charge_for_appointment`, `appointment_completed`, `appointment_cancelled`):
  scheduling calls these, never billing's tables.
- The reception day sheet, the reports (reports.py) and `reconcile`, which checks that every cached total and status
  agrees with the ledger.

Lock order: every billing write takes the audit chain's lock first (it would take it to audit anyway), then the
counter row of a gapless series (SELECT ... FOR UPDATE) or the invoice row, so it never deadlocks with another
billing write or with a transaction that audited before calling billing (a booking, a cancellation). Payments and
refunds read what is owed only with the invoice row locked, so two tabs or a double click cannot pay or refund the
same pounds twice. SQLite serialises writers anyway
(BEGIN IMMEDIATE, app/database.py).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from app.audit import services as audit
from app.auth.models import Role, User
from app.billing import money, provider, settings
from app.billing.models import (
    CARD_TERMINAL,
    CHECKOUT_FAILED,
    CHECKOUT_OPEN,
    CHECKOUT_PAID,
    CHECKOUT_SUPERSEDED,
    CREDITED,
    INVOICED,
    KINDS,
    METHODS,
    ONLINE,
    OPEN,
    PAID,
    PENDING,
    STAFF_METHODS,
    VOID,
    Arrangement,
    Charge,
    Checkout,
    Counter,
    CreditNote,
    Invoice,
    Payment,
    PriceItem,
    Refund,
    WebhookEvent,
)
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import services as patients
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient

INVOICE_SERIES, CREDIT_SERIES = "invoice", "credit_note"
CANCELLED_NOTE = "Consultation cancelled"
PREFIX = {INVOICE_SERIES: "INV", CREDIT_SERIES: "CN"}


class BillingError(ValueError):
    """Something billing will not do; the message is fit to show. `status` is the HTTP answer for an API caller."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("CLINIC_TIMEZONE") or "Europe/London")


def clinic_today(now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(clinic_zone()).date()


def _user_id(user: User | None) -> int | None:
    return user.id if user is not None else None


# The price list ---------------------------------------------------------------------------------

def consultation_code(consultation_type: str) -> str:
    return f"consult:{consultation_type}"


def price_for(code: str, on: dt.date | None = None) -> PriceItem | None:
    """The price of `code` on a clinic date: the row with the latest effective date not after it."""
    on = on or clinic_today()
    return db.session.scalar(sa.select(PriceItem).where(PriceItem.code == code, PriceItem.effective_from <= on)
                             .order_by(PriceItem.effective_from.desc()).limit(1))


def price_list(on: dt.date | None = None) -> list[PriceItem]:
    """Every code's price on that date (codes whose first price starts later are left out)."""
    on = on or clinic_today()
    codes = db.session.scalars(sa.select(PriceItem.code).distinct().order_by(PriceItem.code))
    found = [price_for(code, on) for code in codes]
    return [item for item in found if item is not None]


def scheduled_prices(after: dt.date | None = None) -> list[PriceItem]:
    """Prices that start after `after` (today): the changes already agreed."""
    after = after or clinic_today()
    return list(db.session.scalars(sa.select(PriceItem).where(PriceItem.effective_from > after)
                                   .order_by(PriceItem.effective_from, PriceItem.code)))


def set_price(*, code: str, name: str, kind: str, amount_pence: int, vat_treatment: str | None = None,
              effective_from: dt.date | None = None, by: User | None = None) -> PriceItem:
    """A price for `code` from a date. Prices already charged keep their row: a change is a new row."""
    code, name = (code or "").strip().lower(), (name or "").strip()
    today = clinic_today()
    effective_from = effective_from or today
    if not code or len(code) > 40 or not all(c.isalnum() or c in ":-_" for c in code):
        raise BillingError("The code must be up to 40 letters, digits, ':', '-' or '_', e.g. consult:initial.",
                           field="code")
    if not name or len(name) > 200:
        raise BillingError("Give the item a name (up to 200 characters).", field="name")
    if kind not in KINDS:
        raise BillingError(f"The kind must be one of {', '.join(KINDS)}.", field="kind")
    vat_treatment = vat_treatment or settings.default_vat()
    if vat_treatment not in settings.vat_rates():
        raise BillingError(f"Unknown VAT treatment {vat_treatment!r}.", field="vat_treatment")
    try:
        money.check_pence(amount_pence, maximum=settings.max_amount(), allow_zero=True, what="The price")
    except money.AmountError as exc:
        raise BillingError(str(exc), field="amount") from None
    if effective_from < today:
        raise BillingError("A price cannot start in the past: invoices already issued keep the price they had.",
                           field="effective_from")
    with transaction() as session:
        existing = session.scalar(sa.select(PriceItem).where(PriceItem.code == code,
                                                             PriceItem.effective_from == effective_from))
        if existing is not None:
            raise BillingError(f"{code} already has a price from {effective_from:%d %B %Y}: choose another date.",
                               field="effective_from", status=409)
        item = PriceItem(code=code, name=name, kind=kind, amount_pence=amount_pence, vat_treatment=vat_treatment,
                         effective_from=effective_from, created_by=_user_id(by))
        session.add(item)
        session.flush()
        audit.record("billing.price_set", subject=("price", item.id),
                     detail={"code": code, "name": name, "kind": kind, "amount_pence": amount_pence,
                             "vat_treatment": vat_treatment, "effective_from": effective_from.isoformat()})
    return item


# Arrangements ------------------------------------------------------------------------------------

ARRANGEMENT_KINDS = {"discount": "Discount", "subscription": "Subscription plan"}


def add_arrangement(patient: Patient, *, kind: str, name: str, discount_bp: int, applies_to: str | None,
                    valid_from: dt.date, valid_to: dt.date | None, reason: str, approved_by: User) -> Arrangement:
    """An arrangement for one patient, approved by an administrator (who is recorded)."""
    name, reason = (name or "").strip(), (reason or "").strip()
    if approved_by is None or approved_by.role is not Role.ADMIN:
        raise BillingError("Only an administrator can approve a billing arrangement.", status=403)
    if kind not in ARRANGEMENT_KINDS:
        raise BillingError("Choose a discount or a subscription plan.", field="kind")
    if kind == "subscription":
        discount_bp = 10000
    if isinstance(discount_bp, bool) or not isinstance(discount_bp, int) or not 0 < discount_bp <= 10000:
        raise BillingError("The discount must be more than 0% and at most 100%.", field="discount")
    if applies_to is not None and applies_to not in KINDS:
        raise BillingError("Choose what the arrangement covers.", field="applies_to")
    if not name or len(name) > 200:
        raise BillingError("Give the arrangement a name patients will see on invoices.", field="name")
    if not reason or len(reason) > 300:
        raise BillingError("Say why the patient is eligible (no clinical details), up to 300 characters.",
                           field="reason")
    if valid_to is not None and valid_to < valid_from:
        raise BillingError("The end date is before the start date.", field="valid_to")
    with transaction() as session:
        item = Arrangement(patient_id=patient.id, kind=kind, name=name, discount_bp=discount_bp,
                           applies_to=applies_to, valid_from=valid_from, valid_to=valid_to, reason=reason,
                           approved_by=approved_by.id, approved_at=utcnow())
        session.add(item)
        session.flush()
        audit.record("billing.arrangement_approved", subject=("arrangement", item.id), patient_id=patient.id,
                     detail={"kind": kind, "name": name, "discount_bp": discount_bp, "applies_to": applies_to,
                             "valid_from": valid_from.isoformat(),
                             "valid_to": valid_to.isoformat() if valid_to else None})
    return item


def arrangements_for(patient: Patient) -> list[Arrangement]:
    return list(db.session.scalars(sa.select(Arrangement).where(Arrangement.patient_id == patient.id)
                                   .order_by(Arrangement.valid_from.desc(), Arrangement.id.desc())))


def arrangement_for(patient_id: int, kind: str, on: dt.date) -> Arrangement | None:
    """The most generous arrangement that covers this kind of item on that date."""
    return db.session.scalar(sa.select(Arrangement).where(
        Arrangement.patient_id == patient_id, Arrangement.valid_from <= on,
        sa.or_(Arrangement.valid_to.is_(None), Arrangement.valid_to >= on),
        sa.or_(Arrangement.applies_to.is_(None), Arrangement.applies_to == kind))
        .order_by(Arrangement.discount_bp.desc(), Arrangement.id).limit(1))


# Charges -----------------------------------------------------------------------------------------

def _priced(patient_id: int, item: PriceItem, quantity: int, on: dt.date) -> dict:
    """A charge's amounts: net = unit x quantity - discount; VAT on the net, half-up to the penny."""
    deal = arrangement_for(patient_id, item.kind, on)
    gross = item.amount_pence * quantity
    discount = money.share(gross, deal.discount_bp) if deal else 0
    net = gross - discount
    rate = settings.vat_rates().get(item.vat_treatment, 0)
    vat = money.share(net, rate)
    description = item.name if quantity == 1 else f"{item.name} x {quantity}"
    if deal:
        description = f"{description} ({deal.name})"
    return dict(price_item_id=item.id, code=item.code, description=description[:300], quantity=quantity,
                unit_pence=item.amount_pence, discount_pence=discount, net_pence=net,
                vat_treatment=item.vat_treatment, vat_rate_bp=rate, vat_pence=vat, total_pence=net + vat,
                arrangement_id=deal.id if deal else None)


def add_charge(patient: Patient, code: str, *, quantity: int = 1, by: User | None = None,
               on: dt.date | None = None, appointment_id: int | None = None) -> Charge:
    """A pending charge for a price-list item (joins the caller's transaction)."""
    on = on or clinic_today()
    item = price_for(code, on)
    if item is None:
        raise BillingError("That item is not on the price list for that date.", field="code")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= 1000:
        raise BillingError("The quantity must be a whole number from 1 to 1000.", field="quantity")
    amounts = _priced(patient.id, item, quantity, on)
    if amounts["total_pence"] > settings.max_amount():
        raise BillingError(f"That comes to {money.format_pence(amounts['total_pence'])}, more than the most the "
                           "clinic takes in one go: check the quantity.", field="quantity")
    with transaction() as session:
        charge = Charge(patient_id=patient.id, appointment_id=appointment_id, status=PENDING,
                        created_by=_user_id(by), **amounts)
        session.add(charge)
        session.flush()
        audit.record("billing.charge_created", subject=("charge", charge.id), patient_id=patient.id,
                     detail={"code": charge.code, "quantity": quantity, "net_pence": charge.net_pence,
                             "vat_pence": charge.vat_pence, "total_pence": charge.total_pence,
                             "arrangement_id": charge.arrangement_id, "appointment_id": appointment_id})
    return charge


def pending_charges(patient: Patient) -> list[Charge]:
    return list(db.session.scalars(sa.select(Charge).where(Charge.patient_id == patient.id,
                                                           Charge.status == PENDING).order_by(Charge.id)))


def void_charge(charge: Charge, *, reason: str, by: User | None = None) -> None:
    """Take back a charge that is not on an invoice yet (an invoiced one needs a credit note)."""
    with transaction() as session:
        changed = session.execute(sa.update(Charge).where(Charge.id == charge.id, Charge.status == PENDING)
                                  .values(status=VOID).execution_options(synchronize_session=False)).rowcount
        if not changed:
            raise BillingError("This charge is already on an invoice: issue a credit note instead.", status=409)
        audit.record("billing.charge_voided", subject=("charge", charge.id), patient_id=charge.patient_id,
                     detail={"reason": reason[:300], "total_pence": charge.total_pence})
    db.session.refresh(charge)


# Numbering and invoices ------------------------------------------------------------------------------

def next_number(series: str) -> tuple[int, str]:
    """The next number of a gapless series, in the caller's transaction: the counter row stays locked until it
    commits (and a rollback gives the number back). Takes the audit chain first: see the lock order above."""
    session = db.session
    audit.lock_chain()
    row = session.scalars(sa.select(Counter).where(Counter.name == series).with_for_update()
                          .execution_options(populate_existing=True)).one()
    value = row.next_value
    row.next_value = value + 1
    session.flush()
    return value, f"{PREFIX[series]}-{value:06d}"


def _clinic_details() -> str:
    config = current_app.config
    name, address = config.get("CLINIC_NAME") or "Verity Clinic", config.get("CLINIC_ADDRESS") or ""
    lines = [address] if address.startswith(name) else [name, address]
    vat_number = settings.setting("BILLING_VAT_NUMBER")
    if vat_number:
        lines.append(f"VAT registration number {vat_number}")
    return "\n".join(line for line in lines if line)


def _billed_to(patient: Patient) -> str:
    user = patients.user_of(patient)
    parts = [user.full_name, patient.address_line1, patient.address_line2, patient.town, patient.postcode]
    return "\n".join(p for p in parts if p)


def issue_invoice(patient: Patient, *, charge_ids: list[int] | None = None, by: User | None = None,
                  now: dt.datetime | None = None) -> Invoice:
    """Put pending charges (all of them, or those named) on a new invoice with the next number."""
    now = now or utcnow()
    with transaction() as session:
        number_seq, number = next_number(INVOICE_SERIES)
        query = sa.select(Charge).where(Charge.patient_id == patient.id, Charge.status == PENDING)
        if charge_ids is not None:
            query = query.where(Charge.id.in_(charge_ids))
        charges = list(session.scalars(query.order_by(Charge.id).with_for_update()
                                       .execution_options(populate_existing=True)))
        if not charges or (charge_ids is not None and len(charges) != len(set(charge_ids))):
            raise BillingError("There is nothing to invoice: the charges are already invoiced or void.", status=409)
        net, vat = sum(c.net_pence for c in charges), sum(c.vat_pence for c in charges)
        invoice = Invoice(sequence=number_seq, number=number, patient_id=patient.id, issued_at=now,
                          due_on=now.astimezone(clinic_zone()).date()
                          + dt.timedelta(days=int(settings.setting("BILLING_PAYMENT_DAYS"))),
                          net_pence=net, vat_pence=vat, total_pence=net + vat, status=OPEN,
                          clinic_details=_clinic_details(), billed_to=_billed_to(patient), created_by=_user_id(by))
        session.add(invoice)
        session.flush()
        for charge in charges:
            charge.status, charge.invoice_id = INVOICED, invoice.id
        session.flush()
        _refresh_status(invoice)
        audit.record("billing.invoice_issued", subject=("invoice", invoice.id), patient_id=patient.id,
                     detail={"number": number, "charges": [c.id for c in charges], "net_pence": net,
                             "vat_pence": vat, "total_pence": net + vat})
    return invoice


def get_invoice(invoice_id: int) -> Invoice | None:
    return db.session.get(Invoice, invoice_id)


def lines_of(invoice: Invoice) -> list[Charge]:
    return list(db.session.scalars(sa.select(Charge).where(Charge.invoice_id == invoice.id).order_by(Charge.id)))


@dataclass(frozen=True)
class Position:
    """Where an invoice stands, from the ledger."""

    total: int
    credited: int
    paid: int
    refunded: int

    @property
    def owed(self) -> int:
        """What the invoice still asks for after credit notes."""
        return self.total - self.credited

    @property
    def outstanding(self) -> int:
        """Owed less what was paid and kept: negative when the patient is in credit (a refund is due)."""
        return self.owed - (self.paid - self.refunded)


def position(invoice: Invoice) -> Position:
    session = db.session
    credited = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(CreditNote.amount_pence), 0))
                              .where(CreditNote.invoice_id == invoice.id))
    paid = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Payment.amount_pence), 0))
                          .where(Payment.invoice_id == invoice.id))
    refunded = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Refund.amount_pence), 0))
                              .where(Refund.invoice_id == invoice.id))
    return Position(invoice.total_pence, int(credited), int(paid), int(refunded))


def status_for(pos: Position) -> str:
    if pos.outstanding > 0:
        return OPEN
    if pos.credited > 0 and pos.owed == 0 and pos.paid == pos.refunded:
        return CREDITED
    return PAID


def _refresh_status(invoice: Invoice) -> None:
    invoice.status = status_for(position(invoice))
    db.session.flush()


def _locked_invoice(invoice_id: int) -> Invoice:
    """The invoice row, locked until the transaction ends (PostgreSQL; SQLite holds the database lock). The audit
    chain is taken first, as every billing write does, so the locks are always taken in one order."""
    audit.lock_chain()
    found = db.session.scalars(sa.select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                               .execution_options(populate_existing=True)).one_or_none()
    if found is None:
        raise BillingError("That invoice could not be found.", status=404)
    return found


def credit(invoice: Invoice, amount_pence: int, *, reason: str, by: User | None = None) -> CreditNote:
    """A credit note against an invoice (instead of editing it): at most what the invoice still asks for."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 300:
        raise BillingError("Say why the invoice is credited (up to 300 characters).", field="reason")
    with transaction() as session:
        sequence, number = next_number(CREDIT_SERIES)
        invoice = _locked_invoice(invoice.id)
        pos = position(invoice)
        try:
            money.check_pence(amount_pence, maximum=settings.max_amount(), what="The credit")
        except money.AmountError as exc:
            raise BillingError(str(exc), field="amount") from None
        if amount_pence > pos.owed:
            raise BillingError(f"The credit cannot be more than the {money.format_pence(pos.owed)} the invoice still "
                               "asks for.", field="amount", status=409)
        note = CreditNote(sequence=sequence, number=number, invoice_id=invoice.id, patient_id=invoice.patient_id,
                          amount_pence=amount_pence, reason=reason, created_by=_user_id(by))
        session.add(note)
        session.flush()
        _refresh_status(invoice)
        _supersede_checkouts(invoice)
        audit.record("billing.credit_note_issued", subject=("invoice", invoice.id), patient_id=invoice.patient_id,
                     detail={"number": number, "invoice": invoice.number, "amount_pence": amount_pence,
                             "reason": reason})
    return note


def credit_notes_of(invoice: Invoice) -> list[CreditNote]:
    return list(db.session.scalars(sa.select(CreditNote).where(CreditNote.invoice_id == invoice.id)
                                   .order_by(CreditNote.id)))


def invoices_for(patient: Patient) -> list[Invoice]:
    return list(db.session.scalars(sa.select(Invoice).where(Invoice.patient_id == patient.id)
                                   .order_by(Invoice.issued_at.desc(), Invoice.id.desc())))


def unpaid_invoices(limit: int = 200) -> list[Invoice]:
    return list(db.session.scalars(sa.select(Invoice).where(Invoice.status == OPEN)
                                   .order_by(Invoice.issued_at, Invoice.id).limit(limit)))


# Payments and refunds -------------------------------------------------------------------------------

def _supersede_checkouts(invoice: Invoice) -> None:
    """An open checkout asks for an amount that may no longer be owed: close it (a late payment is refused)."""
    db.session.execute(sa.update(Checkout).where(Checkout.invoice_id == invoice.id, Checkout.status == CHECKOUT_OPEN)
                       .values(status=CHECKOUT_SUPERSEDED, completed_at=utcnow())
                       .execution_options(synchronize_session=False))


def record_payment(invoice: Invoice, amount_pence: int, *, method: str, reference: str | None, by: User,
                   received_at: dt.datetime | None = None) -> Payment:
    """A payment taken by staff (card terminal, bank transfer, cash): never more than is outstanding."""
    reference = (reference or "").strip()[:100] or None
    if method not in STAFF_METHODS:
        raise BillingError("Choose how the payment was made.", field="method")
    if method != "cash" and not reference:
        raise BillingError(f"Give the {'terminal receipt' if method == CARD_TERMINAL else 'bank'} reference, so the "
                           "payment can be matched to the statement.", field="reference")
    try:
        money.check_pence(amount_pence, maximum=settings.max_amount(), what="The payment")
    except money.AmountError as exc:
        raise BillingError(str(exc), field="amount") from None
    received_at = received_at or utcnow()
    if received_at > utcnow() + dt.timedelta(minutes=5):
        raise BillingError("A payment cannot be received in the future.", field="received_at")
    with transaction() as session:
        invoice = _locked_invoice(invoice.id)
        pos = position(invoice)
        if pos.outstanding <= 0:
            raise BillingError(f"Invoice {invoice.number} is already paid: nothing was recorded.", status=409)
        if amount_pence > pos.outstanding:
            raise BillingError(f"That is more than the {money.format_pence(pos.outstanding)} outstanding on "
                               f"{invoice.number}.", field="amount", status=409)
        payment = Payment(invoice_id=invoice.id, patient_id=invoice.patient_id, amount_pence=amount_pence,
                          method=method, reference=reference, received_at=received_at, recorded_by=by.id)
        session.add(payment)
        session.flush()
        _refresh_status(invoice)
        _supersede_checkouts(invoice)
        audit.record("billing.payment_recorded", subject=("invoice", invoice.id), patient_id=invoice.patient_id,
                     detail={"payment_id": payment.id, "invoice": invoice.number, "amount_pence": amount_pence,
                             "method": method, "reference": reference})
    return payment


def payments_of(invoice: Invoice) -> list[Payment]:
    return list(db.session.scalars(sa.select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.id)))


def refunds_of(payment: Payment) -> list[Refund]:
    return list(db.session.scalars(sa.select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)))


def refundable(payment: Payment) -> int:
    given_back = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Refund.amount_pence), 0))
                                   .where(Refund.payment_id == payment.id))
    return payment.amount_pence - int(given_back)


def refund(payment: Payment, amount_pence: int, *, reason: str, reference: str | None = None,
           by: User) -> Refund:
    """Money given back from one payment, as its own record: never more than is left of that payment."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 300:
        raise BillingError("Say why the money is given back (up to 300 characters).", field="reason")
    try:
        money.check_pence(amount_pence, maximum=settings.max_amount(), what="The refund")
    except money.AmountError as exc:
        raise BillingError(str(exc), field="amount") from None
    with transaction() as session:
        invoice = _locked_invoice(payment.invoice_id)
        left = refundable(payment)
        if amount_pence > left:
            raise BillingError(f"That is more than was paid: at most {money.format_pence(left)} of this payment can "
                               "be refunded.", field="amount", status=409)
        item = Refund(payment_id=payment.id, invoice_id=invoice.id, patient_id=invoice.patient_id,
                      amount_pence=amount_pence, reason=reason, reference=(reference or "").strip()[:100] or None,
                      created_by=by.id)
        session.add(item)
        session.flush()
        _refresh_status(invoice)
        audit.record("billing.refund_recorded", subject=("invoice", invoice.id), patient_id=invoice.patient_id,
                     detail={"refund_id": item.id, "payment_id": payment.id, "invoice": invoice.number,
                             "amount_pence": amount_pence, "reason": reason})
    return item


def get_payment(payment_id: int) -> Payment | None:
    return db.session.get(Payment, payment_id)


# Online payments ----------------------------------------------------------------------------------------

def online_payments_on() -> bool:
    return provider.configured() is not None


def start_checkout(invoice: Invoice, *, by: User | None,
                   urls_for: Callable[[str], tuple[str, str]]) -> Checkout:
    """The open checkout for what is outstanding on the invoice, opened at the provider if it is new.

    Two tabs or a double click get the same checkout (one open checkout per invoice, a unique index): the patient
    can only pay the outstanding amount once."""
    chosen = provider.configured()
    if chosen is None:
        raise BillingError("Online payment is not available: contact the clinic to pay by card or bank transfer.",
                           status=409)
    with transaction() as session:
        invoice = _locked_invoice(invoice.id)
        pos = position(invoice)
        if pos.outstanding <= 0:
            raise BillingError(f"Invoice {invoice.number} is already paid.", status=409)
        checkout = session.scalar(sa.select(Checkout).where(Checkout.invoice_id == invoice.id,
                                                            Checkout.status == CHECKOUT_OPEN))
        if checkout is not None and (checkout.amount_pence != pos.outstanding or checkout.provider != chosen.name):
            checkout.status, checkout.completed_at = CHECKOUT_SUPERSEDED, utcnow()
            session.flush()
            checkout = None
        if checkout is None:
            checkout = Checkout(public_id=secrets.token_urlsafe(18), invoice_id=invoice.id, provider=chosen.name,
                                amount_pence=pos.outstanding, status=CHECKOUT_OPEN, created_by=_user_id(by))
            session.add(checkout)
            session.flush()
            audit.record("billing.checkout_started", subject=("invoice", invoice.id), patient_id=invoice.patient_id,
                         detail={"checkout": checkout.public_id, "provider": chosen.name,
                                 "amount_pence": checkout.amount_pence})
    if checkout.url:
        return checkout
    try:
        return_url, cancel_url = urls_for(checkout.public_id)
        opened = chosen.create_checkout(checkout, invoice, return_url=return_url, cancel_url=cancel_url)
    except provider.ProviderError as exc:
        with transaction():
            db.session.execute(sa.update(Checkout).where(Checkout.id == checkout.id, Checkout.status == CHECKOUT_OPEN)
                               .values(status=CHECKOUT_FAILED, completed_at=utcnow())
                               .execution_options(synchronize_session=False))
            audit.record("billing.checkout_failed", subject=("invoice", invoice.id), patient_id=invoice.patient_id,
                         detail={"checkout": checkout.public_id, "reason": str(exc)[:300]})
        raise BillingError("The payment service is not answering just now. Nothing was taken: try again in a few "
                           "minutes.", status=503) from None
    with transaction():
        db.session.execute(sa.update(Checkout).where(Checkout.id == checkout.id)
                           .values(reference=opened.reference, url=opened.url)
                           .execution_options(synchronize_session=False))
    db.session.refresh(checkout)
    return checkout


def checkout_by_public_id(public_id: str) -> Checkout | None:
    return db.session.scalar(sa.select(Checkout).where(Checkout.public_id == public_id))


def checkout_by_reference(name: str, reference: str) -> Checkout | None:
    return db.session.scalar(sa.select(Checkout).where(Checkout.provider == name, Checkout.reference == reference))


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    payment: Payment | None = None


def apply_event(name: str, event: provider.ProviderEvent) -> Outcome:
    """Act once on an authenticated provider event. A replayed event id, a checkout no longer open, an amount or
    currency that is not the checkout's: refused (4xx with the reason), audited, and nothing changes."""
    try:
        with transaction() as session:
            session.add(WebhookEvent(provider=name, event_id=event.event_id, status_code=0, outcome="received"))
            session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()
        return _refused(name, event, 409, "this event was already received (a replay): nothing was applied again")
    checkout = checkout_by_reference(name, event.reference)
    if checkout is None:
        # Forget the claim: the checkout may be known when the provider retries.
        with transaction() as session:
            session.execute(sa.delete(WebhookEvent).where(WebhookEvent.provider == name,
                                                          WebhookEvent.event_id == event.event_id))
        return _refused(name, event, 404, "no checkout with this reference: retry later if it was just created")
    outcome: Outcome
    try:
        with transaction() as session:
            invoice = _locked_invoice(checkout.invoice_id)
            session.refresh(checkout)
            if event.currency != "GBP":
                raise BillingError(f"the currency is {event.currency}, the checkout's is GBP", status=409)
            if event.amount_pence != checkout.amount_pence:
                raise BillingError(f"the amount ({event.amount_pence} pence) is not the checkout's "
                                   f"({checkout.amount_pence} pence)", status=409)
            if checkout.status != CHECKOUT_OPEN:
                raise BillingError(f"this checkout is no longer open ({checkout.status}): the invoice was paid "
                                   "already or another way; refund this payment at the provider", status=409)
            if event.type == provider.FAILED:
                checkout.status, checkout.completed_at = CHECKOUT_FAILED, utcnow()
                audit.record("billing.checkout_failed", subject=("invoice", invoice.id),
                             patient_id=invoice.patient_id, detail={"checkout": checkout.public_id,
                                                                   "event_id": event.event_id})
                outcome = Outcome(200, "recorded: the payment failed")
            else:
                pos = position(invoice)
                if event.amount_pence > pos.outstanding:
                    raise BillingError("the invoice no longer owes this amount: refund it at the provider",
                                       status=409)
                payment = Payment(invoice_id=invoice.id, patient_id=invoice.patient_id,
                                  amount_pence=event.amount_pence, method=ONLINE, provider=name,
                                  provider_reference=event.payment_reference, checkout_id=checkout.id,
                                  received_at=utcnow())
                session.add(payment)
                checkout.status, checkout.completed_at = CHECKOUT_PAID, utcnow()
                session.flush()
                _refresh_status(invoice)
                audit.record("billing.payment_received", subject=("invoice", invoice.id),
                             patient_id=invoice.patient_id,
                             detail={"payment_id": payment.id, "invoice": invoice.number, "provider": name,
                                     "amount_pence": event.amount_pence, "event_id": event.event_id,
                                     "payment_reference": event.payment_reference})
                outcome = Outcome(200, "applied", payment)
            _settle(name, event.event_id, outcome.status, outcome.message)
    except (BillingError, sa.exc.IntegrityError) as exc:
        db.session.rollback()
        reason = str(exc) if isinstance(exc, BillingError) else "this payment was already recorded"
        status = exc.status if isinstance(exc, BillingError) else 409
        with transaction():
            _settle(name, event.event_id, status, reason)
        return _refused(name, event, status, reason)
    return outcome


def _settle(name: str, event_id: str, status: int, outcome: str) -> None:
    db.session.execute(sa.update(WebhookEvent).where(WebhookEvent.provider == name, WebhookEvent.event_id == event_id)
                       .values(status_code=status, outcome=outcome[:300]).execution_options(synchronize_session=False))


def _refused(name: str, event: provider.ProviderEvent | None, status: int, reason: str) -> Outcome:
    record_refusal(name, status, reason, event_id=event.event_id if event else None,
                   reference=event.reference if event else None)
    return Outcome(status, reason)


def record_refusal(name: str, status: int, reason: str, *, event_id: str | None = None,
                   reference: str | None = None) -> None:
    with transaction():
        audit.record("billing.webhook_refused", detail={"provider": name[:20], "status": status,
                                                         "reason": reason[:300], "event_id": event_id,
                                                         "reference": reference})


def sandbox_pay(checkout: Checkout) -> Outcome:
    """The sandbox checkout's Pay button: the same path as a provider's webhook, with a sandbox event id per
    checkout (so a double click is a replay, refused)."""
    if checkout.provider != provider.SANDBOX or provider.configured() is None \
            or provider.configured().name != provider.SANDBOX:
        raise BillingError("The sandbox checkout is not enabled.", status=404)
    event = provider.ProviderEvent(event_id=f"sandbox:{checkout.public_id}", type=provider.PAID,
                                   reference=checkout.reference or "", amount_pence=checkout.amount_pence,
                                   currency="GBP", payment_reference=f"sbx_pay_{checkout.public_id}")
    return apply_event(provider.SANDBOX, event)


# Scheduling's hooks ---------------------------------------------------------------------------------

def _prepaid_credit(patient_id: int, consultation_type: str) -> Charge | None:
    """A paid consultation charge not yet used by a booking (pay-before policy)."""
    rows = db.session.scalars(sa.select(Charge).join(Invoice, Invoice.id == Charge.invoice_id).where(
        Charge.patient_id == patient_id, Charge.code == consultation_code(consultation_type),
        Charge.appointment_id.is_(None), Charge.status == INVOICED, Invoice.status == PAID).order_by(Charge.id))
    return next(iter(rows), None)


def check_may_book(patient: Patient, consultation_type: str, role: str) -> None:
    """Called by scheduling before a booking. With the pay-before policy, a patient books online only with a
    consultation paid for in advance (Payments page); staff may book and take payment at the desk."""
    if role != "patient" or settings.payment_policy() != settings.PAY_BEFORE:
        return
    if price_for(consultation_code(consultation_type)) is None:
        return
    if _prepaid_credit(patient.id, consultation_type) is None:
        from app.scheduling.services import BookingError

        raise BookingError("The clinic asks for payment before a consultation is booked. Pay for it on your "
                           "Payments page, then choose a time.")


def charge_for_appointment(appointment, *, role: str) -> Charge | None:
    """Called by scheduling inside the booking's transaction: charge the consultation per the clinic's policy.

    pay-before (patient booking): the prepaid consultation is attached to the appointment. Otherwise, charged at
    booking: a charge and its invoice now (payable any time); charged after the consult: nothing yet."""
    from app.scheduling.services import BookingError

    if price_for(consultation_code(appointment.consultation_type)) is None:
        return None  # the clinic has not priced this kind of consultation: nothing to charge
    patient = patients.get(appointment.patient_id)
    if role == "patient" and settings.payment_policy() == settings.PAY_BEFORE:
        with transaction() as session:
            credit_charge = _prepaid_credit(patient.id, appointment.consultation_type)
            if credit_charge is None:
                raise BookingError("The clinic asks for payment before a consultation is booked. Pay for it on your "
                                   "Payments page, then choose a time.")
            changed = session.execute(sa.update(Charge).where(Charge.id == credit_charge.id,
                                                              Charge.appointment_id.is_(None))
                                      .values(appointment_id=appointment.id)
                                      .execution_options(synchronize_session=False)).rowcount
            if not changed:
                raise BookingError("Your prepaid consultation was just used by another booking.")
            audit.record("billing.prepaid_used", subject=("charge", credit_charge.id), patient_id=patient.id,
                         detail={"appointment_id": appointment.id})
        return credit_charge
    if settings.charge_at() != settings.BOOKING:
        return None
    return _charge_and_invoice(patient, appointment)


def _charge_and_invoice(patient: Patient, appointment) -> Charge:
    with transaction():
        # Numbered first: the counter lock (after the audit chain's) before this transaction audits anything else.
        charge = add_charge(patient, consultation_code(appointment.consultation_type),
                            on=appointment.starts_at.astimezone(clinic_zone()).date(), appointment_id=appointment.id)
        issue_invoice(patient, charge_ids=[charge.id])
    return charge


def appointment_completed(appointment) -> None:
    """Called by scheduling when a consultation is completed: with the charge-after-consult policy, invoice it now
    (once: an appointment has at most one consultation charge)."""
    if settings.charge_at() != settings.CONSULT or charge_of(appointment) is not None:
        return
    if price_for(consultation_code(appointment.consultation_type)) is None:
        return
    _charge_and_invoice(patients.get(appointment.patient_id), appointment)


def appointment_cancelled(appointment) -> None:
    """Called by scheduling when a consultation is cancelled: a pending charge is voided, an invoiced one credited
    (the credit stays on the patient's account for a refund or the next invoice), a prepaid one freed for the next
    booking."""
    charge = charge_of(appointment)
    if charge is None:
        return
    if charge.status == PENDING:
        void_charge(charge, reason=CANCELLED_NOTE)
        return
    if charge.status != INVOICED:
        return
    invoice = db.session.get(Invoice, charge.invoice_id)
    if invoice.status == PAID and settings.payment_policy() == settings.PAY_BEFORE:
        with transaction() as session:
            session.execute(sa.update(Charge).where(Charge.id == charge.id).values(appointment_id=None)
                            .execution_options(synchronize_session=False))
            audit.record("billing.prepaid_released", subject=("charge", charge.id), patient_id=charge.patient_id,
                         detail={"appointment_id": appointment.id})
        return
    owed = position(invoice).owed
    if owed > 0:
        credit(invoice, min(owed, charge.total_pence), reason=CANCELLED_NOTE)


def charge_of(appointment) -> Charge | None:
    return db.session.scalar(sa.select(Charge).where(Charge.appointment_id == appointment.id))


def prepay_consultation(patient: Patient, consultation_type: str, *, by: User | None) -> Invoice:
    """Pay-before policy: an invoice for one consultation of this kind, to pay before booking it."""
    if settings.payment_policy() != settings.PAY_BEFORE:
        raise BillingError("The clinic does not ask for payment before booking.", status=409)
    existing = db.session.scalar(sa.select(Invoice).join(Charge, Charge.invoice_id == Invoice.id).where(
        Charge.patient_id == patient.id, Charge.code == consultation_code(consultation_type),
        Charge.appointment_id.is_(None), Invoice.status == OPEN))
    if existing is not None:
        return existing
    with transaction():
        charge = add_charge(patient, consultation_code(consultation_type), by=by)
        return issue_invoice(patient, charge_ids=[charge.id], by=by)


def prepaid_available(patient: Patient) -> dict[str, bool]:
    from app.scheduling.services import settings as scheduling_settings

    return {key: _prepaid_credit(patient.id, key) is not None for key in scheduling_settings.consultation_types()}


# What people see -----------------------------------------------------------------------------------

@dataclass
class StatementLine:
    at: dt.datetime
    kind: str
    description: str
    #: Positive: owed by the patient (an invoice, a refund); negative: in their favour (a payment, a credit).
    amount: int
    balance: int = 0
    invoice_id: int | None = None


@dataclass
class Statement:
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return self.lines[-1].balance if self.lines else 0


def statement(patient: Patient) -> Statement:
    """Every invoice, credit note, payment and refund of the patient in time order, with a running balance."""
    session = db.session
    lines: list[StatementLine] = []
    for invoice in session.scalars(sa.select(Invoice).where(Invoice.patient_id == patient.id)):
        lines.append(StatementLine(invoice.issued_at, "invoice", f"Invoice {invoice.number}", invoice.total_pence,
                                   invoice_id=invoice.id))
    numbers = dict(session.execute(sa.select(Invoice.id, Invoice.number).where(Invoice.patient_id == patient.id)).all())
    for note in session.scalars(sa.select(CreditNote).where(CreditNote.patient_id == patient.id)):
        lines.append(StatementLine(note.created_at, "credit", f"Credit note {note.number} ({numbers[note.invoice_id]})",
                                   -note.amount_pence, invoice_id=note.invoice_id))
    for payment in session.scalars(sa.select(Payment).where(Payment.patient_id == patient.id)):
        lines.append(StatementLine(payment.received_at, "payment",
                                   f"Payment, {METHODS[payment.method].lower()} ({numbers[payment.invoice_id]})",
                                   -payment.amount_pence, invoice_id=payment.invoice_id))
    for item in session.scalars(sa.select(Refund).where(Refund.patient_id == patient.id)):
        lines.append(StatementLine(item.created_at, "refund", f"Refund ({numbers[item.invoice_id]})",
                                   item.amount_pence, invoice_id=item.invoice_id))
    lines.sort(key=lambda line: (line.at, ("invoice", "credit", "payment", "refund").index(line.kind)))
    running = 0
    for line in lines:
        running += line.amount
        line.balance = running
    return Statement(lines)


def checklist_steps(patient: Patient) -> list[Step]:
    """The dashboard's payments step: only when something is due."""
    from flask import url_for

    due = [i for i in invoices_for(patient) if i.status == OPEN]
    if not due:
        return []
    total = sum(position(i).outstanding for i in due)
    return [Step("billing", f"Payment due: {money.format_pence(total)}", StepStatus.ACTION,
                 hint="Pay online and download your invoices from your Payments page.",
                 url=url_for("billing.mine"), action="Pay now", order=75)]


@dataclass(frozen=True)
class DayRow:
    appointment: object
    patient: Patient
    name: str
    charge: Charge | None
    invoice: Invoice | None
    outstanding: int


def day_sheet(day: dt.date) -> list[DayRow]:
    """Reception's view: every clinician's appointments on a clinic day, with the consultation's payment state."""
    from app.scheduling import services as scheduling

    rows: list[DayRow] = []
    for clinician in scheduling.clinicians():
        for row in scheduling.board(clinician.id, day, day):
            charge = charge_of(row.appointment)
            invoice = db.session.get(Invoice, charge.invoice_id) if charge and charge.invoice_id else None
            outstanding = position(invoice).outstanding if invoice else 0
            rows.append(DayRow(row.appointment, row.patient, row.name, charge, invoice, outstanding))
    rows.sort(key=lambda r: (r.appointment.starts_at, r.appointment.id))
    return rows


def balance_of(patient_id: int) -> int:
    """The patient's balance from the ledger alone: invoices - credits - payments + refunds."""
    session = db.session

    def total(column, where):
        return int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(column), 0)).where(where)))

    return (total(Invoice.total_pence, Invoice.patient_id == patient_id)
            - total(CreditNote.amount_pence, CreditNote.patient_id == patient_id)
            - total(Payment.amount_pence, Payment.patient_id == patient_id)
            + total(Refund.amount_pence, Refund.patient_id == patient_id))


def reconcile() -> list[str]:
    """Every way the books could disagree with themselves; empty when they balance to the penny."""
    session = db.session
    problems: list[str] = []
    for invoice in session.scalars(sa.select(Invoice).order_by(Invoice.id)):
        lines = lines_of(invoice)
        if sum(c.total_pence for c in lines) != invoice.total_pence or \
                sum(c.net_pence for c in lines) != invoice.net_pence or \
                sum(c.vat_pence for c in lines) != invoice.vat_pence:
            problems.append(f"{invoice.number}: lines do not add up to the invoice")
        pos = position(invoice)
        if pos.credited > pos.total:
            problems.append(f"{invoice.number}: credited more than invoiced")
        if pos.refunded > pos.paid:
            problems.append(f"{invoice.number}: refunded more than paid")
        if status_for(pos) != invoice.status:
            problems.append(f"{invoice.number}: status {invoice.status}, ledger says {status_for(pos)}")
    for payment in session.scalars(sa.select(Payment)):
        if refundable(payment) < 0:
            problems.append(f"payment {payment.id}: refunded more than it was")
    sequences = list(session.scalars(sa.select(Invoice.sequence).order_by(Invoice.sequence)))
    if sequences != list(range(1, len(sequences) + 1)):
        problems.append("invoice numbers have gaps or do not start at 1")
    notes = list(session.scalars(sa.select(CreditNote.sequence).order_by(CreditNote.sequence)))
    if notes != list(range(1, len(notes) + 1)):
        problems.append("credit note numbers have gaps or do not start at 1")
    return problems


def invoice_of_checkout(checkout: Checkout) -> Invoice:
    return db.session.get(Invoice, checkout.invoice_id)

