"""Booking, moving and cancelling: the rules, the refusals for bad input, and what the patient's journey does.

The helpers at the top are shared by the other scheduling test modules and the access walk.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.audit import context
from app.auth.models import Role, User
from app.extensions import db
from app.patients import details, onboarding
from app.patients import services as patients
from app.patients.checklist import StepStatus
from app.scheduling import availability, services
from app.scheduling.models import BOOKED, CANCELLED, Appointment, TimeHold
from app.scheduling.slots import Slot, monday_of
from tests.conftest import sign_in_as

LONDON = ZoneInfo("Europe/London")
ADDRESS = {"address_line1": "1 Harbour Road", "town": "Bristol", "postcode": "BS1 4DJ", "phone": "07700 900123"}


# Shared helpers ----------------------------------------------------------------------------------------

def user(persona) -> User:
    return db.session.get(User, persona.user_id)


def future_monday(weeks: int = 2) -> dt.date:
    """A Monday at least a week ahead, so the 24-hour and notice rules never get in the way."""
    return monday_of(dt.datetime.now(LONDON).date()) + dt.timedelta(weeks=weeks)


def ready(persona, *, with_details: bool = True):
    """Move a persona's patient to "eligible" (intake and identity done) and give the booking details."""
    patient = patients.get(persona.patient_id)
    if not onboarding.can_book(patient):
        onboarding.intake_submitted(patient, "eligible", [])
        onboarding.identity_verified(patient)
    if with_details and details.missing(patient, "booking"):
        details.update(patient, "booking", ADDRESS)
    return patient


def weekly(clinician, by, *, weekday: int = 0, start: str = "09:00", end: str = "12:00", minutes: int = 30,
           kind: str = "initial", valid_from: dt.date | None = None, valid_to: dt.date | None = None):
    return availability.add_pattern(availability.PatternData(
        clinician_id=clinician.user_id, weekday=weekday, start_time=dt.time.fromisoformat(start),
        end_time=dt.time.fromisoformat(end), slot_minutes=minutes, consultation_type=kind,
        valid_from=valid_from or dt.datetime.now(LONDON).date(), valid_to=valid_to), by=user(by))


def slot_id(clinician, day: dt.date, hhmm: str, kind: str = "initial", minutes: int = 30) -> str:
    start = dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=LONDON).astimezone(dt.UTC)
    return Slot(start, clinician.user_id, kind, minutes).id


def as_actor(persona):
    return context.bind(context.Actor(user_id=persona.user_id, role=persona.role.value))


def set_up_clinic(personas):
    """Monday mornings (initial, 30 min) and Monday afternoons (follow-up, 15 min) for the personas'
    clinician, and their patient ready to book."""
    weekly(personas["clinician"], personas["reception"])
    weekly(personas["clinician"], personas["reception"], start="13:00", end="15:00", minutes=15, kind="follow-up")
    ready(personas["patient"])
    return personas


@pytest.fixture
def clinic(ctx, personas):
    return set_up_clinic(personas)


# Booking ------------------------------------------------------------------------------------------------

def test_booking_holds_the_slot_and_moves_the_journey(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    appointment = services.book(patient, slot_id(clinic["clinician"], monday, "09:30"), by=user(clinic["patient"]))
    assert (appointment.status, appointment.consultation_type) == (BOOKED, "initial")
    assert appointment.starts_at.astimezone(LONDON).time() == dt.time(9, 30)
    assert appointment.ends_at - appointment.starts_at == dt.timedelta(minutes=30)
    assert patient.journey_state == "booked"
    cells = db.session.scalars(sa.select(TimeHold).where(TimeHold.appointment_id == appointment.id)).all()
    assert sorted((c.kind, c.starts_at) for c in cells)[0] == ("clinician", appointment.starts_at)
    assert len(cells) == 12, "six five-minute cells for the clinician and six for the patient"
    free = services.week([clinic["clinician"].user_id], "initial", monday, role="patient", zone=LONDON)
    monday_times = [s.starts_at.astimezone(LONDON).strftime("%H:%M") for s in dict(free.days)[monday]]
    assert "09:30" not in monday_times and "09:00" in monday_times


def test_booking_a_taken_slot_says_so_and_offers_the_nearest_free_times(clinic, world):
    monday = future_monday()
    other = world.patient("carol")
    ready(other)
    wanted = slot_id(clinic["clinician"], monday, "10:00")
    services.book(patients.get(clinic["patient"].patient_id), wanted, by=user(clinic["reception"]))
    with pytest.raises(services.SlotTaken) as refused:
        services.book(patients.get(other.patient_id), wanted, by=user(clinic["reception"]))
    assert str(refused.value) == "That time has just been taken."
    nearest = [s.starts_at.astimezone(LONDON) for s in refused.value.alternatives]
    assert [t.strftime("%H:%M") for t in nearest] == ["09:30", "10:30", "11:00"] or \
        [t.strftime("%H:%M") for t in nearest] == ["09:00", "09:30", "10:30"]
    assert all(t.date() == monday for t in nearest)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 1


@pytest.mark.parametrize(("when", "message"), [
    ("past", "That time has passed"),
    ("outside", "is not working at that time"),
    ("wrong_type", "That time is for a follow-up consultation, not an initial consultation"),
    ("tampered", "That time could not be found"),
    ("unknown_clinician", "That clinician is not taking bookings"),
    ("nonsense_date", "That time could not be found"),
])
def test_bad_slots_are_refused_clearly_and_write_nothing(clinic, when, message):
    monday = future_monday()
    last_monday = monday_of(dt.datetime.now(LONDON).date()) - dt.timedelta(weeks=1)
    weekly(clinic["clinician"], clinic["reception"], weekday=0, start="07:00", end="08:00",
           valid_from=last_monday, valid_to=last_monday)
    ids = {
        "past": slot_id(clinic["clinician"], last_monday, "07:00"),
        "outside": slot_id(clinic["clinician"], monday, "18:00"),
        "wrong_type": slot_id(clinic["clinician"], monday, "13:00", kind="initial"),
        "tampered": "7-20261203T0900Z-initial; DROP TABLE appointments",
        "unknown_clinician": slot_id(clinic["patient"], monday, "09:00"),
        "nonsense_date": f"{clinic['clinician'].user_id}-20261341T0900Z-initial",
    }
    patient = patients.get(clinic["patient"].patient_id)
    before = db.session.scalar(sa.select(sa.func.count()).select_from(TimeHold))
    with pytest.raises(services.BookingError, match=message):
        services.book(patient, ids[when], by=user(clinic["reception"]))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TimeHold)) == before == 0
    assert patient.journey_state == "eligible"


def test_the_consultation_type_asked_for_must_match_the_slot(clinic):
    patient = patients.get(clinic["patient"].patient_id)
    with pytest.raises(services.BookingError, match="That time is for an initial consultation, not a follow-up"):
        services.book(patient, slot_id(clinic["clinician"], future_monday(), "09:00"), by=user(clinic["patient"]),
                      consultation_type="follow-up")


def test_a_patient_cannot_hold_two_overlapping_appointments(clinic, world):
    monday = future_monday()
    second = world.staff(Role.CLINICIAN, "drtwo")
    weekly(second, clinic["reception"], start="09:15", end="12:15")
    patient = patients.get(clinic["patient"].patient_id)
    services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]))
    with pytest.raises(services.PatientBusy, match="This patient already has a consultation at that time"):
        services.book(patient, slot_id(second, monday, "09:15"), by=user(clinic["reception"]))
    with pytest.raises(services.BookingError, match="already booked at this time"):
        services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 1


def test_the_database_refuses_overlapping_holds_even_without_the_checks(clinic, world):
    """The keys decide, not the friendly checks: write a clashing hold straight into the table."""
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]))
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        db.session.execute(sa.insert(TimeHold), [{"kind": "clinician", "owner_id": booked.clinician_id,
                                                  "starts_at": booked.starts_at + dt.timedelta(minutes=15)}])
    db.session.rollback()
    clash = Appointment(patient_id=patient.id, clinician_id=booked.clinician_id, consultation_type="initial",
                        starts_at=booked.starts_at, ends_at=booked.ends_at, status=BOOKED)
    db.session.add(clash)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_patients_book_only_when_their_journey_allows_it(ctx, personas):
    weekly(personas["clinician"], personas["reception"])
    patient = patients.get(personas["patient"].patient_id)
    with pytest.raises(services.BookingError, match="once your health questions are sent"):
        services.book(patient, slot_id(personas["clinician"], future_monday(), "09:00"), by=user(personas["patient"]))
    with pytest.raises(services.BookingError, match="This patient cannot be booked yet"):
        services.book(patient, slot_id(personas["clinician"], future_monday(), "09:00"),
                      by=user(personas["reception"]))


def test_a_patient_books_only_for_themself_and_with_their_own_clinician(clinic, world):
    monday = future_monday()
    other_doctor_slot = slot_id(clinic["other_clinician"], monday, "09:00")
    weekly(clinic["other_clinician"], clinic["reception"])
    patient = patients.get(clinic["patient"].patient_id)
    with pytest.raises(services.BookingError, match="only with your own clinician"):
        services.book(patient, other_doctor_slot, by=user(clinic["patient"]))
    with pytest.raises(services.BookingError, match="only for yourself"):
        services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["other_patient"]))


def test_a_patient_without_address_cannot_book_but_reception_can(clinic, world):
    newcomer = world.patient("dora")
    patient = ready(newcomer, with_details=False)
    monday = future_monday()
    weekly(clinic["other_clinician"], clinic["reception"])
    with pytest.raises(services.BookingError, match="address and phone number"):
        services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(newcomer))
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]))
    assert booked.status == BOOKED
    assert patient.clinician_id == clinic["clinician"].user_id, "the clinician booked becomes responsible"


def test_patients_must_book_with_notice_and_within_the_horizon(clinic, app):
    patient = patients.get(clinic["patient"].patient_id)
    now = dt.datetime.combine(future_monday(), dt.time(8, 30), tzinfo=LONDON).astimezone(dt.UTC)
    soon = slot_id(clinic["clinician"], future_monday(), "09:00")
    with pytest.raises(services.BookingError, match="too soon to book online"):
        services.book(patient, soon, by=user(clinic["patient"]), now=now)
    services.book(patient, soon, by=user(clinic["reception"]), now=now)  # the front desk may
    far = future_monday(weeks=14)
    weekly(clinic["clinician"], clinic["reception"], weekday=1)
    with pytest.raises(services.BookingError, match="up to 12 weeks ahead"):
        services.book(patient, slot_id(clinic["clinician"], far + dt.timedelta(days=1), "09:00"),
                      by=user(clinic["patient"]))


# Moving and cancelling ---------------------------------------------------------------------------------

def test_rescheduling_keeps_the_appointment_and_frees_the_old_time(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["patient"]))
    moved = services.reschedule(booked, slot_id(clinic["clinician"], monday, "11:00"), by=user(clinic["patient"]))
    assert moved.id == booked.id and moved.sequence == 1
    assert moved.starts_at.astimezone(LONDON).time() == dt.time(11, 0)
    other = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]))
    assert other.id != booked.id, "the old time is free again"


def test_rescheduling_to_a_slot_of_another_type_is_refused(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["patient"]))
    with pytest.raises(services.BookingError, match="That time is for a follow-up consultation, not an initial"):
        services.reschedule(booked, slot_id(clinic["clinician"], monday, "09:30", kind="follow-up"),
                            by=user(clinic["reception"]))
    with pytest.raises(services.BookingError, match="That time is for a follow-up consultation, not an initial"):
        services.reschedule(booked, slot_id(clinic["clinician"], monday, "13:00"), by=user(clinic["reception"]))
    db.session.refresh(booked)
    assert booked.starts_at.astimezone(LONDON).time() == dt.time(9, 0) and booked.sequence == 0


def test_a_patient_cannot_cancel_within_24_hours_but_staff_can(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["patient"]))
    late = booked.starts_at - dt.timedelta(hours=23)
    with pytest.raises(services.BookingError, match="less than 24 hours before it starts"):
        services.cancel(booked, by=user(clinic["patient"]), now=late)
    with pytest.raises(services.BookingError, match="less than 24 hours before it starts"):
        services.reschedule(booked, slot_id(clinic["clinician"], monday, "10:00"), by=user(clinic["patient"]),
                            now=late)
    services.cancel(booked, by=user(clinic["reception"]), now=late)
    assert booked.status == CANCELLED


def test_cancelling_the_last_booking_returns_the_journey_and_frees_the_time(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    first = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["patient"]))
    second = services.book(patient, slot_id(clinic["clinician"], monday, "13:00", "follow-up", 15),
                           by=user(clinic["patient"]), consultation_type="follow-up")
    token = as_actor(clinic["patient"])
    try:
        services.cancel(first, by=user(clinic["patient"]))
        assert patient.journey_state == "booked", "another live booking remains"
        services.cancel(second, by=user(clinic["patient"]))
    finally:
        context.reset(token)
    assert patient.journey_state == "eligible"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TimeHold)) == 0
    with pytest.raises(services.BookingError, match="cannot be cancelled"):
        services.cancel(first, by=user(clinic["reception"]))


def test_the_state_machine_refuses_moves_out_of_turn(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    booked = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["patient"]))
    with pytest.raises(services.StateError, match="only once it has started"):
        services.mark(booked, "no_show", by=user(clinic["reception"]))
    with pytest.raises(services.StateError, match="opens 30 minutes before"):
        services.mark(booked, "checked_in", by=user(clinic["patient"]))
    with pytest.raises(services.StateError, match="cannot become"):
        services.mark(booked, "completed", by=user(clinic["clinician"]))
    with pytest.raises(services.StateError, match="own clinician"):
        services.mark(booked, "in_call", by=user(clinic["other_clinician"]))


# The dashboard ------------------------------------------------------------------------------------------

def test_checklist_step_asks_to_book_then_shows_the_booking(clinic, app):
    patient = patients.get(clinic["patient"].patient_id)
    with app.test_request_context():
        [step] = services.checklist_steps(patient)
        assert (step.title, step.status, step.action, step.order) == (
            "Book your consultation", StepStatus.TODO, "Book a consultation", 70)
        assert step.url == "/book"
        booked = services.book(patient, slot_id(clinic["clinician"], future_monday(), "09:30"),
                               by=user(clinic["patient"]))
        [step] = services.checklist_steps(patient)
    assert step.status is StepStatus.DONE
    day = future_monday()
    assert step.title == f"Consultation booked: Monday {day.day} {day:%B} at 09:30 with Clinician Person"
    assert services.upcoming_for_patient(patient) == [booked]


# Pages --------------------------------------------------------------------------------------------------

def _csrf(client, url: str) -> str:
    from tests.conftest import csrf_from

    return csrf_from(client.get(url).get_data(as_text=True))


def test_patient_books_from_the_week_view_and_lands_on_the_appointment(app, client, personas):
    with app.app_context():
        weekly(personas["clinician"], personas["reception"])
        ready(personas["patient"])
        wanted = slot_id(personas["clinician"], future_monday(), "10:30")
    sign_in_as(client, personas["patient"])
    week = client.get(f"/book?type=initial&week={future_monday().isoformat()}")
    page = week.get_data(as_text=True)
    assert week.status_code == 200 and wanted in page and "Times are shown in UK time" in page
    fragment = client.get(f"/book?type=initial&week={future_monday().isoformat()}", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="week"')
    token = _csrf(client, "/book")
    response = client.post(f"/book?type=initial&week={future_monday().isoformat()}",
                           data={"slot": wanted, "csrf_token": token})
    assert response.status_code == 302 and "/appointments/" in response.headers["Location"]
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "10:30" in shown and "Clinician Person" in shown and "Your consultation is booked" in shown


def test_booking_page_sends_a_patient_without_address_to_the_details_form(app, client, personas):
    with app.app_context():
        ready(personas["patient"], with_details=False)
    sign_in_as(client, personas["patient"])
    response = client.get("/book?type=initial")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/details/booking?next=")
    assert "next=/book?type%3Dinitial" in response.headers["Location"]


def test_booking_page_explains_when_booking_is_not_open_yet(client, personas):
    sign_in_as(client, personas["patient"])
    page = client.get("/book").get_data(as_text=True)
    assert "You can book a consultation once your health questions are sent" in page
    assert 'name="slot"' not in page


def test_a_taken_slot_answers_409_with_alternatives_on_the_page(app, client, personas):
    with app.app_context():
        weekly(personas["clinician"], personas["reception"])
        ready(personas["patient"])
        ready(personas["other_patient"])
        other = patients.get(personas["other_patient"].patient_id)
        wanted = slot_id(personas["clinician"], future_monday(), "10:00")
        services.book(other, wanted, by=user(personas["reception"]))
    sign_in_as(client, personas["patient"])
    response = client.post("/book?type=initial", data={"slot": wanted, "csrf_token": _csrf(client, "/book")})
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "That time has just been taken." in page and "The nearest free times are" in page
    assert slot_id(personas["clinician"], future_monday(), "10:30") in page


def test_a_tampered_slot_posted_to_the_page_is_a_400_with_a_message(app, client, personas):
    with app.app_context():
        weekly(personas["clinician"], personas["reception"])
        ready(personas["patient"])
    sign_in_as(client, personas["patient"])
    token = _csrf(client, "/book")
    response = client.post("/book?type=initial", data={"slot": "../../etc/passwd", "csrf_token": token})
    assert response.status_code == 400
    assert "That time could not be found" in response.get_data(as_text=True)
