"""Clinicians' availability: weekly patterns and exceptions, edited by the front desk, and the free
slots they give once the time held by appointments (and waiting-list offers) is taken out.

A change to availability never cancels anything: appointments that no longer fall inside it are
listed (`outside_availability`) for the staff to move.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.scheduling import display, settings
from app.scheduling.errors import SchedulingError
from app.scheduling.models import (
    CELL_MINUTES,
    EXTRA,
    LEAVE,
    UPCOMING,
    Appointment,
    AvailabilityException,
    AvailabilityPattern,
    TimeHold,
)
from app.scheduling.slots import Slot, SlotRef, day_bounds, generate, local_span, patterns_conflict, times_overlap

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_SLOT_MINUTES = 240


class AvailabilityError(SchedulingError):
    """A refused change to availability."""


# Clinicians ---------------------------------------------------------------------------------

def clinicians() -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.role == Role.CLINICIAN, User.active)
                                   .order_by(User.full_name)))


def clinician(clinician_id: int | None) -> User | None:
    user = db.session.get(User, clinician_id) if clinician_id else None
    return user if user is not None and user.role is Role.CLINICIAN and user.active else None


# Patterns and exceptions --------------------------------------------------------------------

@dataclass(frozen=True)
class PatternData:
    clinician_id: int
    weekday: int
    start_time: dt.time
    end_time: dt.time
    slot_minutes: int
    consultation_type: str
    valid_from: dt.date
    valid_to: dt.date | None


def patterns_of(clinician_id: int, *, current_on: dt.date | None = None) -> list[AvailabilityPattern]:
    query = sa.select(AvailabilityPattern).where(AvailabilityPattern.clinician_id == clinician_id)
    if current_on is not None:
        query = query.where(sa.or_(AvailabilityPattern.valid_to.is_(None), AvailabilityPattern.valid_to >= current_on))
    return list(db.session.scalars(query.order_by(AvailabilityPattern.weekday, AvailabilityPattern.start_time,
                                                  AvailabilityPattern.valid_from)))


def exceptions_of(clinician_id: int, *, ending_after: dt.datetime | None = None) -> list[AvailabilityException]:
    query = sa.select(AvailabilityException).where(AvailabilityException.clinician_id == clinician_id)
    if ending_after is not None:
        query = query.where(AvailabilityException.ends_at > ending_after)
    return list(db.session.scalars(query.order_by(AvailabilityException.starts_at)))


def get_pattern(pattern_id: int) -> AvailabilityPattern | None:
    return db.session.get(AvailabilityPattern, pattern_id)


def get_exception(exception_id: int) -> AvailabilityException | None:
    return db.session.get(AvailabilityException, exception_id)


def describe_pattern(p: AvailabilityPattern | PatternData) -> str:
    until = f" to {display.day(p.valid_to)}" if p.valid_to else ""
    return (f"{WEEKDAYS[p.weekday]} {p.start_time:%H:%M} to {p.end_time:%H:%M} "
            f"({settings.type_label(p.consultation_type).lower()}s, {p.slot_minutes} min, "
            f"from {display.day(p.valid_from)}{until})")


def describe_exception(e: AvailabilityException) -> str:
    zone = settings.clinic_zone()
    start, end = e.starts_at.astimezone(zone), e.ends_at.astimezone(zone)
    what = "Leave" if e.kind == LEAVE else "Extra session"
    if start.date() == end.date():
        span = f"{display.day(start.date())} {start:%H:%M} to {end:%H:%M}"
    else:
        span = f"{display.day(start.date())} {start:%H:%M} to {display.day(end.date())} {end:%H:%M}"
    return f"{what}: {span}"


def _on_grid(value: dt.time) -> bool:
    return value.minute % CELL_MINUTES == 0 and value.second == 0 and value.microsecond == 0


def _check_slot_shape(start: dt.time, end: dt.time, minutes: int, consultation_type: str) -> None:
    if consultation_type not in settings.consultation_types():
        raise AvailabilityError("Choose a consultation type", "consultation_type")
    if not end > start:
        raise AvailabilityError("The end time must be after the start time", "end_time")
    if not (CELL_MINUTES <= minutes <= MAX_SLOT_MINUTES and minutes % CELL_MINUTES == 0):
        raise AvailabilityError(f"Slot length must be a multiple of {CELL_MINUTES} minutes, up to {MAX_SLOT_MINUTES}",
                                "slot_minutes")
    if not (_on_grid(start) and _on_grid(end)):
        raise AvailabilityError(f"Times must be on a {CELL_MINUTES}-minute boundary, like 09:00 or 09:15",
                                "start_time")
    length = (dt.datetime.combine(dt.date.min, end) - dt.datetime.combine(dt.date.min, start)).total_seconds() / 60
    if length < minutes:
        raise AvailabilityError(f"A {minutes}-minute slot does not fit between {start:%H:%M} and {end:%H:%M}",
                                "end_time")


def check_pattern(data: PatternData, *, exclude_id: int | None = None) -> None:
    """Refuse a pattern that is malformed or overlaps another of the clinician's, naming the conflict."""
    if not 0 <= data.weekday <= 6:
        raise AvailabilityError("Choose a day of the week", "weekday")
    _check_slot_shape(data.start_time, data.end_time, data.slot_minutes, data.consultation_type)
    if data.valid_to is not None and data.valid_to < data.valid_from:
        raise AvailabilityError("The last day must be on or after the first day", "valid_to")
    for other in patterns_of(data.clinician_id):
        if other.id != exclude_id and patterns_conflict(data, other):
            raise AvailabilityError(f"This overlaps the pattern {describe_pattern(other)}. Change the times or "
                                    "days, or end that pattern first.")
    zone = settings.clinic_zone()
    for extra in exceptions_of(data.clinician_id):
        if extra.kind != EXTRA:
            continue
        day, start, end = local_span(extra, zone)
        in_dates = data.valid_from <= day and (data.valid_to is None or day <= data.valid_to)
        if in_dates and day.weekday() == data.weekday and times_overlap(start, end, data.start_time, data.end_time):
            raise AvailabilityError(f"This overlaps the {describe_exception(extra).lower()}. Change the times, "
                                    "or remove that extra session first.")


def add_pattern(data: PatternData, *, by: User) -> AvailabilityPattern:
    with transaction() as session:
        check_pattern(data)
        pattern = AvailabilityPattern(**data.__dict__, created_by=by.id)
        session.add(pattern)
        session.flush()
        audit.record("availability.pattern_added", subject=("availability_pattern", pattern.id),
                     detail={"clinician_id": data.clinician_id, "pattern": describe_pattern(pattern)})
    return pattern


def update_pattern(pattern: AvailabilityPattern, data: PatternData, *, by: User) -> None:
    with transaction():
        check_pattern(data, exclude_id=pattern.id)
        before = describe_pattern(pattern)
        for name, value in data.__dict__.items():
            setattr(pattern, name, value)
        audit.record("availability.pattern_changed", subject=("availability_pattern", pattern.id),
                     detail={"clinician_id": pattern.clinician_id, "before": before, "after": describe_pattern(data),
                             "by": by.id})


def delete_pattern(pattern: AvailabilityPattern, *, by: User) -> None:
    with transaction() as session:
        detail = {"clinician_id": pattern.clinician_id, "pattern": describe_pattern(pattern), "by": by.id}
        pattern_id = pattern.id
        session.delete(pattern)
        audit.record("availability.pattern_removed", subject=("availability_pattern", pattern_id), detail=detail)


def add_exception(*, clinician_id: int, kind: str, starts_at: dt.datetime, ends_at: dt.datetime, by: User,
                  slot_minutes: int | None = None, consultation_type: str | None = None,
                  note: str | None = None) -> AvailabilityException:
    if kind not in (LEAVE, EXTRA):
        raise AvailabilityError("Choose leave or an extra session", "kind")
    if not ends_at > starts_at:
        raise AvailabilityError("The end must be after the start", "end_time")
    zone = settings.clinic_zone()
    if kind == EXTRA:
        start_local, end_local = starts_at.astimezone(zone), ends_at.astimezone(zone)
        if start_local.date() != end_local.date():
            raise AvailabilityError("An extra session starts and ends on the same day", "end_time")
        _check_slot_shape(start_local.time(), end_local.time(), slot_minutes or 0, consultation_type or "")
        _check_extra_conflicts(clinician_id, starts_at, ends_at)
    else:
        slot_minutes = consultation_type = None
    with transaction() as session:
        exception = AvailabilityException(clinician_id=clinician_id, kind=kind, starts_at=starts_at, ends_at=ends_at,
                                          slot_minutes=slot_minutes, consultation_type=consultation_type,
                                          note=(note or "").strip()[:200] or None, created_by=by.id)
        session.add(exception)
        session.flush()
        audit.record(f"availability.{kind}_added", subject=("availability_exception", exception.id),
                     detail={"clinician_id": clinician_id, "span": describe_exception(exception)})
    return exception


def _check_extra_conflicts(clinician_id: int, starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    zone = settings.clinic_zone()
    day = starts_at.astimezone(zone).date()
    start, end = starts_at.astimezone(zone).time(), ends_at.astimezone(zone).time()
    for pattern in patterns_of(clinician_id):
        applies = pattern.weekday == day.weekday() and pattern.valid_from <= day and (
            pattern.valid_to is None or day <= pattern.valid_to)
        if applies and times_overlap(start, end, pattern.start_time, pattern.end_time):
            raise AvailabilityError(f"This overlaps the pattern {describe_pattern(pattern)}: that time is already "
                                    "working time.")
    for other in exceptions_of(clinician_id):
        if other.kind == EXTRA and other.starts_at < ends_at and starts_at < other.ends_at:
            raise AvailabilityError(f"This overlaps the {describe_exception(other).lower()}.")


def delete_exception(exception: AvailabilityException, *, by: User) -> None:
    with transaction() as session:
        detail = {"clinician_id": exception.clinician_id, "span": describe_exception(exception), "by": by.id}
        exception_id, kind = exception.id, exception.kind
        session.delete(exception)
        audit.record(f"availability.{kind}_removed", subject=("availability_exception", exception_id), detail=detail)


# Slots --------------------------------------------------------------------------------------

def all_slots(clinician_ids: Iterable[int], first_day: dt.date, last_day: dt.date) -> list[Slot]:
    """Every slot the patterns and exceptions give, free or not."""
    ids = list(clinician_ids)
    if not ids:
        return []
    zone = settings.clinic_zone()
    patterns = db.session.scalars(sa.select(AvailabilityPattern).where(
        AvailabilityPattern.clinician_id.in_(ids), AvailabilityPattern.valid_from <= last_day,
        sa.or_(AvailabilityPattern.valid_to.is_(None), AvailabilityPattern.valid_to >= first_day)))
    start, _ = day_bounds(first_day, zone)
    _, end = day_bounds(last_day, zone)
    exceptions = db.session.scalars(sa.select(AvailabilityException).where(
        AvailabilityException.clinician_id.in_(ids), AvailabilityException.starts_at < end,
        AvailabilityException.ends_at > start))
    return generate(list(patterns), list(exceptions), zone, first_day, last_day)


def held_cells(clinician_ids: Iterable[int], start: dt.datetime, end: dt.datetime, *,
               ignore_appointment: int | None = None, ignore_offer: int | None = None) -> set[tuple[int, dt.datetime]]:
    query = sa.select(TimeHold.owner_id, TimeHold.starts_at).where(
        TimeHold.kind == "clinician", TimeHold.owner_id.in_(list(clinician_ids)),
        TimeHold.starts_at >= start, TimeHold.starts_at < end)
    if ignore_appointment is not None:
        query = query.where(sa.or_(TimeHold.appointment_id.is_(None), TimeHold.appointment_id != ignore_appointment))
    if ignore_offer is not None:
        query = query.where(sa.or_(TimeHold.offer_id.is_(None), TimeHold.offer_id != ignore_offer))
    return {(owner, at) for owner, at in db.session.execute(query)}


def cells(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The five-minute cells [start, end) covers (widened to whole cells)."""
    step = dt.timedelta(minutes=CELL_MINUTES)
    first = start.replace(second=0, microsecond=0)
    first -= dt.timedelta(minutes=first.minute % CELL_MINUTES)
    out = []
    while first < end:
        out.append(first)
        first += step
    return out


def free_slots(clinician_ids: Iterable[int], consultation_type: str | None, first_day: dt.date, last_day: dt.date,
               *, not_before: dt.datetime, ignore_appointment: int | None = None,
               ignore_offer: int | None = None) -> list[Slot]:
    ids = list(clinician_ids)
    slots = [s for s in all_slots(ids, first_day, last_day)
             if s.starts_at >= not_before and (consultation_type is None or s.consultation_type == consultation_type)]
    if not slots:
        return []
    held = held_cells(ids, slots[0].starts_at, slots[-1].ends_at, ignore_appointment=ignore_appointment,
                      ignore_offer=ignore_offer)
    return [s for s in slots if not any((s.clinician_id, c) in held for c in cells(s.starts_at, s.ends_at))]


def find_slot(ref: SlotRef) -> tuple[Slot | None, list[Slot]]:
    """The generated slot a reference names (or None), and the slots of other kinds at that time."""
    day = ref.starts_at.astimezone(settings.clinic_zone()).date()
    same_start = [s for s in all_slots([ref.clinician_id], day, day) if s.starts_at == ref.starts_at]
    exact = next((s for s in same_start if s.consultation_type == ref.consultation_type), None)
    return exact, [s for s in same_start if s is not exact]


# Appointments a change has left outside availability ------------------------------------------

def outside_availability(clinician_id: int, *, now: dt.datetime | None = None) -> list[Appointment]:
    """Future live appointments that no longer match a slot (leave taken, a pattern changed or removed)."""
    now = now or utcnow()
    upcoming = list(db.session.scalars(sa.select(Appointment).where(
        Appointment.clinician_id == clinician_id, Appointment.status.in_(UPCOMING), Appointment.starts_at > now)
        .order_by(Appointment.starts_at)))
    if not upcoming:
        return []
    zone = settings.clinic_zone()
    first = upcoming[0].starts_at.astimezone(zone).date()
    last = upcoming[-1].starts_at.astimezone(zone).date()
    offered = {(s.starts_at, s.ends_at, s.consultation_type) for s in all_slots([clinician_id], first, last)}
    return [a for a in upcoming if (a.starts_at, a.ends_at, a.consultation_type) not in offered]


# Demo ---------------------------------------------------------------------------------------

DEMO_WEEKS = 12
#: Mornings for initial consultations, afternoons for follow-ups: 09:00 to 17:00 without overlap.
DEMO_SESSIONS = (("initial", dt.time(9), dt.time(13), 30), ("follow-up", dt.time(13), dt.time(17), 15))


def load_demo_availability(today: dt.date | None = None) -> int:
    """Weekday patterns for every active clinician without any, for the next 12 weeks. Idempotent:
    a clinician who already has a pattern is left alone. Returns the number of patterns added."""
    from app.audit import context

    today = today or dt.datetime.now(settings.clinic_zone()).date()
    types = settings.consultation_types()
    added = 0
    with transaction() as session:
        for user in clinicians():
            has_any = session.scalar(sa.select(sa.exists().where(AvailabilityPattern.clinician_id == user.id)))
            if has_any:
                continue
            for weekday in range(5):
                for kind, start, end, minutes in DEMO_SESSIONS:
                    if kind not in types:
                        continue
                    session.add(AvailabilityPattern(
                        clinician_id=user.id, weekday=weekday, start_time=start, end_time=end, slot_minutes=minutes,
                        consultation_type=kind, valid_from=today,
                        valid_to=today + dt.timedelta(weeks=DEMO_WEEKS)))
                    added += 1
            audit.record("availability.demo_loaded", subject=("user", user.id), actor=context.SYSTEM,
                         detail={"clinician_id": user.id, "weeks": DEMO_WEEKS})
    return added
