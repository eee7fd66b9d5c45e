"""Handing prescriptions (and what happens to them afterwards) to the pharmacy: the outbox handler for
"pharmacy.prescription" messages, which signing writes in its own transaction.

* A portal pharmacy reads prescriptions from Verity itself: delivering "signed" marks the prescription
  transmitted, and it appears in the workspace queue.
* An API pharmacy is pushed each event at its webhook: a POST of JSON signed with HMAC-SHA256 (see
  signatures.py), with the outbox message's idempotency key as `Idempotency-Key` and `event_id`. For
  "signed" the body carries the FHIR R4 Bundle of MedicationRequests and the compact JWS that signs it.
  Any 2xx answer is the acknowledgement; the prescription then becomes transmitted (once: the state
  machine's conditional update makes a second acknowledgement a no-op). Anything else (a timeout, a
  refused connection, a 5xx, a 4xx) is a failed attempt, retried with backoff by the outbox until the
  dead-letter limit. The pharmacy de-duplicates on the key, so a push repeated after a lost answer or a
  worker killed mid-delivery is applied once. A pharmacy without a webhook URL pulls instead (the API).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flask import current_app

from app.outbox import services as outbox
from app.outbox.models import OutboxMessage
from app.pharmacy import services as pharmacies
from app.pharmacy import signatures
from app.pharmacy.models import API
from app.pharmacy.settings import setting
from app.prescribing import notifications, states
from app.prescribing.models import Prescription

S = states.State
KIND = notifications.PHARMACY_KIND
USER_AGENT = "Verity-Pharmacy-Webhook/1"
#: The most of a pharmacy's answer we read (we need only its status).
MAX_ANSWER_BYTES = 64 * 1024


def _base_url() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def bundle_of(prescription: Prescription) -> dict[str, Any] | None:
    """The FHIR Bundle the JWS signs (its payload), as JSON."""
    if not prescription.jws:
        return None
    payload = prescription.jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def summary(prescription: Prescription) -> dict[str, Any]:
    """What the API says about a prescription besides its signed content."""
    state = states.state_of(prescription)
    base = _base_url()
    return {
        "id": prescription.public_id,
        "status": state.value,
        "status_label": state.label,
        "status_changed_at": _iso(prescription.status_changed_at),
        "signed_at": _iso(prescription.signed_at),
        "valid_until": _iso(prescription.valid_until),
        "paper_original": prescription.paper_original,
        "paper_original_received": prescription.paper_received_at is not None,
        "ended_reason": prescription.ended_reason,
        "links": {"self": f"{base}/api/pharmacy/v1/prescriptions/{prescription.public_id}",
                  "verify": f"{base}/verify/{prescription.public_id}", "jwks": f"{base}/.well-known/jwks.json"},
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def body_for(message: OutboxMessage, prescription: Prescription, event: str) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": message.idempotency_key, "prescription": summary(prescription)}
    if event == "signed":
        body.update(event="prescription.signed", bundle=bundle_of(prescription), jws=prescription.jws)
    elif event.startswith("message:"):
        from app.pharmacy import stockouts

        message_id = int(event.partition(":")[2])
        found = next((m for m in stockouts.thread(prescription) if m.id == message_id), None)
        body.update(event="thread.message", message=None if found is None else {
            "id": found.id, "kind": found.kind, "side": found.side, "body": found.body, "at": _iso(found.at)})
    elif event.startswith("original_posted:"):
        body.update(event="prescription.original_posted", carrier=prescription.paper_carrier,
                    tracking_number=prescription.paper_tracking)
    else:
        body.update(event=f"prescription.{event}")
    return body


def post(url: str, body: bytes, *, secret: str, key: str, timeout: float) -> int:
    """POST a signed body; return the 2xx status, or raise DeliveryFailed (with the status when there was one)."""
    path = urllib.parse.urlsplit(url).path or "/"
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signatures.headers(secret, body, key=key, method="POST", path=path)}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (http(s) checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(MAX_ANSWER_BYTES)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise outbox.DeliveryFailed(f"the pharmacy answered {exc.code}", http_status=exc.code) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise outbox.DeliveryFailed(f"no answer from the pharmacy ({type(reason).__name__})") from None


@outbox.handler(KIND)
def deliver(message: OutboxMessage, payload: dict[str, Any]) -> int | None:
    from app.prescribing import services as prescribing

    prescription = prescribing.get(int(payload["prescription_id"]))
    if prescription is None:
        return None
    pharmacy = pharmacies.get(int(payload.get("pharmacy_id") or prescription.pharmacy_id or 0))
    if pharmacy is None:
        return None
    event = str(payload.get("event") or "")
    if pharmacy.connection != API:
        if event == "signed" and states.state_of(prescription) is S.SIGNED:
            _transmitted(prescription, {"channel": "portal"})
        return None  # the portal shows everything else from the record
    if event == "signed" and states.state_of(prescription) is not S.SIGNED:
        return None  # pulled and received meanwhile, or cancelled before it left: nothing to push
    if not pharmacy.webhook_url:
        return None  # a pull-only pharmacy fetches it through the API
    secret = pharmacies.signing_secret(pharmacy)
    if not secret:
        raise outbox.DeliveryFailed("the pharmacy has no signing secret: set one on its page")
    body = json.dumps(body_for(message, prescription, event), sort_keys=True, separators=(",", ":")).encode()
    status = post(pharmacy.webhook_url, body, secret=secret, key=message.idempotency_key,
                  timeout=float(setting("PHARMACY_WEBHOOK_TIMEOUT_SECONDS")))
    if event == "signed":
        _transmitted(prescription, {"channel": "api", "http_status": status})
    return status


def _transmitted(prescription: Prescription, detail: dict[str, Any]) -> None:
    # Already moved on (acknowledged twice, pulled, or cancelled meanwhile): applied at most once.
    with contextlib.suppress(states.TransitionError):
        states.apply(prescription, S.TRANSMITTED, actor_role=states.SYSTEM, detail=detail)
