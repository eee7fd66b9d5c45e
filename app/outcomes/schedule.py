"""When each questionnaire falls due: a baseline at onboarding, then follow-ups at 1, 3, 6 and 12 months
after the first prescription (the clinic's default, in settings; a clinician can set a patient's own).

The worker runs `make_due` for every patient in care: it opens what has come due (and tells the patient,
once per time point), and closes as missed what was never answered before the next time point came.
A time point's window runs from its date until the next one's; the last stays open for 90 days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from app.audit import services as audit
from app.auth.models import User
from app.database import transaction, utcnow
from app.extensions import db
from app.outcomes import instruments, settings
from app.outcomes.models import OutcomeDue, OutcomePlanSchedule
from app.patients.journey import JourneyState
from app.patients.models import Patient

BASELINE, EXTRA = "baseline", "extra"
DUE, COMPLETED, MISSED, CANCELLED = "due", "completed", "missed", "cancelled"
LAST_WINDOW = dt.timedelta(days=90)
#: Journey states from which a patient has onboarded: the baseline is asked from then on.
IN_CARE = frozenset({JourneyState.ELIGIBLE, JourneyState.NEEDS_REVIEW, JourneyState.BOOKED, JourneyState.CONSULTED,
                     JourneyState.ON_TREATMENT, JourneyState.FOLLOW_UP_DUE})


def timepoint_label(timepoint: str) -> str:
    if timepoint == BASELINE:
        return "Baseline"
    if timepoint == EXTRA:
        return "Asked by your clinician"
    months = int(timepoint.removeprefix("m"))
    return f"{months} month{'s' if months != 1 else ''}"


def first_prescription_date(patient: Patient) -> dt.date | None:
    """The date the patient's first prescription was signed (follow-ups count from it)."""
    from app.prescribing import services as prescribing

    signed = [p.signed_at for p in prescribing.prescriptions_for_patient(patient) if p.signed_at is not None]
    return min(signed).date() if signed else None


@dataclass(frozen=True)
class PlanSchedule:
    months: tuple[int, ...]
    baseline: tuple[str, ...]
    follow_up: tuple[str, ...]
    #: True when a clinician set this patient's own schedule.
    custom: bool


def schedule_of(patient: Patient) -> PlanSchedule:
    clinic = settings.current()
    own = db.session.scalar(sa.select(OutcomePlanSchedule).where(OutcomePlanSchedule.patient_id == patient.id))
    if own is None:
        return PlanSchedule(clinic.schedule_months, clinic.baseline_instruments, clinic.follow_up_instruments, False)
    return PlanSchedule(tuple(int(m) for m in own.months), clinic.baseline_instruments,
                        tuple(str(i) for i in own.instruments), True)


class ScheduleError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def set_schedule(patient: Patient, *, months: list[int], instrument_keys: list[str], by: User) -> PlanSchedule:
    """A clinician's schedule for this patient's plan (time points already due keep their questionnaires)."""
    errors: dict[str, str] = {}
    chosen = sorted({int(m) for m in months if 0 < int(m) <= 60})
    if not chosen:
        errors["months"] = "Choose at least one follow-up time, in months after the first prescription (1 to 60)"
    instruments.ensure_built_in()
    known = {i.key for i in instruments.current_all()}
    keys = [k for k in dict.fromkeys(instrument_keys) if k in known]
    if not keys:
        errors["instruments"] = "Choose at least one questionnaire to ask at each follow-up"
    if errors:
        raise ScheduleError(errors)
    with transaction() as session:
        own = session.scalar(sa.select(OutcomePlanSchedule).where(OutcomePlanSchedule.patient_id == patient.id))
        if own is None:
            own = OutcomePlanSchedule(patient_id=patient.id, months=chosen, instruments=keys, updated_by_id=by.id)
            session.add(own)
        else:
            own.months, own.instruments, own.updated_by_id, own.updated_at = chosen, keys, by.id, utcnow()
        audit.record("outcomes.schedule_set", subject=("patient", patient.id), patient_id=patient.id,
                     detail={"months": chosen, "instruments": keys})
    return schedule_of(patient)


@dataclass(frozen=True)
class Timepoint:
    key: str
    due_on: dt.date
    #: The window closes on this day (the next time point's date); None: open until answered.
    closes_on: dt.date | None
    instruments: tuple[str, ...]


def timepoints(patient: Patient, *, today: dt.date) -> list[Timepoint]:
    """The patient's schedule as dates, from what is known today (follow-ups need a first prescription)."""
    plan = schedule_of(patient)
    first = first_prescription_date(patient)
    found: list[Timepoint] = []
    in_care = JourneyState(patient.journey_state) in IN_CARE or first is not None or _has_plan(patient)
    follow_dates = [(f"m{m}", first + relativedelta(months=m)) for m in plan.months] if first else []
    if in_care:
        baseline_on = min(patient.journey_changed_at.date(), today) if first is None else min(first, today)
        found.append(Timepoint(BASELINE, baseline_on, follow_dates[0][1] if follow_dates else None, plan.baseline))
    for index, (key, due_on) in enumerate(follow_dates):
        closes = follow_dates[index + 1][1] if index + 1 < len(follow_dates) else due_on + LAST_WINDOW
        found.append(Timepoint(key, due_on, closes, plan.follow_up))
    return found


def _has_plan(patient: Patient) -> bool:
    from app.prescribing import plans

    return plans.current(patient) is not None


def make_due(patient: Patient, *, today: dt.date | None = None) -> list[OutcomeDue]:
    """Open what has come due today and close what was missed; tell the patient about new ones.
    Returns the questionnaires opened now."""
    today = today or dt.date.today()
    instruments.ensure_built_in()
    opened: list[OutcomeDue] = []
    with transaction() as session:
        existing = {(d.instrument_url, d.timepoint): d for d in session.scalars(
            sa.select(OutcomeDue).where(OutcomeDue.patient_id == patient.id))}
        for point in timepoints(patient, today=today):
            open_now = point.due_on <= today and (point.closes_on is None or today < point.closes_on)
            for name in point.instruments:
                instrument = instruments.current(name)
                if instrument is None:
                    continue  # a setting names an instrument the clinic has not loaded: nothing to ask
                due = existing.get((instrument.url, point.key))
                if due is None and open_now:
                    due = OutcomeDue(patient_id=patient.id, instrument_url=instrument.url, timepoint=point.key,
                                     due_on=point.due_on)
                    session.add(due)
                    session.flush()
                    opened.append(due)
                elif due is not None and due.status == DUE and point.closes_on is not None \
                        and today >= point.closes_on:
                    due.status = MISSED
                    audit.record("outcomes.missed", subject=("outcome_due", due.id), patient_id=patient.id,
                                 detail={"timepoint": point.key})
        if opened:
            audit.record("outcomes.due", subject=("patient", patient.id), patient_id=patient.id,
                         detail={"timepoints": sorted({d.timepoint for d in opened}), "count": len(opened)})
            for timepoint in sorted({d.timepoint for d in opened}):
                _tell_patient(patient, timepoint)
    return opened


def request_extra(patient: Patient, instrument_key: str, *, by: User, today: dt.date | None = None) -> OutcomeDue:
    """A clinician asks for a questionnaire now, outside the schedule."""
    instrument = instruments.current(instrument_key)
    if instrument is None:
        raise ScheduleError({"instrument": "Choose a questionnaire the clinic has loaded"})
    today = today or dt.date.today()
    with transaction() as session:
        due = session.scalar(sa.select(OutcomeDue).where(
            OutcomeDue.patient_id == patient.id, OutcomeDue.instrument_url == instrument.url,
            OutcomeDue.timepoint == EXTRA))
        if due is not None and due.status == DUE:
            raise ScheduleError({"instrument": f"{instrument.title} was asked for already and is not answered yet"})
        if due is None:
            due = OutcomeDue(patient_id=patient.id, instrument_url=instrument.url, timepoint=EXTRA, due_on=today)
            session.add(due)
        else:  # asked again after the last extra one was answered
            due.status, due.due_on, due.completed_at = DUE, today, None
        session.flush()
        audit.record("outcomes.requested", subject=("outcome_due", due.id), patient_id=patient.id,
                     detail={"instrument": instrument.key, "by": by.id})
        _tell_patient(patient, f"{EXTRA}:{due.id}:{today.isoformat()}")
    return due


def _tell_patient(patient: Patient, timepoint: str) -> None:
    """The portal notice and an email without clinical content (see app/notifications)."""
    from app.notifications import services as notifications

    notifications.notify(patient, "outcome.due", key=f"outcome-due:{patient.id}:{timepoint}"[:90],
                         link=notifications.link_to("outcomes.mine"))


def open_dues(patient: Patient) -> list[OutcomeDue]:
    return list(db.session.scalars(sa.select(OutcomeDue).where(OutcomeDue.patient_id == patient.id,
                                                               OutcomeDue.status == DUE)
                                   .order_by(OutcomeDue.due_on, OutcomeDue.id)))


def dues_of(patient: Patient) -> list[OutcomeDue]:
    return list(db.session.scalars(sa.select(OutcomeDue).where(OutcomeDue.patient_id == patient.id)
                                   .order_by(OutcomeDue.due_on.desc(), OutcomeDue.id.desc())))


def get_due(due_id: int) -> OutcomeDue | None:
    return db.session.get(OutcomeDue, due_id)


def is_overdue(due: OutcomeDue, today: dt.date | None = None) -> bool:
    today = today or dt.date.today()
    return due.status == DUE and (today - due.due_on).days > settings.current().overdue_days


def overdue(*, clinician: User | None = None, today: dt.date | None = None) -> list[tuple[OutcomeDue, Patient]]:
    """What the care team should chase: due for longer than the overdue threshold (a clinician's own patients)."""
    today = today or dt.date.today()
    cutoff = today - dt.timedelta(days=settings.current().overdue_days)
    query = sa.select(OutcomeDue, Patient).join(Patient, Patient.id == OutcomeDue.patient_id).where(
        OutcomeDue.status == DUE, OutcomeDue.due_on < cutoff).order_by(OutcomeDue.due_on, OutcomeDue.id)
    if clinician is not None:
        query = query.where(Patient.clinician_id == clinician.id)
    return [(due, patient) for due, patient in db.session.execute(query.limit(500)).all()]


def run_schedule(today: dt.date | None = None) -> int:
    """The worker's pass over every patient in care. Returns how many questionnaires it opened."""
    ids = list(db.session.scalars(sa.select(Patient.id).where(
        Patient.journey_state.in_([s.value for s in IN_CARE])).order_by(Patient.id)))
    opened = 0
    for patient_id in ids:
        patient = db.session.get(Patient, patient_id)
        opened += len(make_due(patient, today=today))
        db.session.commit()
    return opened
