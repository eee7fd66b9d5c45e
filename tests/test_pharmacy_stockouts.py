"""Stock-outs: the prescriber sees them at once with the alternatives in stock that fit the plan, the patient
is told, and two clicks replace the prescription (or it goes to another pharmacy with the stock). And the
prescriber's formulary shows live stock at the patient's pharmacy before anything is written."""

from __future__ import annotations

import re

import sqlalchemy as sa

from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.pharmacy import services as pharmacies
from app.pharmacy import stockouts, workflow
from app.prescribing import services as prescribing
from app.prescribing import verification
from tests.conftest import csrf_from, sign_in_as
from tests.test_pharmacy_helpers import FLOWER, OIL, T18, acting_as, make_api, ready, sign_new, state_of, stock


def _out_of_stock(app, personas, *, t18: int = 6, offered: list[str] | None = None):
    with app.app_context():
        r = ready(personas)
        stock(r.pharmacy_id, {T18: t18, OIL: 5}, r.products)
        prescription = sign_new(r, quantity="20")
        pharmacy = pharmacies.get(r.pharmacy_id)
        workflow.out_of_stock(prescription, pharmacy, products=[r.products[FLOWER]],
                              offered=[r.products[n] for n in offered or []], note="Supplier delay until next month")
        return r, prescription.id


def _clinician(app, personas):
    client = app.test_client()
    sign_in_as(client, personas["clinician"])
    return client


def test_the_prescriber_is_alerted_with_alternatives_in_stock_that_fit_the_plan(app, personas):
    _r, prescription_id = _out_of_stock(app, personas, offered=[OIL])
    assert state_of(app, prescription_id) == "out_of_stock"
    doctor = _clinician(app, personas)
    alerts = doctor.get("/pharmacy/alerts").get_data(as_text=True)
    assert 'data-alert="stock_out"' in alerts and "is out of Verdant T22 Flower" in alerts
    page = doctor.get(f"/prescriptions/{prescription_id}/pharmacy").get_data(as_text=True)
    assert "Replace with Verdant T18 Flower" in page and "6 pack(s) in stock" in page
    # The oil was offered, but a line in grams cannot become millilitres: it is not an alternative here.
    assert "Replace with Equilibria" not in page
    assert "Supplier delay until next month" in page
    banner = doctor.get(f"/prescriptions/{prescription_id}").get_data(as_text=True)
    assert "Out of stock at the pharmacy" in banner and "Choose an alternative" in banner


def test_alternatives_out_of_stock_or_outside_the_plan_are_not_offered_for_one_click(app, personas):
    _r, prescription_id = _out_of_stock(app, personas, t18=1)  # 20 g needs 2 packs of T18
    with app.app_context():
        [shortage] = stockouts.shortages(prescribing.get(prescription_id))
        assert shortage.product.name == FLOWER
        assert shortage.alternatives == []


def test_the_patient_is_told_in_the_portal_and_by_email_without_details(app, personas):
    r, prescription_id = _out_of_stock(app, personas)
    patient = app.test_client()
    sign_in_as(patient, personas["patient"])
    order = patient.get(f"/my/orders/{prescription_id}").get_data(as_text=True)
    assert "Your pharmacy is out of Verdant T22 Flower; your clinician has been asked to choose an alternative" \
        in order
    with app.app_context():
        user = patients.user_of(patients.get(r.patient_id))
        emails = [m for m in db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "email"))
                  if user.email in m.payload]
        assert emails, "the patient is emailed"
        assert all("Verdant" not in m.payload and "stock" not in m.payload.lower() for m in emails)


def test_two_clicks_replace_the_prescription_and_the_old_one_becomes_unusable(app, personas):
    r, prescription_id = _out_of_stock(app, personas)
    doctor = _clinician(app, personas)
    page = doctor.get(f"/prescriptions/{prescription_id}/pharmacy").get_data(as_text=True)
    form = re.search(r'name="line" value="(\d+)">\s*<input type="hidden" name="product_id" value="(\d+)">', page)
    first = doctor.post(f"/prescriptions/{prescription_id}/pharmacy/replace",
                        data={"csrf_token": csrf_from(page), "line": form.group(1), "product_id": form.group(2)})
    assert first.status_code == 302 and first.headers["Location"].endswith("/sign")
    sign_page = doctor.get(first.headers["Location"]).get_data(as_text=True)
    assert "Verdant T18 Flower" in sign_page
    second = doctor.post(first.headers["Location"], data={
        "csrf_token": csrf_from(sign_page), "token": re.search(r'name="token" value="([^"]+)"', sign_page).group(1),
        "revision": re.search(r'name="revision" value="(\d+)"', sign_page).group(1)})
    assert second.status_code == 302
    assert state_of(app, prescription_id) == "superseded"
    with app.app_context():
        old = prescribing.get(prescription_id)
        new = next(p for p in prescribing.prescriptions_for_patient(patients.get(r.patient_id))
                   if p.supersedes_id == old.id)
        assert new.status == "signed" and [i.product_name for i in new.items] == [T18]
        assert new.items[0].quantity == old.items[0].quantity and new.pharmacy_id == old.pharmacy_id
        assert verification.verdict(old).status == "superseded" and not verification.verdict(old).suppliable
        assert stockouts.open_stock_out(old) is None
        assert stockouts.latest_stock_out(old).resolution == "superseded"
    assert "No stock-outs or pharmacy questions" in doctor.get("/pharmacy/alerts").get_data(as_text=True)


def test_a_replacement_not_in_the_list_is_refused(app, personas):
    r, prescription_id = _out_of_stock(app, personas)
    with app.app_context():
        from app.auth.models import User

        doctor = db.session.get(User, r.clinician_id)
        with acting_as(doctor.id, "clinician"):
            try:
                stockouts.supersede_with(prescribing.get(prescription_id), doctor,
                                         {1: r.products["Caplio 5:5 Capsules"]})
            except stockouts.StockOutError as exc:
                assert "not in stock at the pharmacy or does not fit" in str(exc)
            else:
                raise AssertionError("capsules for a flower line were accepted")
        assert prescribing.draft_for(patients.get(r.patient_id), doctor) is None


def test_redirecting_to_another_pharmacy_needs_its_stock_and_the_patients_consent(app, personas, world):
    r, prescription_id = _out_of_stock(app, personas)
    other_id = world.pharmacy("other")
    with app.app_context():
        from app.auth.models import User
        from app.consent import services as consents

        stock(other_id, {FLOWER: 4}, r.products)
        consents.load_defaults()
        doctor = db.session.get(User, r.clinician_id)
        prescription = prescribing.get(prescription_id)
        [elsewhere] = stockouts.pharmacies_with_stock(prescription)
        assert (elsewhere.pharmacy.id, elsewhere.consented) == (other_id, False)
        with acting_as(doctor.id, "clinician"):
            try:
                stockouts.redirect(prescription, doctor, other_id)
            except stockouts.StockOutError as exc:
                assert "has not agreed to share prescriptions" in str(exc)
            else:
                raise AssertionError("redirected without the patient's consent")
    # The patient chooses the other pharmacy in their account (and agrees to share with it).
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    page = client.get("/my/pharmacy").get_data(as_text=True)
    chosen = client.post("/my/pharmacy", data={"csrf_token": csrf_from(page), "pharmacy_id": str(other_id)})
    assert chosen.status_code == 302 and chosen.headers["Location"].startswith("/consents")
    with app.app_context():
        patient = patients.get(r.patient_id)
        with acting_as(patient.user_id, "patient"):
            consents.accept(patient, [consents.current("pharmacy_sharing", other_id).id])
        doctor = db.session.get(User, r.clinician_id)
        with acting_as(doctor.id, "clinician"):
            draft = stockouts.redirect(prescribing.get(prescription_id), doctor, other_id)
            signed = prescribing.sign(draft, doctor, token="redirect-token-0001", revision=draft.revision).prescription
        assert signed.pharmacy_id == other_id and [i.product_name for i in signed.items] == [FLOWER]
        assert prescribing.get(prescription_id).status == "superseded"


def test_the_formulary_shows_live_stock_at_the_patients_pharmacy_with_its_time(app, personas, world):
    with app.app_context():
        r = ready(personas)
        stock(r.pharmacy_id, {T18: 3}, r.products)
    doctor = _clinician(app, personas)
    results = doctor.get(f"/formulary/search?patient_id={r.patient_id}", headers={"HX-Request": "true"})
    html = results.get_data(as_text=True)
    row = re.search(rf'data-product="{r.products[T18]}".*?</tr>', html, re.S).group(0)
    assert "In stock (3 packs)" in row and re.search(r"updated \d+ \w+ \d\d:\d\d UTC", row)
    t22 = re.search(rf'data-product="{r.products[FLOWER]}".*?</tr>', html, re.S).group(0)
    assert "Stock unknown" in t22  # never stocked there: the pharmacy has said nothing about it
    # An API pharmacy publishes its levels; prescribers see them as published.
    with app.app_context():
        from app.pharmacy import inventory

        credentials = make_api(r.pharmacy_id)
        inventory.publish(pharmacies.get(credentials.pharmacy_id), [
            {"product_id": r.products[FLOWER], "packs": 0, "in_stock": False},
            {"product_id": r.products[T18], "packs": None, "in_stock": True}])
        levels = inventory.live_stock(r.pharmacy_id, [r.products[FLOWER], r.products[T18]])
        assert levels[r.products[FLOWER]].in_stock is False and levels[r.products[T18]].packs is None
        assert levels[r.products[T18]].as_of is not None
    html = doctor.get(f"/formulary/search?patient_id={r.patient_id}", headers={"HX-Request": "true"}) \
        .get_data(as_text=True)
    assert "Out of stock" in re.search(rf'data-product="{r.products[FLOWER]}".*?</tr>', html, re.S).group(0)
