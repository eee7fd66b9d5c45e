"""Fifty people click the same time at once: exactly one appointment, 49 clear refusals, on both engines.

Each booking runs in its own thread with its own app context, session and database connection (the
pool is sized so all fifty are connected at once). A barrier releases them together.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.audit import context
from app.auth.models import Role
from app.extensions import db
from app.patients import services as patients
from app.scheduling import services
from app.scheduling.models import Appointment, TimeHold
from tests.conftest import csrf_from, sign_in_as
from tests.test_scheduling import future_monday, ready, slot_id, user, weekly

CLIENTS = 50


@pytest.fixture
def app_config():
    return {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": CLIENTS + 5, "max_overflow": 0, "pool_timeout": 60}}


@pytest.fixture
def crowd(app, world):
    """A clinician with Monday mornings, reception, and fifty patients ready to book."""
    clinician = world.staff(Role.CLINICIAN, "clinician")
    reception = world.staff(Role.RECEPTION)
    people = [world.patient(f"p{i}") for i in range(CLIENTS)]
    with app.app_context():
        weekly(clinician, reception)
        for person in people:
            ready(person)
    return clinician, reception, people


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.mark.parametrize("checks", ["with the friendly checks", "with the checks skipped"])
def test_fifty_concurrent_bookings_of_one_slot_make_exactly_one_appointment(app, crowd, monkeypatch, checks):
    """Skipping the checks made before writing shows that the database's keys alone decide."""
    if checks == "with the checks skipped":
        from app.scheduling import booking

        monkeypatch.setattr(booking, "_check_free", lambda *args, **kwargs: None)
    clinician, reception, people = crowd
    wanted = slot_id(clinician, future_monday(), "10:00")
    start = threading.Barrier(CLIENTS)

    def attempt(person):
        with app.app_context():
            token = context.bind(context.Actor(user_id=reception.user_id, role="reception"))
            try:
                patient = patients.get(person.patient_id)
                by = user(reception)
                db.session.commit()  # end the read transaction: every thread starts its booking together
                start.wait(timeout=30)
                try:
                    appointment = services.book(patient, wanted, by=by)
                    return ("booked", appointment.id, [])
                except services.BookingError as exc:
                    return (type(exc).__name__, str(exc), [s.id for s in exc.alternatives])
            finally:
                context.reset(token)
                db.session.remove()

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        outcomes = list(pool.map(attempt, people))

    booked = [o for o in outcomes if o[0] == "booked"]
    refused = [o for o in outcomes if o[0] != "booked"]
    assert len(booked) == 1, outcomes
    assert len(refused) == CLIENTS - 1
    assert {(kind, message) for kind, message, _ in refused} == {("SlotTaken", "That time has just been taken.")}
    assert all(len(alternatives) == 3 and wanted not in alternatives for _, _, alternatives in refused)
    assert _count(app, Appointment) == 1
    assert _count(app, TimeHold) == 12, "one appointment's cells, nothing left behind by the losers"
    with app.app_context():
        winner = db.session.get(Appointment, booked[0][1])
        assert patients.get(winner.patient_id).journey_state == "booked"
        others = [patients.get(p.patient_id).journey_state for p in people if p.patient_id != winner.patient_id]
        assert set(others) == {"eligible"}, "the losers' journeys did not move"


def test_fifty_concurrent_http_bookings_of_one_slot(app, crowd):
    """The same through the booking page: fifty signed-in patients post the same time."""
    clinician, _, people = crowd
    with app.app_context():
        for person in people:  # patients book with their own clinician
            patients.assign_clinician(patients.get(person.patient_id), user(clinician))
    wanted = slot_id(clinician, future_monday(), "11:00")
    url = f"/book?type=initial&week={future_monday().isoformat()}"
    clients = []
    for person in people:
        client = app.test_client()
        sign_in_as(client, person)
        clients.append((client, csrf_from(client.get("/book").get_data(as_text=True))))
    start = threading.Barrier(CLIENTS)

    def post(pair):
        client, token = pair
        start.wait(timeout=30)
        response = client.post(url, data={"slot": wanted, "csrf_token": token})
        return response.status_code, response.get_data(as_text=True)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(post, clients))

    codes = sorted(code for code, _ in answers)
    assert codes == [302] + [409] * (CLIENTS - 1), codes
    assert all("That time has just been taken." in body and "The nearest free times are" in body
               for code, body in answers if code == 409)
    assert _count(app, Appointment) == 1
