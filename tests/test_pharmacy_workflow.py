"""The pharmacist's workspace, as a portal pharmacy uses it: the queue, the signature checked on screen,
each step through the prescription state machine, refusals with their reason, and the patient's order
page following along."""

from __future__ import annotations

import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.extensions import db
from app.outbox.models import OutboxMessage
from app.pharmacy import inventory
from app.prescribing import services as prescribing
from tests.conftest import csrf_from, sign_in_as
from tests.test_pharmacy_helpers import FLOWER, deliver_outbox, ready, sign_new, state_of, stock

S10 = "AB123456785GB"  # a Royal Mail tracking number whose check digit is right


def _signed(app, personas, *, packs: int = 10, **kwargs) -> int:
    with app.app_context():
        r = ready(personas)
        stock(r.pharmacy_id, {FLOWER: packs}, r.products)
        return sign_new(r, **kwargs).id


def _pharmacist(app, personas, who: str = "pharmacist"):
    client = app.test_client()
    sign_in_as(client, personas[who])
    return client


def _step(client, prescription_id: int, action: str, **form):
    page = client.get(f"/pharmacy/prescriptions/{prescription_id}")
    html = page.get_data(as_text=True)
    state = form.pop("seen_state", None)
    if state is None:
        import re

        state = re.search(r'name="seen_state" value="([a-z_]+)"', html).group(1)
    return client.post(f"/pharmacy/prescriptions/{prescription_id}/{action}",
                       data={"csrf_token": csrf_from(html), "seen_state": state, **form})


def test_a_signed_prescription_is_in_the_queue_and_the_poll_fragment_shows_it(app, personas):
    prescription_id = _signed(app, personas)
    client = _pharmacist(app, personas)
    fragment = client.get("/pharmacy", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in html
    assert 'id="pharmacy-queue"' in html and 'hx-trigger="every 5s"' in html
    assert f'href="/pharmacy/prescriptions/{prescription_id}"' in html and "Alice Example" in html
    assert "Paper original awaited" in html
    other = _pharmacist(app, personas, "other_pharmacist").get("/pharmacy", headers={"HX-Request": "true"})
    assert "Alice Example" not in other.get_data(as_text=True)


def test_the_pharmacist_sees_the_signature_verified_and_the_patient_details(app, personas):
    prescription_id = _signed(app, personas)
    html = _pharmacist(app, personas).get(f"/pharmacy/prescriptions/{prescription_id}").get_data(as_text=True)
    assert "Genuine: signed by Clinician Person" in html
    for check in ("PDF signature", "Unchanged since signing", "Signed FHIR prescription (JWS)", "Signing certificate",
                  "Within its 28 days"):
        assert f'data-check="{check}"' in html
    assert html.count("nhsuk-tag--green\">Pass") == 5 and "Fail</strong>" not in html
    assert "14 Orchard Lane" in html and "17 May 1980" in html and "Verdant T22 Flower" in html


def test_other_pharmacies_and_patients_cannot_reach_the_prescription(app, personas):
    prescription_id = _signed(app, personas)
    assert _pharmacist(app, personas, "other_pharmacist").get(
        f"/pharmacy/prescriptions/{prescription_id}").status_code == 403
    bob = app.test_client()
    sign_in_as(bob, personas["other_patient"])
    assert bob.get(f"/my/orders/{prescription_id}").status_code == 403
    assert _pharmacist(app, personas).get("/pharmacy/prescriptions/999999").status_code == 404


def test_the_whole_portal_journey_from_receipt_to_delivery_shows_on_the_patient_order_page(app, personas):
    prescription_id = _signed(app, personas, quantity="20")
    deliver_outbox(app)
    assert state_of(app, prescription_id) == "transmitted"
    client = _pharmacist(app, personas)
    patient = app.test_client()
    sign_in_as(patient, personas["patient"])

    def order_page() -> str:
        return patient.get(f"/my/orders/{prescription_id}").get_data(as_text=True)

    assert 'data-step="pharmacy" data-status="current"' in order_page()
    assert _step(client, prescription_id, "receive").status_code == 302
    assert _step(client, prescription_id, "allocate").status_code == 302
    assert state_of(app, prescription_id) == "stock_allocated"
    assert 'data-step="preparing" data-status="current"' in order_page()
    assert _step(client, prescription_id, "original", paper_matches="yes").status_code == 302
    assert _step(client, prescription_id, "verify").status_code == 302
    assert _step(client, prescription_id, "dispense").status_code == 302
    assert state_of(app, prescription_id) == "dispensed"
    assert _step(client, prescription_id, "dispatch", carrier="royal_mail", tracking="ab 1234 5678 5gb").status_code \
        == 302
    html = order_page()
    assert 'data-step="on_its_way" data-status="current"' in html
    assert f"https://www.royalmail.com/track-your-item#/tracking-results/{S10}" in html and S10 in html
    assert _step(client, prescription_id, "delivered").status_code == 302
    assert state_of(app, prescription_id) == "delivered"
    html = order_page()
    assert html.count('data-status="done"') == 6 and "Delivered" in html
    with app.app_context():
        held = inventory.allocations_of(prescribing.get(prescription_id))
        assert [(a.packs, a.status) for a, _b in held] == [(2, "dispensed")]
        states = [t.to_state for t in __import__("app.prescribing.states", fromlist=["x"]).history(
            prescribing.get(prescription_id))]
        assert states == ["signed", "transmitted", "received_by_pharmacy", "stock_allocated", "clinically_verified",
                          "dispensed", "dispatched", "delivered"]


def test_dispensing_before_verifying_is_refused_with_the_reason_and_audited(app, personas):
    prescription_id = _signed(app, personas)
    client = _pharmacist(app, personas)
    _step(client, prescription_id, "allocate")
    refused = _step(client, prescription_id, "dispense", seen_state="stock_allocated")
    assert refused.status_code == 409
    assert "must be clinically verified first" in refused.get_data(as_text=True)
    assert state_of(app, prescription_id) == "stock_allocated"
    verify = _step(client, prescription_id, "verify")
    assert verify.status_code == 409 and "paper original (FP10PCD) is the legal prescription" in \
        verify.get_data(as_text=True)
    with app.app_context():
        refusals = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "pharmacy.step_refused")).all()
        assert [r.subject_id for r in refusals] == [str(prescription_id)] * 2
        assert inventory.level(prescribing.get(prescription_id).pharmacy_id,
                               prescribing.get(prescription_id).items[0].product_id).on_hand == 10


def test_a_cancelled_prescription_cannot_be_dispatched(app, personas):
    prescription_id = _signed(app, personas)
    with app.app_context():
        from app.auth.models import User
        from tests.test_pharmacy_helpers import acting_as

        prescription = prescribing.get(prescription_id)
        doctor = db.session.get(User, prescription.prescriber_id)
        with acting_as(doctor.id, "clinician"):
            prescribing.cancel(prescription, doctor, "Wrong product chosen")
    refused = _step(_pharmacist(app, personas), prescription_id, "dispatch", carrier="royal_mail", tracking=S10,
                    seen_state="cancelled")  # a form kept open while the prescriber cancelled
    assert refused.status_code == 409
    assert "cannot go from “Cancelled” to “Dispatched”" in refused.get_data(as_text=True)


def test_a_step_from_a_stale_page_is_refused_saying_what_changed(app, personas):
    prescription_id = _signed(app, personas)
    client = _pharmacist(app, personas)
    _step(client, prescription_id, "allocate")
    stale = _step(client, prescription_id, "allocate", seen_state="signed")
    assert stale.status_code == 302
    page = client.get(stale.headers["Location"]).get_data(as_text=True)
    assert "changed meanwhile: it is now “Stock allocated”" in page
    assert _step(client, prescription_id, "allocate", seen_state="").status_code == 400


def test_a_mistyped_tracking_number_is_refused_by_its_check_digit(app, personas):
    prescription_id = _signed(app, personas)
    client = _pharmacist(app, personas)
    for action, form in (("allocate", {}), ("original", {"paper_matches": "yes"}), ("verify", {}), ("dispense", {})):
        assert _step(client, prescription_id, action, **form).status_code == 302
    wrong = _step(client, prescription_id, "dispatch", carrier="royal_mail", tracking="AB123456784GB")
    assert wrong.status_code == 400 and "check digit" in wrong.get_data(as_text=True)
    assert state_of(app, prescription_id) == "dispensed"


def test_a_query_goes_to_the_prescriber_who_answers_in_the_thread(app, personas):
    prescription_id = _signed(app, personas)
    client = _pharmacist(app, personas)
    asked = _step(client, prescription_id, "query", question="Is 30 g intended, given the previous 20 g supply?")
    assert asked.status_code == 302 and state_of(app, prescription_id) == "queried"
    doctor = app.test_client()
    sign_in_as(doctor, personas["clinician"])
    alerts = doctor.get("/pharmacy/alerts").get_data(as_text=True)
    assert "The pharmacy has a question" in alerts and "Alice Example" in alerts
    banner = doctor.get(f"/prescriptions/{prescription_id}").get_data(as_text=True)
    assert 'id="pharmacy-banner"' in banner and "Answer the pharmacy" in banner
    view = doctor.get(f"/prescriptions/{prescription_id}/pharmacy").get_data(as_text=True)
    assert "Is 30 g intended" in view
    answered = doctor.post(f"/prescriptions/{prescription_id}/pharmacy/messages",
                           data={"csrf_token": csrf_from(view), "kind": "answer", "body": "Yes: the dose went up."})
    assert answered.status_code == 302
    assert "The pharmacy has a question" not in doctor.get("/pharmacy/alerts").get_data(as_text=True)
    html = client.get(f"/pharmacy/prescriptions/{prescription_id}").get_data(as_text=True)
    assert "Clinic answers" in html and "Yes: the dose went up." in html
    with app.app_context():
        emails = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "email")).all()
        assert any("Is 30 g" not in m.payload for m in emails)
        assert all("Is 30 g" not in m.payload and "dose went up" not in m.payload for m in emails)
