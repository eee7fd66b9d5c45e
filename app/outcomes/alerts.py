"""Telling the care team at once: a serious adverse event (the prescriber), answers that call for urgent
help (the patient's clinician).

Through `app.notifications`: an in-portal notice plus an email, safety-critical (the event
`prescriber.outcome_alert`). The email says only that something needs them in Verity: never what, nor
about whom.
"""

from __future__ import annotations

from app.auth.models import User
from app.extensions import db
from app.notifications import services as notifications
from app.patients.models import Patient

EVENT = "prescriber.outcome_alert"


def _send(user: User, key: str, link: str, context: dict) -> None:
    notifications.notify(user, EVENT, key=key, link=link, context=context, safety_critical=True)


def _recipients(patient: Patient, prescriber_ids: set[int]) -> list[User]:
    ids = {*prescriber_ids, *([patient.clinician_id] if patient.clinician_id else [])}
    users = [db.session.get(User, user_id) for user_id in sorted(ids)]
    return [u for u in users if u is not None and u.active]


def serious_event(patient: Patient, event_id: int, prescriber_ids: set[int]) -> int:
    """Alert the prescriber(s) of the suspected product and the patient's clinician. Returns how many."""
    people = _recipients(patient, prescriber_ids)
    for user in people:
        _send(user, f"outcome-ae:{event_id}:{user.id}",
              notifications.link_to("outcomes.adverse_event", event_id=event_id),
              {"what": "A serious adverse event was reported"})
    return len(people)


def urgent_answers(patient: Patient, response) -> int:
    people = _recipients(patient, set())
    for user in people:
        _send(user, f"outcome-urgent:{response.id}:{user.id}",
              notifications.link_to("outcomes.staff_page", patient_id=patient.id),
              {"what": "Answers that call for urgent help"})
    return len(people)
