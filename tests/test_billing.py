"""Billing: the price list and its dates, VAT as configuration, arrangements and who approved them, consultation
charges at booking or after the consult, gapless numbering (also under concurrent writers), credit notes, statements,
staff payments, refunds, paying twice, absurd amounts, and the audit trail of every change. Both engines."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from flask import g

from app.audit.models import AuditEvent
from app.billing import demo, money, services
from app.billing.models import CREDITED, OPEN, PAID, Charge, Checkout, Counter, Invoice, Payment
from app.billing.services import BillingError
from app.extensions import db
from app.patients import services as patients
from app.scheduling import services as scheduling
from app.scheduling.models import Appointment
from tests.conftest import csrf_from, sign_in_as
from tests.test_scheduling import future_monday, set_up_clinic, slot_id, user


@pytest.fixture
def clinic(ctx, personas):
    set_up_clinic(personas)
    demo.load_prices()
    return personas


def patient_of(personas, who="patient"):
    return patients.get(personas[who].patient_id)


def invoice_for(personas, code="consult:initial", quantity=1):
    patient = patient_of(personas)
    services.add_charge(patient, code, quantity=quantity, by=user(personas["reception"]))
    return services.issue_invoice(patient, by=user(personas["reception"]))


def actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


# The price list ----------------------------------------------------------------------------------

def test_a_price_applies_from_its_date_and_earlier_prices_stay(clinic):
    today = services.clinic_today()
    admin = user(clinic["admin"])
    services.set_price(code="consult:initial", name="Initial consultation", kind="consultation", amount_pence=17500,
                       effective_from=today + dt.timedelta(days=10), by=admin)
    assert services.price_for("consult:initial", today).amount_pence == 15000
    assert services.price_for("consult:initial", today + dt.timedelta(days=9)).amount_pence == 15000
    assert services.price_for("consult:initial", today + dt.timedelta(days=10)).amount_pence == 17500
    assert [p.effective_from for p in services.scheduled_prices()] == [today + dt.timedelta(days=10)]
    with pytest.raises(BillingError, match="cannot start in the past"):
        services.set_price(code="letter", name="Letter", kind="service", amount_pence=100,
                           effective_from=today - dt.timedelta(days=1), by=admin)
    with pytest.raises(BillingError, match="already has a price") as refused:
        services.set_price(code="consult:initial", name="Initial", kind="consultation", amount_pence=1,
                           effective_from=today + dt.timedelta(days=10), by=admin)
    assert refused.value.status == 409
    # A charge made before the change keeps its price.
    invoice = invoice_for(clinic)
    assert invoice.total_pence == 15000


def test_vat_treatment_and_rates_are_configuration(clinic, app):
    patient = patient_of(clinic)
    exempt = services.add_charge(patient, "consult:initial")
    letter = services.add_charge(patient, "letter")
    assert (exempt.vat_treatment, exempt.vat_pence, exempt.total_pence) == ("exempt", 0, 15000)
    assert (letter.vat_rate_bp, letter.vat_pence, letter.total_pence) == (2000, 600, 3600)
    app.config["BILLING_VAT_RATES"] = "exempt=0,standard=17.5"
    again = services.add_charge(patient, "letter", quantity=3)
    assert (again.net_pence, again.vat_rate_bp, again.vat_pence, again.total_pence) == (9000, 1750, 1575, 10575)
    app.config["BILLING_DEFAULT_VAT"] = "standard"
    item = services.set_price(code="report", name="Insurance report", kind="service", amount_pence=333)
    assert item.vat_treatment == "standard"
    odd = services.add_charge(patient, "report")
    assert odd.vat_pence == 58  # 17.5% of £3.33 = 58.275p, half-up to the penny, per line


def test_an_arrangement_needs_an_administrator_and_discounts_what_it_covers(clinic):
    patient = patient_of(clinic)
    today = services.clinic_today()
    terms = dict(kind="discount", name="Veterans' discount", discount_bp=2500, applies_to="consultation",
                 valid_from=today, valid_to=None, reason="Armed forces veteran (card seen)")
    with pytest.raises(BillingError, match="administrator"):
        services.add_arrangement(patient, approved_by=user(clinic["reception"]), **terms)
    deal = services.add_arrangement(patient, approved_by=user(clinic["admin"]), **terms)
    assert deal.approved_by == clinic["admin"].user_id
    consult = services.add_charge(patient, "consult:initial")
    letter = services.add_charge(patient, "letter")
    assert (consult.discount_pence, consult.total_pence, consult.arrangement_id) == (3750, 11250, deal.id)
    assert letter.discount_pence == 0, "the discount covers consultations only"
    entry = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "billing.arrangement_approved")).one()
    assert "Veterans" in entry.detail and entry.patient_id == patient.id
    services.add_arrangement(patient, approved_by=user(clinic["admin"]), kind="subscription", name="Care plan",
                             discount_bp=0, applies_to="consultation", valid_from=today, valid_to=None,
                             reason="Monthly plan")
    covered = services.add_charge(patient, "consult:follow-up")
    assert covered.total_pence == 0 and covered.description.endswith("(Care plan)")
    with pytest.raises(BillingError, match="at most 100%"):
        services.add_arrangement(patient, approved_by=user(clinic["admin"]), **{**terms, "discount_bp": 10001})


# Consultation charges ----------------------------------------------------------------------------

def book(clinic, hhmm="09:00", kind="initial", by="patient"):
    monday = future_monday()
    booker = user(clinic[by])
    return scheduling.book(patient_of(clinic), slot_id(clinic["clinician"], monday, hhmm, kind), by=booker)


def test_booking_charges_and_invoices_the_consultation(clinic, app):
    appointment = book(clinic)
    charge = services.charge_of(appointment)
    assert charge is not None and charge.code == "consult:initial" and charge.total_pence == 15000
    invoice = db.session.get(Invoice, charge.invoice_id)
    assert (invoice.status, invoice.number, invoice.total_pence) == (OPEN, "INV-000001", 15000)
    assert "1 Harbour Road" in invoice.billed_to
    with app.test_request_context():
        steps = [s for s in patients.checklist(patient_of(clinic)) if s.key == "billing"]
    assert steps and steps[0].title == "Payment due: £150.00"


def test_cancelling_a_charged_consultation_credits_it(clinic):
    appointment = book(clinic, by="reception")
    scheduling.cancel(appointment, by=user(clinic["reception"]))
    invoice = db.session.get(Invoice, services.charge_of(appointment).invoice_id)
    assert invoice.status == CREDITED
    notes = services.credit_notes_of(invoice)
    assert [(n.number, n.amount_pence) for n in notes] == [("CN-000001", 15000)]
    assert services.statement(patient_of(clinic)).balance == 0


def move_to_now(appointment):
    """Test set-up only: put a booked appointment's time around now, so the call can start and end."""
    now = dt.datetime.now(dt.UTC)
    db.session.execute(sa.update(Appointment).where(Appointment.id == appointment.id).values(
        starts_at=now - dt.timedelta(minutes=5), ends_at=now + dt.timedelta(minutes=25)))
    db.session.commit()
    db.session.refresh(appointment)


def test_charging_after_the_consult_invoices_only_once_it_is_completed(clinic, app):
    app.config["BILLING_CHARGE_AT"] = "consult"
    appointment = book(clinic)
    assert services.charge_of(appointment) is None
    move_to_now(appointment)
    doctor = user(clinic["clinician"])
    scheduling.mark(appointment, "in_call", by=doctor)
    assert services.charge_of(appointment) is None
    scheduling.mark(appointment, "completed", by=doctor)
    charge = services.charge_of(appointment)
    assert charge is not None and charge.status == "invoiced"
    assert db.session.get(Invoice, charge.invoice_id).total_pence == 15000


def test_pay_before_policy_refuses_an_unpaid_online_booking_and_uses_a_prepaid_one(clinic, app):
    app.config["BILLING_PAYMENT_POLICY"] = "pay_before"
    with pytest.raises(scheduling.BookingError, match="payment before a consultation is booked"):
        book(clinic)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0
    patient = patient_of(clinic)
    invoice = services.prepay_consultation(patient, "initial", by=user(clinic["patient"]))
    assert services.prepay_consultation(patient, "initial", by=None).id == invoice.id, "one open prepayment"
    services.record_payment(invoice, 15000, method="card_terminal", reference="T-1", by=user(clinic["reception"]))
    appointment = book(clinic)
    charge = services.charge_of(appointment)
    assert charge.invoice_id == invoice.id, "the prepaid consultation is used, nothing charged twice"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 1
    scheduling.cancel(appointment, by=user(clinic["reception"]))
    assert services.prepaid_available(patient)["initial"], "a cancelled booking gives the prepayment back"
    # Staff may still book and take payment at the desk.
    desk_booking = book(clinic, hhmm="09:30", by="reception")
    assert services.charge_of(desk_booking) is not None


# Numbering ---------------------------------------------------------------------------------------

def test_a_rolled_back_invoice_gives_its_number_back(clinic):
    patient = patient_of(clinic)
    services.add_charge(patient, "letter")
    with pytest.raises(RuntimeError), services.transaction():
        services.issue_invoice(patient)
        raise RuntimeError("something after the insert failed")
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 0
    assert services.issue_invoice(patient).number == "INV-000001"


def test_concurrent_invoices_are_numbered_without_gaps_or_duplicates(clinic, app):
    patient_id = clinic["patient"].patient_id
    threads, per_thread, errors = 6, 4, []
    with app.app_context():
        for _ in range(threads * per_thread):
            services.add_charge(patients.get(patient_id), "letter")
        charge_ids = list(db.session.scalars(sa.select(Charge.id).order_by(Charge.id)))
    db.session.remove()
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        try:
            with app.app_context():
                start.wait(timeout=30)
                mine = charge_ids[index * per_thread:(index + 1) * per_thread]
                for charge_id in mine:
                    services.issue_invoice(patients.get(patient_id), charge_ids=[charge_id])
                db.session.remove()
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors, errors
    with app.app_context():
        numbers = list(db.session.scalars(sa.select(Invoice.sequence).order_by(Invoice.sequence)))
        assert numbers == list(range(1, threads * per_thread + 1))
        assert db.session.get(Counter, "invoice").next_value == threads * per_thread + 1
        assert services.reconcile() == []


# Credit notes, statements, payments, refunds -------------------------------------------------------

def test_a_credit_note_reduces_an_invoice_and_never_exceeds_it(clinic):
    invoice = invoice_for(clinic)
    desk = user(clinic["reception"])
    note = services.credit(invoice, 5000, reason="Goodwill: late start", by=desk)
    assert note.number == "CN-000001"
    assert services.position(invoice).outstanding == 10000 and invoice.status == OPEN
    with pytest.raises(BillingError, match=r"cannot be more than the £100\.00"):
        services.credit(invoice, 10001, reason="Too much", by=desk)
    with pytest.raises(BillingError, match="Say why"):
        services.credit(invoice, 100, reason=" ", by=desk)
    services.credit(invoice, 10000, reason="Consultation not needed", by=desk)
    db.session.refresh(invoice)
    assert invoice.status == CREDITED and invoice.total_pence == 15000, "the invoice itself is never edited"


def test_the_statement_runs_a_balance_over_every_kind_of_entry(clinic):
    desk = user(clinic["reception"])
    first = invoice_for(clinic)
    second = invoice_for(clinic, code="letter")
    services.record_payment(first, 15000, method="bank_transfer", reference="BACS 123", by=desk)
    payment = services.record_payment(second, 3600, method="cash", reference=None, by=desk)
    services.credit(second, 3600, reason="Letter not needed", by=desk)
    services.refund(payment, 3600, reason="Letter not needed", by=desk)
    statement = services.statement(patient_of(clinic))
    assert [line.kind for line in statement.lines] == ["invoice", "invoice", "payment", "payment", "credit", "refund"]
    assert [line.balance for line in statement.lines] == [15000, 18600, 3600, 0, -3600, 0]
    assert statement.balance == 0 == services.balance_of(clinic["patient"].patient_id)
    assert services.reconcile() == []


def test_staff_payments_need_a_reference_and_cannot_exceed_what_is_owed(clinic):
    invoice = invoice_for(clinic)
    desk = user(clinic["reception"])
    with pytest.raises(BillingError, match="terminal receipt"):
        services.record_payment(invoice, 15000, method="card_terminal", reference="", by=desk)
    with pytest.raises(BillingError, match="Choose how"):
        services.record_payment(invoice, 15000, method="online", reference="x", by=desk)
    with pytest.raises(BillingError, match=r"more than the £150\.00 outstanding"):
        services.record_payment(invoice, 15001, method="cash", reference=None, by=desk)
    services.record_payment(invoice, 5000, method="card_terminal", reference="RCPT-1", by=desk)
    assert invoice.status == OPEN
    services.record_payment(invoice, 10000, method="bank_transfer", reference="BACS-9", by=desk)
    assert invoice.status == PAID
    with pytest.raises(BillingError, match="already paid") as refused:
        services.record_payment(invoice, 1, method="cash", reference=None, by=desk)
    assert refused.value.status == 409
    assert sum(p.amount_pence for p in services.payments_of(invoice)) == 15000


def test_a_refund_is_its_own_record_and_never_more_than_was_paid(clinic):
    invoice = invoice_for(clinic)
    desk = user(clinic["reception"])
    payment = services.record_payment(invoice, 15000, method="card_terminal", reference="R1", by=desk)
    with pytest.raises(BillingError, match="more than was paid"):
        services.refund(payment, 15001, reason="Overcharged", by=desk)
    services.refund(payment, 5000, reason="Partly refunded", by=desk)
    assert invoice.status == OPEN, "money given back without a credit note is owed again"
    with pytest.raises(BillingError, match=r"at most £100\.00"):
        services.refund(payment, 10001, reason="Again", by=desk)
    services.refund(payment, 10000, reason="The rest", by=desk)
    assert services.refundable(payment) == 0
    assert db.session.scalar(sa.select(sa.func.sum(Payment.amount_pence))) == 15000, "the payment is not edited"
    assert services.reconcile() == []


def test_paying_from_two_tabs_or_with_a_double_click_takes_the_money_once(clinic, app):
    invoice = invoice_for(clinic)
    with app.test_request_context():
        first = services.start_checkout(invoice, by=None, urls_for=lambda public_id: ("/", "/"))
        second = services.start_checkout(invoice, by=None, urls_for=lambda public_id: ("/", "/"))
        assert first.id == second.id and first.url == second.url, "the second tab gets the same checkout"
        assert services.sandbox_pay(first).status == 200
        again = services.sandbox_pay(second)
    assert again.status == 409 and "already received" in again.message
    assert [p.amount_pence for p in services.payments_of(invoice)] == [15000]
    with app.test_request_context(), pytest.raises(BillingError, match="already paid"):
        services.start_checkout(invoice, by=None, urls_for=lambda public_id: ("/", "/"))


def test_two_desks_recording_the_same_payment_at_once_record_it_once(clinic, app):
    invoice_id = invoice_for(clinic).id
    desk_id = clinic["reception"].user_id
    db.session.remove()
    outcomes, start = [], threading.Barrier(2)

    def record() -> None:
        with app.app_context():
            from app.auth.models import User

            start.wait(timeout=30)
            try:
                services.record_payment(db.session.get(Invoice, invoice_id), 15000, method="cash", reference=None,
                                        by=db.session.get(User, desk_id))
                outcomes.append("paid")
            except BillingError as exc:
                outcomes.append(str(exc))
            db.session.remove()

    pool = [threading.Thread(target=record) for _ in range(2)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert sorted(outcomes)[1:] == ["paid"] and "already paid" in sorted(outcomes)[0]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 1


@pytest.mark.parametrize("typed, message", [
    ("-5", "cannot be negative"), ("£-5.00", "cannot be negative"), ("1e5", "pounds and pence"),
    ("12.345", "pounds and pence"), ("NaN", "pounds and pence"), ("0", "more than £0.00"),
    ("99999999", "check it for a typing slip"), ("", "is required"), ("12,50", "pounds and pence"),
])
def test_absurd_amounts_are_refused_with_a_reason(typed, message):
    with pytest.raises(money.AmountError, match=message):
        money.parse_pence(typed, maximum=1_000_000)


def test_amounts_are_exact_pence():
    assert money.parse_pence("£1,250.5", maximum=10**9) == 125050
    assert money.parse_pence("0.10", maximum=100) == 10
    assert money.format_pence(-123456) == "-£1,234.56" and money.format_pence(5, sign=True) == "+£0.05"
    assert money.share(333, 1750) == 58 and money.share(1, 5000) == 1


def test_the_desk_form_refuses_an_absurd_payment_and_records_nothing(clinic, app):
    invoice = invoice_for(clinic)
    client = app.test_client()
    sign_in_as(client, clinic["reception"])
    token = csrf_from(client.get("/billing/desk").get_data(as_text=True))
    for typed, message in (("-150", "The payment cannot be negative."), ("1000000000", "check it for a typing slip"),
                           ("abc", "must be in pounds and pence"), ("150.001", "no more than 2 decimal places")):
        response = client.post(f"/billing/invoices/{invoice.id}/payments", data={
            "csrf_token": token, "amount": typed, "method": "cash"}, follow_redirects=True)
        assert response.status_code == 200
        assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0


def test_every_change_is_audited(clinic, app):
    desk = user(clinic["reception"])
    before = len(actions())
    invoice = invoice_for(clinic)
    payment = services.record_payment(invoice, 15000, method="cash", reference=None, by=desk)
    services.credit(invoice, 1000, reason="Goodwill", by=desk)
    services.refund(payment, 1000, reason="Goodwill", by=desk)
    with app.test_request_context():
        other = invoice_for(clinic, code="letter")
        services.start_checkout(other, by=None, urls_for=lambda public_id: ("/", "/"))
    new = actions()[before:]
    for action in ("billing.charge_created", "billing.invoice_issued", "billing.payment_recorded",
                   "billing.credit_note_issued", "billing.refund_recorded", "billing.checkout_started"):
        assert action in new, f"{action} was not audited"


# Pages ---------------------------------------------------------------------------------------------

def test_the_patient_sees_and_downloads_their_invoices_and_reception_sees_the_day(clinic, app):
    appointment = book(clinic)
    invoice_id = services.charge_of(appointment).invoice_id
    appointment_id, day = appointment.id, appointment.starts_at.astimezone(services.clinic_zone()).date()
    patient_client, desk, admin = app.test_client(), app.test_client(), app.test_client()
    sign_in_as(patient_client, clinic["patient"])
    sign_in_as(desk, clinic["reception"])
    sign_in_as(admin, clinic["admin"])
    db.session.commit()  # end this test's read: the requests below share its app context and session
    page = patient_client.get("/billing").get_data(as_text=True)
    assert "INV-000001" in page and "Pay £150.00" in page and "Balance to pay" in page
    pdf = patient_client.get(f"/billing/invoices/{invoice_id}/pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert "INV-000001" in pdf.headers["Content-Disposition"]
    dashboard = patient_client.get("/dashboard").get_data(as_text=True)
    assert "Payment due: £150.00" in dashboard
    g.pop("_login_user", None)  # the requests share this test's app context, where Flask-Login keeps the user
    sheet = desk.get(f"/billing/desk?day={day.isoformat()}").get_data(as_text=True)
    assert f'id="appointment-{appointment_id}"' in sheet and "£150.00 to pay" in sheet
    g.pop("_login_user", None)
    csv = admin.get("/billing/reports/aged-debt.csv").get_data(as_text=True)
    assert "INV-000001" in csv and "0-30 days" in csv and "150.00" in csv
    report = admin.get("/billing/reports/takings.pdf")
    assert report.status_code == 200 and report.data.startswith(b"%PDF")


def test_a_patient_cannot_pay_or_open_another_patients_invoice(clinic, app):
    invoice = invoice_for(clinic)
    client = app.test_client()
    sign_in_as(client, clinic["other_patient"])
    token = csrf_from(client.get("/billing").get_data(as_text=True))
    assert client.get(f"/billing/invoices/{invoice.id}/pdf").status_code == 403
    assert client.post(f"/billing/invoices/{invoice.id}/pay", data={"csrf_token": token}).status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Checkout)) == 0


def test_aged_debt_bands_by_days_since_issue(clinic):
    from app.billing import reports

    invoice = invoice_for(clinic)
    issued = invoice.issued_at.astimezone(services.clinic_zone()).date()
    for days, band in ((0, "0-30 days"), (30, "0-30 days"), (31, "31-60 days"), (61, "61-90 days"),
                       (91, "Over 90 days")):
        report = reports.aged_debt(issued + dt.timedelta(days=days))
        assert [(line.band, line.outstanding) for line in report.lines] == [(band, 15000)]
        assert dict(report.bands)[band] == 15000 and report.total == 15000
    assert reports.aged_debt(issued - dt.timedelta(days=1)).lines == []
