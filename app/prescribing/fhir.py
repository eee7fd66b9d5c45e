"""The prescription as FHIR R4 (UK Core-shaped): a Bundle of one MedicationRequest per item.

The resources are built as plain dicts and validated with fhir.resources (its R4B models, which
R4 MedicationRequest and Bundle match field for field). Products carry their dm+d code when the
formulary has one; otherwise the medication is named in text only.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle

UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest"
DMD = "https://dmd.nhs.uk"
SNOMED = "http://snomed.info/sct"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
GMC = "https://fhir.hl7.org.uk/Id/gmc-number"
CD_CODE = "https://fhir.nhs.uk/Id/private-cd-prescriber-code"
UCUM = "http://unitsofmeasure.org"
UNIT_CODES = {"g": ("g", "gram"), "ml": ("mL", "millilitre"), "capsule": ("{capsule}", "capsule"),
              "pastille": ("{pastille}", "pastille")}


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def bundle(*, public_id: str, identifier_system: str, signed_at: dt.datetime, valid_until: dt.datetime,
           patient: dict[str, Any], prescriber: dict[str, Any], indication: tuple[str, str],
           items: list[dict[str, Any]], paper_original: bool) -> dict[str, Any]:
    """The Bundle as a JSON-ready dict (validated). `items` are dicts of the printed item fields."""
    patient_resource: dict[str, Any] = {
        "resourceType": "Patient", "id": "patient",
        "name": [{"text": patient["name"]}],
        "birthDate": patient["birth_date"].isoformat(),
        "address": [{"line": patient["lines"], "city": patient["town"], "postalCode": patient["postcode"],
                     "country": "GB"}],
    }
    if patient.get("nhs_number"):
        patient_resource["identifier"] = [{"system": NHS_NUMBER, "value": patient["nhs_number"]}]
    practitioner = {
        "resourceType": "Practitioner", "id": "prescriber",
        "identifier": [{"system": GMC, "value": prescriber["gmc_number"]},
                       {"system": CD_CODE, "value": prescriber["cd_code"]}],
        "name": [{"text": prescriber["name"]}],
        "address": [{"text": prescriber["address"]}],
    }
    entries = []
    for item in items:
        unit_code, unit_name = UNIT_CODES[item["unit"]]
        coding = [{"system": DMD, "code": item["dmd_code"], "display": item["product_name"]}] if item["dmd_code"] \
            else []
        request: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": f"{public_id}-{item['line']}",
            "meta": {"profile": [UK_CORE]},
            "contained": [patient_resource, practitioner],
            "identifier": [{"system": identifier_system, "value": f"{public_id}-{item['line']}"}],
            "groupIdentifier": {"system": identifier_system, "value": public_id},
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                      "code": "community", "display": "Community"}]}],
            "medicationCodeableConcept": {
                "coding": coding,
                "text": f"{item['product_name']} ({item['form_label']}; {item['strength']})",
            },
            "subject": {"reference": "#patient", "display": patient["name"]},
            "authoredOn": _instant(signed_at),
            "requester": {"reference": "#prescriber", "display": prescriber["name"]},
            "reasonCode": [{"coding": [{"system": SNOMED, "code": indication[0], "display": indication[1]}],
                            "text": indication[1]}],
            "dosageInstruction": [{"text": item["dose"]}],
            "dispenseRequest": {
                "validityPeriod": {"start": _instant(signed_at), "end": _instant(valid_until)},
                "quantity": {"value": float(Decimal(item["quantity"])), "unit": unit_name, "system": UCUM,
                             "code": unit_code},
                "expectedSupplyDuration": {"value": item["days_supply"], "unit": "day", "system": UCUM, "code": "d"},
            },
            "substitution": {"allowedBoolean": False},
            "note": [{"text": f"Total quantity: {item['quantity_text']}. Schedule 2 controlled drug."
                              + (" Paper FP10PCD original to follow; do not supply until it is received."
                                 if paper_original else "")}],
        }
        if item.get("justification"):
            request["note"].append({"text": f"Clinical justification for {item['days_supply']} days' supply: "
                                            f"{item['justification']}"})
        entries.append({"fullUrl": f"urn:uuid:{_uuidish(public_id, item['line'])}", "resource": request})
    document = {
        "resourceType": "Bundle",
        "id": public_id,
        "identifier": {"system": identifier_system, "value": public_id},
        "type": "collection",
        "timestamp": _instant(signed_at),
        "entry": entries,
    }
    Bundle.model_validate(document)  # raises if the shape is not FHIR
    return document


def _uuidish(public_id: str, line: int) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"verity:prescription:{public_id}:{line}"))

