"""Availability: patterns and exceptions edited by the front desk; a change never removes a booking."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.patients import services as patients
from app.scheduling import availability, services
from app.scheduling.models import BOOKED, AvailabilityException, AvailabilityPattern
from tests.conftest import csrf_from, sign_in_as
from tests.test_scheduling import LONDON, future_monday, ready, slot_id, user, weekly


def _count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_a_pattern_ending_before_it_starts_is_refused(ctx, personas):
    with pytest.raises(availability.AvailabilityError, match="The end time must be after the start time") as refused:
        weekly(personas["clinician"], personas["reception"], start="12:00", end="09:00")
    assert refused.value.field == "end_time"
    assert _count(AvailabilityPattern) == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"minutes": 7}, "Slot length must be a multiple of 5 minutes"),
    ({"start": "09:02"}, "Times must be on a 5-minute boundary"),
    ({"start": "09:00", "end": "09:20", "minutes": 30}, "A 30-minute slot does not fit between 09:00 and 09:20"),
    ({"kind": "massage"}, "Choose a consultation type"),
])
def test_malformed_patterns_are_refused(ctx, personas, change, message):
    with pytest.raises(availability.AvailabilityError, match=message):
        weekly(personas["clinician"], personas["reception"], **change)
    assert _count(AvailabilityPattern) == 0


def test_an_overlapping_pattern_is_refused_naming_the_one_it_overlaps(ctx, personas):
    first = dt.date(2027, 1, 4)
    weekly(personas["clinician"], personas["reception"], valid_from=first)
    with pytest.raises(availability.AvailabilityError) as refused:
        weekly(personas["clinician"], personas["reception"], start="11:30", end="13:00", minutes=15,
               kind="follow-up", valid_from=first + dt.timedelta(weeks=3))
    assert str(refused.value).startswith(
        "This overlaps the pattern Monday 09:00 to 12:00 (initial consultations, 30 min, from Monday 4 January 2027)")
    # Next to it, on another day, for another clinician, or after it ends: all fine.
    weekly(personas["clinician"], personas["reception"], start="12:00", end="13:00", valid_from=first)
    weekly(personas["clinician"], personas["reception"], weekday=1, valid_from=first)
    weekly(personas["other_clinician"], personas["reception"], valid_from=first)
    assert _count(AvailabilityPattern) == 4


def test_an_ended_pattern_does_not_block_a_new_one_after_it(ctx, personas):
    weekly(personas["clinician"], personas["reception"], valid_from=dt.date(2027, 1, 4), valid_to=dt.date(2027, 1, 31))
    weekly(personas["clinician"], personas["reception"], minutes=15, kind="follow-up", valid_from=dt.date(2027, 2, 1))
    with pytest.raises(availability.AvailabilityError, match="overlaps the pattern"):
        weekly(personas["clinician"], personas["reception"], valid_from=dt.date(2027, 1, 25))


def test_extra_sessions_may_not_overlap_working_hours_or_each_other(ctx, personas):
    monday = future_monday()
    weekly(personas["clinician"], personas["reception"])

    def extra(start: str, end: str):
        return availability.add_exception(
            clinician_id=personas["clinician"].user_id, kind="extra", slot_minutes=30, consultation_type="initial",
            starts_at=dt.datetime.combine(monday, dt.time.fromisoformat(start), tzinfo=LONDON),
            ends_at=dt.datetime.combine(monday, dt.time.fromisoformat(end), tzinfo=LONDON), by=user(personas["admin"]))

    with pytest.raises(availability.AvailabilityError, match="overlaps the pattern Monday 09:00 to 12:00"):
        extra("11:00", "13:00")
    extra("17:00", "18:00")
    with pytest.raises(availability.AvailabilityError, match="overlaps the extra session: monday"):
        extra("17:30", "19:00")
    times = [s.starts_at.astimezone(LONDON).strftime("%H:%M")
             for s in availability.all_slots([personas["clinician"].user_id], monday, monday)]
    assert times[-2:] == ["17:00", "17:30"]


def test_leave_over_a_booking_keeps_the_booking_and_lists_it_to_move(ctx, personas):
    monday = future_monday()
    weekly(personas["clinician"], personas["reception"])
    patient = ready(personas["patient"])
    booked = services.book(patient, slot_id(personas["clinician"], monday, "10:00"), by=user(personas["reception"]))
    availability.add_exception(clinician_id=personas["clinician"].user_id, kind="leave",
                               starts_at=dt.datetime.combine(monday, dt.time(0), tzinfo=LONDON),
                               ends_at=dt.datetime.combine(monday + dt.timedelta(days=1), dt.time(0), tzinfo=LONDON),
                               note="Annual leave", by=user(personas["reception"]))
    db.session.refresh(booked)
    assert booked.status == BOOKED, "never silently removed"
    assert availability.outside_availability(personas["clinician"].user_id) == [booked]
    assert availability.all_slots([personas["clinician"].user_id], monday, monday) == []
    moved = services.reschedule(booked, slot_id(personas["clinician"], monday + dt.timedelta(weeks=1), "10:00"),
                                by=user(personas["reception"]))
    assert moved.id == booked.id
    assert availability.outside_availability(personas["clinician"].user_id) == []


def test_removing_a_pattern_lists_its_bookings_on_the_page(app, client, personas):
    with app.app_context():
        pattern = weekly(personas["clinician"], personas["reception"])
        patient = ready(personas["patient"])
        services.book(patient, slot_id(personas["clinician"], future_monday(), "09:30"), by=user(personas["reception"]))
        pattern_id = pattern.id
    sign_in_as(client, personas["reception"])
    page = f"/scheduling/availability?clinician={personas['clinician'].user_id}"
    token = csrf_from(client.get(page).get_data(as_text=True))
    response = client.post(f"/scheduling/availability/patterns/{pattern_id}/delete",
                           data={"confirm": "yes", "csrf_token": token}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith("<div id=\"availability\">")
    assert "1 booked appointment is now outside Clinician Person&#39;s working hours. Nothing was cancelled" in body
    assert "Appointments to move" in body and "/reschedule" in body
    with app.app_context():
        assert _count(AvailabilityPattern) == 0
        assert services.upcoming_for_patient(patients.get(personas["patient"].patient_id))[0].status == BOOKED


def test_reception_adds_a_pattern_through_the_page_and_sees_errors_by_field(app, client, personas):
    sign_in_as(client, personas["reception"])
    clinician = personas["clinician"].user_id
    token = csrf_from(client.get(f"/scheduling/availability?clinician={clinician}").get_data(as_text=True))
    form = {"weekday": "2", "start_time": "14:00", "end_time": "13:00", "consultation_type": "initial",
            "slot_minutes": "30", "valid_from": future_monday().isoformat(), "csrf_token": token}
    refused = client.post(f"/scheduling/availability/{clinician}/patterns", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "There is a problem" in text and "The end time must be after the start time" in text
    assert 'value="14:00"' in text, "what was entered is kept"
    htmx = client.post(f"/scheduling/availability/{clinician}/patterns", data=form, headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and "The end time must be after the start time" in htmx.get_data(as_text=True)
    added = client.post(f"/scheduling/availability/{clinician}/patterns", data={**form, "end_time": "17:00"},
                        headers={"HX-Request": "true"})
    assert "Pattern added." in added.get_data(as_text=True)
    assert "Wednesday" in added.get_data(as_text=True)
    with app.app_context():
        [pattern] = db.session.scalars(sa.select(AvailabilityPattern)).all()
        assert (pattern.weekday, pattern.start_time, pattern.end_time) == (2, dt.time(14), dt.time(17))


def test_reception_records_leave_for_whole_days(app, client, personas):
    sign_in_as(client, personas["reception"])
    clinician = personas["clinician"].user_id
    token = csrf_from(client.get(f"/scheduling/availability?clinician={clinician}").get_data(as_text=True))
    first = future_monday()
    response = client.post(f"/scheduling/availability/{clinician}/exceptions", data={
        "kind": "leave", "start_date": first.isoformat(), "end_date": (first + dt.timedelta(days=4)).isoformat(),
        "note": "Annual leave", "csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        [leave] = db.session.scalars(sa.select(AvailabilityException)).all()
        assert leave.starts_at == dt.datetime.combine(first, dt.time(0), tzinfo=LONDON)
        assert leave.ends_at == dt.datetime.combine(first + dt.timedelta(days=5), dt.time(0), tzinfo=LONDON)
    page = client.get(f"/scheduling/availability?clinician={clinician}").get_data(as_text=True)
    assert f"Leave: Monday {first.day} {first:%B %Y} 00:00 to" in page and "Annual leave" in page


def test_an_extra_session_without_times_is_refused_on_the_page(client, personas):
    sign_in_as(client, personas["reception"])
    clinician = personas["clinician"].user_id
    token = csrf_from(client.get(f"/scheduling/availability?clinician={clinician}").get_data(as_text=True))
    response = client.post(f"/scheduling/availability/{clinician}/exceptions", data={
        "kind": "extra", "start_date": future_monday().isoformat(), "csrf_token": token})
    assert response.status_code == 400
    assert "An extra session needs a start and an end time" in response.get_data(as_text=True)


def test_editing_a_pattern_checks_overlaps_without_counting_itself(app, client, personas):
    with app.app_context():
        pattern = weekly(personas["clinician"], personas["reception"])
        weekly(personas["clinician"], personas["reception"], start="13:00", end="15:00")
        pattern_id = pattern.id
    sign_in_as(client, personas["reception"])
    page = client.get(f"/scheduling/availability/patterns/{pattern_id}")
    assert 'value="09:00"' in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    form = {"weekday": "0", "start_time": "08:00", "end_time": "12:00", "consultation_type": "initial",
            "slot_minutes": "30", "valid_from": dt.date.today().isoformat(), "csrf_token": token}
    assert client.post(f"/scheduling/availability/patterns/{pattern_id}", data=form).status_code == 302
    clash = client.post(f"/scheduling/availability/patterns/{pattern_id}", data={**form, "end_time": "14:00"})
    assert clash.status_code == 400
    assert "This overlaps the pattern Monday 13:00 to 15:00" in clash.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(AvailabilityPattern, pattern_id).start_time == dt.time(8)


def test_demo_availability_gives_every_clinician_weekdays_once(ctx, personas):
    added = availability.load_demo_availability()
    assert added == 2 * 5 * 2, "two clinicians, five weekdays, a morning and an afternoon"
    assert availability.load_demo_availability() == 0, "idempotent"
    monday = future_monday()
    slots = availability.all_slots([personas["clinician"].user_id], monday, monday)
    kinds = {(s.consultation_type, s.minutes) for s in slots}
    assert kinds == {("initial", 30), ("follow-up", 15)}
    assert len(slots) == 8 + 16
    assert slots[0].starts_at.astimezone(LONDON).time() == dt.time(9)
    assert slots[-1].ends_at.astimezone(LONDON).time() == dt.time(17)
    saturday = monday + dt.timedelta(days=5)
    assert availability.all_slots([personas["clinician"].user_id], saturday, saturday) == []
