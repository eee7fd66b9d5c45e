"""The pharmacy API's OpenAPI 3.1 document, served at /api/pharmacy/openapi.json (validated against the
OpenAPI 3.1 schema, and fuzzed with schemathesis, in the tests)."""

from __future__ import annotations

from typing import Any

from app.pharmacy import shipping

STATUS_VALUES = ["received", "stock_allocated", "out_of_stock", "queried", "awaiting_original", "original_received",
                 "clinically_verified", "dispensed", "dispatched", "in_transit", "out_for_delivery", "failed_attempt",
                 "delivered", "returned", "rejected"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


ERRORS = {
    "400": _error("The request is malformed; `error` says what to fix."),
    "401": _error("No valid API key, or (POST) no valid signature, or a signature older than 5 minutes."),
    "403": _error("The pharmacy is suspended, or works in the Verity portal rather than through the API."),
    "429": _error("Too many requests for this API key; slow down."),
}
SIGNED_ERRORS = {
    **ERRORS,
    "409": _error("Already received (same Idempotency-Key or signature), or a status change the prescription's "
                  "state does not allow (`error` gives the reason)."),
}
SIGNATURE_PARAMETERS = [
    {"$ref": "#/components/parameters/Timestamp"}, {"$ref": "#/components/parameters/Signature"},
    {"$ref": "#/components/parameters/IdempotencyKey"},
]
PRESCRIPTION_ID = {"name": "public_id", "in": "path", "required": True, "description": "The prescription's public id.",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 64}}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Verity pharmacy API",
            "version": "1.0.0",
            "summary": "Receive signed prescriptions, report their progress, publish stock.",
            "description": (
                "For partner pharmacies whose own system connects to Verity.\n\n"
                "**Authentication.** Every request carries the pharmacy's API key: `Authorization: Bearer vpk_...`. "
                "Keys are issued by the clinic; during a rotation the previous key keeps working for a week. Where "
                "the clinic's TLS proxy checks client certificates, the certificate must also be the pharmacy's.\n\n"
                "**Signatures.** Every POST, both ways, is signed: `X-Verity-Timestamp` (Unix seconds) and "
                "`X-Verity-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>`, with the "
                "pharmacy's signing secret, plus a unique `Idempotency-Key`. A request more than 5 minutes old, or "
                "whose key or signature was seen before, is refused (409 for a repeat: it was applied once).\n\n"
                "**Prescriptions to the pharmacy.** Verity POSTs each signed prescription to the pharmacy's webhook "
                "URL as a `PrescriptionEvent` (`event: prescription.signed`, the FHIR R4 Bundle of MedicationRequests "
                "and the compact JWS, ES256, that signs it; verify it with the keys at `/.well-known/jwks.json`). "
                "Answer 2xx to acknowledge; anything else is retried with backoff, with the same `Idempotency-Key` "
                "(de-duplicate on it). Later events (`prescription.cancelled`, `prescription.superseded`, "
                "`prescription.expired`, `thread.message`, ...) arrive the same way. `GET /prescriptions` is the pull "
                "fallback.\n\n"
                "**Status changes** go through the prescription's state machine: received → stock_allocated | "
                "out_of_stock → (awaiting_original →) clinically_verified | queried → dispensed → dispatched → "
                "delivered. A change the current state does not allow is refused with 409 and the reason."),
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "security": [{"apiKey": []}],
        "webhooks": {
            "prescriptionEvent": {"post": {
                "summary": "Verity -> pharmacy: a prescription was signed (or later changed).",
                "parameters": SIGNATURE_PARAMETERS,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PrescriptionEvent"}}}},
                "responses": {"200": {"description": "Received (any 2xx acknowledges)."}},
            }},
        },
        "paths": {
            "/api/pharmacy/v1/formulary": {"get": {
                "operationId": "listFormulary", "summary": "The formulary products (ids for publishing stock).",
                "responses": {"200": _json("Formulary", "The active formulary."), **ERRORS},
            }},
            "/api/pharmacy/v1/prescriptions": {"get": {
                "operationId": "listPrescriptions",
                "summary": "Pull: prescriptions sent to this pharmacy not yet received (new) or all it holds (open).",
                "parameters": [{"name": "status", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["new", "open"], "default": "new"}}],
                "responses": {"200": _json("PrescriptionList", "Prescriptions, oldest first."), **ERRORS},
            }},
            "/api/pharmacy/v1/prescriptions/{public_id}": {"get": {
                "operationId": "getPrescription",
                "summary": "A prescription: its state, the FHIR Bundle, the JWS, the thread and the parcel.",
                "parameters": [PRESCRIPTION_ID],
                "responses": {"200": _json("PrescriptionDetail", "The prescription."),
                              "404": _error("No prescription with this id was sent to this pharmacy."), **ERRORS},
            }},
            "/api/pharmacy/v1/prescriptions/{public_id}/status": {"post": {
                "operationId": "reportStatus",
                "summary": "Report a status change (through the prescription state machine).",
                "parameters": [PRESCRIPTION_ID, *SIGNATURE_PARAMETERS],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/StatusReport"}}}},
                "responses": {"200": _json("PrescriptionResult", "Applied."),
                              "404": _error("No prescription with this id was sent to this pharmacy."),
                              **SIGNED_ERRORS},
            }},
            "/api/pharmacy/v1/prescriptions/{public_id}/messages": {"post": {
                "operationId": "postMessage", "summary": "A question or message for the prescriber.",
                "parameters": [PRESCRIPTION_ID, *SIGNATURE_PARAMETERS],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["body"],
                    "properties": {"body": {"type": "string", "minLength": 2, "maxLength": 4000}}}}}},
                "responses": {"201": {"description": "Added to the thread.", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["id", "at"],
                               "properties": {"id": {"type": "integer"}, "at": {"type": "string"}}}}}},
                              "404": _error("No prescription with this id was sent to this pharmacy."),
                              **SIGNED_ERRORS},
            }},
            "/api/pharmacy/v1/stock": {
                "get": {"operationId": "getStock", "summary": "The stock levels Verity holds for this pharmacy.",
                        "responses": {"200": _json("StockLevels", "Levels as last published."), **ERRORS}},
                "post": {"operationId": "publishStock",
                         "summary": "Publish stock per formulary product (shown to prescribers as they prescribe).",
                         "parameters": SIGNATURE_PARAMETERS,
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/StockPublication"}}}},
                         "responses": {"200": {"description": "Recorded.", "content": {"application/json": {
                             "schema": {"type": "object", "required": ["updated"],
                                        "properties": {"updated": {"type": "integer"}}}}}},
                                       **SIGNED_ERRORS}},
            },
            "/api/courier/v1/{carrier}/events": {"post": {
                "operationId": "courierEvent",
                "summary": "A carrier's tracking event, signed with the courier webhook secret (not an API key).",
                "security": [],
                "parameters": [{"name": "carrier", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": sorted(shipping.CARRIERS)}},
                               *SIGNATURE_PARAMETERS],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CourierEvent"}}}},
                "responses": {"200": {"description": "Recorded.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["tracking_number", "status"],
                    "properties": {"tracking_number": {"type": "string"}, "status": {"type": "string"}}}}}},
                              "400": ERRORS["400"],
                              "401": _error("No valid signature, or older than 5 minutes."),
                              "404": _error("Unknown carrier, or no parcel with this tracking number."),
                              "409": _error("Event already received, or the parcel was already delivered/returned."),
                              "429": ERRORS["429"]},
            }},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "vpk_<12 hex>_<43>"}},
            "parameters": {
                "Timestamp": {"name": "X-Verity-Timestamp", "in": "header", "required": True,
                              "description": "Unix time in seconds when the request was signed.",
                              "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
                "Signature": {"name": "X-Verity-Signature", "in": "header", "required": True,
                              "description": "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>.",
                              "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}},
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": True,
                                   "description": "Unique per request; a repeat is refused (409).",
                                   "schema": {"type": "string", "minLength": 1, "maxLength": 100}},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status"],
                          "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                "Summary": {"type": "object", "required": ["id", "status", "status_label", "links"], "properties": {
                    "id": {"type": "string"}, "status": {"type": "string"}, "status_label": {"type": "string"},
                    "status_changed_at": {"type": ["string", "null"]}, "signed_at": {"type": ["string", "null"]},
                    "valid_until": {"type": ["string", "null"]}, "paper_original": {"type": "boolean"},
                    "paper_original_received": {"type": "boolean"}, "ended_reason": {"type": ["string", "null"]},
                    "links": {"type": "object", "properties": {"self": {"type": "string"}, "verify": {"type": "string"},
                                                               "jwks": {"type": "string"}}}}},
                "PrescriptionList": {"type": "object", "required": ["prescriptions"], "properties": {
                    "prescriptions": {"type": "array", "items": {"$ref": "#/components/schemas/Summary"}}}},
                "PrescriptionResult": {"type": "object", "required": ["prescription"], "properties": {
                    "prescription": {"$ref": "#/components/schemas/Summary"}}},
                "PrescriptionDetail": {"type": "object", "required": ["prescription", "bundle", "jws", "next"],
                                       "properties": {
                    "prescription": {"$ref": "#/components/schemas/Summary"},
                    "bundle": {"type": ["object", "null"], "description": "FHIR R4 Bundle of MedicationRequests."},
                    "jws": {"type": ["string", "null"], "description": "Compact JWS (ES256) over the Bundle."},
                    "next": {"type": "array", "items": {"type": "string"}},
                    "thread": {"type": "array", "items": {"type": "object"}},
                    "shipment": {"type": ["object", "null"]}}},
                "PrescriptionEvent": {"type": "object", "required": ["event", "event_id", "prescription"],
                                      "properties": {
                    "event": {"type": "string", "examples": ["prescription.signed", "prescription.cancelled"]},
                    "event_id": {"type": "string", "description": "Equal to the Idempotency-Key header."},
                    "prescription": {"$ref": "#/components/schemas/Summary"},
                    "bundle": {"type": "object"}, "jws": {"type": "string"}}},
                "StatusReport": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": STATUS_VALUES},
                    "products": {"type": "array", "maxItems": 20, "items": {"type": "integer"},
                                 "description": "out_of_stock: the products it is out of (default: all)."},
                    "offered": {"type": "array", "maxItems": 20, "items": {"type": "integer"},
                                "description": "out_of_stock: products it can offer instead."},
                    "question": {"type": "string", "maxLength": 4000, "description": "queried: the question."},
                    "matches": {"type": "boolean", "description": "original_received: paper matches?"},
                    "batches": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 40},
                                "description": "dispensed: batch numbers supplied."},
                    "carrier": {"type": "string", "enum": sorted(shipping.CARRIERS), "description": "dispatched."},
                    "tracking_number": {"type": "string", "maxLength": 40, "description": "dispatched."},
                    "reason": {"type": "string", "maxLength": 2000, "description": "rejected: why."},
                    "note": {"type": "string", "maxLength": 2000}}},
                "Formulary": {"type": "object", "required": ["products"], "properties": {"products": {
                    "type": "array", "items": {"type": "object", "required": ["id", "name"], "properties": {
                        "id": {"type": "integer"}, "name": {"type": "string"}, "manufacturer": {"type": "string"},
                        "form": {"type": "string"}, "strength": {"type": "string"}, "pack": {"type": "string"},
                        "dmd_code": {"type": ["string", "null"]}, "schedule": {"type": "string"}}}}}},
                "StockLevel": {"type": "object", "required": ["product_id"], "properties": {
                    "product_id": {"type": "integer"},
                    "packs": {"type": ["integer", "null"], "minimum": 0,
                              "description": "Whole packs; null: not counted."},
                    "in_stock": {"type": "boolean"},
                    "reported_at": {"type": ["string", "null"]}}},
                "StockLevels": {"type": "object", "required": ["levels"], "properties": {
                    "levels": {"type": "array", "items": {"$ref": "#/components/schemas/StockLevel"}}}},
                "StockPublication": {"type": "object", "required": ["levels"], "properties": {
                    "levels": {"type": "array", "minItems": 1, "maxItems": 500,
                               "items": {"$ref": "#/components/schemas/StockLevel"}}}},
                "CourierEvent": {"type": "object", "required": ["event_id", "tracking_number", "status"],
                                 "properties": {
                    "event_id": {"type": "string", "minLength": 1, "maxLength": 100},
                    "tracking_number": {"type": "string", "minLength": 1, "maxLength": 40},
                    "status": {"type": "string", "enum": list(shipping.REPORTABLE)},
                    "occurred_at": {"type": "string", "format": "date-time"},
                    "note": {"type": "string", "maxLength": 300}}},
            },
        },
    }
