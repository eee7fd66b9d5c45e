"""The pipeline board: live prescriptions with their state, time in it and pharmacy; service-level breaches
flagged as stuck (in working days); filters; the daily digest; and each prescription's timeline."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.extensions import db
from app.outbox.models import OutboxMessage
from app.pharmacy import pipeline, workflow
from app.pharmacy import services as pharmacies
from app.prescribing import services as prescribing
from tests.conftest import sign_in_as
from tests.test_pharmacy_helpers import FLOWER, deliver_outbox, ready, sign_new, stock

LONDON = ZoneInfo("Europe/London")


def test_working_days_skip_weekends_and_holidays(ctx):
    friday = dt.datetime(2026, 3, 6, 16, 0, tzinfo=LONDON)
    assert pipeline.add_working_days(friday, 2, holidays=frozenset()) == dt.datetime(2026, 3, 10, 16, 0,
                                                                                     tzinfo=LONDON)
    assert pipeline.add_working_days(friday, 2, holidays=frozenset({dt.date(2026, 3, 9)})) == \
        dt.datetime(2026, 3, 11, 16, 0, tzinfo=LONDON)
    saturday = dt.datetime(2026, 3, 7, 11, 0, tzinfo=LONDON)  # counts from Monday 00:00
    assert pipeline.add_working_days(saturday, 1, holidays=frozenset()) == dt.datetime(2026, 3, 10, 0, 0,
                                                                                       tzinfo=LONDON)


def _two_prescriptions(app, personas, world):
    """One transmitted to the main pharmacy, one signed for another and never received."""
    with app.app_context():
        r = ready(personas, quota_g="100")
        stock(r.pharmacy_id, {FLOWER: 5}, r.products)
        first = sign_new(r, quantity="10", days="10")
        deliver_outbox(app)
        workflow.allocate(first, pharmacies.get(r.pharmacy_id))
        return r, first.id, sign_new(r, quantity="10", days="10").id


def test_the_board_flags_what_breaches_its_service_level(app, personas, world):
    _r, allocated_id, signed_id = _two_prescriptions(app, personas, world)
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        rows = {row.prescription.id: row for row in pipeline.rows(now=now)}
        assert set(rows) == {allocated_id, signed_id} and all(not row.stuck for row in rows.values())
        later = now + dt.timedelta(minutes=16)
        rows = {row.prescription.id: row for row in pipeline.rows(now=later)}
        assert rows[signed_id].stuck == ["not received by the pharmacy within 15 minutes"]
        assert rows[allocated_id].stuck == []
        much_later = now + dt.timedelta(days=10)
        rows = {row.prescription.id: row for row in pipeline.rows(now=much_later)}
        assert rows[allocated_id].stuck == ["not dispensed within 2 working days",
                                            "not delivered within 5 working days"]
        only_stuck = pipeline.rows(pipeline.Filters(stuck_only=True), now=later)
        assert [row.prescription.id for row in only_stuck] == [signed_id]
        by_state = pipeline.rows(pipeline.Filters(state="stock_allocated"), now=now)
        assert [row.prescription.id for row in by_state] == [allocated_id]
        assert pipeline.rows(pipeline.Filters(pharmacy_id=world.pharmacy("other")), now=now) == []


def test_the_board_page_filters_and_refreshes_as_a_fragment(app, personas, world):
    _r, allocated_id, signed_id = _two_prescriptions(app, personas, world)
    reception = app.test_client()
    sign_in_as(reception, personas["reception"])
    page = reception.get("/pipeline").get_data(as_text=True)
    assert f'data-prescription="{allocated_id}"' in page and f'data-prescription="{signed_id}"' in page
    assert "Stock allocated" in page and "Pharmacy main" in page
    fragment = reception.get("/pipeline?state=signed", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and 'id="pipeline-board"' in fragment
    assert f'data-prescription="{signed_id}"' in fragment and f'data-prescription="{allocated_id}"' not in fragment
    doctor = app.test_client()
    sign_in_as(doctor, personas["clinician"])
    assert doctor.get("/pipeline").status_code == 403


def test_the_daily_digest_lists_stuck_prescriptions_once_a_day_without_personal_details(app, personas, world):
    _r, _allocated_id, signed_id = _two_prescriptions(app, personas, world)
    with app.app_context():
        evening = dt.datetime.now(LONDON).replace(hour=18, minute=0) + dt.timedelta(days=1)
        morning = evening.replace(hour=6)
        assert pipeline.send_digest(morning.astimezone(dt.UTC)) == 0  # before 07:00
        recipients = pipeline.digest_recipients()
        assert personas["reception"].email in recipients and personas["admin"].email in recipients
        assert pipeline.send_digest(evening.astimezone(dt.UTC)) == len(recipients)
        assert pipeline.send_digest(evening.astimezone(dt.UTC)) == 0  # once a day
        digests = db.session.scalars(sa.select(OutboxMessage).where(
            OutboxMessage.idempotency_key.startswith("pharmacy-digest:"))).all()
        body = json.loads(digests[0].payload)["text"]
        assert f"Prescription #{signed_id}" in body and "not received by the pharmacy" in body
        assert "Alice" not in body and "Verdant" not in body


def test_the_timeline_shows_every_transition_and_delivery_attempt_from_the_trail(app, personas, world):
    _r, allocated_id, _signed_id = _two_prescriptions(app, personas, world)
    admin = app.test_client()
    sign_in_as(admin, personas["admin"])
    page = admin.get(f"/pipeline/{allocated_id}").get_data(as_text=True)
    for step in ("Signed", "Sent to pharmacy", "Received by pharmacy", "Stock allocated",
                 "Delivery to the pharmacy (signed): delivered"):
        assert step in page, step
    with app.app_context():
        entries = pipeline.timeline(prescribing.get(allocated_id))
        assert [e.at for e in entries] == sorted(e.at for e in entries)
