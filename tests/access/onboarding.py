"""Who may reach the onboarding pages of the patients, consent and records domains."""

from __future__ import annotations

from tests.access import ADMIN, ADMIN_ONLY, CLIN, OTHER_CLIN, OTHER_PHARM, PATIENTS, PHARM, RECEP, STAFF, table

FRONT_DESK = (RECEP, ADMIN)
NOT_FRONT_DESK = (*PATIENTS, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM)


def _missing(app, personas) -> int:
    return 999_999


EXPECTED = {
    "consent.index": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    # An unknown document: the patient is told there is nothing to withdraw (redirect with a message).
    "consent.withdraw": ("POST", {"document_id": _missing}, table(redirect=PATIENTS, forbidden=STAFF)),
    "consent.manage": ("GET", {}, ADMIN_ONLY),
    "records.authorise": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "records.requests": ("GET", {}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "records.advance": ("POST", {"request_id": _missing, "step": lambda app, personas: "requested"},
                        table(not_found=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "records.attach": ("POST", {"request_id": _missing},
                       table(not_found=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "patients.details": ("GET", {"purpose": lambda app, personas: "booking"}, table(ok=PATIENTS, forbidden=STAFF)),
    "patients.onboarding_board": ("GET", {}, table(ok=(RECEP, ADMIN, CLIN, OTHER_CLIN),
                                                  forbidden=(*PATIENTS, PHARM, OTHER_PHARM))),
}
