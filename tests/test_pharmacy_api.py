"""The pharmacy API: its OpenAPI 3.1 document, API keys with rotation, signed requests with replay
protection, status changes through the state machine, stock publishing, the pull fallback, and the push
of signed prescriptions to a pharmacy's webhook through the outbox."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import sqlalchemy as sa
from joserfc import jws
from joserfc.jwk import KeySet

from app.audit.models import AuditEvent
from app.extensions import db
from app.outbox import services as outbox
from app.outbox.models import DEAD, OutboxAttempt, OutboxMessage
from app.pharmacy import services as pharmacies
from app.pharmacy.models import PharmacyApiKey
from app.prescribing import pki
from app.prescribing import services as prescribing
from tests.conftest import sign_in_as
from tests.pharmacy_peer import Faults, PharmacyPeer
from tests.test_pharmacy_helpers import (
    FLOWER,
    T18,
    api_get,
    api_post,
    deliver_outbox,
    make_api,
    ready,
    sign_new,
    state_of,
    status,
)


@pytest.fixture
def app_config():
    return {"PHARMACY_WEBHOOK_TIMEOUT_SECONDS": 1.0, "OUTBOX_MAX_ATTEMPTS": 3}


def _api_prescription(app, personas, *, webhook_url: str | None = None):
    with app.app_context():
        r = ready(personas)
        credentials = make_api(r.pharmacy_id, webhook_url=webhook_url)
        prescription = sign_new(r, quantity="20")
        return r, credentials, prescription.id, prescription.public_id


# The document ---------------------------------------------------------------------------------

def test_the_openapi_document_is_valid_openapi_3_1_and_documents_every_api_route(app, client):
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    response = client.get("/api/pharmacy/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    OPENAPI_31_VALIDATOR.validate(document)
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("pharmacy.api.") and rule.endpoint != "pharmacy.api.openapi":
            path = rule.rule.replace("<public_id>", "{public_id}").replace("<carrier>", "{carrier}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served


# Authentication -------------------------------------------------------------------------------

def test_requests_without_a_valid_key_are_refused_with_a_reason(app, client, personas):
    _r, credentials, _id, _public = _api_prescription(app, personas)
    assert client.get("/api/pharmacy/v1/prescriptions").status_code == 401
    wrong = client.get("/api/pharmacy/v1/prescriptions",
                       headers={"Authorization": f"Bearer {credentials.key[:-4]}AAAA"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "the API key is not valid"
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert api_get(client, "/api/pharmacy/v1/prescriptions", credentials).status_code == 200


def test_a_portal_pharmacys_key_is_refused(app, client, personas):
    with app.app_context():
        r = ready(personas)
        issued = pharmacies.issue_api_key(pharmacies.get(r.pharmacy_id))
    answer = client.get("/api/pharmacy/v1/prescriptions", headers={"Authorization": f"Bearer {issued.key}"})
    assert answer.status_code == 403 and "portal" in answer.get_json()["error"]


def test_keys_are_hashed_at_rest_and_rotate_with_two_active_at_most(app, client, personas):
    r, first, _id, _public = _api_prescription(app, personas)
    with app.app_context():
        pharmacy = pharmacies.get(r.pharmacy_id)
        stored = db.session.scalars(sa.select(PharmacyApiKey)).all()
        assert all(first.key not in (k.secret_sha256, k.prefix) for k in stored)
        second = pharmacies.issue_api_key(pharmacy).key
    assert api_get(client, "/api/pharmacy/v1/prescriptions", first).status_code == 200  # in its overlap week
    with app.app_context():
        old = db.session.scalar(sa.select(PharmacyApiKey).where(PharmacyApiKey.prefix == first.key[:16]))
        assert old.expires_at <= dt.datetime.now(dt.UTC) + dt.timedelta(days=7, minutes=1)
        third = pharmacies.issue_api_key(pharmacies.get(r.pharmacy_id)).key
        assert len(pharmacies.active_keys(pharmacies.get(r.pharmacy_id))) == 2
    assert client.get("/api/pharmacy/v1/prescriptions",
                      headers={"Authorization": f"Bearer {first.key}"}).status_code == 401
    for key in (second, third):
        assert client.get("/api/pharmacy/v1/prescriptions", headers={"Authorization": f"Bearer {key}"}).status_code \
            == 200


def test_an_expired_key_is_refused(app, client, personas):
    _r, credentials, _id, _public = _api_prescription(app, personas)
    with app.app_context():
        db.session.execute(sa.update(PharmacyApiKey).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1)))
        db.session.commit()
    answer = api_get(client, "/api/pharmacy/v1/prescriptions", credentials)
    assert answer.status_code == 401 and "expired" in answer.get_json()["error"]


# Signatures and replay ------------------------------------------------------------------------

def test_forged_stale_and_replayed_requests_are_refused_and_applied_once(app, client, personas):
    _r, credentials, prescription_id, public_id = _api_prescription(app, personas)
    forged = status(client, credentials, public_id, {"status": "received"}, secret="not-the-secret")
    assert forged.status_code == 401 and "signature does not match" in forged.get_json()["error"]
    stale = status(client, credentials, public_id, {"status": "received"}, timestamp=int(time.time()) - 301)
    assert stale.status_code == 401 and "more than 5 minutes old" in stale.get_json()["error"]
    assert state_of(app, prescription_id) == "signed"
    body = json.dumps({"status": "received"}).encode()
    first = status(client, credentials, public_id, {}, raw=body, key="ack-1", timestamp=int(time.time()))
    assert first.status_code == 200 and first.get_json()["prescription"]["status"] == "received_by_pharmacy"
    again = status(client, credentials, public_id, {}, raw=body, key="ack-1")
    assert again.status_code == 409 and again.get_json()["first_status"] == 200
    with app.app_context():
        refusals = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "pharmacy.api_refused")).all()
        assert len(refusals) == 2
        moves = [t.to_state for t in __import__("app.prescribing.states", fromlist=["x"]).history(
            prescribing.get(prescription_id))]
        assert moves.count("received_by_pharmacy") == 1


def test_a_request_replayed_with_a_new_idempotency_key_is_caught_by_its_signature(app, client, personas):
    _r, credentials, _prescription_id, public_id = _api_prescription(app, personas)
    from tests.pharmacy_peer import signed_headers

    body = json.dumps({"status": "received"}).encode()
    url = f"/api/pharmacy/v1/prescriptions/{public_id}/status"
    headers = signed_headers(credentials.secret, body, path=url, key="k-1")
    headers["Authorization"] = f"Bearer {credentials.key}"
    assert client.post(url, data=body, headers=headers).status_code == 200
    headers["Idempotency-Key"] = "k-2"  # an attacker changes the unsigned header
    replay = client.post(url, data=body, headers=headers)
    assert replay.status_code == 409 and "already received" in replay.get_json()["error"]


# Status changes -------------------------------------------------------------------------------

def test_a_pharmacy_system_drives_the_whole_journey_through_the_state_machine(app, client, personas):
    _r, credentials, prescription_id, public_id = _api_prescription(app, personas)
    steps = [
        ({"status": "received"}, "received_by_pharmacy"),
        ({"status": "stock_allocated"}, "stock_allocated"),
        ({"status": "original_received", "matches": True}, "stock_allocated"),
        ({"status": "clinically_verified"}, "clinically_verified"),
        ({"status": "dispensed", "batches": ["vt22-2407a"]}, "dispensed"),
        ({"status": "dispatched", "carrier": "dpd", "tracking_number": "15501234567890"}, "dispatched"),
        ({"status": "out_for_delivery"}, "dispatched"),
        ({"status": "delivered"}, "delivered"),
    ]
    for payload, expected in steps:
        answer = status(client, credentials, public_id, payload)
        assert answer.status_code == 200, (payload, answer.get_json())
        assert answer.get_json()["prescription"]["status"] == expected
    detail = api_get(client, f"/api/pharmacy/v1/prescriptions/{public_id}", credentials).get_json()
    assert detail["shipment"]["tracking_url"] == "https://track.dpd.co.uk/parcels/15501234567890"
    with app.app_context():
        from app.prescribing import states

        dispensed = next(t for t in states.history(prescribing.get(prescription_id)) if t.to_state == "dispensed")
        assert dispensed.detail["batches"] == ["VT22-2407A"] and dispensed.detail["channel"] == "api"


def test_illegal_and_out_of_order_reports_are_refused_with_the_reason_and_audited(app, client, personas):
    _r, credentials, prescription_id, public_id = _api_prescription(app, personas)
    early = status(client, credentials, public_id, {"status": "dispensed"})
    assert early.status_code == 409
    assert early.get_json()["error"].startswith("A prescription cannot go from “Signed” to “Dispensed”")
    sent_at = int(time.time())
    assert status(client, credentials, public_id, {"status": "received"}, timestamp=sent_at).status_code == 200
    # Sent again by the pharmacy's system with another timestamp: a new request (new signature), but out of order.
    twice = status(client, credentials, public_id, {"status": "received"}, timestamp=sent_at - 1)
    assert twice.status_code == 409 and "received before" in twice.get_json()["error"]
    unknown = status(client, credentials, public_id, {"status": "teleported"})
    assert unknown.status_code == 400 and "status must be one of" in unknown.get_json()["error"]
    no_reason = status(client, credentials, public_id, {"status": "rejected"})
    assert no_reason.status_code == 400
    assert state_of(app, prescription_id) == "received_by_pharmacy"
    with app.app_context():
        refused = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "pharmacy.step_refused")).all()
        assert {json.loads(e.detail)["step"] for e in refused} == {"dispensed", "received"}


def test_unknown_prescriptions_and_other_pharmacies_prescriptions_are_404(app, client, personas, world):
    _r, credentials, _prescription_id, public_id = _api_prescription(app, personas)
    with app.app_context():
        other = make_api(world.pharmacy("other"))
    assert status(client, credentials, "doesnotexist", {"status": "received"}).status_code == 404
    assert status(client, other, public_id, {"status": "received"}).status_code == 404
    assert api_get(client, f"/api/pharmacy/v1/prescriptions/{public_id}", other).status_code == 404
    # A 404 does not burn the key: the same request may succeed once the prescription is known.
    assert status(client, credentials, public_id, {"status": "received"}, key="after-404").status_code == 200


def test_an_api_out_of_stock_with_offers_alerts_the_prescriber(app, client, personas):
    r, credentials, _prescription_id, public_id = _api_prescription(app, personas)
    status(client, credentials, public_id, {"status": "received"})
    answer = status(client, credentials, public_id, {"status": "out_of_stock", "products": [r.products[FLOWER]],
                                                     "offered": [r.products[T18]], "note": "Back in 3 weeks"})
    assert answer.status_code == 200 and answer.get_json()["prescription"]["status"] == "out_of_stock"
    bad = status(client, credentials, public_id, {"status": "out_of_stock", "products": ["x"]})
    assert bad.status_code == 400
    doctor = app.test_client()
    sign_in_as(doctor, personas["clinician"])
    assert "is out of Verdant T22 Flower" in doctor.get("/pharmacy/alerts").get_data(as_text=True)


# Stock and pull -------------------------------------------------------------------------------

def test_published_stock_refuses_fractional_and_negative_packs(app, client, personas):
    r, credentials, _id, _public = _api_prescription(app, personas)
    for bad in ({"levels": [{"product_id": r.products[FLOWER], "packs": 2.5}]},
                {"levels": [{"product_id": r.products[FLOWER], "packs": -1}]},
                {"levels": [{"product_id": 999999, "packs": 1}]},
                {"levels": []}, {"levels": "lots"}):
        answer = api_post(client, "/api/pharmacy/v1/stock", bad, credentials)
        assert answer.status_code == 400, bad
    good = api_post(client, "/api/pharmacy/v1/stock", {"levels": [
        {"product_id": r.products[FLOWER], "packs": 4, "in_stock": True},
        {"product_id": r.products[T18], "packs": 0, "in_stock": False}]}, credentials)
    assert good.status_code == 200 and good.get_json() == {"updated": 2}
    levels = {x["product_id"]: x for x in api_get(client, "/api/pharmacy/v1/stock", credentials).get_json()["levels"]}
    assert levels[r.products[FLOWER]]["packs"] == 4 and levels[r.products[T18]]["in_stock"] is False


def test_the_pull_fallback_lists_new_prescriptions_with_their_signed_bundle(app, client, personas):
    _r, credentials, _prescription_id, public_id = _api_prescription(app, personas)
    listed = api_get(client, "/api/pharmacy/v1/prescriptions", credentials).get_json()["prescriptions"]
    assert [p["id"] for p in listed] == [public_id]
    detail = api_get(client, f"/api/pharmacy/v1/prescriptions/{public_id}", credentials).get_json()
    assert detail["bundle"]["resourceType"] == "Bundle"
    assert detail["bundle"]["entry"][0]["resource"]["resourceType"] == "MedicationRequest"
    with app.app_context():
        keys = KeySet.import_key_set(pki.jwks())
    verified = jws.deserialize_compact(detail["jws"], keys, algorithms=["ES256"])
    assert json.loads(verified.payload) == detail["bundle"]
    assert "received" in detail["next"] or "received_by_pharmacy" in detail["next"] or detail["next"]
    status(client, credentials, public_id, {"status": "received"})
    assert api_get(client, "/api/pharmacy/v1/prescriptions", credentials).get_json()["prescriptions"] == []
    assert len(api_get(client, "/api/pharmacy/v1/prescriptions?status=open", credentials)
               .get_json()["prescriptions"]) == 1


# Push -----------------------------------------------------------------------------------------

def test_a_signed_prescription_is_pushed_signed_to_the_webhook_and_acknowledged_once(app, personas):
    peer = PharmacyPeer(secret="").start()
    try:
        _r, credentials, prescription_id, public_id = _api_prescription(app, personas, webhook_url=peer.url)
        peer.secret = credentials.secret
        assert deliver_outbox(app) >= 1
        [key] = list(peer.received)
        event = peer.received[key]
        assert event["event"] == "prescription.signed" and event["event_id"] == key
        assert event["prescription"]["id"] == public_id and event["bundle"]["resourceType"] == "Bundle"
        assert state_of(app, prescription_id) == "transmitted"
        with app.app_context():
            message = outbox.by_key(key)
            [attempt] = outbox.attempts_of(message.id)
            assert (attempt.outcome, attempt.http_status, attempt.error) == ("delivered", 200, None)
    finally:
        peer.stop()


def test_a_failing_endpoint_is_retried_then_dead_lettered_on_the_board_and_retried_by_an_admin(app, personas):
    peer = PharmacyPeer(secret="", faults=Faults(error=1.0)).start()
    try:
        _r, credentials, prescription_id, _public_id = _api_prescription(app, personas, webhook_url=peer.url)
        peer.secret = credentials.secret
        for _ in range(3):
            with app.app_context():
                db.session.execute(sa.update(OutboxMessage).values(next_attempt_at=dt.datetime.now(dt.UTC)))
                db.session.commit()
            deliver_outbox(app)
        with app.app_context():
            message = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.kind == "pharmacy.prescription"))
            assert message.status == DEAD and message.attempts == 3
            attempts = db.session.scalars(sa.select(OutboxAttempt).where(OutboxAttempt.message_id == message.id)).all()
            assert [a.outcome for a in attempts] == ["failed", "failed", "dead"]
            assert all(a.http_status in (500, 502, 503) and "the pharmacy answered" in a.error for a in attempts)
            message_id = message.id
        assert state_of(app, prescription_id) == "signed"
        admin = app.test_client()
        sign_in_as(admin, personas["admin"])
        board = admin.get("/pipeline").get_data(as_text=True)
        assert "1 message could not be delivered to a pharmacy" in board and f"#{prescription_id}" in board
        peer.faults = Faults()
        from tests.conftest import csrf_from

        retried = admin.post(f"/pipeline/dead-letters/{message_id}/retry", data={"csrf_token": csrf_from(board)})
        assert retried.status_code == 302
        deliver_outbox(app)
        assert state_of(app, prescription_id) == "transmitted"
        assert "could not be delivered" not in admin.get("/pipeline").get_data(as_text=True)
    finally:
        peer.stop()


def test_a_timing_out_endpoint_is_an_attempt_with_its_duration(app, personas):
    peer = PharmacyPeer(secret="", faults=Faults(timeout=1.0, hang_seconds=1.5)).start()
    try:
        _r, credentials, prescription_id, _public_id = _api_prescription(app, personas, webhook_url=peer.url)
        peer.secret = credentials.secret
        deliver_outbox(app)
        with app.app_context():
            [attempt] = db.session.scalars(sa.select(OutboxAttempt).join(
                OutboxMessage, OutboxMessage.id == OutboxAttempt.message_id).where(
                OutboxMessage.kind == "pharmacy.prescription")).all()
            assert attempt.outcome == "failed" and attempt.http_status is None
            assert "no answer from the pharmacy" in attempt.error and attempt.duration_ms >= 900
        assert state_of(app, prescription_id) == "signed"
    finally:
        peer.stop()


def test_the_api_is_rate_limited_per_key(app, personas):
    app.config["PHARMACY_API_RATE_LIMIT"] = "3 per minute"
    _r, credentials, _id, _public = _api_prescription(app, personas)
    client = app.test_client()
    answers = [api_get(client, "/api/pharmacy/v1/formulary", credentials).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = api_get(client, "/api/pharmacy/v1/formulary", credentials)
    assert limited.get_json()["status"] == 429


def test_old_inbound_keys_are_forgotten_after_the_window(app, client, personas):
    _r, credentials, _prescription_id, public_id = _api_prescription(app, personas)
    assert status(client, credentials, public_id, {"status": "received"}, key="old-key").status_code == 200
    with app.app_context():
        from app.pharmacy.models import InboundEvent

        assert pharmacies.prune_inbound_events() == 0
        assert pharmacies.prune_inbound_events(dt.datetime.now(dt.UTC) + dt.timedelta(days=3)) == 2
        assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 0


def test_with_mutual_tls_the_client_certificate_must_be_the_pharmacys_as_well(app, client, personas):
    fingerprint = "ab" * 32
    app.config["PHARMACY_MTLS_HEADER"] = "X-Client-Cert-SHA256"
    _r, credentials, _prescription_id, _public_id = _api_prescription(app, personas)
    with app.app_context():
        pharmacy = pharmacies.get(credentials.pharmacy_id)
        pharmacies.update(pharmacy, {"name": pharmacy.name, "gphc_number": pharmacy.gphc_number,
                                     "address": pharmacy.address, "connection": "api",
                                     "client_cert_sha256": ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2))})
    key = {"Authorization": f"Bearer {credentials.key}"}
    assert client.get("/api/pharmacy/v1/formulary", headers=key).status_code == 401
    wrong = client.get("/api/pharmacy/v1/formulary", headers={**key, "X-Client-Cert-SHA256": "cd" * 32})
    assert wrong.status_code == 401 and "client certificate" in wrong.get_json()["error"]
    assert client.get("/api/pharmacy/v1/formulary",
                      headers={**key, "X-Client-Cert-SHA256": fingerprint.upper()}).status_code == 200
