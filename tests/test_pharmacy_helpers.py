"""Helpers shared by the pharmacy tests, the access walk and the e2e set-up: a patient ready for a
prescription (prescribing's helper), stock at a pharmacy, an API pharmacy with its credentials, and
signed calls to the pharmacy API through the test client. No tests here."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass

from app.auth.models import User
from app.extensions import db
from tests.pharmacy_peer import signed_headers
from tests.test_prescribing_helpers import FLOWER, OIL, Ready, acting_as, plan_values, prepare, sign_new

T18 = "Verdant T18 Flower"
__all__ = ["FLOWER", "OIL", "T18", "Ready", "acting_as", "prepare", "sign_new"]


def ready(personas, *, quota_g: str | None = None, **kwargs) -> Ready:
    """Inside an app context: a patient ready for prescriptions; the plan allows T22 and T18 flower, the oil
    and capsules (and, with quota_g, that many grams in 30 days)."""
    from app.patients import services as patients
    from app.prescribing import plans

    prepared = prepare(personas, **kwargs)
    doctor = db.session.get(User, prepared.clinician_id)
    values = plan_values(prepared.products, quotas={"g": quota_g or "30", "ml": "60", "capsule": "120"})
    values["products"][prepared.products[T18]] = ("0.1", "1")
    with acting_as(doctor.id, "clinician"):
        plans.save_version(patients.get(prepared.patient_id), doctor, values, reason="Add T18 as an alternative")
    return prepared


def stock(pharmacy_id: int, packs_by_name: dict[str, int], products: dict[str, int], *, batch: str = "B1",
          months: int = 12) -> None:
    """Goods in at a portal pharmacy (inside an app context)."""
    from app.pharmacy import inventory
    from app.pharmacy import services as pharmacies

    pharmacy = pharmacies.get(pharmacy_id)
    for name, packs in packs_by_name.items():
        inventory.receive_goods(pharmacy, product_id=products[name], batch_number=f"{batch}-{products[name]}",
                                expires_on=dt.date.today() + dt.timedelta(days=30 * months), packs=packs,
                                supplier="Test Wholesale")


@dataclass
class ApiCredentials:
    pharmacy_id: int
    key: str
    secret: str


def make_api(pharmacy_id: int, *, webhook_url: str | None = None) -> ApiCredentials:
    """Turn a pharmacy into an API pharmacy with a key and a signing secret (inside an app context)."""
    from app.pharmacy import services as pharmacies

    pharmacy = pharmacies.get(pharmacy_id)
    values = {name: getattr(pharmacy, name) or "" for name in ("name", "gphc_number", "address")}
    pharmacies.update(pharmacy, {**values, "connection": "api", "webhook_url": webhook_url or ""})
    key = pharmacies.issue_api_key(pharmacy).key
    return ApiCredentials(pharmacy_id, key, pharmacies.rotate_signing_secret(pharmacy))


def api_get(client, path: str, credentials: ApiCredentials):
    return client.get(path, headers={"Authorization": f"Bearer {credentials.key}"})


def api_post(client, path: str, payload: dict, credentials: ApiCredentials, *, key: str | None = None,
             timestamp: int | None = None, secret: str | None = None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = signed_headers(secret or credentials.secret, body, path=path, key=key or uuid.uuid4().hex,
                             timestamp=timestamp if timestamp is not None else int(time.time()))
    headers["Authorization"] = f"Bearer {credentials.key}"
    return client.post(path, data=body, headers=headers)


def status(client, credentials: ApiCredentials, public_id: str, payload: dict, **kwargs):
    return api_post(client, f"/api/pharmacy/v1/prescriptions/{public_id}/status", payload, credentials, **kwargs)


def deliver_outbox(app) -> int:
    """One worker cycle (inside or outside an app context)."""
    from app.worker import run_cycle

    with app.app_context():
        return run_cycle()


def state_of(app, prescription_id: int) -> str:
    from app.prescribing import services as prescribing

    with app.app_context():
        return prescribing.get(prescription_id).status
