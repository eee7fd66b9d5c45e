"""Identity checks decided by an external provider: the outbox hands the check over, a signed
webhook brings the result back. The provider is a real HTTP server (tests/identity_provider.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest
import requests
import sqlalchemy as sa
import uvicorn

from app import create_app
from app.audit.models import AuditEvent
from app.auth.models import Role
from app.extensions import db
from app.patients.journey import JourneyState
from tests.conftest import TEST_PASSWORD, audit_actions, config_for, csrf_from, sign_in_as
from tests.identity_provider import IdentityProvider
from tests.smtp import free_port
from tests.test_identity import IN_DATE, check_of, intake_done, jpeg, patient_row, submit_check

SECRET = "whsec_test_4f9d2c0b7e1a"
API_KEY = "idp_key_7c1e"


@pytest.fixture
def provider():
    server = IdentityProvider(SECRET, api_key=API_KEY).start()  # refuses calls without the key
    yield server
    server.stop()


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def app_config(provider, live_port) -> dict:
    return {"IDENTITY_PROVIDER": "http", "IDENTITY_PROVIDER_URL": provider.url, "IDENTITY_WEBHOOK_SECRET": SECRET,
            "IDENTITY_PROVIDER_API_KEY": API_KEY, "BASE_URL": f"http://127.0.0.1:{live_port}",
            "WORKER_POLL_SECONDS": 0.05}


@pytest.fixture
def patient(world):
    return world.patient("alice")


def deliver_outbox(app) -> list[str]:
    """One pass of the worker; returns the kinds of the messages delivered (the welcome email too)."""
    from app.outbox import services as outbox
    from app.outbox.models import OutboxMessage

    with app.app_context():
        try:
            delivered = [message_id for message_id in outbox.claim() if outbox.deliver(message_id)]
            return [db.session.get(OutboxMessage, message_id).kind for message_id in delivered]
        finally:
            db.session.remove()


def sent_check(app, persona, **kwargs) -> tuple[int, str]:
    check_id = submit_check(app, persona, **kwargs)
    assert "identity.start_check" in deliver_outbox(app)
    reference = check_of(app, check_id).provider_reference
    assert reference
    return check_id, reference


def signed(body: bytes, *, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    sent_at = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), sent_at.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Verity-Timestamp": sent_at, "X-Verity-Signature": f"sha256={digest}",
            "Content-Type": "application/json"}


def result(reference: str, outcome: str = "approved", *, event_id: str = "evt_1", reason: str | None = None) -> bytes:
    return json.dumps({"event_id": event_id, "reference": reference, "result": outcome, "reason": reason}).encode()


def post_webhook(client, body: bytes, headers: dict[str, str], provider_name: str = "http"):
    return client.post(f"/identity/webhooks/{provider_name}", data=body, headers=headers)


def last_refusal(app) -> dict:
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "identity.webhook_refused")
                                   .order_by(AuditEvent.seq.desc())).first()
        assert entry is not None, "the refusal was not audited"
        return json.loads(entry.detail)


# Handing the check over ---------------------------------------------------------------------

def test_submitting_hands_the_check_and_both_images_to_the_provider(app, provider, patient, live_port):
    from app.documents import services as documents
    from app.identity import services as identity

    check_id = submit_check(app, patient)
    assert check_of(app, check_id).provider_reference is None, "nothing leaves Verity inside the request"
    assert "identity.start_check" in deliver_outbox(app)
    check = check_of(app, check_id)
    sent = provider.checks[check.provider_reference]
    assert sent.idempotency_key == f"identity-check:{check_id}"
    assert sent.request["applicant"] == {"full_name": "Alice Example", "date_of_birth": "1980-05-17"}
    assert sent.request["document_expiry"] == IN_DATE.isoformat()
    assert sent.request["webhook_url"] == f"http://127.0.0.1:{live_port}/identity/webhooks/http"
    assert sent.submitted
    with app.app_context():
        for part, document_id in (("document", check.document_id), ("selfie", check.selfie_document_id)):
            document = documents.get(document_id)
            assert sent.images[part] == b"".join(documents.open_plaintext(document))
            assert sent.transfer[part] == "chunked", "images are streamed, not buffered"
            assert sent.content_types[part].startswith("image/")
        assert [e.check.id for e in identity.with_provider()] == [check_id]
        assert identity.review_queue() == [], "a provider's check is not in the staff queue"
    assert "identity.sent_to_provider" in audit_actions(app)


def test_a_provider_outage_is_retried_with_the_same_idempotency_key(app, provider, patient, world):
    from app.outbox import services as outbox
    from app.outbox.models import OutboxMessage

    provider.fail("PUT", "/selfie")
    check_id = submit_check(app, patient)
    assert "identity.start_check" not in deliver_outbox(app)
    with app.app_context():
        message = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "identity.start_check")).one()
        assert (message.status, message.attempts) == ("pending", 1)
        assert "503" in message.last_error
        message_id = message.id
    assert check_of(app, check_id).provider_reference is None
    assert len(provider.checks) == 1 and not next(iter(provider.checks.values())).submitted

    staff = app.test_client()
    sign_in_as(staff, world.staff(Role.RECEPTION))
    page = staff.get(f"/identity/reviews/{check_id}").get_data(as_text=True)
    assert "Not sent yet" in page and "Verity keeps trying" in page

    with app.app_context():
        assert outbox.deliver(message_id)  # the retry, whenever the backoff lets it run
    assert len(provider.checks) == 1, "the retry did not create a second check at the provider"
    reference = next(iter(provider.checks))
    assert provider.checks[reference].submitted
    assert check_of(app, check_id).provider_reference == reference


# Webhooks -----------------------------------------------------------------------------------

def test_a_correctly_signed_approval_verifies_the_patient(app, client, provider, patient):
    intake_done(app, patient, "eligible")
    check_id, reference = sent_check(app, patient)
    body = result(reference)
    response = post_webhook(client, body, signed(body))
    assert response.status_code == 200
    assert response.get_json() == {"status": "approved", "reference": reference}
    check = check_of(app, check_id)
    assert (check.status.value, check.reviewer_id) == ("approved", None)
    record = patient_row(app, patient)
    assert record.identity_verified_at is not None
    assert record.journey_state == "eligible"
    with app.app_context():
        approved = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "identity.approved")).one()
        assert json.loads(approved.detail)["by"] == "http"


def test_a_provider_rejection_is_shown_to_the_patient(app, client, provider, patient):
    _check_id, reference = sent_check(app, patient)
    body = result(reference, "rejected", reason="The document appears to be a photocopy. Use the original.")
    assert post_webhook(client, body, signed(body)).status_code == 200
    own = app.test_client()
    sign_in_as(own, patient)
    page = own.get("/identity").get_data(as_text=True)
    assert "The document appears to be a photocopy. Use the original." in page
    assert "Try again" in page


@pytest.mark.parametrize("headers", [
    lambda body: signed(body, secret="not-the-secret"),
    lambda body: {**signed(body), "X-Verity-Signature": "sha256=" + "0" * 64},
    lambda body: {"Content-Type": "application/json"},
    lambda body: {k: v for k, v in signed(body).items() if k != "X-Verity-Timestamp"},
])
def test_a_bad_or_missing_signature_is_401_and_audited(app, client, provider, patient, headers):
    check_id, reference = sent_check(app, patient)
    body = result(reference)
    response = post_webhook(client, body, headers(body))
    assert response.status_code == 401
    assert response.get_json()["error"] in ("signature does not match", "missing signature or timestamp header")
    assert check_of(app, check_id).status.value == "submitted"
    assert last_refusal(app)["status"] == 401


def test_a_body_changed_after_signing_is_401(app, client, provider, patient):
    check_id, reference = sent_check(app, patient)
    headers = signed(result(reference, "rejected", reason="Selfie does not match"))
    response = post_webhook(client, result(reference, "approved"), headers)
    assert response.status_code == 401
    assert check_of(app, check_id).status.value == "submitted"


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_or_future_timestamp_is_refused(app, client, provider, patient, skew):
    check_id, reference = sent_check(app, patient)
    body = result(reference)
    response = post_webhook(client, body, signed(body, timestamp=int(time.time()) + skew))
    assert response.status_code == 400
    assert "5 minutes" in response.get_json()["error"]
    assert check_of(app, check_id).status.value == "submitted"
    assert last_refusal(app)["status"] == 400


def test_a_replayed_event_is_refused(app, client, provider, patient, world):
    _check_id, reference = sent_check(app, patient)
    body = result(reference, event_id="evt_replay")
    assert post_webhook(client, body, signed(body)).status_code == 200
    again = post_webhook(client, body, signed(body))  # a fresh signature: a captured request replayed
    assert again.status_code == 409
    assert again.get_json()["error"] == "event already received"
    # The same event id cannot decide another check either.
    second_patient = world.patient("bob")
    other_id, other_reference = sent_check(app, second_patient)
    other = result(other_reference, "rejected", event_id="evt_replay", reason="Photo unclear")
    assert post_webhook(client, other, signed(other)).status_code == 409
    assert check_of(app, other_id).status.value == "submitted"
    decisions = [a for a in audit_actions(app) if a in ("identity.approved", "identity.rejected")]
    assert decisions == ["identity.approved"]
    assert last_refusal(app) == {"provider": "http", "status": 409, "reason": "event already received"}


def test_an_already_decided_check_is_409(app, client, provider, patient):
    check_id, reference = sent_check(app, patient)
    first = result(reference, event_id="evt_a")
    assert post_webhook(client, first, signed(first)).status_code == 200
    second = result(reference, "rejected", event_id="evt_b", reason="Changed our mind")
    response = post_webhook(client, second, signed(second))
    assert response.status_code == 409
    assert response.get_json()["error"] == "check already decided"
    assert check_of(app, check_id).status.value == "approved"


def test_an_unknown_reference_is_404(app, client, provider, patient):
    sent_check(app, patient)
    body = result("chk_unknown")
    response = post_webhook(client, body, signed(body))
    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown reference"
    assert last_refusal(app)["status"] == 404


@pytest.mark.parametrize(("body", "error"), [
    (b"not json", "body is not JSON"),
    (b"[]", "body is not a JSON object"),
    (json.dumps({"reference": "x", "result": "approved"}).encode(), "event_id is missing"),
    (json.dumps({"event_id": "e", "reference": "x", "result": "maybe"}).encode(), "result must be"),
    (json.dumps({"event_id": "e", "reference": "x", "result": "rejected"}).encode(), "needs a reason"),
])
def test_a_malformed_body_is_400(app, client, provider, body, error):
    response = post_webhook(client, body, signed(body))
    assert response.status_code == 400
    assert error in response.get_json()["error"]


def test_a_webhook_for_a_provider_that_is_not_configured_is_404(app, client, provider, patient):
    check_id, reference = sent_check(app, patient)
    body = result(reference)
    response = post_webhook(client, body, signed(body), provider_name="staff")
    assert response.status_code == 404
    assert check_of(app, check_id).status.value == "submitted"


def test_staff_cannot_decide_a_check_that_is_with_the_provider(app, provider, patient, world):
    check_id, _reference = sent_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, world.staff(Role.RECEPTION))
    page = staff.get(f"/identity/reviews/{check_id}").get_data(as_text=True)
    assert 'id="decision-form"' not in page
    response = staff.post(f"/identity/reviews/{check_id}/decision",
                          data={"csrf_token": csrf_from(page), "decision": "approve"})
    assert response.status_code == 400
    assert "with the identity provider" in response.get_data(as_text=True)
    assert check_of(app, check_id).status.value == "submitted"


# Configuration and signatures (no database) -------------------------------------------------

@pytest.mark.parametrize(("config", "message"), [
    ({"IDENTITY_PROVIDER": "http", "IDENTITY_PROVIDER_URL": "http://127.0.0.1:1"}, "IDENTITY_WEBHOOK_SECRET"),
    ({"IDENTITY_PROVIDER": "http", "IDENTITY_WEBHOOK_SECRET": "s"}, "IDENTITY_PROVIDER_URL"),
    ({"IDENTITY_PROVIDER": "http", "IDENTITY_PROVIDER_URL": "file:///etc", "IDENTITY_WEBHOOK_SECRET": "s"},
     "http:// or https://"),
    ({"IDENTITY_PROVIDER": "onfido"}, "unknown IDENTITY_PROVIDER"),
])
def test_a_provider_that_cannot_work_stops_the_app_at_start(tmp_path, config, message):
    from app.identity.providers import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        create_app(config_for(f"sqlite:///{tmp_path}/x.db", tmp_path, **config))


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    from app.identity.providers import WebhookRefused, sign, verify

    body = b'{"event_id":"e"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == f"sha256={expected}"
    verify("k", timestamp="1700000000", signature=f"sha256={expected}", body=body, now=1700000300)
    with pytest.raises(WebhookRefused) as refused:
        verify("k", timestamp="1700000000", signature=f"sha256={expected}", body=body, now=1700000301)
    assert refused.value.status == 400
    with pytest.raises(WebhookRefused) as refused:
        verify("k", timestamp="1700000001", signature=f"sha256={expected}", body=body, now=1700000001)
    assert refused.value.status == 401


# The whole round trip over real HTTP --------------------------------------------------------

@pytest.fixture
def live(app, live_port):
    """Verity served for real (uvicorn, as `make run` does) with a background worker thread."""
    from app import worker
    from signaling.asgi import build

    server = uvicorn.Server(uvicorn.Config(build(app), host="127.0.0.1", port=live_port, lifespan="off",
                                           log_level="warning", ws="websockets-sansio"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    stop = threading.Event()
    working = threading.Thread(target=worker.run, args=(app, stop), daemon=True)
    working.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{live_port}"
    stop.set()
    server.should_exit = True
    working.join(timeout=10)
    serving.join(timeout=10)


def _page_token(session: requests.Session, url: str) -> str:
    return csrf_from(session.get(url, timeout=10).text)


def test_provider_round_trip_over_http(app, provider, live, patient):
    from app.documents import services as documents

    intake_done(app, patient, "eligible")
    browser = requests.Session()
    signed_in = browser.post(f"{live}/login", data={
        "csrf_token": _page_token(browser, f"{live}/login"), "email": patient.email, "password": TEST_PASSWORD,
        "next": "/identity"}, timeout=10)
    assert signed_in.status_code == 200 and signed_in.url.endswith("/identity/new")

    sent = browser.post(f"{live}/identity/new", timeout=30, data={
        "csrf_token": _page_token(browser, f"{live}/identity/new"), "document_type": "passport",
        "expiry_day": str(IN_DATE.day), "expiry_month": str(IN_DATE.month), "expiry_year": str(IN_DATE.year),
    }, files={"document_photo": ("passport.jpg", jpeg(11), "image/jpeg"),
              "selfie": ("selfie.jpg", jpeg(12), "image/jpeg")})
    assert sent.status_code == 200 and sent.url.endswith("/identity"), sent.text[-500:]
    assert "usually within one working day" in sent.text

    at_provider = provider.wait_for_submitted(timeout=20)  # the worker thread delivered the outbox message
    assert at_provider.request["webhook_url"] == f"{live}/identity/webhooks/http"
    with app.app_context():
        from app.identity import services as identity
        from app.patients import services as patients

        check = identity.latest_for(patients.get(patient.patient_id))
        assert at_provider.images["selfie"] == b"".join(
            documents.open_plaintext(documents.get(check.selfie_document_id)))
        db.session.remove()

    # The provider retries a 404 for a few seconds, as Verity records the reference only once the
    # submit has been answered.
    answer = provider.send_result(at_provider.reference, "approved", event_id="evt_round_trip", retry_for=10)
    assert (answer.status, answer.body["status"]) == (200, "approved")
    replay = provider.send_result(at_provider.reference, "approved", event_id="evt_round_trip")
    assert (replay.status, replay.body["error"]) == (409, "event already received")

    assert "Your identity is confirmed" in browser.get(f"{live}/identity", timeout=10).text
    assert patient_row(app, patient).journey_state == JourneyState.ELIGIBLE.value
    dashboard = browser.get(f"{live}/dashboard", timeout=10)
    assert JourneyState.ELIGIBLE.label in dashboard.text

