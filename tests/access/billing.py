"""Who may reach each billing route: the patient's own payments and invoices (never another patient's), the
sandbox checkout, the front desk's day sheet and accounts, the administrator's prices, arrangements and reports,
and the provider's webhook (signed, not signed in: without a configured secret every call is refused with 401)."""

from __future__ import annotations

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
    CLIN,
    EVERYONE,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    STAFF,
    table,
)


def _objects(app, personas) -> dict:
    """The patient's open invoice with a sandbox checkout, and a paid invoice with its payment."""
    cache = app.extensions.setdefault("billing_access", {})
    if cache:
        return cache
    from app.auth.models import User
    from app.billing import demo, services
    from app.extensions import db
    from app.patients import services as patients

    with app.app_context(), app.test_request_context():
        demo.load_prices()
        patient = patients.get(personas[PATIENT].patient_id)
        desk = db.session.get(User, personas[RECEP].user_id)
        services.add_charge(patient, "letter", by=desk)
        paid = services.issue_invoice(patient, by=desk)
        payment = services.record_payment(paid, paid.total_pence, method="cash", reference=None, by=desk)
        services.add_charge(patient, "consult:initial", by=desk)
        open_invoice = services.issue_invoice(patient, by=desk)
        checkout = services.start_checkout(open_invoice, by=None, urls_for=lambda public_id: ("/", "/"))
        cache.update(invoice=open_invoice.id, payment=payment.id, public_id=checkout.public_id)
    return cache


def _get(key):
    return lambda app, personas: _objects(app, personas)[key]


INVOICE = {"invoice_id": _get("invoice")}
CHECKOUT = {"public_id": _get("public_id")}
DESK = (RECEP, ADMIN)
NOT_DESK = (*PATIENTS, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM)
INVOICE_VIEWERS = table(ok=(PATIENT, RECEP, ADMIN), forbidden=(OTHER_PATIENT, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM))
OWN_PATIENT_ONLY = table(ok=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))
# The desk's forms, sent empty: refused with a message (flash) and back to the page.
DESK_POST = table(redirect=DESK, forbidden=NOT_DESK)

EXPECTED = {
    # The patient's side.
    "billing.mine": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "billing.invoice": ("GET", INVOICE, INVOICE_VIEWERS),
    "billing.invoice_pdf": ("GET", INVOICE, INVOICE_VIEWERS),
    # Paying sends the patient to the checkout (the sandbox's page here).
    "billing.pay": ("POST", INVOICE, table(redirect=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    "billing.checkout_done": ("GET", CHECKOUT, OWN_PATIENT_ONLY),
    "billing.sandbox_checkout": ("GET", CHECKOUT, OWN_PATIENT_ONLY),
    # Without a consultation type: a bad request.
    "billing.prepay": ("POST", {}, table(bad_request=PATIENTS, forbidden=STAFF)),
    # The provider's webhook: no secret configured, so nobody gets in, signed in or not.
    "billing.webhook": ("POST", {"provider_name": lambda app, personas: "http"}, {p: 401 for p in EVERYONE}),
    # The front desk.
    "billing.desk": ("GET", {}, table(ok=DESK, forbidden=NOT_DESK)),
    "billing.account": ("GET", {"patient_id": PATIENT}, table(ok=DESK, forbidden=NOT_DESK)),
    "billing.add_charge": ("POST", {"patient_id": PATIENT}, DESK_POST),
    "billing.issue": ("POST", {"patient_id": PATIENT}, DESK_POST),
    "billing.record_payment": ("POST", INVOICE, DESK_POST),
    "billing.refund": ("POST", {"payment_id": _get("payment")}, DESK_POST),
    "billing.credit": ("POST", INVOICE, DESK_POST),
    # Arrangements are approved by an administrator.
    "billing.add_arrangement": ("POST", {"patient_id": PATIENT}, table(redirect=(ADMIN,), forbidden=(
        *PATIENTS, CLIN, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM))),
    # The administrator.
    "billing.prices": ("GET", {}, ADMIN_ONLY),
    "billing.reports_page": ("GET", {}, ADMIN_ONLY),
    "billing.report_file": ("GET", {"name": lambda app, personas: "takings", "fmt": lambda app, personas: "csv"},
                            ADMIN_ONLY),
}
