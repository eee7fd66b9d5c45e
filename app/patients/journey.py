"""The patient journey: the one state machine that moves `Patient.journey_state`.

registered → intake in progress → intake submitted → identity verified →
eligible | needs clinical review | not eligible → booked → consulted → on treatment → follow-up due

Each transition names who may cause it and is audited as `journey.<new state>` in the same
transaction. Nothing else writes `journey_state`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from app.audit import context
from app.audit import services as audit
from app.database import transaction, utcnow
from app.patients.models import Patient


class JourneyState(enum.StrEnum):
    REGISTERED = "registered"
    INTAKE_IN_PROGRESS = "intake_in_progress"
    INTAKE_SUBMITTED = "intake_submitted"
    IDENTITY_VERIFIED = "identity_verified"
    ELIGIBLE = "eligible"
    NEEDS_REVIEW = "needs_clinical_review"
    NOT_ELIGIBLE = "not_eligible"
    BOOKED = "booked"
    CONSULTED = "consulted"
    ON_TREATMENT = "on_treatment"
    FOLLOW_UP_DUE = "follow_up_due"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    JourneyState.REGISTERED: "Account created",
    JourneyState.INTAKE_IN_PROGRESS: "Health questions started",
    JourneyState.INTAKE_SUBMITTED: "Health questions sent",
    JourneyState.IDENTITY_VERIFIED: "Identity confirmed",
    JourneyState.ELIGIBLE: "Ready to book",
    JourneyState.NEEDS_REVIEW: "A clinician is reviewing your answers",
    JourneyState.NOT_ELIGIBLE: "Not suitable for treatment now",
    JourneyState.BOOKED: "Consultation booked",
    JourneyState.CONSULTED: "Consultation done",
    JourneyState.ON_TREATMENT: "On treatment",
    JourneyState.FOLLOW_UP_DUE: "Follow-up due",
}

S = JourneyState
PATIENT, CLINICIAN, RECEPTION, ADMIN, SYSTEM = "patient", "clinician", "reception", "admin", "system"
STAFF = frozenset({CLINICIAN, RECEPTION, ADMIN})
ELIGIBILITY_OUTCOMES = frozenset({S.ELIGIBLE, S.NEEDS_REVIEW, S.NOT_ELIGIBLE})


@dataclass(frozen=True)
class Transition:
    #: Roles of the actor who may cause it ("system" for the worker and automatic consequences).
    by: frozenset[str]
    #: True when the transition must carry a reason (overrides and clinical decisions).
    needs_reason: bool = False


TRANSITIONS: dict[tuple[S, S], Transition] = {
    (S.REGISTERED, S.INTAKE_IN_PROGRESS): Transition(frozenset({PATIENT, SYSTEM})),
    (S.INTAKE_IN_PROGRESS, S.INTAKE_SUBMITTED): Transition(frozenset({PATIENT, SYSTEM})),
    # Identity is confirmed by staff or a provider's webhook (system) once the intake is in.
    (S.INTAKE_SUBMITTED, S.IDENTITY_VERIFIED): Transition(STAFF | {SYSTEM}),
    # The eligibility rules run as soon as both the intake and the identity check are done.
    (S.IDENTITY_VERIFIED, S.ELIGIBLE): Transition(frozenset({SYSTEM})),
    (S.IDENTITY_VERIFIED, S.NEEDS_REVIEW): Transition(frozenset({SYSTEM})),
    (S.IDENTITY_VERIFIED, S.NOT_ELIGIBLE): Transition(frozenset({SYSTEM})),
    # A clinician decides a review, or overrides an automatic outcome, always with a reason.
    (S.NEEDS_REVIEW, S.ELIGIBLE): Transition(frozenset({CLINICIAN}), needs_reason=True),
    (S.NEEDS_REVIEW, S.NOT_ELIGIBLE): Transition(frozenset({CLINICIAN}), needs_reason=True),
    (S.NOT_ELIGIBLE, S.ELIGIBLE): Transition(frozenset({CLINICIAN}), needs_reason=True),
    (S.NOT_ELIGIBLE, S.NEEDS_REVIEW): Transition(frozenset({CLINICIAN}), needs_reason=True),
    (S.ELIGIBLE, S.NOT_ELIGIBLE): Transition(frozenset({CLINICIAN}), needs_reason=True),
    # Booking: patients with an eligible or under-review record, or reception for them.
    (S.ELIGIBLE, S.BOOKED): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.NEEDS_REVIEW, S.BOOKED): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    # A cancelled booking returns the patient to where they were before it.
    (S.BOOKED, S.ELIGIBLE): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.BOOKED, S.NEEDS_REVIEW): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.BOOKED, S.ON_TREATMENT): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.BOOKED, S.FOLLOW_UP_DUE): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.BOOKED, S.CONSULTED): Transition(frozenset({CLINICIAN, SYSTEM})),
    (S.CONSULTED, S.ON_TREATMENT): Transition(frozenset({CLINICIAN, SYSTEM})),
    (S.CONSULTED, S.BOOKED): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.ON_TREATMENT, S.FOLLOW_UP_DUE): Transition(frozenset({SYSTEM, CLINICIAN})),
    (S.FOLLOW_UP_DUE, S.BOOKED): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
    (S.ON_TREATMENT, S.BOOKED): Transition(frozenset({PATIENT, RECEPTION, ADMIN, CLINICIAN, SYSTEM})),
}


class JourneyError(ValueError):
    """An illegal or unauthorised transition; the message is fit to show staff."""


def state_of(patient: Patient) -> S:
    return S(patient.journey_state)


def allowed(patient: Patient, to: S, *, role: str | None = None) -> bool:
    rule = TRANSITIONS.get((state_of(patient), to))
    return rule is not None and (role or context.current().role or SYSTEM) in rule.by


def transition(patient: Patient, to: S, *, reason: str | None = None, as_system: bool = False,
               detail: dict[str, Any] | None = None) -> None:
    """Move the patient to `to`, or raise JourneyError. `as_system` marks an automatic consequence
    (e.g. eligibility computed when the identity check passes), recorded as such in the audit."""
    current = state_of(patient)
    rule = TRANSITIONS.get((current, to))
    if rule is None:
        raise JourneyError(f"A patient cannot go from “{current.label}” to “{to.label}”.")
    actor = context.current()
    role = SYSTEM if as_system else (actor.role or SYSTEM)
    if role not in rule.by:
        raise JourneyError(f"Your role cannot move a patient to “{to.label}”.")
    if rule.needs_reason and not (reason and reason.strip()):
        raise JourneyError("Give a reason for this decision: it is kept in the record.")
    with transaction():
        patient.journey_state = to.value
        patient.journey_changed_at = utcnow()
        audit.record(f"journey.{to.value}", subject=("patient", patient.id), patient_id=patient.id,
                     detail={"from": current.value, "to": to.value, "reason": reason, "automatic": as_system,
                             **(detail or {})})
