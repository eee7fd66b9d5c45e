"""Expectations of the route x role walk, one module per domain (see foundation.py).

Every module here defines EXPECTED: {endpoint: (method, url arguments, {persona: status})}.
"""

from __future__ import annotations

import importlib
import pkgutil

ANON, PATIENT, OTHER_PATIENT = "anonymous", "patient", "other_patient"
CLIN, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN = (
    "clinician", "other_clinician", "reception", "pharmacist", "other_pharmacist", "admin")
EVERYONE = (ANON, PATIENT, OTHER_PATIENT, CLIN, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)
STAFF = (CLIN, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)
PATIENTS = (PATIENT, OTHER_PATIENT)
SIGNED_IN = PATIENTS + STAFF


def table(**status_by_group) -> dict[str, int]:
    """table(ok=(...), forbidden=(...)) -> {persona: status}; anonymous defaults to the login redirect."""
    codes = {"ok": 200, "redirect": 302, "bad_request": 400, "forbidden": 403, "not_found": 404}
    result = {ANON: 302}
    for group, people in status_by_group.items():
        for person in people:
            result[person] = codes[group]
    missing = set(EVERYONE) - result.keys()
    assert not missing, f"table leaves out {missing}"
    return result


ADMIN_ONLY = table(ok=(ADMIN,), forbidden=(*PATIENTS, CLIN, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM))


def url_of(app, endpoint: str, args: dict, personas) -> str:
    """The URL of an endpoint, its arguments filled from the personas' objects (or made by the table's functions)."""
    values = {}
    for name, owner in args.items():
        if callable(owner):
            values[name] = owner(app, personas)
            continue
        persona = personas[owner]
        values[name] = persona.patient_id if name == "patient_id" else persona.user_id
    with app.test_request_context():
        from flask import url_for

        return url_for(endpoint, **values)


def all_expectations() -> dict:
    merged: dict = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        overlap = merged.keys() & module.EXPECTED.keys()
        assert not overlap, f"{info.name} repeats {overlap}"
        merged.update(module.EXPECTED)
    return merged
