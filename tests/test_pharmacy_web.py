"""The pharmacy pages around the workflow: the patient choosing a pharmacy (with the data-sharing consent),
the pharmacist's stock pages and CD register, and the administration of partner pharmacies and their
API credentials."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from app.consent import services as consents
from app.extensions import db
from app.patients import services as patients
from app.pharmacy import inventory
from app.pharmacy import services as pharmacies
from app.pharmacy.models import PharmacyApiKey
from tests.conftest import csrf_from, sign_in_as
from tests.test_pharmacy_helpers import FLOWER, ready


def _client(app, persona):
    client = app.test_client()
    sign_in_as(client, persona)
    return client


def test_a_patient_chooses_a_pharmacy_and_is_asked_to_consent_to_sharing(app, personas, world):
    main, other = world.pharmacy("main"), world.pharmacy("other")
    with app.app_context():
        consents.load_defaults()
    client = _client(app, personas["patient"])
    page = client.get("/my/pharmacy").get_data(as_text=True)
    assert "Pharmacy main" in page and "Pharmacy other" in page
    assert client.post("/my/pharmacy", data={"csrf_token": csrf_from(page)}).status_code == 400
    chosen = client.post("/my/pharmacy", data={"csrf_token": csrf_from(page), "pharmacy_id": str(other)})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/consents?next=/my/pharmacy"
    consent_page = client.get("/consents").get_data(as_text=True)
    assert "Sharing your prescription with Pharmacy other" in consent_page
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        assert patient.pharmacy_id == other
        document = consents.current("pharmacy_sharing", other)
    agreed = client.post("/consents", data={"csrf_token": csrf_from(consent_page), "document": [str(document.id)]})
    assert agreed.status_code in (200, 302)
    with app.app_context():
        assert pharmacies.patient_may_share_with(patients.get(personas["patient"].patient_id), other)
    assert "Your prescriptions go to <strong>Pharmacy other</strong>" in client.get("/my/pharmacy").get_data(
        as_text=True)
    assert main != other
    refused = client.post("/my/pharmacy", data={"csrf_token": csrf_from(page), "pharmacy_id": "999999"})
    assert refused.status_code == 400 and "Choose one of the partner pharmacies" in refused.get_data(as_text=True)


def test_goods_in_through_the_stock_page_refuses_a_fraction_and_books_a_whole_number(app, personas):
    with app.app_context():
        r = ready(personas)
    client = _client(app, personas["pharmacist"])
    page = client.get("/pharmacy/inventory").get_data(as_text=True)
    expiry = dt.date.today() + dt.timedelta(days=365)
    form = {"csrf_token": csrf_from(page), "product_id": str(r.products[FLOWER]), "batch_number": "vt-9",
            "expires_on-day": str(expiry.day), "expires_on-month": str(expiry.month),
            "expires_on-year": str(expiry.year), "packs": "1.5", "supplier": "Northfield Wholesale"}
    refused = client.post("/pharmacy/inventory/goods-in", data=form)
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "Stock is counted in whole packs" in html and 'value="vt-9"' in html  # what was typed is kept
    booked = client.post("/pharmacy/inventory/goods-in", data={**form, "packs": "4"})
    assert booked.status_code == 302
    stock_page = client.get("/pharmacy/inventory").get_data(as_text=True)
    assert "VT-9: 4" in stock_page
    register = client.get(f"/pharmacy/inventory/{r.products[FLOWER]}/register").get_data(as_text=True)
    assert "Received from Northfield Wholesale" in register and 'id="register-balance">4 packs' in register
    with app.app_context():
        assert inventory.register_balance(r.pharmacy_id, r.products[FLOWER]) == 4


def test_an_adjustment_below_zero_is_refused_on_the_page(app, personas):
    with app.app_context():
        r = ready(personas)
        pharmacy = pharmacies.get(r.pharmacy_id)
        batch_id = inventory.receive_goods(pharmacy, product_id=r.products[FLOWER], batch_number="B-1",
                                           expires_on=dt.date.today() + dt.timedelta(days=90), packs=2,
                                           supplier="Wholesale").id
    client = _client(app, personas["pharmacist"])
    page = client.get("/pharmacy/inventory").get_data(as_text=True)
    refused = client.post("/pharmacy/inventory/adjust", data={"csrf_token": csrf_from(page), "batch_id": batch_id,
                                                              "change": "-3", "reason": "Counted the safe"})
    assert refused.status_code == 400 and "cannot go below 0" in refused.get_data(as_text=True)
    other = _client(app, personas["other_pharmacist"])
    their_page = other.get("/pharmacy/inventory").get_data(as_text=True)
    assert "B-1" not in their_page
    foreign = other.post("/pharmacy/inventory/adjust", data={
        "csrf_token": csrf_from(their_page), "batch_id": batch_id, "change": "-1", "reason": "Not ours"})
    assert foreign.status_code == 400 and "Choose one of this pharmacy" in foreign.get_data(as_text=True)


def test_an_admin_adds_a_partner_and_issues_credentials_shown_once_and_hashed(app, personas):
    admin = _client(app, personas["admin"])
    page = admin.get("/admin/pharmacies/new").get_data(as_text=True)
    bad = admin.post("/admin/pharmacies/new", data={"csrf_token": csrf_from(page), "name": "Northgate Pharmacy",
                                                    "gphc_number": "12345", "address": "3 North Gate, York"})
    assert bad.status_code == 400 and "A GPhC premises number has 7 digits" in bad.get_data(as_text=True)
    made = admin.post("/admin/pharmacies/new", data={
        "csrf_token": csrf_from(page), "name": "Northgate Pharmacy", "gphc_number": "1234567",
        "address": "3 North Gate, York", "connection": "api", "webhook_url": "https://pharmacy.example.com/hooks"})
    assert made.status_code == 302
    edit_url = made.headers["Location"]
    with app.app_context():
        pharmacy = pharmacies.by_gphc("1234567")
        assert pharmacy.connection == "api" and consents.current("pharmacy_sharing", pharmacy.id) is not None
    page = admin.get(edit_url).get_data(as_text=True)
    issued = admin.post(f"{edit_url}/credentials", data={"csrf_token": csrf_from(page), "what": "issue_key"})
    key = re.search(r"(vpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43})", issued.get_data(as_text=True)).group(1)
    secret_page = admin.post(f"{edit_url}/credentials", data={"csrf_token": csrf_from(page), "what": "rotate_secret"})
    assert 'id="issued-secret"' in secret_page.get_data(as_text=True)
    again = admin.get(edit_url).get_data(as_text=True)
    assert key not in again and key[:16] in again  # the prefix is listed; the key is never shown again
    with app.app_context():
        row = db.session.scalar(sa.select(PharmacyApiKey))
        assert key not in (row.secret_sha256, row.prefix) and row.prefix == key[:16]
        assert pharmacies.get(row.pharmacy_id).webhook_secret_enc is not None
    assert app.test_client().get("/api/pharmacy/v1/formulary",
                                 headers={"Authorization": f"Bearer {key}"}).status_code == 200
    revoked = admin.post(f"{edit_url}/credentials", data={"csrf_token": csrf_from(page), "what": "revoke_key",
                                                          "key_id": str(row.id)})
    assert revoked.status_code == 302
    assert app.test_client().get("/api/pharmacy/v1/formulary",
                                 headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_an_api_pharmacys_pharmacist_is_told_to_use_their_own_system(app, personas):
    with app.app_context():
        r = ready(personas)
        from tests.test_pharmacy_helpers import make_api, sign_new

        make_api(r.pharmacy_id)
        prescription_id = sign_new(r).id
    client = _client(app, personas["pharmacist"])
    page = client.get("/pharmacy").get_data(as_text=True)
    assert "Your pharmacy works through its own system" in page
    detail = client.get(f"/pharmacy/prescriptions/{prescription_id}").get_data(as_text=True)
    answer = client.post(f"/pharmacy/prescriptions/{prescription_id}/allocate",
                         data={"csrf_token": csrf_from(detail), "seen_state": "signed"})
    assert answer.status_code == 302
    assert "record this step there" in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert client.get("/pharmacy/inventory").status_code == 404
