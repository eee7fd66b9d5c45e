"""How the onboarding domains move a patient along: the intake, the identity check, eligibility.

The intake and identity domains call these functions; they in turn ask the journey state
machine to move. Eligibility is decided by the intake's rules when the intake is submitted,
kept on the record, and takes effect once the identity check has passed too.
"""

from __future__ import annotations

import json

from app.database import transaction, utcnow
from app.patients.journey import ELIGIBILITY_OUTCOMES, JourneyState, state_of, transition
from app.patients.models import Patient

S = JourneyState


def intake_started(patient: Patient) -> None:
    """The first saved answer: the patient is on their way."""
    if state_of(patient) is S.REGISTERED:
        transition(patient, S.INTAKE_IN_PROGRESS)


def intake_submitted(patient: Patient, outcome: str, reasons: list[str]) -> None:
    """Record the eligibility rules' outcome; move on if the identity check has already passed."""
    outcome_state = S(outcome)
    if outcome_state not in ELIGIBILITY_OUTCOMES:
        raise ValueError(f"not an eligibility outcome: {outcome}")
    with transaction():
        intake_started(patient)
        patient.eligibility_outcome = outcome_state.value
        patient.eligibility_reasons = json.dumps(reasons)
        if state_of(patient) is S.INTAKE_IN_PROGRESS:
            transition(patient, S.INTAKE_SUBMITTED, detail={"outcome": outcome_state.value})
        if patient.identity_verified_at is not None:
            _apply_eligibility(patient)


def identity_verified(patient: Patient) -> None:
    """The identity check passed: record it and, if the intake is in, apply its outcome."""
    with transaction():
        if patient.identity_verified_at is None:
            patient.identity_verified_at = utcnow()
        if state_of(patient) is S.INTAKE_SUBMITTED:
            _apply_eligibility(patient)


def _apply_eligibility(patient: Patient) -> None:
    if state_of(patient) is S.INTAKE_SUBMITTED:
        transition(patient, S.IDENTITY_VERIFIED, as_system=True)
    if state_of(patient) is S.IDENTITY_VERIFIED and patient.eligibility_outcome:
        transition(patient, S(patient.eligibility_outcome), as_system=True,
                   detail={"reasons": reasons_of(patient)})


def decide(patient: Patient, to: str, reason: str) -> None:
    """A clinician's decision on a review, or their override of the rules, with a reason."""
    transition(patient, S(to), reason=reason)


def reasons_of(patient: Patient) -> list[str]:
    return json.loads(patient.eligibility_reasons) if patient.eligibility_reasons else []


# Booking and consulting (the scheduling and consultation domains call these) -----------------

#: States from which a patient may book (or be booked) a consultation.
BOOKABLE = frozenset({S.ELIGIBLE, S.NEEDS_REVIEW, S.BOOKED, S.CONSULTED, S.ON_TREATMENT, S.FOLLOW_UP_DUE})


def can_book(patient: Patient) -> bool:
    return state_of(patient) in BOOKABLE


def booked(patient: Patient) -> None:
    """A consultation was booked. A patient with several bookings simply stays booked."""
    if state_of(patient) is not S.BOOKED:
        transition(patient, S.BOOKED)


def booking_cancelled(patient: Patient, *, other_live_bookings: int) -> None:
    """The last live booking went: back to where the patient was before booking."""
    if state_of(patient) is not S.BOOKED or other_live_bookings:
        return
    from app.audit import services as audit

    before = audit.last_detail("journey.booked", patient_id=patient.id).get("from")
    target = S(before) if before in {s.value for s in (S.ELIGIBLE, S.NEEDS_REVIEW, S.ON_TREATMENT,
                                                        S.FOLLOW_UP_DUE)} else S.ELIGIBLE
    transition(patient, target, detail={"cause": "booking cancelled"})


def consulted(patient: Patient) -> None:
    if state_of(patient) is S.BOOKED:
        transition(patient, S.CONSULTED)
