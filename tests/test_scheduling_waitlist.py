"""The waiting list: a freed time is offered, held for a while, to the first patient it helps."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.scheduling import services, waitlist
from app.scheduling.models import OFFER_EXPIRED, OFFER_OPEN, WaitlistOffer
from tests.conftest import csrf_from, sign_in_as
from tests.test_scheduling import LONDON, future_monday, ready, set_up_clinic, slot_id, user


@pytest.fixture
def clinic(ctx, personas):
    return set_up_clinic(personas)


@pytest.fixture
def queue(clinic, world):
    """Three patients of the clinician: an early booking, and two waiting for something earlier than theirs."""
    monday = future_monday()
    later = monday + dt.timedelta(weeks=2)
    people = [world.patient(name, clinician=clinic["clinician"]) for name in ("first", "second")]
    db.session.commit()  # end this session's read snapshot: the new patients were made in another session
    first, second = (ready(person) for person in people)
    early = patients.get(clinic["patient"].patient_id)
    reception = user(clinic["reception"])
    cancelled = services.book(early, slot_id(clinic["clinician"], monday, "09:00"), by=reception)
    waiting = {p.id: services.book(p, slot_id(clinic["clinician"], later, hhmm), by=reception)
               for p, hhmm in ((first, "09:00"), (second, "09:30"))}
    waitlist.join(first, "initial")
    waitlist.join(second, "initial")
    return clinic, cancelled, first, second, waiting


def _offers() -> list[WaitlistOffer]:
    return list(db.session.scalars(sa.select(WaitlistOffer).order_by(WaitlistOffer.id)))


def test_a_cancellation_offers_the_time_to_the_first_in_line_and_holds_it(queue, world):
    clinic, cancelled, first, _, _ = queue
    services.cancel(cancelled, by=user(clinic["reception"]))
    [offer] = _offers()
    assert offer.status == OFFER_OPEN and offer.starts_at == cancelled.starts_at
    assert waitlist.get_entry(offer.entry_id).patient_id == first.id
    assert offer.expires_at - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=120)
    outsider_persona = world.patient("outsider")
    db.session.commit()
    outsider = ready(outsider_persona)
    with pytest.raises(services.SlotTaken):
        services.book(outsider, slot_id(clinic["clinician"], future_monday(), "09:00"), by=user(clinic["reception"]))
    keys = db.session.scalars(sa.select(OutboxMessage.idempotency_key)).all()
    assert f"waitlist-offer:{offer.id}" in keys


def test_accepting_moves_the_patients_booking_to_the_earlier_time(queue):
    clinic, cancelled, first, second, waiting = queue
    services.cancel(cancelled, by=user(clinic["reception"]))
    [offer] = _offers()
    old_id, old_start = waiting[first.id].id, waiting[first.id].starts_at
    moved = waitlist.accept(offer, by=patients.user_of(first))
    assert moved.id == old_id, "the same appointment, brought forward"
    assert moved.starts_at == cancelled.starts_at and moved.sequence == 1
    assert waitlist.entries_of(first) == []
    # The time first gave up is earlier than second's: it goes to second, next in line.
    freed = _offers()[-1]
    assert (freed.starts_at, waitlist.get_entry(freed.entry_id).patient_id) == (old_start, second.id)


def test_declining_or_letting_it_expire_passes_it_down_the_list(queue):
    clinic, cancelled, first, second, _ = queue
    services.cancel(cancelled, by=user(clinic["reception"]))
    [offer] = _offers()
    waitlist.decline(offer, by=patients.user_of(first))
    assert [o.status for o in _offers()] == ["declined", OFFER_OPEN]
    second_offer = _offers()[1]
    assert waitlist.get_entry(second_offer.entry_id).patient_id == second.id
    assert waitlist.expire_offers(now=second_offer.expires_at + dt.timedelta(seconds=1)) == 1
    assert _offers()[1].status == OFFER_EXPIRED
    assert len(_offers()) == 2, "nobody else wants it: it is simply free again"
    free = services.week([clinic["clinician"].user_id], "initial", future_monday(), role="reception", zone=LONDON)
    assert cancelled.starts_at in [s.starts_at for s in dict(free.days)[future_monday()]]


def test_an_expired_offer_cannot_be_taken(queue):
    clinic, cancelled, first, _, _ = queue
    services.cancel(cancelled, by=user(clinic["reception"]))
    [offer] = _offers()
    with pytest.raises(waitlist.WaitlistError, match="This offer has ended"):
        waitlist.accept(offer, by=patients.user_of(first), now=offer.expires_at + dt.timedelta(minutes=1))
    with pytest.raises(waitlist.WaitlistError, match="for someone else"):
        waitlist.accept(offer, by=user(clinic["patient"]))


def test_nobody_is_offered_a_time_later_than_the_one_they_have(queue, world):
    clinic, _, _, second, waiting = queue
    services.cancel(waiting[second.id], by=user(clinic["reception"]))  # frees a time after first's
    assert _offers() == []


def test_the_patient_answers_an_offer_on_the_waiting_list_page(app, client, personas, world):
    with app.app_context():
        set_up_clinic(personas)
        monday = future_monday()
        early_id = services.book(patients.get(personas["patient"].patient_id),
                                 slot_id(personas["clinician"], monday, "09:00"), by=user(personas["reception"])).id
    keen = world.patient("keen", clinician=personas["clinician"])
    with app.app_context():
        ready(keen)
    client_keen = app.test_client()
    sign_in_as(client_keen, keen)
    page = client_keen.get("/waiting-list").get_data(as_text=True)
    token = csrf_from(page)
    joined = client_keen.post("/waiting-list", data={"action": "join", "consultation_type": "initial",
                                                     "csrf_token": token})
    assert joined.status_code == 302
    with app.app_context():
        services.cancel(services.get(early_id), by=user(personas["reception"]))
    offer_page = client_keen.get("/waiting-list").get_data(as_text=True)
    assert "An earlier time is free" in offer_page and "Take this time" in offer_page
    with app.app_context():
        [offer] = _offers()
    other = app.test_client()
    sign_in_as(other, personas["other_patient"])
    stolen = other.post(f"/waiting-list/offers/{offer.id}",
                        data={"answer": "accept", "csrf_token": csrf_from(other.get("/waiting-list").get_data(
                            as_text=True))})
    assert stolen.status_code == 403
    taken = client_keen.post(f"/waiting-list/offers/{offer.id}", data={"answer": "accept", "csrf_token": token})
    assert taken.status_code == 302 and "/appointments/" in taken.headers["Location"]
    with app.app_context():
        [booked] = services.upcoming_for_patient(patients.get(keen.patient_id))
        assert booked.starts_at.astimezone(LONDON).time() == dt.time(9, 0)
