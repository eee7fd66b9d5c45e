"""The front desk's and clinicians' pages, an appointment's page, and the FHIR views."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.slot import Slot as FhirSlot

from app.patients import details
from app.patients import services as patients
from app.scheduling import services, states
from tests.conftest import csrf_from, sign_in_as
from tests.test_scheduling import LONDON, future_monday, ready, set_up_clinic, slot_id, user


@pytest.fixture
def booked(app, personas):
    """The personas' clinic, and the patient booked for 09:00 on a Monday two weeks ahead."""
    with app.app_context():
        set_up_clinic(personas)
        patient = patients.get(personas["patient"].patient_id)
        appointment = services.book(patient, slot_id(personas["clinician"], future_monday(), "09:00"),
                                    by=user(personas["reception"]))
        return appointment.id


def signed_in(app, persona):
    client = app.test_client()
    sign_in_as(client, persona)
    return client


# Finding and booking a patient at the front desk ---------------------------------------------------------

def test_reception_finds_a_patient_by_name_email_birth_date_or_nhs_number(app, personas):
    with app.app_context():
        patient = ready(personas["patient"], with_details=False)
        details.update(patient, "records", {"gp_practice": "Harbour Surgery, Bristol", "nhs_number": "943 476 5919"})
    client = signed_in(app, personas["reception"])
    for term in ("alice", personas["patient"].email, "943 476 5919", "9434765919",
                 "17/05/1980", "1980-05-17", "17 May 1980"):
        page = client.get("/scheduling/patients", query_string={"q": term}, headers={"HX-Request": "true"})
        text = page.get_data(as_text=True)
        assert "Alice Example" in text, term
        assert f"/scheduling/patients/{personas['patient'].patient_id}/book" in text, term
        born_too = "1980" in term or "May" in term  # Bob was born the same day
        assert ("Bob Example" in text) == born_too, term
    assert "No patients match" in client.get("/scheduling/patients?q=01/01/1901").get_data(as_text=True)
    bob = client.get("/scheduling/patients", query_string={"q": "bob"}).get_data(as_text=True)
    assert "Bob Example" in bob and "Not ready to book (registered)" in bob


def test_reception_books_a_patient_without_address_after_a_warning(app, personas):
    with app.app_context():
        set_up_clinic(personas)
        ready(personas["other_patient"], with_details=False)
    client = signed_in(app, personas["reception"])
    url = f"/scheduling/patients/{personas['other_patient'].patient_id}/book?clinician={personas['clinician'].user_id}"
    page = client.get(url + f"&week={future_monday().isoformat()}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Details missing" in text
    wanted = slot_id(personas["clinician"], future_monday(), "11:30")
    response = client.post(url + "&type=initial", data={"slot": wanted, "csrf_token": csrf_from(text)})
    assert response.status_code == 302
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Booked: Bob Example" in shown and "11:30" in shown


def test_booking_for_a_patient_not_yet_eligible_explains_why(app, personas):
    client = signed_in(app, personas["reception"])
    text = client.get(f"/scheduling/patients/{personas['patient'].patient_id}/book").get_data(as_text=True)
    assert "This patient cannot be booked yet: their stage is “Account created”" in text
    assert 'name="slot"' not in text


# Boards and states ------------------------------------------------------------------------------------------

def test_the_board_shows_each_appointment_with_its_state(app, personas, booked):
    client = signed_in(app, personas["reception"])
    day = future_monday().isoformat()
    text = client.get(f"/scheduling/board?clinician={personas['clinician'].user_id}&date={day}").get_data(as_text=True)
    assert "Alice Example" in text and "09:00\N{EN DASH}09:30" in text and ">Booked<" in text
    mine = signed_in(app, personas["clinician"]).get(f"/scheduling/board?date={day}").get_data(as_text=True)
    assert "Alice Example" in mine
    theirs = signed_in(app, personas["other_clinician"]).get(
        f"/scheduling/board?clinician={personas['clinician'].user_id}&date={day}").get_data(as_text=True)
    assert "Alice Example" not in theirs, "a clinician's board is their own"


def test_check_in_call_and_completion_move_the_state_at_the_right_time(app, personas, booked, monkeypatch):
    with app.app_context():
        start = services.get(booked).starts_at
    monkeypatch.setattr(states, "utcnow", lambda: start - dt.timedelta(minutes=10))
    desk = signed_in(app, personas["reception"])
    board = f"/scheduling/board?clinician={personas['clinician'].user_id}&date={future_monday().isoformat()}"
    token = csrf_from(desk.get(board).get_data(as_text=True))
    checked = desk.post(f"/appointments/{booked}/status", data={"status": "checked_in", "csrf_token": token,
                                                                  "back": board})
    assert checked.status_code == 302 and checked.headers["Location"] == board
    assert ">Patient checked in<" in desk.get(board).get_data(as_text=True)
    doctor = signed_in(app, personas["clinician"])
    token = csrf_from(doctor.get(f"/appointments/{booked}").get_data(as_text=True))
    refused = doctor.post(f"/appointments/{booked}/status", data={"status": "completed", "csrf_token": token})
    assert "cannot become" in doctor.get(refused.headers["Location"]).get_data(as_text=True)
    doctor.post(f"/appointments/{booked}/status", data={"status": "in_call", "csrf_token": token})
    doctor.post(f"/appointments/{booked}/status", data={"status": "completed", "csrf_token": token})
    page = doctor.get(f"/appointments/{booked}").get_data(as_text=True)
    assert ">Completed<" in page and "Book a follow-up" in page
    assert desk.post(f"/appointments/{booked}/status", data={"status": "cancelled", "csrf_token": token}
                     ).status_code == 400


def test_the_clinician_books_a_follow_up_at_the_end_of_the_consultation(app, personas, booked, monkeypatch):
    with app.app_context():
        appointment = services.get(booked)
        start = appointment.starts_at
        monkeypatch.setattr(states, "utcnow", lambda: start + dt.timedelta(minutes=5))
        services.mark(appointment, "in_call", by=user(personas["clinician"]))
    doctor = signed_in(app, personas["clinician"])
    later = future_monday() + dt.timedelta(weeks=4)
    page = doctor.get(f"/appointments/{booked}/follow-up?week={later.isoformat()}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Book a follow-up" in text
    wanted = slot_id(personas["clinician"], later, "13:15", "follow-up", 15)
    assert wanted in text and slot_id(personas["clinician"], later, "09:00") not in text
    done = doctor.post(f"/appointments/{booked}/follow-up?type=follow-up", data={"slot": wanted,
                                                                                "csrf_token": csrf_from(text)})
    assert done.status_code == 302 and done.headers["Location"] == f"/appointments/{booked}"
    with app.app_context():
        upcoming = services.upcoming_for_patient(patients.get(personas["patient"].patient_id))
        assert [(a.consultation_type, a.starts_at.astimezone(LONDON).time()) for a in upcoming] == [
            ("initial", dt.time(9)), ("follow-up", dt.time(13, 15))]


# The appointment's page: who sees it, cancelling -------------------------------------------------------------

def test_only_the_patient_their_clinician_and_the_front_desk_see_an_appointment(app, personas, booked):
    expected = {"patient": 200, "other_patient": 403, "clinician": 200, "other_clinician": 403, "reception": 200,
                "admin": 200, "pharmacist": 403}
    for who, status in expected.items():
        assert signed_in(app, personas[who]).get(f"/appointments/{booked}").status_code == status, who


def test_the_patient_cancels_from_the_page_and_is_told_so(app, personas, booked):
    client = signed_in(app, personas["patient"])
    page = client.get(f"/appointments/{booked}").get_data(as_text=True)
    assert "Change the time" in page and "Yes, cancel it" in page
    response = client.post(f"/appointments/{booked}/cancel", data={"confirm": "yes", "csrf_token": csrf_from(page)})
    assert response.status_code == 302
    text = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your consultation is cancelled" in text and ">Cancelled<" in text
    with app.app_context():
        assert patients.get(personas["patient"].patient_id).journey_state == "eligible"


def test_the_patient_moves_the_appointment_from_the_page(app, personas, booked):
    client = signed_in(app, personas["patient"])
    url = f"/appointments/{booked}/reschedule?week={future_monday().isoformat()}"
    page = client.get(url).get_data(as_text=True)
    new = slot_id(personas["clinician"], future_monday(), "10:00")
    assert "Move this consultation" in page and new in page
    assert slot_id(personas["clinician"], future_monday(), "09:00") not in page, "its own time is not offered"
    moved = client.post(url, data={"slot": new, "csrf_token": csrf_from(page)})
    assert moved.status_code == 302
    with app.app_context():
        assert services.get(booked).starts_at.astimezone(LONDON).time() == dt.time(10)


# FHIR -------------------------------------------------------------------------------------------------------------

def test_fhir_appointment_is_a_valid_r4_resource_for_authorised_staff(app, personas, booked):
    response = signed_in(app, personas["reception"]).get(f"/fhir/Appointment/{booked}")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    resource = FhirAppointment.model_validate(response.get_json())
    assert resource.status == "booked" and resource.id == str(booked)
    assert {p.actor.reference for p in resource.participant} == {
        f"Patient/{personas['patient'].patient_id}", f"Practitioner/{personas['clinician'].user_id}"}
    assert resource.minutesDuration == 30
    assert signed_in(app, personas["clinician"]).get(f"/fhir/Appointment/{booked}").status_code == 200
    assert signed_in(app, personas["other_clinician"]).get(f"/fhir/Appointment/{booked}").status_code == 403
    assert signed_in(app, personas["patient"]).get(f"/fhir/Appointment/{booked}").status_code == 403
    missing = signed_in(app, personas["reception"]).get("/fhir/Appointment/999999")
    assert missing.status_code == 404
    assert OperationOutcome.model_validate(missing.get_json()).issue[0].code == "not-found"


def test_fhir_slot_search_returns_a_bundle_of_free_and_busy_slots(app, personas, booked):
    client = signed_in(app, personas["reception"])
    monday = future_monday()
    query = {"schedule": f"Schedule/{personas['clinician'].user_id}", "start": [
        f"ge{monday.isoformat()}", f"lt{(monday + dt.timedelta(days=1)).isoformat()}"]}
    response = client.get("/fhir/Slot", query_string=query)
    assert response.status_code == 200
    bundle = Bundle.model_validate(json.loads(response.get_data()))
    slots = [FhirSlot.model_validate(entry.resource.model_dump()) for entry in bundle.entry]
    assert bundle.type == "searchset" and bundle.total == len(slots) == 6 + 8
    busy = [s for s in slots if s.status == "busy"]
    assert [s.id for s in busy] == [slot_id(personas["clinician"], monday, "09:00")]
    assert all(s.schedule.reference == f"Schedule/{personas['clinician'].user_id}" for s in slots)
    only_busy = client.get("/fhir/Slot", query_string={**query, "status": "busy"}).get_json()
    assert only_busy["total"] == 1
    for bad in ({"schedule": "Schedule/abc"}, {**query, "start": "yesterday"}, {**query, "status": "maybe"}):
        refused = client.get("/fhir/Slot", query_string=bad)
        assert refused.status_code == 400
        OperationOutcome.model_validate(refused.get_json())
    assert signed_in(app, personas["pharmacist"]).get("/fhir/Slot", query_string=query).status_code == 403
