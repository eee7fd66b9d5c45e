"""The appointment state machine: the one place `Appointment.status` changes.

booked → checked_in → in_call → completed | no_show; booked → in_call (the clinician starts on time);
booked | checked_in → no_show (after the start); booked | checked_in → cancelled.
Rescheduling is not a transition: it moves a booked appointment's time (see booking.py).

Each move is a conditional UPDATE on the status the caller saw, so a double click, or a clinician
and reception acting at once, changes it once; the loser is told it has moved on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.audit import services as audit
from app.database import transaction, utcnow
from app.extensions import db
from app.scheduling.errors import SchedulingError
from app.scheduling.models import BOOKED, CANCELLED, CHECKED_IN, COMPLETED, IN_CALL, NO_SHOW, Appointment

PATIENT, CLINICIAN, RECEPTION, ADMIN, SYSTEM = "patient", "clinician", "reception", "admin", "system"
FRONT_DESK = frozenset({RECEPTION, ADMIN})

LABELS = {BOOKED: "Booked", CHECKED_IN: "Patient checked in", IN_CALL: "In call", COMPLETED: "Completed",
          NO_SHOW: "Did not attend", CANCELLED: "Cancelled"}
#: nhsuk tag colours on the boards.
TAGS = {BOOKED: "blue", CHECKED_IN: "yellow", IN_CALL: "purple", COMPLETED: "green", NO_SHOW: "red",
        CANCELLED: "grey"}
#: Button text for each move on the boards.
ACTIONS = {CHECKED_IN: "Check in", IN_CALL: "Start call", COMPLETED: "Complete", NO_SHOW: "Did not attend"}

#: A patient may check in from this long before the start (the waiting room opens).
CHECK_IN_OPENS = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Move:
    #: Roles that may make it.
    by: frozenset[str]
    #: When it is allowed, relative to the appointment: "before_end" (from CHECK_IN_OPENS before the
    #: start until the end), "after_start", or None (any time).
    when: str | None = None


TRANSITIONS: dict[tuple[str, str], Move] = {
    (BOOKED, CHECKED_IN): Move(frozenset({PATIENT, CLINICIAN, SYSTEM}) | FRONT_DESK, "before_end"),
    (BOOKED, IN_CALL): Move(frozenset({CLINICIAN, SYSTEM}), "before_end"),
    (BOOKED, NO_SHOW): Move(frozenset({CLINICIAN}) | FRONT_DESK, "after_start"),
    (BOOKED, CANCELLED): Move(frozenset({PATIENT, CLINICIAN, SYSTEM}) | FRONT_DESK),
    (CHECKED_IN, IN_CALL): Move(frozenset({CLINICIAN, SYSTEM})),
    (CHECKED_IN, NO_SHOW): Move(frozenset({CLINICIAN}) | FRONT_DESK, "after_start"),
    (CHECKED_IN, CANCELLED): Move(frozenset({CLINICIAN, SYSTEM}) | FRONT_DESK),
    (IN_CALL, COMPLETED): Move(frozenset({CLINICIAN, SYSTEM})),
    (IN_CALL, NO_SHOW): Move(frozenset({CLINICIAN})),
}


class StateError(SchedulingError):
    """A move that is not allowed now; the message is fit to show the person."""


def next_moves(appointment: Appointment, role: str, now: dt.datetime | None = None) -> list[str]:
    """The moves this role could make now (cancelling is offered separately), for the boards' buttons."""
    now = now or utcnow()
    return [to for (frm, to), move in TRANSITIONS.items()
            if frm == appointment.status and to != CANCELLED and role in move.by
            and _timing_problem(appointment, move, now) is None]


def _timing_problem(appointment: Appointment, move: Move, now: dt.datetime) -> str | None:
    if move.when == "before_end":
        if now < appointment.starts_at - CHECK_IN_OPENS:
            minutes = int(CHECK_IN_OPENS.total_seconds() // 60)
            return f"This opens {minutes} minutes before the appointment starts."
        if now >= appointment.ends_at:
            return "This appointment has ended."
    if move.when == "after_start" and now < appointment.starts_at:
        return "An appointment can be marked as not attended only once it has started."
    return None


def check(appointment: Appointment, to: str, role: str, now: dt.datetime | None = None) -> None:
    move = TRANSITIONS.get((appointment.status, to))
    if move is None:
        raise StateError(f"An appointment that is “{LABELS[appointment.status].lower()}” cannot become "
                         f"“{LABELS.get(to, to).lower()}”.")
    if role not in move.by:
        raise StateError(f"Your role cannot mark an appointment as “{LABELS[to].lower()}”.")
    problem = _timing_problem(appointment, move, now or utcnow())
    if problem:
        raise StateError(problem)


def move(appointment: Appointment, to: str, role: str, *, detail: dict | None = None,
         extra: dict | None = None) -> None:
    """Check and make the move in the caller's transaction (or a new one), audited as appointment.<to>."""
    now = utcnow()
    check(appointment, to, role, now)
    frm = appointment.status
    with transaction() as session:
        changed = session.execute(
            sa.update(Appointment).where(Appointment.id == appointment.id, Appointment.status == frm)
            .values(status=to, status_changed_at=now, **(extra or {}))
            .execution_options(synchronize_session=False)).rowcount
        if not changed:
            raise StateError("This appointment has changed since you opened it. Reload the page to see it now.")
        audit.record(f"appointment.{to}", subject=("appointment", appointment.id), patient_id=appointment.patient_id,
                     detail={"from": frm, "to": to, **(detail or {})})
        if to in (COMPLETED, CANCELLED):
            # Billing reacts in the same transaction: invoice after the consult, or credit a cancelled one.
            from app.billing import services as billing

            db.session.refresh(appointment)
            (billing.appointment_completed if to == COMPLETED else billing.appointment_cancelled)(appointment)
    db.session.refresh(appointment)
