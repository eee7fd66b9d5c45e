"""FHIR views of appointments and slots for staff systems.

Which FHIR release: fhir.resources 8.3.0 (pinned in requirements.txt) ships R5 at its top level and
R4B under `fhir.resources.R4B`; it no longer ships R4. Appointment, Slot, Schedule and Bundle are the
same in R4B as in R4, so each resource is built here as R4 JSON and validated against the R4B models
before it leaves.

A clinician's availability is the Schedule `Schedule/<clinician user id>`; its slots are generated, so a
Slot's id is the slot id used by the booking pages (e.g. "7-20261203T0900Z-initial").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.slot import Slot as FhirSlot

from app.scheduling import notify, settings
from app.scheduling.models import BOOKED, CANCELLED, CHECKED_IN, COMPLETED, IN_CALL, NO_SHOW, Appointment
from app.scheduling.slots import Slot

FHIR_RELEASE = "R4B"
MEDIA_TYPE = "application/fhir+json"
STATUS = {BOOKED: "booked", CHECKED_IN: "checked-in", IN_CALL: "arrived", COMPLETED: "fulfilled",
          NO_SHOW: "noshow", CANCELLED: "cancelled"}
#: HL7 v2 table 0276 (appointment reason codes), as FHIR R4's example binding for Appointment.appointmentType.
APPOINTMENT_REASONS = "http://terminology.hl7.org/CodeSystem/v2-0276"
REASON_CODES = {"initial": "ROUTINE", "follow-up": "FOLLOWUP"}


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _appointment_type(key: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": settings.type_label(key)}
    if key in REASON_CODES:
        concept["coding"] = [{"system": APPOINTMENT_REASONS, "code": REASON_CODES[key]}]
    return concept


def appointment(item: Appointment, *, patient_name: str) -> dict[str, Any]:
    resource = {
        "resourceType": "Appointment",
        "id": str(item.id),
        "meta": {"versionId": str(item.sequence), "lastUpdated": _instant(item.status_changed_at)},
        "identifier": [{"system": "urn:ietf:rfc:5545", "value": notify.uid(item)}],
        "status": STATUS[item.status],
        "appointmentType": _appointment_type(item.consultation_type),
        "start": _instant(item.starts_at),
        "end": _instant(item.ends_at),
        "minutesDuration": int((item.ends_at - item.starts_at).total_seconds() // 60),
        "created": _instant(item.created_at),
        "slot": [{"reference": f"Slot/{Slot(item.starts_at, item.clinician_id, item.consultation_type, 0).id}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{item.patient_id}", "display": patient_name},
             "required": "required", "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{item.clinician_id}",
                       "display": notify.clinician_name(item.clinician_id)},
             "required": "required", "status": "accepted"},
        ],
    }
    FhirAppointment.model_validate(resource)
    return resource


def slot(item: Slot, *, busy: bool) -> dict[str, Any]:
    resource = {
        "resourceType": "Slot",
        "id": item.id,
        "schedule": {"reference": f"Schedule/{item.clinician_id}"},
        "status": "busy" if busy else "free",
        "appointmentType": _appointment_type(item.consultation_type),
        "start": _instant(item.starts_at),
        "end": _instant(item.ends_at),
    }
    FhirSlot.model_validate(resource)
    return resource


def searchset(resources: list[dict[str, Any]], *, base: str, self_url: str) -> dict[str, Any]:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [{"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                   "search": {"mode": "match"}} for r in resources],
    }
    Bundle.model_validate(bundle)
    return bundle


def outcome(code: str, message: str) -> dict[str, Any]:
    resource = {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": message}]}
    OperationOutcome.model_validate(resource)
    return resource
