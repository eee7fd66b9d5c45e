"""The Prescribing tab of the consultation side panel over HTTP: who may open it, and that what is done
inside it (adding a line, removing it, discarding, review and signing with the step-up code) answers the
panel itself, never a redirect that would take the call page away."""

from __future__ import annotations

import json
import re
import time

import pyotp
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.extensions import db
from app.prescribing.models import Prescription
from tests.conftest import csrf_from, sign_in_as
from tests.test_consult import book_soon
from tests.test_prescribing_helpers import DOSE, FLOWER, prepare

HX = {"HX-Request": "true", "HX-Target": "prescribing-slot"}


def _ready(app, personas):
    with app.app_context():
        return prepare(personas)


def _panel_url(ready) -> str:
    return f"/patients/{ready.patient_id}/prescribing/panel"


def _open_panel(client, ready) -> tuple[str, str]:
    """The panel as the call page loads it; returns its HTML and the session's CSRF token."""
    response = client.get(_panel_url(ready), headers=HX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, csrf_from(client.get("/staff").get_data(as_text=True))


def _post(client, url, token, data):
    """A form sent from inside the panel: its wrapper's hx-vals add panel=1."""
    return client.post(url, headers={**HX, "X-CSRFToken": token}, data={"panel": "1", **data})


def _get(client, url, **args):
    return client.get(url, headers=HX, query_string={"panel": "1", **args})


def _add(client, ready, token, quantity="30", days="30"):
    return _post(client, f"/patients/{ready.patient_id}/prescribing/items", token,
                 {"product_id": ready.products[FLOWER], "quantity": quantity, "days_supply": days, "dose": DOSE})


def _draft(app, ready) -> Prescription | None:
    with app.app_context():
        draft = db.session.scalar(sa.select(Prescription).where(Prescription.patient_id == ready.patient_id,
                                                                 Prescription.status == "draft"))
        if draft is not None:
            draft.items  # noqa: B018 - loaded now, read after the context closes
        return draft


def _status(app, prescription_id: int) -> str:
    with app.app_context():
        return db.session.get(Prescription, prescription_id).status


def _sign_form(html: str) -> dict[str, str]:
    return {name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1) for name in ("token", "revision")}


def _is_panel(response) -> str:
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Location" not in response.headers
    assert 'id="prescribing-panel"' in html and "<html" not in html
    return html


def test_the_patients_clinician_opens_the_panel_with_the_plan_the_search_and_the_builder(app, personas, client):
    appointment = book_soon(app, personas)
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    response = client.get(_panel_url(ready), headers=HX, query_string={"appointment_id": appointment})
    html = _is_panel(response)
    assert "hx-vals='{\"panel\": \"1\"}'" in html  # every request from inside it says where it comes from
    assert "Chronic pain" in html and "Approved" in html
    assert 'id="search-q"' in html and 'id="search-thc_min"' in html and 'id="formulary-results"' in html
    assert 'id="prescription-builder"' in html and 'hx-target="#prescribing-slot"' in html
    # Nothing in it navigates: forms post with htmx, links to other pages open a new tab.
    for link in re.findall(r"<a [^>]*>", html):
        assert "hx-get=" in link or 'target="_blank"' in link, link
    for form in re.findall(r"<form [^>]*>", html):
        assert "hx-get=" in form or "hx-post=" in form, form
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (entry.action, entry.patient_id, json.loads(entry.detail)["section"]) == (
            "record.read", ready.patient_id, "prescribing (consultation)")
    # Another patient's appointment with this one's panel is a tampered link.
    other = book_soon(app, personas, patient="other_patient", clinician="other_clinician")
    assert client.get(_panel_url(ready), headers=HX, query_string={"appointment_id": other}).status_code == 404


def test_the_call_page_loads_the_prescribing_and_outcomes_tabs(app, personas, client):
    appointment = book_soon(app, personas)
    sign_in_as(client, personas["clinician"])
    page = client.get(f"/consult/{appointment}").get_data(as_text=True)
    patient_id = personas["patient"].patient_id
    assert f'hx-get="/patients/{patient_id}/prescribing/panel?appointment_id={appointment}"' in page
    assert f'hx-get="/patients/{patient_id}/outcomes/panel"' in page and 'data-tab="panel-outcomes"' in page
    assert "Prescribing opens here" not in page


def test_the_panel_is_refused_to_anyone_but_the_patients_clinician_and_the_refusal_is_audited(app, personas):
    ready = _ready(app, personas)
    for who in ("other_clinician", "reception", "patient", "other_patient"):
        client = app.test_client()
        sign_in_as(client, personas[who])
        assert client.get(_panel_url(ready), headers=HX).status_code == 403, who
        with app.app_context():
            entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
            assert entry.action == "access.denied" and entry.actor_id == personas[who].user_id, who
            assert json.loads(entry.detail)["path"] == _panel_url(ready)
    with app.app_context():
        denied = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "access.denied",
                                                                AuditEvent.actor_id == personas["other_clinician"]
                                                                .user_id)).one()
        assert denied.patient_id == ready.patient_id and json.loads(denied.detail)["reason"] == "object"


def test_adding_an_item_from_the_panel_answers_the_panel_not_a_redirect(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    _, token = _open_panel(client, ready)
    html = _is_panel(_add(client, ready, token))
    assert "Item saved to the draft prescription." in html
    assert 'id="draft-items"' in html and "30 (thirty) grams" in html and 'id="review-and-sign"' in html
    # A bad line: the panel again, with the messages and what was typed.
    bad = _is_panel(_post(client, f"/patients/{ready.patient_id}/prescribing/items", token,
                          {"product_id": ready.products[FLOWER], "quantity": "-3", "days_supply": "30",
                           "dose": "As directed"}))
    assert "The quantity must be more than zero." in bad and 'value="-3"' in bad
    assert len(_draft(app, ready).items) == 1
    # The prescribing page's own htmx requests still get the builder alone.
    builder = client.post(f"/patients/{ready.patient_id}/prescribing/items",
                          headers={"HX-Request": "true", "X-CSRFToken": token},
                          data={"product_id": ready.products[FLOWER], "quantity": "5", "days_supply": "5",
                                "dose": DOSE}).get_data(as_text=True)
    assert 'id="prescription-builder"' in builder and 'id="prescribing-panel"' not in builder


def test_a_product_chosen_in_the_panel_opens_the_builder_made_for_the_panel(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    response = _get(client, f"/patients/{ready.patient_id}/prescribing/builder", product_id=ready.products[FLOWER])
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="prescription-builder"' in html
    assert 'hx-target="#prescribing-slot"' in html and "selected" in html


def test_the_formulary_search_in_the_panel_leaves_out_the_pack_column_to_fit(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    search = {"patient_id": ready.patient_id, "q": "Verdant T22"}
    in_panel = _get(client, "/formulary/search", **search).get_data(as_text=True)
    assert "Verdant T22 Flower" in in_panel and "Prescribe" in in_panel and ">Stock<" in in_panel
    assert ">Pack<" not in in_panel
    on_the_page = client.get("/formulary/search", headers={"HX-Request": "true"}, query_string=search)
    assert ">Pack<" in on_the_page.get_data(as_text=True)


def test_removing_a_line_and_discarding_the_draft_from_the_panel_answer_the_panel(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])
    _, token = _open_panel(client, ready)
    _add(client, ready, token)
    _add(client, ready, token, quantity="10", days="10")
    draft = _draft(app, ready)
    item_id = draft.items[0].id
    removed = _is_panel(_post(client, f"/prescriptions/{draft.id}/items/{item_id}/remove", token, {}))
    assert "Item removed from the draft." in removed
    missing = _is_panel(_post(client, f"/prescriptions/{draft.id}/items/999999/remove", token, {}))
    assert "That item is not on this prescription." in missing
    discarded = _is_panel(_post(client, f"/prescriptions/{draft.id}/discard", token, {}))
    assert "The draft was discarded." in discarded and 'id="draft-items"' not in discarded
    assert _status(app, draft.id) == "cancelled"


def test_signing_from_the_panel_without_a_fresh_code_asks_for_it_in_the_panel(app, personas, client):
    ready = _ready(app, personas)
    clinician = personas["clinician"]
    sign_in_as(client, clinician, second_factor_age=600)  # signed in 10 minutes ago: not fresh
    _, token = _open_panel(client, ready)
    _add(client, ready, token)
    draft = _draft(app, ready)
    review = _is_panel(_get(client, f"/prescriptions/{draft.id}/sign"))
    assert "Review and sign the prescription" in review and "30 (thirty) grams" in review
    assert 'id="sign-code"' in review and f'hx-post="/prescriptions/{draft.id}/sign"' in review
    form = _sign_form(review)
    # Signing without the code (the code went stale while the clinician read): asked for in the panel.
    asked = _is_panel(_post(client, f"/prescriptions/{draft.id}/sign", token, form))
    assert 'id="sign-code"' in asked and "enter a new one to sign" in asked
    wrong = _is_panel(_post(client, f"/prescriptions/{draft.id}/sign", token, {**form, "code": "000000"}))
    assert "That code is not right" in wrong and 'id="sign-code-error"' in wrong
    assert _status(app, draft.id) == "draft"
    code = pyotp.TOTP(clinician.totp_secret).at(int(time.time() // 30) * 30)
    signed = _is_panel(_post(client, f"/prescriptions/{draft.id}/sign", token, {**_sign_form(wrong), "code": code}))
    assert "Prescription signed." in signed and 'id="prescription-signed"' in signed
    assert 'id="draft-items"' not in signed  # the builder is ready for the next prescription
    assert _status(app, draft.id) != "draft"
    with app.app_context():
        actions = list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))
        assert actions.count("auth.step_up") == 1 and actions.count("prescription.signed") == 1
    # Outside the panel nothing changed: the review of a signed prescription goes to the prescription's page.
    page = client.get(f"/prescriptions/{draft.id}/sign")
    assert page.status_code == 302 and page.headers["Location"] == f"/prescriptions/{draft.id}"


def test_wrong_codes_in_the_panel_count_towards_the_step_up_limit(app, personas, client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"], second_factor_age=600)
    _, token = _open_panel(client, ready)
    _add(client, ready, token)
    draft = _draft(app, ready)
    form = _sign_form(_get(client, f"/prescriptions/{draft.id}/sign").get_data(as_text=True))
    for _ in range(5):
        assert "That code is not right" in _post(client, f"/prescriptions/{draft.id}/sign", token,
                                                 {**form, "code": "000000"}).get_data(as_text=True)
    assert _post(client, f"/prescriptions/{draft.id}/sign", token, {**form, "code": "000000"}).status_code == 429
    assert _status(app, draft.id) == "draft"


def test_a_fresh_code_signs_from_the_panel_and_a_blocked_draft_shows_why_without_a_sign_button(app, personas,
                                                                                                  client):
    ready = _ready(app, personas)
    sign_in_as(client, personas["clinician"])  # the second factor was just given
    _, token = _open_panel(client, ready)
    _add(client, ready, token, quantity="40")
    draft = _draft(app, ready)
    blocked = _is_panel(_get(client, f"/prescriptions/{draft.id}/sign"))
    assert "Quota exceeded" in blocked and 'id="sign-button"' not in blocked
    assert "Change the prescription" in blocked
    _post(client, f"/patients/{ready.patient_id}/prescribing/items", token,
          {"item_id": draft.items[0].id, "product_id": ready.products[FLOWER], "quantity": "30", "days_supply": "30",
           "dose": DOSE})
    review = _is_panel(_get(client, f"/prescriptions/{draft.id}/sign"))
    assert 'id="sign-code"' not in review and 'id="sign-button"' in review
    signed = _is_panel(_post(client, f"/prescriptions/{draft.id}/sign", token, _sign_form(review)))
    assert "Prescription signed." in signed and "30 (thirty) grams" in signed
    assert f'href="/prescriptions/{draft.id}/fp10pcd" target="_blank"' in signed
    again = _is_panel(_post(client, f"/prescriptions/{draft.id}/sign", token, _sign_form(review)))
    assert "already signed" in again
