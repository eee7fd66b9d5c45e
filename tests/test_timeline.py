"""The patient's timeline: each live prescription as a tracker (each step with its time, what happens next and
how long it usually takes, the carrier's tracking link), the journey and appointments, refreshed by polling
that costs little while nothing changes."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from app.extensions import db
from app.prescribing import services as prescribing
from app.prescribing import states
from tests.conftest import sign_in_as
from tests.test_prescribing_helpers import acting_as, prepare, sign_new

S = states.State
HTMX = {"HX-Request": "true"}


def _signed(app, personas) -> int:
    with app.app_context():
        prescription = sign_new(prepare(personas))
        states.apply(prescription, S.TRANSMITTED, actor_role="system")
        return prescription.id


def _move(app, personas, prescription_id: int, *steps: S, **detail) -> None:
    with app.app_context(), acting_as(personas["pharmacist"].user_id, "pharmacist"):
        prescription = prescribing.get(prescription_id)
        for step in steps:
            if step is S.CLINICALLY_VERIFIED and prescription.paper_received_at is None:
                prescribing.record_original_received(prescription, matches=True)
            states.apply(prescription, step, actor_role="pharmacy",
                         detail=detail if step is S.DISPATCHED else None)


def _card(page: str, prescription_id: int) -> str:
    start = page.index(f'id="prescription-{prescription_id}"')
    return page[start:page.index("</ol>", start) + 2000]


def _status(card: str, step: str) -> str:
    return re.search(rf'data-step="{step}" data-status="(\w+)"', card).group(1)


def test_each_step_has_its_time_and_the_current_one_says_what_happens_next(app, client, personas):
    prescription_id = _signed(app, personas)
    _move(app, personas, prescription_id, S.RECEIVED, S.STOCK_ALLOCATED, S.AWAITING_ORIGINAL)
    sign_in_as(client, personas["patient"])
    page = client.get("/timeline").get_data(as_text=True)
    card = _card(page, prescription_id)
    assert "The pharmacy is waiting for the signed paper prescription" in card
    assert [_status(card, s) for s in ("issued", "pharmacy", "preparing", "dispensed", "dispatched", "delivered")] \
        == ["done", "done", "current", "todo", "todo", "todo"]
    assert card.count("nhsuk-task-list__hint") == 3, "a time under each step reached"
    assert "By law the pharmacy needs the doctor&#39;s signed paper prescription" in card
    assert "It usually arrives in 1 to 2 working days" in card
    assert "Account created" in page and 'id="timeline-journey"' in page
    assert "No consultation booked." in page


def test_a_dispatched_prescription_shows_the_carrier_and_its_tracking_link(app, client, personas):
    prescription_id = _signed(app, personas)
    _move(app, personas, prescription_id, S.RECEIVED, S.STOCK_ALLOCATED, S.CLINICALLY_VERIFIED, S.DISPENSED,
          S.DISPATCHED, carrier="Royal Mail Tracked 24", tracking="AB123456785GB")
    sign_in_as(client, personas["patient"])
    card = _card(client.get("/timeline").get_data(as_text=True), prescription_id)
    assert _status(card, "dispatched") == "current" and _status(card, "delivered") == "todo"
    assert "Your medicine is on its way" in card and "AB123456785GB" in card
    link = re.search(rf'id="tracking-link-{prescription_id}"', card)
    assert link, card
    assert 'href="https://www.royalmail.com/track-your-item#/tracking-results/AB123456785GB"' in card
    assert "It is usually delivered the next working day." in card


def test_a_shipment_the_pharmacy_booked_gives_its_carrier_link_and_the_couriers_word(app, client, personas):
    shipping = pytest.importorskip("app.pharmacy.shipping")
    prescription_id = _signed(app, personas)
    _move(app, personas, prescription_id, S.RECEIVED, S.STOCK_ALLOCATED, S.CLINICALLY_VERIFIED, S.DISPENSED,
          S.DISPATCHED, carrier="DPD", tracking="15501234567890")
    with app.app_context():
        prescription = prescribing.get(prescription_id)
        shipment = shipping.book(prescription, shipping.CARRIERS["dpd"], "15501234567890", source="pharmacy")
        shipping.record_event(shipment, shipping.OUT_FOR_DELIVERY, source="courier")
    sign_in_as(client, personas["patient"])
    card = _card(client.get("/timeline").get_data(as_text=True), prescription_id)
    assert 'href="https://track.dpd.co.uk/parcels/15501234567890"' in card
    assert "On its way: out for delivery" in card


def test_an_ended_prescription_says_why(app, client, personas):
    prescription_id = _signed(app, personas)
    with app.app_context():
        from app.auth.models import User

        doctor = db.session.get(User, personas["clinician"].user_id)
        prescribing.cancel(prescribing.get(prescription_id), doctor, "We agreed to try a lower strength first.")
    sign_in_as(client, personas["patient"])
    card = _card(client.get("/timeline").get_data(as_text=True), prescription_id)
    assert 'data-step="cancelled" data-status="ended"' in card
    assert "This prescription was cancelled. We agreed to try a lower strength first." in card


def _marker(page: str) -> str:
    return re.search(r'data-marker="([0-9a-f]+)"', page).group(1)


def test_polling_answers_204_until_something_changes_then_the_new_state(app, client, personas):
    prescription_id = _signed(app, personas)
    sign_in_as(client, personas["patient"])
    page = client.get("/timeline").get_data(as_text=True)
    marker = _marker(page)
    assert f'hx-get="/timeline?since={marker}"' in page and 'hx-trigger="every 20s"' in page
    unchanged = client.get(f"/timeline?since={marker}", headers=HTMX)
    assert unchanged.status_code == 204 and unchanged.get_data() == b""

    _move(app, personas, prescription_id, S.RECEIVED, S.STOCK_ALLOCATED)
    changed = client.get(f"/timeline?since={marker}", headers=HTMX)
    assert changed.status_code == 200
    fragment = changed.get_data(as_text=True)
    assert fragment.startswith('<div id="timeline-live"') and "<html" not in fragment
    assert "The pharmacy is preparing your medicine" in fragment
    assert changed.headers["HX-Trigger"] == "verity-notifications", "the header badge reloads"
    assert _marker(fragment) != marker
    assert client.get(f"/timeline?since={_marker(fragment)}", headers=HTMX).status_code == 204


def test_a_poll_that_finds_nothing_new_costs_a_handful_of_queries(app, client, personas):
    prescription_id = _signed(app, personas)
    _move(app, personas, prescription_id, S.RECEIVED, S.STOCK_ALLOCATED, S.AWAITING_ORIGINAL)
    sign_in_as(client, personas["patient"])
    marker = _marker(client.get("/timeline").get_data(as_text=True))
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(f"/timeline?since={marker}", headers=HTMX).status_code == 204
        poll = len(statements)
        statements.clear()
        assert client.get("/timeline", headers=HTMX).status_code == 200
        full = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert poll <= 12, statements
    assert poll < full


def test_a_patient_sees_only_their_own_timeline(app, client, personas):
    _signed(app, personas)
    sign_in_as(client, personas["other_patient"])
    page = client.get("/timeline").get_data(as_text=True)
    assert 'id="no-prescriptions"' in page and "Prescription " not in page.split('id="prescriptions-heading"')[1][:300]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(sa.text("prescriptions"))) == 1
