"""Billing's tables: the price list, patient arrangements, charges, invoices with gapless numbers, credit
notes, payments, refunds, checkouts at the payment provider, and the provider's webhook events already seen.

Money is integer pence (BigInteger) everywhere; the £ sign appears only in templates (the `money` filter).
Nothing here is edited after the fact: a wrong invoice is answered by a credit note, a payment given back by
a refund, a price change by a new price row from a later date.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

#: Price list kinds.
CONSULTATION, SERVICE, MEDICINE = "consultation", "service", "medicine"
KINDS = (CONSULTATION, SERVICE, MEDICINE)

#: Charge statuses: pending (not yet on an invoice) → invoiced; pending → void (e.g. the consultation was cancelled
#: before it was invoiced). A prepaid consultation charge (pay-before policy) is invoiced with no appointment yet.
PENDING, INVOICED, VOID = "pending", "invoiced", "void"

#: Invoice statuses, kept in step with the ledger by services (reconcile.py checks they agree):
#: open (something to pay) → paid (nothing left) | credited (credit notes cover it whole).
OPEN, PAID, CREDITED = "open", "paid", "credited"

#: Checkout statuses: open (the patient may pay it) → paid | failed | superseded (paid another way,
#: or replaced by a checkout for a different amount).
CHECKOUT_OPEN, CHECKOUT_PAID, CHECKOUT_FAILED, CHECKOUT_SUPERSEDED = "open", "paid", "failed", "superseded"

#: How a payment arrived.
ONLINE, CARD_TERMINAL, BANK_TRANSFER, CASH = "online", "card_terminal", "bank_transfer", "cash"
METHODS = {ONLINE: "Online card payment", CARD_TERMINAL: "Card terminal", BANK_TRANSFER: "Bank transfer",
           CASH: "Cash"}
#: Methods reception records by hand (online payments arrive from the provider).
STAFF_METHODS = (CARD_TERMINAL, BANK_TRANSFER, CASH)


class PriceItem(db.Model):
    """One price of one item from a date: a later row with the same code replaces it from its own date."""

    __tablename__ = "billing_price_items"
    __table_args__ = (
        sa.UniqueConstraint("code", "effective_from", name="uq_billing_price_items_code_from"),
        sa.CheckConstraint("amount_pence >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable key, e.g. "consult:initial" (a consultation type's charge) or "letter".
    code: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(200))
    #: consultation, service or medicine.
    kind: Mapped[str] = mapped_column(sa.String(20))
    #: Net price in pence (before VAT).
    amount_pence: Mapped[int] = mapped_column(sa.BigInteger)
    #: A key of BILLING_VAT_RATES, e.g. "exempt" (most medical services) or "standard".
    vat_treatment: Mapped[str] = mapped_column(sa.String(20))
    #: First day (clinic date) the price applies.
    effective_from: Mapped[dt.date] = mapped_column(sa.Date)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Arrangement(db.Model):
    """A patient-specific arrangement (a discount for an eligible group, a subscription plan covering
    consultations), with who approved it and why."""

    __tablename__ = "billing_arrangements"
    __table_args__ = (
        sa.CheckConstraint("discount_bp > 0 AND discount_bp <= 10000", name="discount_range"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="dates_in_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    #: "discount" or "subscription" (a subscription is a 100% discount on what it covers).
    kind: Mapped[str] = mapped_column(sa.String(20))
    #: Shown on invoices, e.g. "Veterans' discount".
    name: Mapped[str] = mapped_column(sa.String(200))
    #: Discount in basis points: 1000 = 10%, 10000 = all of it.
    discount_bp: Mapped[int] = mapped_column(sa.Integer)
    #: The price kind it applies to (None: everything).
    applies_to: Mapped[str | None] = mapped_column(sa.String(20))
    valid_from: Mapped[dt.date] = mapped_column(sa.Date)
    valid_to: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: Why the patient is eligible (no clinical detail), and who approved it.
    reason: Mapped[str] = mapped_column(sa.String(300))
    approved_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Charge(db.Model):
    """One line owed by a patient, priced when it was made (the price row and arrangement are kept)."""

    __tablename__ = "billing_charges"
    __table_args__ = (
        # At most one consultation charge per appointment.
        sa.UniqueConstraint("appointment_id", name="uq_billing_charges_appointment_id"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("unit_pence >= 0 AND discount_pence >= 0 AND vat_pence >= 0", name="amounts_not_negative"),
        sa.CheckConstraint("net_pence = unit_pence * quantity - discount_pence", name="net_adds_up"),
        sa.CheckConstraint("total_pence = net_pence + vat_pence", name="total_adds_up"),
        sa.Index("ix_billing_charges_patient", "patient_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    price_item_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_price_items.id"))
    code: Mapped[str] = mapped_column(sa.String(40))
    description: Mapped[str] = mapped_column(sa.String(300))
    quantity: Mapped[int] = mapped_column(sa.Integer, default=1)
    unit_pence: Mapped[int] = mapped_column(sa.BigInteger)
    discount_pence: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    net_pence: Mapped[int] = mapped_column(sa.BigInteger)
    vat_treatment: Mapped[str] = mapped_column(sa.String(20))
    #: VAT rate in basis points at the time (2000 = 20%).
    vat_rate_bp: Mapped[int] = mapped_column(sa.Integer, default=0)
    vat_pence: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total_pence: Mapped[int] = mapped_column(sa.BigInteger)
    arrangement_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_arrangements.id"))
    #: The consultation it is for (None for other items, and for a prepaid consultation not yet booked).
    appointment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("appointments.id"))
    #: pending → invoiced | void.
    status: Mapped[str] = mapped_column(sa.String(10), default=PENDING)
    invoice_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_invoices.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Counter(db.Model):
    """The next number of a gapless series ("invoice", "credit_note"). Taken with SELECT ... FOR UPDATE in the
    transaction that inserts the numbered row, so a rolled-back insert gives its number back."""

    __tablename__ = "billing_counters"

    name: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    next_value: Mapped[int] = mapped_column(sa.BigInteger)


class Invoice(db.Model):
    """An issued invoice: its lines are the charges that point to it. Never edited: credit notes reduce it."""

    __tablename__ = "billing_invoices"
    __table_args__ = (
        sa.CheckConstraint("total_pence = net_pence + vat_pence", name="total_adds_up"),
        sa.Index("ix_billing_invoices_patient", "patient_id", "issued_at"),
        sa.Index("ix_billing_invoices_status", "status", "issued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The gapless series number (1, 2, 3 ...), and its printed form, e.g. "INV-000042".
    sequence: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_on: Mapped[dt.date] = mapped_column(sa.Date)
    net_pence: Mapped[int] = mapped_column(sa.BigInteger)
    vat_pence: Mapped[int] = mapped_column(sa.BigInteger)
    total_pence: Mapped[int] = mapped_column(sa.BigInteger)
    #: open → paid | credited; a refund may open it again (see models' statuses).
    status: Mapped[str] = mapped_column(sa.String(10), default=OPEN)
    #: What was printed, kept as issued: the clinic's and the patient's name and address at the time.
    clinic_details: Mapped[str] = mapped_column(sa.Text)
    billed_to: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class CreditNote(db.Model):
    """Part or all of an invoice taken back, numbered in its own gapless series."""

    __tablename__ = "billing_credit_notes"
    __table_args__ = (sa.CheckConstraint("amount_pence > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_invoices.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(300))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkout(db.Model):
    """A payment page opened at the provider for one invoice and amount. One open checkout per invoice:
    a second tab or a double click gets the same one."""

    __tablename__ = "billing_checkouts"
    __table_args__ = (
        sa.Index("uq_billing_checkouts_open", "invoice_id", unique=True,
                 sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'")),
        sa.UniqueConstraint("provider", "reference", name="uq_billing_checkouts_provider_reference"),
        sa.CheckConstraint("amount_pence > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Our id for it, sent to the provider as the client reference (random, unguessable).
    public_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_invoices.id"))
    provider: Mapped[str] = mapped_column(sa.String(20))
    #: The provider's reference for the checkout (None until it has answered).
    reference: Mapped[str | None] = mapped_column(sa.String(100))
    #: Where the patient pays.
    url: Mapped[str | None] = mapped_column(sa.String(1000))
    amount_pence: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(12), default=CHECKOUT_OPEN)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Payment(db.Model):
    """Money received against one invoice: online (a provider's confirmed checkout) or recorded by staff."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        sa.CheckConstraint("amount_pence > 0", name="amount_positive"),
        # A provider's payment is recorded once, however often its webhook arrives.
        sa.UniqueConstraint("provider", "provider_reference", name="uq_billing_payments_provider_reference"),
        sa.Index("ix_billing_payments_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_invoices.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(sa.BigInteger)
    #: online, card_terminal, bank_transfer or cash.
    method: Mapped[str] = mapped_column(sa.String(20))
    #: Online payments: the provider and its payment reference. Staff payments: the terminal receipt or bank
    #: reference they typed.
    provider: Mapped[str | None] = mapped_column(sa.String(20))
    provider_reference: Mapped[str | None] = mapped_column(sa.String(100))
    reference: Mapped[str | None] = mapped_column(sa.String(100))
    checkout_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_checkouts.id"))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class Refund(db.Model):
    """Money given back from one payment: never more than what is left of it."""

    __tablename__ = "billing_refunds"
    __table_args__ = (sa.CheckConstraint("amount_pence > 0", name="amount_positive"),
                      sa.Index("ix_billing_refunds_created", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_payments.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_invoices.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    amount_pence: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(300))
    #: The terminal's or bank's reference for the money going back.
    reference: Mapped[str | None] = mapped_column(sa.String(100))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(db.Model):
    """A provider webhook event already received: the same event id again is refused as a replay."""

    __tablename__ = "billing_webhook_events"
    __table_args__ = (sa.UniqueConstraint("provider", "event_id", name="uq_billing_webhook_events_provider_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    event_id: Mapped[str] = mapped_column(sa.String(100))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: What we answered the first time.
    status_code: Mapped[int] = mapped_column(default=200)
    outcome: Mapped[str] = mapped_column(sa.String(300), default="")
