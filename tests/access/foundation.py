"""Who may reach each route of the foundation (accounts, records, admin, audit).

Each domain keeps its expectations in a module of this package; tests/test_access.py walks
them all. A URL argument is either the name of a persona whose object fills it, or a function
(app, personas) -> value that makes the object (e.g. a document of the persona "patient").
"""

from __future__ import annotations

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
    ANON,
    CLIN,
    EVERYONE,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    SIGNED_IN,
    STAFF,
    table,
)

# (method, url arguments by name of a persona's object, expected status per persona)
EXPECTED: dict[str, tuple[str, dict[str, str], dict[str, int]]] = {
    "core.home": ("GET", {}, {ANON: 200, **{p: 302 for p in SIGNED_IN}}),
    "core.healthz": ("GET", {}, {p: 200 for p in EVERYONE}),
    "auth.login": ("GET", {}, {ANON: 200, **{p: 302 for p in SIGNED_IN}}),
    "auth.register": ("GET", {}, {ANON: 200, **{p: 302 for p in SIGNED_IN}}),
    "auth.logout": ("POST", {}, table(redirect=SIGNED_IN)),
    # Patients have no second factor unless they turn it on: the page sends them to set it up.
    "auth.two_factor": ("GET", {}, table(ok=STAFF, redirect=PATIENTS)),
    "auth.totp_setup": ("GET", {}, table(ok=PATIENTS, redirect=STAFF)),
    "auth.step_up": ("GET", {}, table(ok=STAFF, redirect=PATIENTS)),
    "patients.dashboard": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "patients.staff_home": ("GET", {}, table(ok=STAFF, forbidden=PATIENTS)),
    "patients.record": ("GET", {"patient_id": "patient"},
                        table(ok=(PATIENT, CLIN, RECEP, ADMIN),
                              forbidden=(OTHER_PATIENT, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "admin.users": ("GET", {}, ADMIN_ONLY),
    "admin.new_user": ("GET", {}, ADMIN_ONLY),
    "admin.edit_user": ("GET", {"user_id": "clinician"},
                        ADMIN_ONLY),
    "audit.index": ("GET", {}, ADMIN_ONLY),
}


