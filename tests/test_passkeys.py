"""Passkeys (issue 12) over HTTP, with a real software authenticator: an EC P-256 key made with
`cryptography`, answering the server's own options with 'none' attestation and signed assertions, as a
phone or laptop would. Registration, sign-in, step-up (the step-up page and the consultation panel's
signing), and the refusals: a replayed challenge or assertion, a wrong origin or relying party, a
sign-count regression, someone else's credential, tampered JSON (4xx with a reason, never a 500).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from webauthn.helpers import encode_cbor

from app.audit.models import AuditEvent
from app.auth import passkeys
from app.auth.models import Passkey, Role
from app.extensions import db
from app.prescribing.models import Prescription
from tests.conftest import TEST_PASSWORD, csrf_from, sign_in_as, totp_now
from tests.test_prescribing_helpers import DOSE, FLOWER, prepare

ORIGIN, RP_ID = "http://localhost", "localhost"  # TestConfig's BASE_URL is http://localhost
HX = {"HX-Request": "true", "HX-Target": "prescribing-slot"}


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class SoftAuthenticator:
    """A platform authenticator in software: one credential, user presence and verification always given."""

    counter: bool = True  # False: reports 0 every time, as some synced passkeys do
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    @staticmethod
    def _client_data(kind: str, options: dict, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": options["challenge"], "origin": origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict, *, origin: str = ORIGIN, rp_id: str | None = None) -> dict:
        rp_id = rp_id or options["rp"]["id"]
        client_data = self._client_data("webauthn.create", options, origin)
        auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([0x01 | 0x04 | 0x40]) + (0).to_bytes(4, "big")
                     + bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key())
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64(self.credential_id), "rawId": b64(self.credential_id), "type": "public-key",
                "authenticatorAttachment": "platform", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64(client_data), "attestationObject": b64(attestation),
                             "transports": ["internal", "hybrid", "carrier-pigeon"]}}

    def get(self, options: dict, *, origin: str = ORIGIN, rp_id: str | None = None,
            count: int | None = None) -> dict:
        rp_id = rp_id or options["rpId"]
        if count is None:
            self.sign_count += 1 if self.counter else 0
            count = self.sign_count
        client_data = self._client_data("webauthn.get", options, origin)
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([0x01 | 0x04]) + count.to_bytes(4, "big")
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": b64(self.credential_id), "rawId": b64(self.credential_id), "type": "public-key",
                "authenticatorAttachment": "platform", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64(client_data), "authenticatorData": b64(auth_data),
                             "signature": b64(signature)}}


# Helpers: what app/static/js/passkeys.js sends -----------------------------------------------

def token(client, path: str = "/account/security") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def post_json(client, url: str, body, csrf: str):
    return client.post(url, json=body, headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def registration_options(client, csrf: str) -> dict:
    response = post_json(client, "/account/passkeys/options", {}, csrf)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def register(client, authenticator: SoftAuthenticator, name: str = "Work laptop", **answer):
    csrf = token(client)
    credential = authenticator.create(registration_options(client, csrf), **answer)
    return post_json(client, "/account/passkeys", {"name": name, "credential": credential}, csrf)


def sign_in_options(client, csrf: str, purpose: str = "login") -> dict:
    response = post_json(client, "/auth/passkey/options", {"purpose": purpose}, csrf)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def answer(client, path: str, assertion, csrf: str):
    """The form the page posts once the script has put the browser's answer in it."""
    text = assertion if isinstance(assertion, str) else json.dumps(assertion)
    return client.post(path, data={"csrf_token": csrf, "passkey_assertion": text})


def login_with_password(client, email: str):
    csrf = token(client, "/login")
    response = client.post("/login", data={"csrf_token": csrf, "email": email, "password": TEST_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/two-factor")
    return response


def events(app, action: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
        return [{"actor": r.actor_id, "subject": r.subject_id, **json.loads(r.detail or "{}")} for r in rows]


def stored(app, user_id: int) -> list[Passkey]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Passkey).where(Passkey.user_id == user_id)))


@pytest.fixture
def clinician(world):
    return world.staff(Role.CLINICIAN, "clinician")


@pytest.fixture
def enrolled(app, client, clinician):
    """A clinician signed in (fresh second factor) who has registered one passkey."""
    authenticator = SoftAuthenticator()
    sign_in_as(client, clinician)
    assert register(client, authenticator).status_code == 201
    return clinician, authenticator


# Configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "rp_id", "origins"), [
    ({"BASE_URL": "https://clinic.example.com"}, "clinic.example.com", ("https://clinic.example.com",)),
    ({"BASE_URL": "https://clinic.example.com:8443/"}, "clinic.example.com", ("https://clinic.example.com:8443",)),
    # WebAuthn refuses IP addresses: the development default becomes localhost, a secure context in browsers.
    ({"BASE_URL": "http://127.0.0.1:5000"}, "localhost", ("http://localhost:5000",)),
    ({"BASE_URL": "http://[::1]:5000"}, "localhost", ("http://localhost:5000",)),
    ({"BASE_URL": "http://10.1.2.3"}, "", ()),
    ({"BASE_URL": "https://portal.clinic.example.com", "WEBAUTHN_RP_ID": "clinic.example.com",
      "WEBAUTHN_ORIGINS": "https://portal.clinic.example.com, https://clinic.example.com/"},
     "clinic.example.com", ("https://portal.clinic.example.com", "https://clinic.example.com")),
])
def test_relying_party_comes_from_configuration_or_base_url(settings, rp_id, origins):
    app = Flask(__name__)
    app.config.update({"CLINIC_NAME": "Verity Clinic", "WEBAUTHN_RP_ID": None, "WEBAUTHN_ORIGINS": None, **settings})
    with app.app_context():
        rp = passkeys.relying_party()
    assert (rp.id, rp.origins, rp.name) == (rp_id, origins, "Verity Clinic")


@pytest.mark.parametrize("app_config", [{"BASE_URL": "http://10.1.2.3"}])
def test_without_a_domain_passkeys_are_unavailable_with_a_reason(app, client, clinician):
    sign_in_as(client, clinician)
    page = client.get("/account/security").get_data(as_text=True)
    assert "Passkeys are not available on this server" in page
    response = post_json(client, "/account/passkeys/options", {}, csrf_from(page))
    assert response.status_code == 503 and "not available" in response.get_json()["error"]


# Registration ---------------------------------------------------------------------------------

def test_a_clinician_adds_a_named_passkey_and_sees_it_listed(app, client, clinician):
    sign_in_as(client, clinician)
    page = client.get("/account/security").get_data(as_text=True)
    assert "You have no passkeys yet." in page and 'data-passkey-register' in page
    csrf = csrf_from(page)
    options = registration_options(client, csrf)
    assert options["rp"] == {"id": RP_ID, "name": "Verity Clinic"}
    assert options["user"]["name"] == clinician.email and options["attestation"] == "none"
    assert options["user"]["id"] != b64(str(clinician.user_id).encode())  # an opaque handle, not the database id
    authenticator = SoftAuthenticator()
    response = post_json(client, "/account/passkeys",
                         {"name": "  Work   laptop ", "credential": authenticator.create(options)}, csrf)
    assert response.status_code == 201 and response.get_json()["location"] == "/account/security"
    page = client.get("/account/security").get_data(as_text=True)
    assert "Passkey “Work laptop” added." in page and 'id="passkeys"' in page and "Not yet" in page
    [row] = stored(app, clinician.user_id)
    assert (row.credential_id, row.name, row.sign_count, row.transports) == (
        authenticator.credential_id, "Work laptop", 0, "internal,hybrid")  # unknown transports dropped
    [event] = events(app, "passkey.registered")
    assert event["subject"] == str(clinician.user_id) and event["passkey_id"] == row.id
    # The same authenticator is excluded from a second registration (it would be one factor twice).
    excluded = registration_options(client, csrf_from(page))["excludeCredentials"]
    assert [c["id"] for c in excluded] == [b64(authenticator.credential_id)]


def test_adding_a_passkey_needs_a_fresh_second_factor(app, client, clinician):
    sign_in_as(client, clinician, second_factor_age=600)
    response = post_json(client, "/account/passkeys/options", {}, token(client))
    assert response.status_code == 401
    assert response.get_json()["location"] == "/auth/step-up?next=/account/security"
    assert stored(app, clinician.user_id) == []


@pytest.mark.parametrize(("answer_with", "reason"), [
    ({"origin": "https://verity.example.evil"}, "wrong origin"),
    ({"rp_id": "verity.example.evil"}, "wrong relying party"),
])
def test_registration_from_another_site_is_refused_and_audited(app, client, clinician, answer_with, reason):
    sign_in_as(client, clinician)
    response = register(client, SoftAuthenticator(), **answer_with)
    assert response.status_code == 400 and "could not be checked" in response.get_json()["error"]
    assert stored(app, clinician.user_id) == []
    assert [e["reason"] for e in events(app, "passkey.registration_failed")] == [reason]


def test_a_registration_challenge_is_used_once(app, client, clinician):
    sign_in_as(client, clinician)
    csrf = token(client)
    credential = SoftAuthenticator().create(registration_options(client, csrf))
    assert post_json(client, "/account/passkeys", {"name": "Phone", "credential": credential}, csrf).status_code == 201
    again = post_json(client, "/account/passkeys", {"name": "Phone again", "credential": credential}, csrf)
    assert again.status_code == 400 and "Start again" in again.get_json()["error"]
    assert len(stored(app, clinician.user_id)) == 1


def test_someone_elses_credential_cannot_be_registered_again(app, client, world, enrolled):
    _, authenticator = enrolled
    other = world.staff(Role.PHARMACIST)
    other_client = app.test_client()
    sign_in_as(other_client, other)
    response = register(other_client, authenticator, name="Borrowed")
    assert response.status_code == 409 and response.get_json()["reason"] == "already registered"
    assert stored(app, other.user_id) == []


def _tampered_registrations(credential: dict) -> list[object]:
    garbled = json.loads(json.dumps(credential))
    garbled["response"]["attestationObject"] = b64(b"\xa1\x63fmt")  # truncated CBOR
    bad_base64 = json.loads(json.dumps(credential))
    bad_base64["response"]["clientDataJSON"] = "%%%not-base64%%%"
    not_json_client_data = json.loads(json.dumps(credential))
    not_json_client_data["response"]["clientDataJSON"] = b64(b"{not json")
    return ["{not json", [1, 2], {"id": "abc"}, {**credential, "rawId": "!!!"}, {**credential, "rawId": b64(b"x")},
            garbled, bad_base64, not_json_client_data, {**credential, "type": "password"}]


def test_tampered_registration_json_is_a_4xx_with_a_reason(app, client, clinician):
    sign_in_as(client, clinician)
    csrf = token(client)
    template = SoftAuthenticator().create(registration_options(client, csrf))
    for credential in _tampered_registrations(template):
        registration_options(client, csrf)  # a live challenge each time: the check gets as far as the JSON
        response = post_json(client, "/account/passkeys", {"name": "Laptop", "credential": credential}, csrf)
        assert 400 <= response.status_code < 500, (credential, response.status_code)
        assert response.get_json()["error"], credential
    assert stored(app, clinician.user_id) == []


def test_a_registration_without_a_name_or_credential_is_a_400_with_a_reason(app, client, clinician):
    sign_in_as(client, clinician)
    csrf = token(client)
    template = SoftAuthenticator().create(registration_options(client, csrf))
    for body in ({"name": "Laptop"}, ["credential"], {"name": "", "credential": template},
                 {"name": "x" * 61, "credential": template}):
        response = post_json(client, "/account/passkeys", body, csrf)
        assert response.status_code == 400 and response.get_json()["error"], body
    assert stored(app, clinician.user_id) == []
    # Posted as a plain form (no script): back to the page with an explanation, nothing stored.
    response = client.post("/account/passkeys", data={"csrf_token": csrf, "name": "Laptop"})
    assert response.status_code == 302 and response.headers["Location"] == "/account/security"


# Sign-in ----------------------------------------------------------------------------------------

def test_a_clinician_signs_in_with_a_passkey_offered_first(app, client, enrolled):
    clinician, authenticator = enrolled
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    page = client.get("/auth/two-factor?next=/staff").get_data(as_text=True)
    assert "<h1>Use your passkey</h1>" in page and 'data-passkey-purpose="login"' in page
    assert "Use a code from your authenticator app instead" in page and 'id="totp-code"' not in page
    assert client.get("/staff").status_code == 302  # the password alone opens nothing
    csrf = csrf_from(page)
    options = sign_in_options(client, csrf)
    assert options["rpId"] == RP_ID and [c["id"] for c in options["allowCredentials"]] == [
        b64(authenticator.credential_id)]
    response = answer(client, "/auth/two-factor?next=/staff", authenticator.get(options), csrf)
    assert response.status_code == 302 and response.headers["Location"] == "/staff"
    assert client.get("/staff").status_code == 200
    [row] = stored(app, clinician.user_id)
    assert row.sign_count == 1 and row.last_used_at is not None
    assert events(app, "auth.passkey_verified")[-1]["passkey_id"] == row.id
    assert events(app, "auth.login")[-1]["second_factor"] == "passkey"


def test_the_authenticator_app_stays_a_fallback(app, client, enrolled):
    clinician, _ = enrolled
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    page = client.get("/auth/two-factor?method=code").get_data(as_text=True)
    assert "<h1>Enter your security code</h1>" in page and "Use your passkey instead" in page
    response = client.post("/auth/two-factor?method=code",
                           data={"csrf_token": csrf_from(page), "totp-code": totp_now(clinician.totp_secret)})
    assert response.status_code == 302
    assert client.get("/staff").status_code == 200


def test_staff_without_a_passkey_see_the_code_form_as_before(client, clinician):
    login_with_password(client, clinician.email)
    page = client.get("/auth/two-factor").get_data(as_text=True)
    assert "<h1>Enter your security code</h1>" in page and "Use your passkey" not in page
    response = post_json(client, "/auth/passkey/options", {"purpose": "login"}, csrf_from(page))
    assert response.status_code == 404 and "no passkey" in response.get_json()["error"]


def test_a_replayed_assertion_is_refused_even_with_the_old_cookie(app, client, clinician):
    """A synced passkey may keep no counter, and the challenge lives in a signed cookie: sending an old copy of
    the cookie back with a used assertion must still fail."""
    authenticator = SoftAuthenticator(counter=False)
    sign_in_as(client, clinician)
    assert register(client, authenticator).status_code == 201
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    csrf = token(client, "/auth/two-factor")
    assertion = authenticator.get(sign_in_options(client, csrf))
    old_cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    assert answer(client, "/auth/two-factor", assertion, csrf).status_code == 302
    # Again in this session: the challenge was taken out when it was used.
    again = answer(client, "/auth/two-factor", assertion, csrf)
    assert again.status_code == 401 and "Start again" in again.get_data(as_text=True)
    # Again with the cookie from before the first use, challenge and all.
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], old_cookie)
    replay = answer(client, "/auth/two-factor", assertion, csrf)
    assert replay.status_code == 401 and "already used" in replay.get_data(as_text=True)
    assert events(app, "auth.passkey_failed")[-1]["reason"] == "replayed"
    assert len(events(app, "auth.passkey_verified")) == 1


def test_a_sign_count_that_goes_back_is_refused(app, client, enrolled):
    clinician, authenticator = enrolled
    sign_in_as(client, clinician, second_factor_age=600)
    csrf = token(client, "/auth/step-up")
    for _ in range(2):
        assert answer(client, "/auth/step-up?next=/staff", authenticator.get(sign_in_options(client, csrf, "step-up")),
                      csrf).status_code == 302
    # A copy of the authenticator (a cloned key) answers with an older count.
    response = answer(client, "/auth/step-up", authenticator.get(sign_in_options(client, csrf, "step-up"), count=1),
                      csrf)
    assert response.status_code == 401 and "could not be checked" in response.get_data(as_text=True)
    [row] = stored(app, clinician.user_id)
    assert row.sign_count == 2
    failed = events(app, "auth.passkey_failed")[-1]
    assert (failed["reason"], failed["passkey_id"], failed["purpose"]) == ("sign count did not increase", row.id,
                                                                           "step-up")


def test_someone_elses_passkey_does_not_sign_this_account_in(app, client, world, enrolled):
    _, stolen = enrolled
    other = world.staff(Role.CLINICIAN, "other")
    other_client = app.test_client()
    sign_in_as(other_client, other)
    assert register(other_client, SoftAuthenticator(), name="Mine").status_code == 201
    other_client.post("/logout", headers={"X-CSRFToken": token(other_client)})
    login_with_password(other_client, other.email)
    csrf = token(other_client, "/auth/two-factor")
    options = sign_in_options(other_client, csrf)
    assert b64(stolen.credential_id) not in json.dumps(options)  # only their own passkeys are asked for
    response = answer(other_client, "/auth/two-factor", stolen.get(options), csrf)
    assert response.status_code == 401 and "not registered to your account" in response.get_data(as_text=True)
    assert other_client.get("/staff").status_code == 302
    assert events(app, "auth.passkey_failed")[-1]["reason"] == "unknown credential"


@pytest.mark.parametrize(("answer_with", "reason"), [
    ({"origin": "https://verity-clinic.example.evil"}, "wrong origin"),
    ({"rp_id": "verity-clinic.example.evil"}, "wrong relying party"),
])
def test_an_assertion_made_for_another_site_is_refused(app, client, enrolled, answer_with, reason):
    clinician, authenticator = enrolled
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    csrf = token(client, "/auth/two-factor")
    response = answer(client, "/auth/two-factor", authenticator.get(sign_in_options(client, csrf), **answer_with),
                      csrf)
    assert response.status_code == 401 and "could not be checked" in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 302
    assert events(app, "auth.passkey_failed")[-1]["reason"] == reason


def test_tampered_assertions_are_a_4xx_with_a_reason_and_count_as_attempts(app, client, enrolled):
    clinician, authenticator = enrolled
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    csrf = token(client, "/auth/two-factor")
    good = authenticator.get(sign_in_options(client, csrf))
    short_data = {**good, "response": {**good["response"], "authenticatorData": b64(b"short")}}
    bad_signature = {**good, "response": {**good["response"], "signature": b64(b"\x30\x02\x01")}}
    for tampered in ("{not json", {"id": "x", "rawId": "@@"}, short_data, bad_signature, "x" * 70_000):
        sign_in_options(client, csrf)
        response = answer(client, "/auth/two-factor", tampered, csrf)
        assert response.status_code in (400, 401), (tampered, response.status_code)
        assert 'class="nhsuk-error-summary"' in response.get_data(as_text=True)
    # Five refusals: the sixth try is refused unread, even a good one, as for wrong codes.
    response = answer(client, "/auth/two-factor", authenticator.get(sign_in_options(client, csrf)), csrf)
    assert response.status_code == 429
    assert client.get("/staff").status_code == 302


def test_wrong_passkeys_and_wrong_codes_share_one_limit(app, client, enrolled):
    clinician, authenticator = enrolled
    client.post("/logout", headers={"X-CSRFToken": token(client)})
    login_with_password(client, clinician.email)
    csrf = token(client, "/auth/two-factor")
    wrong = "000000" if totp_now(clinician.totp_secret) != "000000" else "111111"
    for _ in range(3):
        assert answer(client, "/auth/two-factor", authenticator.get(sign_in_options(client, csrf),
                                                                    origin="https://evil.example"),
                      csrf).status_code == 401
    for _ in range(2):
        assert client.post("/auth/two-factor?method=code",
                           data={"csrf_token": csrf, "totp-code": wrong}).status_code == 401
    assert client.post("/auth/two-factor?method=code", data={
        "csrf_token": csrf, "totp-code": totp_now(clinician.totp_secret)}).status_code == 429


# Step-up ------------------------------------------------------------------------------------------

def test_the_step_up_page_takes_a_passkey(app, client, enrolled):
    clinician, authenticator = enrolled
    sign_in_as(client, clinician, second_factor_age=600)
    redirect = client.get("/account/security")
    assert redirect.status_code == 200  # the list needs no step-up; changing it does
    page = client.get("/auth/step-up?next=/account/security").get_data(as_text=True)
    assert 'data-passkey-purpose="step-up"' in page and 'id="code"' in page  # both ways are offered
    csrf = csrf_from(page)
    assert post_json(client, "/account/passkeys/options", {}, csrf).status_code == 401
    response = answer(client, "/auth/step-up?next=/account/security",
                      authenticator.get(sign_in_options(client, csrf, "step-up")), csrf)
    assert response.status_code == 302 and response.headers["Location"] == "/account/security"
    assert post_json(client, "/account/passkeys/options", {}, csrf).status_code == 200  # fresh now
    step_up = events(app, "auth.step_up")[-1]
    assert step_up["method"] == "passkey" and step_up["subject"] == str(clinician.user_id)


def test_a_step_up_assertion_is_not_a_sign_in_assertion(app, client, enrolled):
    """The challenge is bound to its purpose: options asked for at sign-in do not serve a step-up."""
    clinician, authenticator = enrolled
    sign_in_as(client, clinician, second_factor_age=600)
    csrf = token(client, "/auth/step-up")
    assertion = authenticator.get(sign_in_options(client, csrf, "login"))
    response = answer(client, "/auth/step-up", assertion, csrf)
    assert response.status_code == 401 and "Start again" in response.get_data(as_text=True)


def test_removing_a_passkey_needs_a_step_up_and_only_removes_ones_own(app, client, world, enrolled):
    clinician, _ = enrolled
    [row] = stored(app, clinician.user_id)
    sign_in_as(client, clinician, second_factor_age=600)
    csrf = token(client)
    stale = client.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": csrf},
                        headers={"Referer": "http://localhost/account/security"})
    assert stale.status_code == 302 and stale.headers["Location"].startswith("/auth/step-up")
    assert len(stored(app, clinician.user_id)) == 1
    other = world.staff(Role.ADMIN)
    other_client = app.test_client()
    sign_in_as(other_client, other)
    refused = other_client.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": token(other_client)})
    assert refused.status_code == 404 and len(stored(app, clinician.user_id)) == 1
    sign_in_as(client, clinician)
    csrf = token(client)
    removed = client.post(f"/account/passkeys/{row.id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 302 and removed.headers["Location"] == "/account/security"
    assert "Passkey “Work laptop” removed." in client.get("/account/security").get_data(as_text=True)
    assert stored(app, clinician.user_id) == []
    assert events(app, "passkey.removed")[-1]["passkey_id"] == row.id


# Signing a prescription in the consultation panel ----------------------------------------------

def _panel_review(app, client, personas):
    with app.app_context():
        ready = prepare(personas)
    csrf = token(client, "/staff")
    panel = {**HX, "X-CSRFToken": csrf}
    added = client.post(f"/patients/{ready.patient_id}/prescribing/items", headers=panel,
                        data={"panel": "1", "product_id": ready.products[FLOWER], "quantity": "30",
                              "days_supply": "30", "dose": DOSE})
    assert added.status_code == 200
    with app.app_context():
        draft = db.session.scalar(sa.select(Prescription).where(Prescription.patient_id == ready.patient_id))
    review = client.get(f"/prescriptions/{draft.id}/sign", headers=HX, query_string={"panel": "1"})
    return draft.id, review.get_data(as_text=True), csrf


def _sign_form(html: str) -> dict[str, str]:
    return {name: re.search(rf'name="{name}" value="([^"]+)"', html).group(1) for name in ("token", "revision")}


def _status(app, prescription_id: int) -> str:
    with app.app_context():
        return db.session.get(Prescription, prescription_id).status


def test_a_prescription_is_signed_in_the_panel_with_a_passkey_step_up(app, client, personas):
    clinician = personas["clinician"]
    authenticator = SoftAuthenticator()
    sign_in_as(client, clinician)
    assert register(client, authenticator).status_code == 201
    sign_in_as(client, clinician, second_factor_age=600)  # signed in 10 minutes ago: signing asks again
    draft_id, review, csrf = _panel_review(app, client, personas)
    assert "Sign with your passkey" in review and 'data-passkey-purpose="step-up"' in review
    assert 'id="sign-code"' in review  # the code stays as the fallback
    sign = f"/prescriptions/{draft_id}/sign"
    options = sign_in_options(client, csrf, "step-up")
    # A passkey answer made for another site: refused in the panel, nothing signed.
    refused = client.post(sign, headers={**HX, "X-CSRFToken": csrf}, data={
        "panel": "1", **_sign_form(review), "code": "",
        "passkey_assertion": json.dumps(authenticator.get(options, origin="https://evil.example"))})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and 'id="prescribing-panel"' in html and 'id="passkey-error"' in html
    assert "could not be checked" in html and _status(app, draft_id) == "draft"
    # The real answer signs it.
    assertion = authenticator.get(sign_in_options(client, csrf, "step-up"))
    signed = client.post(sign, headers={**HX, "X-CSRFToken": csrf}, data={
        "panel": "1", **_sign_form(html), "code": "", "passkey_assertion": json.dumps(assertion)})
    html = signed.get_data(as_text=True)
    assert signed.status_code == 200 and "Prescription signed." in html and 'id="prescription-signed"' in html
    assert _status(app, draft_id) != "draft"
    step_ups = events(app, "auth.step_up")
    assert [e["method"] for e in step_ups] == ["passkey"]
    assert len(events(app, "prescription.signed")) == 1


def test_the_panel_offers_no_passkey_to_a_clinician_without_one(app, client, personas):
    sign_in_as(client, personas["clinician"], second_factor_age=600)
    _, review, _ = _panel_review(app, client, personas)
    assert 'id="sign-code"' in review and "Sign with your passkey" not in review and "data-passkey" not in review
