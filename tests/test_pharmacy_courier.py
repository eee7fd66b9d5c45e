"""Courier tracking: a local sandbox courier sends signed tracking events over HTTP to Verity's courier
webhook; the parcel moves on, "delivered" delivers the prescription, and the patient's order page shows it."""

from __future__ import annotations

import pytest

from app.pharmacy import services as pharmacies
from app.pharmacy import shipping, workflow
from app.prescribing import services as prescribing
from tests.conftest import sign_in_as
from tests.pharmacy_peer import SandboxCourier, serve
from tests.test_pharmacy_helpers import FLOWER, ready, sign_new, state_of, stock

SECRET = "courier-test-secret"


@pytest.fixture
def app_config():
    return {"COURIER_WEBHOOK_SECRET": SECRET}


def _dispatched(app, personas, *, carrier: str = "sandbox", tracking: str = "SBX0001") -> int:
    with app.app_context():
        r = ready(personas)
        stock(r.pharmacy_id, {FLOWER: 5}, r.products)
        prescription = sign_new(r, quantity="10")
        pharmacy = pharmacies.get(r.pharmacy_id)
        workflow.allocate(prescription, pharmacy)
        prescribing.record_original_received(prescription, matches=True)
        workflow.verify(prescription, pharmacy)
        workflow.dispense(prescription, pharmacy)
        workflow.dispatch(prescription, pharmacy, carrier=carrier, tracking=tracking)
        return prescription.id


def test_courier_events_move_the_parcel_and_delivered_delivers_the_prescription(app, personas):
    prescription_id = _dispatched(app, personas)
    with serve(app) as base_url:
        courier = SandboxCourier(base_url, SECRET)
        assert courier.emit("SBX0001", "in_transit").status == 200
        assert courier.emit("sbx 0001", "out_for_delivery", note="With the driver").status == 200
        assert state_of(app, prescription_id) == "dispatched"
        patient = app.test_client()
        sign_in_as(patient, personas["patient"])
        page = patient.get(f"/my/orders/{prescription_id}").get_data(as_text=True)
        assert "Out for delivery" in page and "With the driver" in page
        delivered = courier.emit("SBX0001", "delivered")
        assert delivered.status == 200 and delivered.body["status"] == "delivered"
    assert state_of(app, prescription_id) == "delivered"
    with app.app_context():
        from app.prescribing import states

        last = states.history(prescribing.get(prescription_id))[-1]
        assert (last.to_state, last.actor_role, last.detail["source"]) == ("delivered", "system", "courier")


def test_forged_replayed_unknown_and_late_courier_events_are_refused(app, personas):
    prescription_id = _dispatched(app, personas)
    with serve(app) as base_url:
        forged = SandboxCourier(base_url, "wrong-secret").emit("SBX0001", "delivered")
        assert forged.status == 401
        courier = SandboxCourier(base_url, SECRET)
        assert courier.emit("NOSUCH01", "delivered").status == 404
        assert SandboxCourier(base_url, SECRET, carrier="pigeon").emit("SBX0001", "delivered").status == 404
        assert courier.emit("SBX0001", "in_transit", event_id="evt-1").status == 200
        replay = courier.emit("SBX0001", "in_transit", event_id="evt-1")
        assert replay.status == 409 and "already received" in replay.body["error"]
        assert courier.emit("SBX0001", "teleported").status == 400
        assert courier.emit("SBX0001", "delivered").status == 200
        late = courier.emit("SBX0001", "failed_attempt")
        assert late.status == 409 and "already delivered" in late.body["error"]
    assert state_of(app, prescription_id) == "delivered"


def test_a_returned_parcel_is_flagged_and_the_pharmacy_can_send_it_again(app, personas):
    prescription_id = _dispatched(app, personas)
    with serve(app) as base_url:
        courier = SandboxCourier(base_url, SECRET)
        courier.emit("SBX0001", "failed_attempt", note="Nobody in")
        courier.emit("SBX0001", "returned")
    with app.app_context():
        from app.pharmacy import pipeline

        [row] = pipeline.rows()
        assert "the parcel came back to the pharmacy" in row.stuck and row.parcel == "Returned to the pharmacy"
        prescription = prescribing.get(prescription_id)
        workflow.dispatch(prescription, pharmacies.get(prescription.pharmacy_id), carrier="royal_mail",
                          tracking="AB123456785GB")
        assert [s.status for s in shipping.shipments_for(prescription)] == ["returned", "dispatched"]
        assert shipping.shipment_for(prescription).tracking_number == "AB123456785GB"
        assert prescription.status == "dispatched"


def test_tracking_links_per_carrier(ctx):
    assert shipping.tracking_link("royal_mail", "AB123456785GB") == \
        "https://www.royalmail.com/track-your-item#/tracking-results/AB123456785GB"
    assert shipping.tracking_link("dpd", "15501234567890") == "https://track.dpd.co.uk/parcels/15501234567890"
    assert shipping.tracking_link("sandbox", "SBX1") is None and shipping.tracking_link("nope", "X") is None
    with pytest.raises(shipping.ShippingError):
        shipping.clean("royal_mail", "AB123456789GB")  # wrong check digit
    assert shipping.clean("dpd", " 1550 1234 5678 90 ")[1] == "15501234567890"
