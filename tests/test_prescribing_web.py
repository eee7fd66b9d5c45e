"""Prescribing over HTTP: the builder's htmx fragments, step-up before signing (wrong and reused codes),
a double-submitted signing form, the patient's view, the formulary import and the CD log."""

from __future__ import annotations

import io
import re
import time

import pyotp
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.extensions import db
from app.prescribing.models import Prescription
from tests.conftest import csrf_from, sign_in_as
from tests.test_prescribing_helpers import FLOWER, prepare, sign_new

HX = {"HX-Request": "true"}


def _ready(app, personas):
    with app.app_context():
        return prepare(personas)


def _token(client, url="/dashboard") -> str:
    return csrf_from(client.get(url).get_data(as_text=True))


def _add(client, ready, token, quantity="30", days="30", **extra):
    return client.post(f"/patients/{ready.patient_id}/prescribing/items", headers={**HX, "X-CSRFToken": token},
                       data={"product_id": ready.products[FLOWER], "quantity": quantity, "days_supply": days,
                             "dose": "Vaporise 0.1 g up to ten times a day", **extra})


def _draft(app, ready) -> Prescription | None:
    with app.app_context():
        draft = db.session.scalar(sa.select(Prescription).where(Prescription.patient_id == ready.patient_id,
                                                                Prescription.status == "draft"))
        if draft is not None:
            draft.items  # noqa: B018 - loaded now, read after the context closes
        return draft


def test_the_live_check_refuses_a_quantity_over_the_quota_and_shows_the_words(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    page = client.get(f"/patients/{ready.patient_id}/prescribing")
    assert page.status_code == 200 and 'id="prescription-builder"' in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    response = client.post(f"/patients/{ready.patient_id}/prescribing/check", headers={**HX, "X-CSRFToken": token},
                           data={"product_id": ready.products[FLOWER], "quantity": "40", "days_supply": "30",
                                 "dose": "Vaporise 0.1 g up to ten times a day"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert "40 (forty) grams" in html and 'data-block="quota"' in html
    fixed = client.post(f"/patients/{ready.patient_id}/prescribing/check", headers={**HX, "X-CSRFToken": token},
                        data={"product_id": ready.products[FLOWER], "quantity": "30", "days_supply": "30",
                              "dose": "Vaporise 0.1 g up to ten times a day"}).get_data(as_text=True)
    assert "data-block" not in fixed and "Ready to sign" in fixed


def test_a_bad_line_is_shown_with_its_message_and_what_was_typed_is_kept(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    token = _token(client, f"/patients/{ready.patient_id}/prescribing")
    response = _add(client, ready, token, quantity="-3", dose="As directed")
    html = response.get_data(as_text=True)
    assert "The quantity must be more than zero." in html and "is not a dose" in html
    assert 'value="-3"' in html and ">As directed</textarea>" in html
    assert _draft(app, ready) is None
    plain = client.post(f"/patients/{ready.patient_id}/prescribing/items", data={"csrf_token": token})
    assert plain.status_code == 400


def test_signing_asks_for_a_fresh_code_and_refuses_wrong_or_reused_ones(app, personas, client):
    ready = _ready(app, personas)
    clinician = personas["clinician"]
    sign_in_as(client, clinician, second_factor_age=600)  # signed in 10 minutes ago: not fresh
    token = _token(client, f"/patients/{ready.patient_id}/prescribing")
    assert _add(client, ready, token).status_code == 200
    draft = _draft(app, ready)
    response = client.get(f"/prescriptions/{draft.id}/sign")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/step-up")
    step_up = response.headers["Location"]
    wrong = client.post(step_up, data={"csrf_token": _token(client, step_up), "code": "000000"})
    assert wrong.status_code == 401
    totp = pyotp.TOTP(clinician.totp_secret)
    step = int(time.time() // 30)
    code = totp.at(step * 30)
    assert client.post(step_up, data={"csrf_token": _token(client, step_up), "code": code}).status_code == 302
    sign_page = client.get(f"/prescriptions/{draft.id}/sign")
    assert sign_page.status_code == 200
    # Used once, the same code is refused (replay), e.g. by another session.
    other = app.test_client()
    sign_in_as(other, clinician, second_factor_age=600)
    replay = other.post(step_up, data={"csrf_token": _token(other, step_up), "code": code})
    assert replay.status_code == 401
    assert "already been used" in replay.get_data(as_text=True)
    assert other.get(f"/prescriptions/{draft.id}/sign").status_code == 302
    # The fresh session signs.
    html = sign_page.get_data(as_text=True)
    form = {"csrf_token": csrf_from(html), "token": re.search(r'name="token" value="([^"]+)"', html).group(1),
            "revision": re.search(r'name="revision" value="([^"]+)"', html).group(1)}
    signed = client.post(f"/prescriptions/{draft.id}/sign", data=form)
    assert signed.status_code == 302 and signed.headers["Location"] == f"/prescriptions/{draft.id}"
    again = client.post(f"/prescriptions/{draft.id}/sign", data=form)  # the double click
    assert again.status_code == 302 and again.headers["Location"] == f"/prescriptions/{draft.id}"
    page = client.get(f"/prescriptions/{draft.id}").get_data(as_text=True)
    assert "already signed" in page and "Print the FP10PCD" in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "prescription.signed")) == 1
    pdf = client.get(f"/prescriptions/{draft.id}/pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    fp10 = client.get(f"/prescriptions/{draft.id}/fp10pcd")
    assert fp10.status_code == 200 and fp10.mimetype == "application/pdf"


def test_a_blocked_draft_shows_its_reasons_and_no_sign_button(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    token = _token(client, f"/patients/{ready.patient_id}/prescribing")
    _add(client, ready, token, quantity="31", days="31", justification="Travelling for a month and a day, stable.")
    draft = _draft(app, ready)
    page = client.get(f"/prescriptions/{draft.id}/sign").get_data(as_text=True)
    assert "Quota exceeded" in page and 'id="sign-button"' not in page
    forced = client.post(f"/prescriptions/{draft.id}/sign", data={"csrf_token": token, "token": "t" * 32,
                                                                  "revision": str(draft.revision)})
    assert forced.status_code == 409 and "Quota exceeded" in forced.get_data(as_text=True)
    assert _draft(app, ready).status == "draft"


def test_a_tampered_item_id_or_someone_elses_draft_is_refused(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    token = _token(client, f"/patients/{ready.patient_id}/prescribing")
    _add(client, ready, token)
    draft = _draft(app, ready)
    missing = client.post(f"/prescriptions/{draft.id}/items/999999/remove", headers={"X-CSRFToken": token})
    assert missing.status_code == 302
    assert len(_draft(app, ready).items) == 1
    assert "That item is not on this prescription." in client.get(
        f"/patients/{ready.patient_id}/prescribing").get_data(as_text=True)
    other = app.test_client()
    sign_in_as(other, personas["other_clinician"])
    assert other.post(f"/prescriptions/{draft.id}/items/{draft.items[0].id}/remove",
                      headers={"X-CSRFToken": _token(other, "/staff")}).status_code == 403
    assert other.get(f"/prescriptions/{draft.id}/sign").status_code == 403


def test_the_patient_sees_prescription_issued_and_can_ask_for_a_repeat(app, personas, client):
    ready = _ready(app, personas)
    with app.app_context():
        prescription = sign_new(ready)
        prescription_id = prescription.id
    sign_in_as(client, personas["patient"])
    html = client.get("/my/prescriptions").get_data(as_text=True)
    assert "Prescription issued" in html and "30 (thirty) grams" in html
    other = app.test_client()
    sign_in_as(other, personas["other_patient"])
    assert "Verdant" not in other.get("/my/prescriptions").get_data(as_text=True)
    assert other.post(f"/my/prescriptions/{prescription_id}/repeat",
                      headers={"X-CSRFToken": _token(other)}).status_code == 403
    assert client.get(f"/prescriptions/{prescription_id}").status_code == 403
    assert client.get(f"/prescriptions/{prescription_id}/pdf").status_code == 403


def test_the_formulary_import_page_lists_bad_lines_and_imports_nothing(app, personas, client):
    sign_in_as(client, personas["admin"])
    token = _token(client, "/formulary/import")
    data = (b"name,manufacturer,form,thc,cbd,pack_size,price\nGood Flower,Maker,dried_flower,20,1,10,80\n"
            b"Bad Flower,Maker,dried_flower,200,1,10,80\n")
    response = client.post("/formulary/import", data={"csrf_token": token, "file": (io.BytesIO(data), "f.csv")},
                           content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Nothing was imported" in html and 'data-line="3"' in html
    assert "Good Flower" not in client.get("/formulary").get_data(as_text=True)


def test_the_cd_log_downloads_as_csv_and_pdf(app, personas, client):
    ready = _ready(app, personas)
    with app.app_context():
        sign_new(ready)
    sign_in_as(client, personas["clinician"])
    csv_response = client.get("/prescribing/log?format=csv")
    assert csv_response.mimetype == "text/csv" and "30 (thirty) grams" in csv_response.get_data(as_text=True)
    pdf_response = client.get("/prescribing/log?format=pdf")
    assert pdf_response.mimetype == "application/pdf" and pdf_response.data.startswith(b"%PDF")
    assert client.get("/prescribing/log?from=2026-13-01").status_code == 400
    other = app.test_client()
    sign_in_as(other, personas["other_clinician"])
    assert "thirty" not in other.get("/prescribing/log?format=csv").get_data(as_text=True)


def test_changing_a_line_works_without_javascript(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    token = _token(client, f"/patients/{ready.patient_id}/prescribing")
    _add(client, ready, token, quantity="40")
    item = _draft(app, ready).items[0]
    response = client.get(f"/patients/{ready.patient_id}/prescribing/builder?edit={item.id}")
    assert response.status_code == 302 and f"edit={item.id}" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Change item 1" in page and 'value="40"' in page and 'name="item_id"' in page
    saved = client.post(f"/patients/{ready.patient_id}/prescribing/items",
                        data={"csrf_token": token, "item_id": item.id, "product_id": ready.products[FLOWER],
                              "quantity": "30", "days_supply": "30", "dose": "Vaporise 0.1 g up to ten times a day"})
    assert saved.status_code == 302
    assert _draft(app, ready).items[0].quantity_text == "30 (thirty) grams"
