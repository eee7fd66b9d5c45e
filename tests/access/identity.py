"""Who may reach each identity route: the patient's own pages, the review queue, the webhook.

The photos are shown through the documents domain's viewer (tests/access/documents.py).

The check these routes open belongs to the persona "patient" and is made once per app. The walk
goes through endpoints in name order, so it exists before "identity.start" and "identity.status"
are visited: the patient with an open check is sent from the start page to the status page.
"""

from __future__ import annotations

from tests.access import (
    ADMIN,
    CLIN,
    EVERYONE,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    STAFF,
    table,
)


def patients_check(app, personas) -> int:
    cached = app.extensions.setdefault("identity_access", {})
    if "check" not in cached:
        from tests.test_identity import submit_check

        cached["check"] = submit_check(app, personas["patient"])
    return cached["check"]


def configured_provider(_app, _personas) -> str:
    return "http"


REVIEWERS = (CLIN, OTHER_CLIN, RECEP, ADMIN)

EXPECTED: dict = {
    "identity.status": ("GET", {}, table(ok=(PATIENT,), redirect=(OTHER_PATIENT,), forbidden=STAFF)),
    "identity.start": ("GET", {}, table(ok=(OTHER_PATIENT,), redirect=(PATIENT,), forbidden=STAFF)),
    "identity.reviews": ("GET", {}, table(ok=REVIEWERS, forbidden=(*PATIENTS, PHARM, OTHER_PHARM))),
    "identity.review": ("GET", {"check_id": patients_check},
                        table(ok=(CLIN, RECEP, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    # Clinicians may look, reception and admin decide; an empty form is a 400 for them.
    "identity.decide": ("POST", {"check_id": patients_check},
                        table(bad_request=(RECEP, ADMIN), forbidden=(*PATIENTS, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM))),
    # Public, authenticated by its signature; with the default staff provider there is no webhook.
    "identity.webhook": ("POST", {"provider": configured_provider}, {p: 404 for p in EVERYONE}),
}
