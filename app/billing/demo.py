"""Demo billing: a price list, and for the demo patient one paid and one unpaid invoice (each made once)."""

from __future__ import annotations

from app.auth.models import User
from app.billing import services
from app.billing.models import CONSULTATION, SERVICE
from app.patients.models import Patient

#: (code, name, kind, pence, VAT treatment)
DEMO_PRICES = (
    ("consult:initial", "Initial consultation", CONSULTATION, 15000, "exempt"),
    ("consult:follow-up", "Follow-up consultation", CONSULTATION, 8000, "exempt"),
    ("repeat-prescription", "Repeat prescription", SERVICE, 2500, "exempt"),
    ("letter", "Letter for travel or an employer", SERVICE, 3000, "standard"),
)


def load_prices() -> None:
    for code, name, kind, pence, vat in DEMO_PRICES:
        if services.price_for(code) is None:
            services.set_price(code=code, name=name, kind=kind, amount_pence=pence, vat_treatment=vat)


def load(patient: Patient, reception: User) -> None:
    load_prices()
    if services.invoices_for(patient):
        return
    services.add_charge(patient, "letter", by=reception)
    paid = services.issue_invoice(patient, by=reception)
    services.record_payment(paid, paid.total_pence, method="card_terminal", reference="DEMO-0001", by=reception)
    services.add_charge(patient, "consult:follow-up", by=reception)
    services.issue_invoice(patient, by=reception)
