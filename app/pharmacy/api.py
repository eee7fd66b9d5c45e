"""The pharmacy API (`/api/pharmacy/v1/...`) and the courier webhook (`/api/courier/v1/...`).

Documented by the OpenAPI 3.1 document at `/api/pharmacy/openapi.json` (openapi.py). Each pharmacy
system authenticates with its API key (`Authorization: Bearer vpk_...`, hashed at rest, two active
during a rotation); every POST is also signed with the pharmacy's HMAC secret over timestamp and body
and carries an `Idempotency-Key` (signatures.py): a request older than 5 minutes, or whose key or
signature was seen before, is refused. Status reports go through the prescription state machine
(workflow.py), so an illegal or out-of-order one is a 409 with the reason, recorded in the audit trail.
Requests are rate-limited per API key. Prescriptions are named by their public id (the QR code's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, jsonify, request

from app import policy
from app.audit import context as audit_context
from app.audit import services as audit
from app.database import transaction
from app.extensions import csrf, db, limiter
from app.pharmacy import delivery, inventory, shipping, signatures, stockouts, workflow
from app.pharmacy import services as pharmacies
from app.pharmacy.models import InboundEvent, Pharmacy
from app.pharmacy.settings import setting
from app.prescribing import formulary, states
from app.prescribing import services as prescribing

api = Blueprint("api", __name__)
csrf.exempt(api)

STATUSES = ("received", "stock_allocated", "out_of_stock", "queried", "awaiting_original", "original_received",
            "clinically_verified", "dispensed", "dispatched", "in_transit", "out_for_delivery", "failed_attempt",
            "delivered", "returned", "rejected")


def _rate_key() -> str:
    """Per API key (its public prefix) when one is sent; per address otherwise."""
    scheme, _, raw = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and raw.startswith(pharmacies.KEY_PREFIX):
        return "pharmacy-key:" + raw[:16]
    return "address:" + (request.remote_addr or "unknown")


limiter.limit(lambda: str(setting("PHARMACY_API_RATE_LIMIT")), key_func=_rate_key, scope="pharmacy-api")(api)


class Refused(Exception):
    def __init__(self, status: int, reason: str, **extra: Any):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def problem(status: int, reason: str, **extra: Any) -> Response:
    response = jsonify(error=reason, status=status, **extra)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="verity-pharmacy-api"'
    return response


@api.errorhandler(Refused)
def _refused(exc: Refused) -> Response:
    return problem(exc.status, exc.reason, **exc.extra)


@api.errorhandler(404)
def _not_found(_exc) -> Response:
    return problem(404, "not found")


@api.errorhandler(405)
def _not_allowed(_exc) -> Response:
    return problem(405, "method not allowed")


@api.errorhandler(429)
def _too_many(exc) -> Response:
    return problem(429, f"too many requests: at most {getattr(exc, 'description', 'the limit')}; slow down")


@api.errorhandler(413)
def _too_large(_exc) -> Response:
    return problem(413, "the request body is too large")


# Authentication, signatures, replay protection --------------------------------------------

def _pharmacy() -> Pharmacy:
    """The calling pharmacy (API key, and client certificate where configured); binds it as the audit actor."""
    if "api_pharmacy" in g:
        return g.api_pharmacy
    header = setting("PHARMACY_MTLS_HEADER")
    try:
        pharmacy = pharmacies.authenticate(request.headers.get("Authorization"),
                                           client_cert_sha256=request.headers.get(header) if header else None)
    except pharmacies.ApiAuthError as exc:
        raise Refused(exc.status, exc.reason) from None
    g.api_pharmacy = pharmacy
    audit_context.bind(audit_context.Actor(user_id=None, role="pharmacy", ip=request.remote_addr,
                                           user_agent=f"pharmacy:{pharmacy.id} {request.user_agent.string}"[:300]))
    return pharmacy


def _claim(source: str, keys: list[str]) -> list[int]:
    """Record the request's key(s) as seen, or refuse a repeat (409) naming what the first one got."""
    try:
        with transaction() as session:
            rows = [InboundEvent(source=source, event_key=key[:120], status_code=202) for key in keys]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]
    except sa.exc.IntegrityError:
        db.session.rollback()
        first = db.session.scalar(sa.select(InboundEvent).where(InboundEvent.source == source,
                                                                InboundEvent.event_key.in_(keys)))
        raise Refused(409, "this request was already received (same Idempotency-Key or signature): not applied again",
                      first_status=first.status_code if first else None) from None


def _settle(ids: list[int], status: int | None) -> None:
    """Keep the answer for a later repeat, or (status None: our own failure) forget the claim so a retry works."""
    with transaction() as session:
        for row in session.scalars(sa.select(InboundEvent).where(InboundEvent.id.in_(ids))):
            if status is None:
                session.delete(row)
            else:
                row.status_code = status


def signed(source: str, secret: str | None, action: Callable[[Any], tuple[dict, int]]) -> Response:
    """Check the signature, the age and the keys of a POST, then act once."""
    body = request.get_data(cache=True)
    if not secret:
        raise Refused(401, "no signing secret is set up for this sender: ask the clinic for one")
    try:
        key = signatures.clean_key(request.headers.get(signatures.KEY_HEADER))
        signatures.verify(secret, timestamp=request.headers.get(signatures.TIMESTAMP_HEADER),
                          signature=request.headers.get(signatures.SIGNATURE_HEADER), body=body,
                          method=request.method, path=request.path,
                          tolerance=int(setting("PHARMACY_SIGNATURE_TOLERANCE_SECONDS")))
    except signatures.SignatureRefused as exc:
        _audit_refusal(source, exc.status, exc.reason)
        raise Refused(exc.status, exc.reason) from None
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object (Content-Type: application/json)")
    signature_digest = hashlib.sha256(request.headers[signatures.SIGNATURE_HEADER].strip().encode()).hexdigest()
    ids = _claim(source, [f"key:{key}", f"sig:{signature_digest}"])
    try:
        payload, status = action(data)
    except Refused as exc:
        _settle(ids, None if exc.status == 404 else exc.status)  # an unknown id may be known on a retry
        raise
    except workflow.WorkflowError as exc:
        _settle(ids, None if exc.status == 404 else exc.status)
        raise Refused(exc.status, str(exc), fields=exc.errors or None) from None
    except Exception:
        db.session.rollback()
        _settle(ids, None)
        raise
    _settle(ids, status)
    response = jsonify(payload)
    response.status_code = status
    return response


def _audit_refusal(source: str, status: int, reason: str) -> None:
    with transaction():
        audit.record("pharmacy.api_refused", detail={"source": source, "status": status, "reason": reason[:300],
                                                     "path": request.path})


def _prescription(pharmacy: Pharmacy, public_id: str):
    prescription = prescribing.by_public_id(public_id)
    if not workflow.held_by(prescription, pharmacy):
        raise Refused(404, "no prescription with this id was sent to this pharmacy")
    return prescription


# Reading ------------------------------------------------------------------------------------

@api.route("/api/pharmacy/openapi.json")
@policy.public
def openapi():
    from app.pharmacy.openapi import document

    response = jsonify(document(current_app.config["BASE_URL"]))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@api.route("/api/pharmacy/v1/formulary")
@policy.public
def formulary_list():
    _pharmacy()
    return jsonify(products=[{"id": p.id, "name": p.name, "manufacturer": p.manufacturer, "form": p.form,
                              "strength": formulary.strength(p), "pack": formulary.pack(p),
                              "dmd_code": p.dmd_code, "schedule": p.schedule}
                             for p in formulary.products(include_withdrawn=False)])


@api.route("/api/pharmacy/v1/prescriptions")
@policy.public
def prescriptions_list():
    """The pull fallback: prescriptions sent to this pharmacy and not yet reported received (or, with
    ?status=open, every one it still holds)."""
    pharmacy = _pharmacy()
    which = request.args.get("status", "new")
    if which not in ("new", "open"):
        raise Refused(400, "status must be 'new' or 'open'")
    wanted = [states.State.SIGNED, states.State.TRANSMITTED] if which == "new" else \
        [s for s in states.LIVE if s is not states.State.DELIVERED]
    found = [delivery.summary(p) for p in prescribing.by_status(wanted, pharmacy_id=pharmacy.id)]
    return jsonify(prescriptions=found)


def _detail(prescription) -> dict[str, Any]:
    shipment = shipping.shipment_for(prescription)
    return {
        "prescription": delivery.summary(prescription),
        "bundle": delivery.bundle_of(prescription),
        "jws": prescription.jws,
        "next": [s.value for s in states.next_states(prescription, actor_role="pharmacy")],
        "thread": [{"id": m.id, "kind": m.kind, "side": m.side, "body": m.body, "at": delivery._iso(m.at)}
                   for m in stockouts.thread(prescription)],
        "shipment": None if shipment is None else {
            "carrier": shipment.carrier, "tracking_number": shipment.tracking_number, "status": shipment.status,
            "tracking_url": shipping.tracking_link(shipment.carrier, shipment.tracking_number)},
    }


@api.route("/api/pharmacy/v1/prescriptions/<public_id>")
@policy.public
def prescription_detail(public_id: str):
    pharmacy = _pharmacy()
    return jsonify(_detail(_prescription(pharmacy, public_id)))


@api.route("/api/pharmacy/v1/stock")
@policy.public
def stock_list():
    pharmacy = _pharmacy()
    levels = inventory.live_stock(pharmacy.id, [p.id for p in formulary.products(include_withdrawn=False)])
    return jsonify(levels=[{"product_id": pid, "packs": level.packs, "in_stock": level.in_stock,
                            "reported_at": delivery._iso(level.as_of)} for pid, level in sorted(levels.items())])


# Writing ------------------------------------------------------------------------------------

def _ints(value: Any, name: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 20 \
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in value):
        raise Refused(400, f"{name} must be a list of at most 20 formulary product ids")
    return value


def _text(data: dict, name: str, *, required: bool = False, limit: int = 4000) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise Refused(400, f"{name} must be {'a non-empty' if required else 'a'} string of at most {limit} characters")
    return value


def _report(pharmacy: Pharmacy, prescription, data: dict) -> tuple[dict, int]:
    status = data.get("status")
    if status not in STATUSES:
        raise Refused(400, f"status must be one of: {', '.join(STATUSES)}")
    note = _text(data, "note", limit=2000)
    if status == "received":
        workflow.receive(prescription, pharmacy)
    elif status == "stock_allocated":
        workflow.allocate(prescription, pharmacy)
    elif status == "out_of_stock":
        workflow.out_of_stock(prescription, pharmacy, products=_ints(data.get("products"), "products"),
                              offered=_ints(data.get("offered"), "offered"), note=note)
    elif status == "queried":
        workflow.query(prescription, pharmacy, _text(data, "question", required=True))
    elif status == "awaiting_original":
        workflow.await_original(prescription, pharmacy)
    elif status == "original_received":
        if not isinstance(data.get("matches"), bool):
            raise Refused(400, "matches must be true or false: does the paper original match the electronic copy?")
        workflow.original_received(prescription, pharmacy, matches=data["matches"], note=note)
    elif status == "clinically_verified":
        workflow.verify(prescription, pharmacy)
    elif status == "dispensed":
        batches = data.get("batches")
        if batches is not None and (not isinstance(batches, list) or len(batches) > 20
                                    or not all(isinstance(b, str) and 0 < len(b) <= 40 for b in batches)):
            raise Refused(400, "batches must be a list of batch numbers (strings of at most 40 characters)")
        workflow.dispense(prescription, pharmacy, batches=batches or [])
    elif status == "dispatched":
        workflow.dispatch(prescription, pharmacy, carrier=_text(data, "carrier", required=True, limit=30),
                          tracking=_text(data, "tracking_number", required=True, limit=40))
    elif status == "rejected":
        workflow.reject(prescription, pharmacy, _text(data, "reason", required=True, limit=2000))
    else:
        workflow.delivery_event(prescription, pharmacy, status, note=note)
    db.session.refresh(prescription)
    return {"prescription": delivery.summary(prescription)}, 200


@api.route("/api/pharmacy/v1/prescriptions/<public_id>/status", methods=["POST"])
@policy.public
def report_status(public_id: str):
    """A status change from the pharmacy's system (received, stock allocated, out of stock, ... delivered)."""
    pharmacy = _pharmacy()

    def act(data: dict) -> tuple[dict, int]:
        return _report(pharmacy, _prescription(pharmacy, public_id), data)

    return signed(f"pharmacy:{pharmacy.id}", pharmacies.signing_secret(pharmacy), act)


@api.route("/api/pharmacy/v1/prescriptions/<public_id>/messages", methods=["POST"])
@policy.public
def post_message(public_id: str):
    """A message to the prescriber on a prescription the pharmacy holds (the thread in the record)."""
    pharmacy = _pharmacy()

    def act(data: dict) -> tuple[dict, int]:
        prescription = _prescription(pharmacy, public_id)
        body = _text(data, "body", required=True)
        if states.state_of(prescription) not in states.AT_PHARMACY:
            raise Refused(409, "messages are for prescriptions the pharmacy holds and has not yet supplied")
        try:
            message = stockouts.add_message(prescription, "query", "pharmacy", body, user=None)
        except stockouts.StockOutError as exc:
            raise Refused(400, str(exc)) from None
        return {"id": message.id, "at": delivery._iso(message.at)}, 201

    return signed(f"pharmacy:{pharmacy.id}", pharmacies.signing_secret(pharmacy), act)


@api.route("/api/pharmacy/v1/stock", methods=["POST"])
@policy.public
def publish_stock():
    """The pharmacy's stock per formulary product, shown to prescribers as they prescribe."""
    pharmacy = _pharmacy()

    def act(data: dict) -> tuple[dict, int]:
        levels = data.get("levels")
        if not isinstance(levels, list) or not 0 < len(levels) <= 500 or not all(isinstance(x, dict) for x in levels):
            raise Refused(400, "levels must be a list of 1 to 500 objects {product_id, packs, in_stock}")
        try:
            count = inventory.publish(pharmacy, levels)
        except inventory.InventoryError as exc:
            raise Refused(400, str(exc)) from None
        return {"updated": count}, 200

    return signed(f"pharmacy:{pharmacy.id}", pharmacies.signing_secret(pharmacy), act)


# The courier webhook ------------------------------------------------------------------------

@api.route("/api/courier/v1/<carrier>/events", methods=["POST"])
@policy.public
def courier_event(carrier: str):
    """A carrier's tracking event (Royal Mail / DPD style), signed with COURIER_WEBHOOK_SECRET."""
    if carrier not in shipping.CARRIERS:
        raise Refused(404, "unknown carrier")

    def act(data: dict) -> tuple[dict, int]:
        try:
            event = shipping.parse_courier_event(request.get_data(cache=True))
        except shipping.ShippingError as exc:
            raise Refused(400, str(exc)) from None
        shipment = shipping.by_tracking(carrier, event.tracking_number)
        if shipment is None:
            raise Refused(404, "no parcel with this tracking number was booked with this carrier")
        _claim(f"courier:{carrier}", [f"event:{event.event_id}"])
        try:
            shipping.record_event(shipment, event.status, source="courier", occurred_at=event.occurred_at,
                                  note=event.note)
        except shipping.ShippingError as exc:
            raise Refused(exc.status, str(exc)) from None
        return {"tracking_number": shipment.tracking_number, "status": shipment.status}, 200

    audit_context.bind(audit_context.Actor(user_id=None, role="system", ip=request.remote_addr,
                                           user_agent=f"courier:{carrier}"))
    return signed(f"courier:{carrier}", setting("COURIER_WEBHOOK_SECRET"), act)
