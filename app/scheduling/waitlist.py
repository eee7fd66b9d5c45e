"""The waiting list: patients who would like an earlier time, offered freed times in the order they asked.

When a booked time is freed (a cancellation, or a move away from it), the first patient on the list for
that kind of consultation whom it would help is offered it for a limited time. The offer holds the
clinician's time as a booking would, so nobody else takes it meanwhile. Accepting books it (or moves
the patient's booking to it); declining or letting it expire offers it to the next in line.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import User
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import onboarding
from app.patients import services as patients
from app.patients.models import Patient
from app.scheduling import availability, booking, notify, settings
from app.scheduling.errors import SchedulingError
from app.scheduling.models import (
    BOOKED,
    BOOKED_FROM_LIST,
    OFFER_ACCEPTED,
    OFFER_DECLINED,
    OFFER_EXPIRED,
    OFFER_OPEN,
    OFFERED,
    WAITING,
    WITHDRAWN,
    Appointment,
    TimeHold,
    WaitlistEntry,
    WaitlistOffer,
)
from app.scheduling.slots import Slot, SlotRef


class WaitlistError(SchedulingError):
    pass


def entries_of(patient: Patient) -> list[WaitlistEntry]:
    return list(db.session.scalars(sa.select(WaitlistEntry).where(
        WaitlistEntry.patient_id == patient.id, WaitlistEntry.status.in_((WAITING, OFFERED)))
        .order_by(WaitlistEntry.created_at)))


def open_offers(patient: Patient) -> list[WaitlistOffer]:
    return list(db.session.scalars(sa.select(WaitlistOffer).join(WaitlistEntry).where(
        WaitlistEntry.patient_id == patient.id, WaitlistOffer.status == OFFER_OPEN,
        WaitlistOffer.expires_at > utcnow()).order_by(WaitlistOffer.starts_at)))


def get_offer(offer_id: int) -> WaitlistOffer | None:
    return db.session.get(WaitlistOffer, offer_id)


def get_entry(entry_id: int) -> WaitlistEntry | None:
    return db.session.get(WaitlistEntry, entry_id)


def join(patient: Patient, consultation_type: str) -> WaitlistEntry:
    """Put the patient on the list for earlier times of this kind (with their clinician, if they have one)."""
    if consultation_type not in settings.consultation_types():
        raise WaitlistError("Choose a type of consultation", "consultation_type")
    if not onboarding.can_book(patient):
        raise WaitlistError(booking.not_ready_message(patient, "patient"))
    with transaction() as session:
        for entry in entries_of(patient):
            if entry.consultation_type == consultation_type:
                return entry
        current = next((a for a in booking.upcoming_for(patient) if a.consultation_type == consultation_type
                        and a.status == BOOKED), None)
        entry = WaitlistEntry(patient_id=patient.id, consultation_type=consultation_type,
                              clinician_id=patient.clinician_id, appointment_id=current.id if current else None)
        session.add(entry)
        session.flush()
        audit.record("waitlist.joined", subject=("waitlist_entry", entry.id), patient_id=patient.id,
                     detail={"consultation_type": consultation_type})
    return entry


def leave(entry: WaitlistEntry) -> None:
    with transaction():
        for offer in db.session.scalars(sa.select(WaitlistOffer).where(
                WaitlistOffer.entry_id == entry.id, WaitlistOffer.status == OFFER_OPEN)):
            _close(offer, OFFER_DECLINED)
        entry.status = WITHDRAWN
        audit.record("waitlist.left", subject=("waitlist_entry", entry.id), patient_id=entry.patient_id)


def withdraw_for_appointment(appointment: Appointment) -> None:
    """A cancelled booking takes its wish to be brought forward with it."""
    with transaction():
        for entry in db.session.scalars(sa.select(WaitlistEntry).where(
                WaitlistEntry.appointment_id == appointment.id, WaitlistEntry.status.in_((WAITING, OFFERED)))):
            leave(entry)


def _would_help(entry: WaitlistEntry, slot: Slot, now: dt.datetime) -> Patient | None:
    if entry.clinician_id not in (None, slot.clinician_id):
        return None
    patient = patients.get(entry.patient_id)
    if patient is None or not onboarding.can_book(patient):
        return None
    upcoming = booking.upcoming_for(patient, now=now)
    if entry.appointment_id is not None:
        current = next((a for a in upcoming if a.id == entry.appointment_id), None)
        if current is not None and current.starts_at <= slot.starts_at:
            return None  # not earlier than what they have
    others = [a for a in upcoming if a.id != entry.appointment_id]
    if any(slot.overlaps(a.starts_at, a.ends_at) for a in others):
        return None
    return patient


def offer_freed(slot: Slot, *, now: dt.datetime | None = None) -> WaitlistOffer | None:
    """Offer a freed time to the first on the list it would help, in the caller's transaction."""
    now = now or utcnow()
    if slot.starts_at < now + dt.timedelta(minutes=settings.patient_notice_minutes()):
        return None
    exact, _ = availability.find_slot(SlotRef(slot.clinician_id, slot.starts_at, slot.consultation_type))
    if exact is None:
        return None  # no longer working time: nothing to offer
    with transaction() as session:
        already = sa.select(WaitlistOffer.entry_id).where(
            WaitlistOffer.clinician_id == exact.clinician_id, WaitlistOffer.starts_at == exact.starts_at)
        queue = session.scalars(sa.select(WaitlistEntry).where(
            WaitlistEntry.status == WAITING, WaitlistEntry.consultation_type == exact.consultation_type,
            WaitlistEntry.id.not_in(already)).order_by(WaitlistEntry.created_at, WaitlistEntry.id))
        for entry in queue:
            patient = _would_help(entry, exact, now)
            if patient is None:
                continue
            expires = min(now + dt.timedelta(minutes=settings.waitlist_offer_minutes()),
                          exact.starts_at - dt.timedelta(minutes=settings.patient_notice_minutes()))
            offer = WaitlistOffer(entry_id=entry.id, clinician_id=exact.clinician_id,
                                  consultation_type=exact.consultation_type, starts_at=exact.starts_at,
                                  ends_at=exact.ends_at, expires_at=expires, created_at=now)
            session.add(offer)
            session.flush()
            held = availability.held_cells([exact.clinician_id], exact.starts_at, exact.ends_at)
            cells = availability.cells(exact.starts_at, exact.ends_at)
            if any((exact.clinician_id, c) in held for c in cells):
                session.delete(offer)
                return None  # taken meanwhile: nothing to offer
            session.execute(sa.insert(TimeHold), [
                {"kind": "clinician", "owner_id": exact.clinician_id, "starts_at": c, "offer_id": offer.id}
                for c in cells])
            entry.status = OFFERED
            audit.record("waitlist.offered", subject=("waitlist_offer", offer.id), patient_id=patient.id,
                         detail={"clinician_id": exact.clinician_id, "starts_at": exact.starts_at.isoformat()})
            notify.offer(offer, patients.user_of(patient).email)
            return offer
    return None


def _close(offer: WaitlistOffer, status: str) -> bool:
    """Close an open offer (conditional UPDATE: once, however many workers or clicks), free its time."""
    with transaction() as session:
        changed = session.execute(sa.update(WaitlistOffer).where(
            WaitlistOffer.id == offer.id, WaitlistOffer.status == OFFER_OPEN).values(status=status)
            .execution_options(synchronize_session=False)).rowcount
        if not changed:
            return False
        session.execute(sa.delete(TimeHold).where(TimeHold.offer_id == offer.id))
        entry = db.session.get(WaitlistEntry, offer.entry_id)
        if entry.status == OFFERED:
            entry.status = BOOKED_FROM_LIST if status == OFFER_ACCEPTED else WAITING
        audit.record(f"waitlist.offer_{status}", subject=("waitlist_offer", offer.id), patient_id=entry.patient_id)
    db.session.refresh(offer)
    return True


def _slot_of(offer: WaitlistOffer) -> Slot:
    return Slot(offer.starts_at, offer.clinician_id, offer.consultation_type,
                int((offer.ends_at - offer.starts_at).total_seconds() // 60))


def accept(offer: WaitlistOffer, *, by: User, now: dt.datetime | None = None) -> Appointment:
    """Book the offered time, or move the patient's booking to it; all or nothing."""
    now = now or utcnow()
    entry = db.session.get(WaitlistEntry, offer.entry_id)
    patient = patients.get(entry.patient_id)
    if patient.user_id != by.id:
        raise WaitlistError("This offer is for someone else.")
    if offer.status != OFFER_OPEN or offer.expires_at <= now:
        raise WaitlistError("This offer has ended. You are still on the waiting list.")
    slot = _slot_of(offer)
    with transaction():
        if not _close(offer, OFFER_ACCEPTED):
            raise WaitlistError("This offer has ended. You are still on the waiting list.")
        current = db.session.get(Appointment, entry.appointment_id) if entry.appointment_id else None
        if current is not None and current.status == BOOKED and current.ends_at > now:
            appointment = booking.reschedule(current, slot.id, by=by, now=now, from_offer=True)
        else:
            appointment = booking.book(patient, slot.id, by=by, now=now)
        entry.status = BOOKED_FROM_LIST
    return appointment


def decline(offer: WaitlistOffer, *, by: User, now: dt.datetime | None = None) -> None:
    entry = db.session.get(WaitlistEntry, offer.entry_id)
    if patients.get(entry.patient_id).user_id != by.id:
        raise WaitlistError("This offer is for someone else.")
    with transaction():
        if _close(offer, OFFER_DECLINED):
            offer_freed(_slot_of(offer), now=now)


def expire_offers(now: dt.datetime | None = None) -> int:
    """Close offers whose time ran out and offer each time to the next in line. Safe with several workers:
    each offer is closed by one conditional UPDATE."""
    now = now or utcnow()
    due = list(db.session.scalars(sa.select(WaitlistOffer).where(
        WaitlistOffer.status == OFFER_OPEN, WaitlistOffer.expires_at <= now).order_by(WaitlistOffer.expires_at)))
    closed = 0
    for offer in due:
        with transaction():
            if _close(offer, OFFER_EXPIRED):
                closed += 1
                offer_freed(_slot_of(offer), now=now)
    return closed
