"""What the patient receives: emails over real SMTP with an .ics that calendars replace, and reminders
exactly once each however many workers run."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import icalendar
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.scheduling import services
from app.worker import run_cycle
from tests.smtp import SMTPServer, free_port
from tests.test_scheduling import (
    LONDON,
    future_monday,
    ready,
    set_up_clinic,
    slot_id,
    user,
)

SMTP_PORT = free_port()
WORKERS = 8


@pytest.fixture
def app_config():
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": SMTP_PORT,
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": WORKERS + 2, "max_overflow": 0}}


@pytest.fixture
def clinic(ctx, personas):
    return set_up_clinic(personas)


@pytest.fixture
def smtp():
    server = SMTPServer(SMTP_PORT).start()
    yield server
    server.stop()


def about_appointments(smtp) -> list:
    return [m for m in smtp.messages if "consultation" in m["Subject"]]


def calendar_of(message) -> icalendar.Calendar:
    [part] = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    return icalendar.Calendar.from_ical(part.get_payload(decode=True))


def event_of(calendar: icalendar.Calendar) -> icalendar.Event:
    [event] = calendar.walk("VEVENT")
    return event


def body_of(message) -> str:
    return message.get_body(("plain",)).get_content() + message.get_body(("html",)).get_content()


def test_booking_moving_and_cancelling_send_one_calendar_event_that_updates(clinic, smtp):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    appointment = services.book(patient, slot_id(clinic["clinician"], monday, "09:30"), by=user(clinic["patient"]))
    run_cycle()
    [booked] = about_appointments(smtp)
    assert booked["To"] == clinic["patient"].email
    assert booked["Subject"] == "Your consultation is booked"
    first = calendar_of(booked)
    event = event_of(first)
    assert str(first["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == f"appointment-{appointment.id}@verity"
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == appointment.starts_at
    assert event.decoded("DTEND") - event.decoded("DTSTART") == dt.timedelta(minutes=30)
    assert "Clinician Person" in str(event["SUMMARY"])
    text = body_of(booked)
    assert f"Monday {monday.day} {monday:%B %Y} at 09:30 (UK time)" in text
    assert "Clinician Person" in text
    assert f"http://localhost/appointments/{appointment.id}" in text
    for private in ("Alice", "1980", "Initial consultation", "initial", "cannabis", "eligible"):
        assert private not in text, f"{private!r} in the email"

    services.reschedule(appointment, slot_id(clinic["clinician"], monday, "11:00"), by=user(clinic["reception"]))
    run_cycle()
    update = about_appointments(smtp)[1]
    assert update["Subject"] == "Your consultation has moved"
    second = event_of(calendar_of(update))
    assert str(calendar_of(update)["METHOD"]) == "REQUEST"
    assert str(second["UID"]) == str(event["UID"]), "the same event, so calendars replace it"
    assert int(second["SEQUENCE"]) == 1
    assert second.decoded("DTSTART").astimezone(LONDON).time() == dt.time(11, 0)

    services.cancel(appointment, by=user(clinic["reception"]))
    run_cycle()
    cancelled = about_appointments(smtp)[2]
    assert cancelled["Subject"] == "Your consultation is cancelled"
    third = calendar_of(cancelled)
    assert str(third["METHOD"]) == "CANCEL"
    assert str(event_of(third)["STATUS"]) == "CANCELLED"
    assert str(event_of(third)["UID"]) == str(event["UID"]) and int(event_of(third)["SEQUENCE"]) == 2
    assert len(about_appointments(smtp)) == 3
    run_cycle()
    assert len(about_appointments(smtp)) == 3, "nothing is sent twice"


def _reminders() -> list[str]:
    return list(db.session.scalars(sa.select(OutboxMessage.idempotency_key)
                                   .where(OutboxMessage.idempotency_key.like("%:reminder:%"))
                                   .order_by(OutboxMessage.id)))


def test_reminders_go_24_hours_and_1_hour_before_each_once(clinic, smtp):
    patient = patients.get(clinic["patient"].patient_id)
    start = dt.datetime.combine(future_monday(), dt.time(9, 0), tzinfo=LONDON).astimezone(dt.UTC)
    appointment = services.book(patient, slot_id(clinic["clinician"], future_monday(), "09:00"),
                                by=user(clinic["patient"]), now=start - dt.timedelta(days=5))
    assert services.send_due_reminders(now=start - dt.timedelta(hours=25)) == 0
    assert services.send_due_reminders(now=start - dt.timedelta(hours=23, minutes=59)) == 1
    assert services.send_due_reminders(now=start - dt.timedelta(hours=20)) == 0
    assert services.send_due_reminders(now=start - dt.timedelta(minutes=59)) == 1
    assert services.send_due_reminders(now=start - dt.timedelta(minutes=30)) == 0
    iso = start.isoformat()
    assert _reminders() == [f"appointment:{appointment.id}:reminder:24h:{iso}",
                            f"appointment:{appointment.id}:reminder:1h:{iso}"]
    run_cycle()
    subjects = [m["Subject"] for m in about_appointments(smtp)]
    assert subjects == ["Your consultation is booked", "Reminder: your consultation is in 24 hours",
                        "Reminder: your consultation is in 1 hour"]
    reminder = about_appointments(smtp)[2]
    assert "Clinician Person" in body_of(reminder) and not list(reminder.iter_attachments())


def test_a_reminder_whose_moment_passed_before_booking_is_not_sent(clinic):
    patient = patients.get(clinic["patient"].patient_id)
    start = dt.datetime.combine(future_monday(), dt.time(9, 0), tzinfo=LONDON).astimezone(dt.UTC)
    services.book(patient, slot_id(clinic["clinician"], future_monday(), "09:00"), by=user(clinic["reception"]),
                  now=start - dt.timedelta(hours=5))
    assert services.send_due_reminders(now=start - dt.timedelta(hours=4)) == 0
    assert services.send_due_reminders(now=start - dt.timedelta(minutes=55)) == 1
    assert [k.split(":")[3] for k in _reminders()] == ["1h"]


def test_when_both_are_due_at_once_only_the_nearest_is_sent(clinic):
    patient = patients.get(clinic["patient"].patient_id)
    start = dt.datetime.combine(future_monday(), dt.time(9, 0), tzinfo=LONDON).astimezone(dt.UTC)
    services.book(patient, slot_id(clinic["clinician"], future_monday(), "09:00"), by=user(clinic["reception"]),
                  now=start - dt.timedelta(days=3))
    assert services.send_due_reminders(now=start - dt.timedelta(minutes=40)) == 1  # the worker was down
    assert services.send_due_reminders(now=start - dt.timedelta(minutes=30)) == 0
    assert [k.split(":")[3] for k in _reminders()] == ["1h"]


def test_a_moved_appointment_is_reminded_of_its_new_time_and_a_cancelled_one_not_at_all(clinic):
    monday = future_monday()
    patient = patients.get(clinic["patient"].patient_id)
    start = dt.datetime.combine(monday, dt.time(9, 0), tzinfo=LONDON).astimezone(dt.UTC)
    appointment = services.book(patient, slot_id(clinic["clinician"], monday, "09:00"), by=user(clinic["reception"]),
                                now=start - dt.timedelta(days=5))
    assert services.send_due_reminders(now=start - dt.timedelta(hours=23)) == 1
    services.reschedule(appointment, slot_id(clinic["clinician"], monday, "11:00"), by=user(clinic["reception"]),
                        now=start - dt.timedelta(days=2))
    later = start + dt.timedelta(hours=2)
    assert services.send_due_reminders(now=later - dt.timedelta(hours=23)) == 1
    assert _reminders() == [f"appointment:{appointment.id}:reminder:24h:{start.isoformat()}",
                            f"appointment:{appointment.id}:reminder:24h:{later.isoformat()}"]
    services.cancel(appointment, by=user(clinic["reception"]), now=later - dt.timedelta(hours=2))
    assert services.send_due_reminders(now=later - dt.timedelta(minutes=50)) == 0


def test_several_workers_at_once_queue_each_reminder_exactly_once(app, clinic, world, smtp):
    monday = future_monday()
    start = dt.datetime.combine(monday, dt.time(9, 0), tzinfo=LONDON).astimezone(dt.UTC)
    people = [clinic["patient"], *(world.patient(f"w{i}") for i in range(4))]
    appointments = []
    for person, hhmm in zip(people, ("09:00", "09:30", "10:00", "10:30", "11:00"), strict=True):
        patient = ready(person)
        appointments.append(services.book(patient, slot_id(clinic["clinician"], monday, hhmm),
                                          by=user(clinic["reception"]), now=start - dt.timedelta(days=4)))
    db.session.commit()
    moment = start - dt.timedelta(hours=21)  # past every 24-hour moment (09:00 to 11:00), before any 1-hour one
    begin = threading.Barrier(WORKERS)

    def worker(_: int) -> int:
        with app.app_context():
            try:
                begin.wait(timeout=30)
                return services.send_due_reminders(now=moment)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        counts = list(pool.map(worker, range(WORKERS)))
    assert sum(counts) == len(appointments), counts
    keys = _reminders()
    assert len(keys) == len(set(keys)) == len(appointments)
    run_cycle()
    reminders = [m for m in smtp.messages if m["Subject"].startswith("Reminder")]
    assert len(reminders) == len(appointments)
