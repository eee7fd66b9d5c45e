"""Who may reach each pharmacy route: the workspace (pharmacists, their own pharmacy's prescriptions), the
patient's pharmacy and order pages, the clinic's side, the pipeline board, the administration, and the
API (every caller without an API key is refused with 401; the OpenAPI document is public)."""

from __future__ import annotations

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
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
from tests.access.prescribing import _objects as prescribing_objects


def _signed(app, personas) -> int:
    return prescribing_objects(app, personas)["signed"]


def _public_id(app, personas) -> str:
    return prescribing_objects(app, personas)["public_id"]


def _product(app, personas) -> int:
    return prescribing_objects(app, personas)["product"]


def _pharmacy(app, personas) -> int:
    from app.auth.models import User
    from app.extensions import db

    with app.app_context():
        return db.session.get(User, personas["pharmacist"].user_id).pharmacy_id


def _missing(app, personas) -> int:
    return 999_999


SIGNED = {"prescription_id": _signed}
PHARMACISTS = (PHARM, OTHER_PHARM)
NOT_PHARMACISTS = (*PATIENTS, CLIN, OTHER_CLIN, RECEP, ADMIN)
CLINIC = (CLIN, RECEP, ADMIN)
BOARD = (RECEP, ADMIN)
NO_KEY = {p: 401 for p in EVERYONE}

EXPECTED = {
    # The pharmacist's workspace: their own pharmacy's prescriptions only.
    "pharmacy.queue": ("GET", {}, table(ok=PHARMACISTS, forbidden=NOT_PHARMACISTS)),
    "pharmacy.prescription": ("GET", SIGNED, table(ok=(PHARM,), forbidden=(*NOT_PHARMACISTS, OTHER_PHARM))),
    # A step without the state the pharmacist saw is refused as incomplete.
    "pharmacy.act": ("POST", {**SIGNED, "action": lambda app, personas: "allocate"}, table(bad_request=(PHARM,),
                                                                     forbidden=(*NOT_PHARMACISTS, OTHER_PHARM))),
    "pharmacy.inventory_page": ("GET", {}, table(ok=PHARMACISTS, forbidden=NOT_PHARMACISTS)),
    "pharmacy.inventory_change": ("POST", {"kind": lambda app, personas: "goods-in"}, table(bad_request=PHARMACISTS,
                                                                      forbidden=NOT_PHARMACISTS)),
    "pharmacy.cd_register": ("GET", {"product_id": _product}, table(ok=PHARMACISTS, forbidden=NOT_PHARMACISTS)),
    # The patient's pages.
    "pharmacy.my_pharmacy": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "pharmacy.my_order": ("GET", SIGNED, table(ok=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    # The clinic's side of a prescription at the pharmacy.
    "pharmacy.alerts": ("GET", {}, table(ok=(CLIN, OTHER_CLIN), forbidden=(*PATIENTS, RECEP, *PHARMACISTS, ADMIN))),
    "pharmacy.clinic_view": ("GET", SIGNED, table(ok=CLINIC, forbidden=(*PATIENTS, OTHER_CLIN, *PHARMACISTS))),
    "pharmacy.replace": ("POST", SIGNED, table(bad_request=(CLIN,), forbidden=(*PATIENTS, OTHER_CLIN, RECEP,
                                                                               *PHARMACISTS, ADMIN))),
    "pharmacy.redirect_to": ("POST", SIGNED, table(bad_request=(CLIN,), forbidden=(*PATIENTS, OTHER_CLIN, RECEP,
                                                                                   *PHARMACISTS, ADMIN))),
    "pharmacy.clinic_message": ("POST", SIGNED, table(bad_request=CLINIC, forbidden=(*PATIENTS, OTHER_CLIN,
                                                                                     *PHARMACISTS))),
    # The pipeline board (an unknown dead letter: told so, and back to the board).
    "pharmacy.pipeline_board": ("GET", {}, table(ok=BOARD, forbidden=(*PATIENTS, CLIN, OTHER_CLIN, *PHARMACISTS))),
    "pharmacy.timeline": ("GET", SIGNED, table(ok=BOARD, forbidden=(*PATIENTS, CLIN, OTHER_CLIN, *PHARMACISTS))),
    "pharmacy.retry_dead_letter": ("POST", {"message_id": _missing}, table(redirect=(ADMIN,), forbidden=(
        *PATIENTS, CLIN, OTHER_CLIN, RECEP, *PHARMACISTS))),
    # Partner pharmacies.
    "pharmacy.admin_list": ("GET", {}, ADMIN_ONLY),
    "pharmacy.admin_new": ("GET", {}, ADMIN_ONLY),
    "pharmacy.admin_edit": ("GET", {"pharmacy_id": _pharmacy}, ADMIN_ONLY),
    "pharmacy.admin_credentials": ("POST", {"pharmacy_id": _pharmacy}, table(bad_request=(ADMIN,), forbidden=(
        *PATIENTS, CLIN, OTHER_CLIN, RECEP, *PHARMACISTS))),
    # The API: an API key (not a session) authenticates; without one, 401 for everyone.
    "pharmacy.api.openapi": ("GET", {}, {p: 200 for p in EVERYONE}),
    "pharmacy.api.formulary_list": ("GET", {}, NO_KEY),
    "pharmacy.api.prescriptions_list": ("GET", {}, NO_KEY),
    "pharmacy.api.prescription_detail": ("GET", {"public_id": _public_id}, NO_KEY),
    "pharmacy.api.report_status": ("POST", {"public_id": _public_id}, NO_KEY),
    "pharmacy.api.post_message": ("POST", {"public_id": _public_id}, NO_KEY),
    "pharmacy.api.stock_list": ("GET", {}, NO_KEY),
    "pharmacy.api.publish_stock": ("POST", {}, NO_KEY),
    # Couriers sign with their webhook secret; none is configured here, so every request is refused.
    "pharmacy.api.courier_event": ("POST", {"carrier": lambda app, personas: "sandbox"}, NO_KEY),
}
