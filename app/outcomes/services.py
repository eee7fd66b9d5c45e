"""Outcomes' public services: what other domains and the pages call.

- `checklist_steps(patient)`: the dashboard's "Questionnaire due" step.
- `can_read_outcomes(user, patient)`: who sees scores (the patient, their clinician, admins).
- `save_checkin(...)`: the daily check-in.
- `load_demo_outcomes(patient)`: demo history and a due GAD-7 (app/demo.py calls it).

The rest lives in the domain's modules: answering.py (questionnaires), schedule.py (what is due),
history.py (charts), adverse.py, imports.py, exports.py, summary.py.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from flask import url_for

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.intake import answers as answer_forms
from app.outcomes import answering, imports, instruments, schedule, scoring
from app.outcomes.models import OutcomeCheckin, OutcomeDue, OutcomeObservation, OutcomeResponse
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient
from app.worker import periodic

SIDE_EFFECTS = {
    "dry_mouth": "Dry mouth", "drowsy": "Drowsy or very tired", "dizzy": "Dizzy or light-headed",
    "headache": "Headache", "nausea": "Feeling sick", "anxious": "Anxious or paranoid",
    "heart": "Fast or pounding heartbeat", "appetite": "Much hungrier than usual", "memory": "Forgetful or confused",
}
MAX_NOTE = 1000


def can_read_outcomes(user: User, patient: Patient) -> bool:
    """Scores are clinical data: the patient, their own clinician, and admins. Reception sees only
    what is overdue (to chase it), never the answers."""
    if user.role is Role.PATIENT:
        return patient.user_id == user.id
    if user.role is Role.CLINICIAN:
        return patient.clinician_id == user.id
    return user.role is Role.ADMIN


def checklist_steps(patient: Patient) -> list[Step]:
    """"Questionnaire due" while one is waiting for the patient."""
    waiting = schedule.open_dues(patient)
    if not waiting:
        return []
    count = len(waiting)
    hint = (f"{count} short questionnaire{'s' if count != 1 else ''} about how you are getting on. "
            f"About {max(1, count * 2)} minutes.")
    return [Step("outcomes", "Questionnaire due", StepStatus.ACTION, hint, url_for("outcomes.mine"),
                 "Answer your questionnaires", order=80)]


# The daily check-in ---------------------------------------------------------------------------

class CheckinError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _rating(raw: Any, label: str, key: str, errors: dict[str, str]) -> int | None:
    text = str(raw if raw is not None else "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 10:
        errors[key] = f"Choose your {label} from 0 to 10"
        return None
    return int(text)


def checkin_of(patient: Patient, day: dt.date) -> OutcomeCheckin | None:
    return db.session.scalar(sa.select(OutcomeCheckin).where(OutcomeCheckin.patient_id == patient.id,
                                                             OutcomeCheckin.day == day))


def recent_checkins(patient: Patient, days: int = 14) -> list[OutcomeCheckin]:
    since = dt.date.today() - dt.timedelta(days=days)
    return list(db.session.scalars(sa.select(OutcomeCheckin).where(OutcomeCheckin.patient_id == patient.id,
                                                                   OutcomeCheckin.day >= since)
                                   .order_by(OutcomeCheckin.day.desc())))


def save_checkin(patient: Patient, values: dict[str, Any], *, today: dt.date | None = None) -> OutcomeCheckin:
    """Today's check-in (a second one today replaces the first). Pain and sleep become Observations."""
    today = today or dt.date.today()
    errors: dict[str, str] = {}
    pain = _rating(values.get("pain"), "pain", "pain", errors)
    sleep = _rating(values.get("sleep"), "sleep", "sleep", errors)
    effects = [code for code in dict.fromkeys(values.get("side_effects") or []) if code in SIDE_EFFECTS]
    note = " ".join(str(values.get("note") or "").split())
    if len(note) > MAX_NOTE:
        errors["note"] = f"Keep it to {MAX_NOTE:,} characters (about 150 words)"
    if not errors and pain is None and sleep is None and not effects and not note:
        errors["pain"] = "Choose your pain from 0 to 10, or tell us about side effects"
    if errors:
        raise CheckinError(errors)
    at = dt.datetime.combine(today, imports.NOON)
    with transaction() as session:
        checkin = checkin_of(patient, today)
        if checkin is None:
            checkin = OutcomeCheckin(patient_id=patient.id, day=today)
            session.add(checkin)
        checkin.pain, checkin.sleep, checkin.side_effects, checkin.note = pain, sleep, effects, note or None
        checkin.updated_at = utcnow()
        session.flush()
        session.execute(sa.delete(OutcomeObservation).where(OutcomeObservation.checkin_id == checkin.id))
        for code, value in ((scoring.PAIN_TODAY, pain), (scoring.SLEEP_LAST_NIGHT, sleep)):
            if value is None:
                continue
            measure = scoring.measure(code)
            found = scoring.band(code, value)
            session.add(OutcomeObservation(patient_id=patient.id, system=measure.system, code=code,
                                           display=measure.label, value=Decimal(value), unit=measure.unit,
                                           effective_at=at, source="check-in", checkin_id=checkin.id,
                                           band=found.label if found else None))
        audit.record("outcomes.checkin", subject=("outcome_checkin", checkin.id), patient_id=patient.id,
                     detail={"side_effects": len(effects)})
    return checkin


# The clinician's side panel -------------------------------------------------------------------

@dataclass
class PanelData:
    views: list
    overdue: list[OutcomeDue]
    waiting: list[OutcomeDue]
    urgent: list[OutcomeResponse]
    serious: list


def panel_data(patient: Patient) -> PanelData:
    from app.outcomes import adverse, history

    waiting = schedule.open_dues(patient)
    urgent = [r for r in answering.responses_of(patient)[:20] if r.urgent]
    return PanelData(history.chart_views(patient, element_prefix=f"panel-{patient.id}", questionnaires_only=True),
                     [d for d in waiting if schedule.is_overdue(d)], waiting, urgent, adverse.open_serious(patient))


# Demo -----------------------------------------------------------------------------------------

#: Item scores that add up to a total, spread over a questionnaire's items (largest first).
def _spread(total: int, items: int) -> list[int]:
    base, extra = divmod(total, items)
    return [min(3, base + (1 if i < extra else 0)) for i in range(items)]


DEMO_GAD7 = (14, 12, 10, 9, 7, 6)
DEMO_PHQ9 = (16, 14, 11, 9, 8, 7)
DEMO_PAIN = (7, 6, 6, 5, 4, 4)
DEMO_SLEEP = (3, 4, 5, 6, 6, 7)
DEMO_CHANGE = (None, 3, 2, 2, 2, 1)


def _demo_answers(questionnaire, key: str, value: int) -> dict[str, Any]:
    if key in ("gad-7", "phq-9"):
        scored = [item for item in questionnaire.questions()
                  if item.options and all(o.score is not None for o in item.options)]
        simple = {item.link_id: next(o.key for o in item.options if o.score == score)
                  for item, score in zip(scored, _spread(value, len(scored)), strict=True)}
        difficulty = [item for item in questionnaire.questions() if item.options and item.link_id not in simple
                      and not item.read_only]
        if value and difficulty:
            simple[difficulty[0].link_id] = difficulty[0].options[1].key
        return simple
    item = next(i for i in questionnaire.questions() if not i.read_only)
    if item.type == "choice":
        return {item.link_id: next(o.key for o in item.options if o.score == value)}
    return {item.link_id: value}


def _record_completed(patient: Patient, key: str, timepoint: str, value: int, at: dt.datetime) -> None:
    """A completed questionnaire answered at `at` (demo history), through the same scoring as the pages."""
    instrument = instruments.current(key)
    questionnaire = instruments.parsed(instrument)
    answers = answer_forms.settled_simple(questionnaire, _demo_answers(questionnaire, key, value))
    with transaction() as session:
        # The worker may have opened this time point already: answer it.
        due = session.scalar(sa.select(OutcomeDue).where(
            OutcomeDue.patient_id == patient.id, OutcomeDue.instrument_url == instrument.url,
            OutcomeDue.timepoint == timepoint))
        if due is None:
            due = OutcomeDue(patient_id=patient.id, instrument_url=instrument.url, timepoint=timepoint,
                             due_on=at.date(), created_at=at)
            session.add(due)
        due.status, due.completed_at = schedule.COMPLETED, at
        session.flush()
        response = OutcomeResponse(patient_id=patient.id, instrument_id=instrument.id, due_id=due.id,
                                   status="completed", resource="{}", author_id=patient.user_id, started_at=at,
                                   updated_at=at, completed_at=at)
        session.add(response)
        session.flush()
        form = answering.Form(patient, due, instrument, response, answers)
        resource = answering._resource(form, response, "completed", at)
        response.resource = json.dumps(resource, default=answering._json_default)
        for found in scoring.score(questionnaire, answers):
            session.add(OutcomeObservation(patient_id=patient.id, system=found.system, code=found.code,
                                           display=found.display[:200], value=found.value, unit="{score}",
                                           effective_at=at, source="questionnaire", response_id=response.id,
                                           band=found.band))


def _treatment_start(patient: Patient, today: dt.date) -> dt.date:
    """When the demo story's treatment began: the first prescription, else the plan's first version; the
    demo plan is written the day the demo loads, so a story of months starts five months back then."""
    from app.prescribing import plans

    first = schedule.first_prescription_date(patient)
    if first is None:
        versions = plans.versions(patient)
        first = versions[-1].created_at.date() if versions else None
    if first is None or (today - first).days < 60:
        first = today - relativedelta(months=5)
    return first


def load_demo_outcomes(patient: Patient, *, today: dt.date | None = None) -> OutcomeDue:
    """Baseline and monthly GAD-7, PHQ-9, pain and sleep scores since treatment began, two weeks of daily
    check-ins, and a GAD-7 due now. Idempotent: returns the due GAD-7."""
    today = today or dt.date.today()
    instruments.ensure_built_in()
    history_exists = db.session.scalar(sa.select(sa.func.count()).select_from(OutcomeResponse).where(
        OutcomeResponse.patient_id == patient.id, OutcomeResponse.status == "completed"))
    if not history_exists:
        start = _treatment_start(patient, today)
        moments = [(schedule.BASELINE, start - dt.timedelta(days=7))]
        month = 1
        while start + relativedelta(months=month) <= today - dt.timedelta(days=3) and month < len(DEMO_GAD7):
            moments.append((f"m{month}", start + relativedelta(months=month)))
            month += 1
        for index, (timepoint, day) in enumerate(moments):
            at = dt.datetime.combine(day, dt.time(18, 30), tzinfo=dt.UTC)
            _record_completed(patient, "gad-7", timepoint, DEMO_GAD7[index], at)
            _record_completed(patient, "phq-9", timepoint, DEMO_PHQ9[index], at)
            _record_completed(patient, "verity-pain", timepoint, DEMO_PAIN[index], at)
            _record_completed(patient, "verity-sleep", timepoint, DEMO_SLEEP[index], at)
            if DEMO_CHANGE[index] is not None:
                _record_completed(patient, "verity-change", timepoint, DEMO_CHANGE[index], at)
        for back in range(14, 0, -1):
            day = today - dt.timedelta(days=back)
            if checkin_of(patient, day) is None:
                save_checkin(patient, {"pain": str(4 + back % 3 - 1), "sleep": str(6 + back % 2),
                                       "side_effects": ["dry_mouth"] if back % 4 == 0 else []}, today=day)
    gad7 = instruments.current("gad-7")
    due = db.session.scalar(sa.select(OutcomeDue).where(
        OutcomeDue.patient_id == patient.id, OutcomeDue.instrument_url == gad7.url, OutcomeDue.status == schedule.DUE))
    if due is None:
        with transaction() as session:
            existing = session.scalar(sa.select(OutcomeDue).where(
                OutcomeDue.patient_id == patient.id, OutcomeDue.instrument_url == gad7.url,
                OutcomeDue.timepoint == schedule.EXTRA))
            if existing is not None:  # answered since: ask again
                existing.status, existing.due_on, existing.completed_at = schedule.DUE, today, None
                due = existing
            else:
                due = OutcomeDue(patient_id=patient.id, instrument_url=gad7.url, timepoint=schedule.EXTRA, due_on=today)
                session.add(due)
            session.flush()
            audit.record("outcomes.requested", subject=("outcome_due", due.id), patient_id=patient.id,
                         detail={"instrument": "gad-7", "demo": True})
    return due


# Worker jobs ----------------------------------------------------------------------------------

def _register_worker_jobs() -> None:
    periodic("outcomes.imports", 2, singleton=False)(imports.run_queued)  # claimed one by one: every worker imports
    periodic("outcomes.schedule", 15 * 60)(schedule.run_schedule)
    periodic("outcomes.expire_uploads", 15 * 60)(imports.expire_uploads)


_register_worker_jobs()
