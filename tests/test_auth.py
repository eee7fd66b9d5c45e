"""Registration, sign-in, throttling, the second factor, sessions: through HTTP, as a browser would."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import sqlalchemy as sa

from app.auth import services as accounts
from app.auth.models import Role, User
from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients.models import Patient
from tests.conftest import TEST_PASSWORD, audit_actions, csrf_from, sign_in_as


def form_token(client, path: str) -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def register(client, **overrides):
    data = {"full_name": "Jamie Rivers", "email": "jamie@example.com", "dob_day": "3", "dob_month": "2",
            "dob_year": "1990", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD}
    data.update(overrides)
    data["csrf_token"] = form_token(client, "/register")
    return client.post("/register", data=data)


def login(client, email: str, password: str = TEST_PASSWORD):
    token = form_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "email": email, "password": password})


def recovery_codes(html: str) -> list[str]:
    return re.findall(r'<li><code class="verity-inline-code">([a-z0-9]{5}-[a-z0-9]{5})</code></li>', html)


def submit_code(client, code: str, path: str = "/auth/two-factor"):
    token = form_token(client, path)
    field = "totp-code" if path == "/auth/two-factor" else "code"
    return client.post(path, data={"csrf_token": token, field: code})


# Registration -----------------------------------------------------------------------------

def test_patient_registers_and_lands_on_dashboard(app, client):
    response = register(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Hello, Jamie" in dashboard
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "jamie@example.com"))
        assert user.role is Role.PATIENT
        assert user.password_hash.startswith("$argon2id$")
        patient = db.session.scalar(sa.select(Patient).where(Patient.user_id == user.id))
        assert (patient.date_of_birth, patient.journey_state) == (dt.date(1990, 2, 3), "registered")
        welcome = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.kind == "email"))
        assert welcome.idempotency_key == f"welcome:{user.id}"
    assert {"user.created", "patient.registered", "auth.login"} <= set(audit_actions(app))


def test_registration_refuses_under_18_and_keeps_answers(app, client):
    today = dt.date.today()
    response = register(client, dob_year=str(today.year - 17), dob_month=str(today.month), dob_day=str(today.day))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "You must be 18 or over" in page
    assert 'value="Jamie Rivers"' in page and 'value="jamie@example.com"' in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"email": "not-an-email"}, "Enter an email address in the correct format"),
    ({"dob_day": "31", "dob_month": "2"}, "Date of birth must be a real date"),
    ({"dob_day": "x"}, "Day must be a number"),
    ({"dob_year": ""}, "Date of birth must include a year"),
    ({"password": "short", "confirm": "short"}, "Use between 10 and 200 characters"),
    ({"confirm": "something-else-entirely"}, "The passwords do not match"),
    ({"password": "jamie@example.com", "confirm": "jamie@example.com"}, "must not be your email address"),
])
def test_registration_explains_each_mistake(client, overrides, message):
    response = register(client, **overrides)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_registration_refuses_a_taken_email(client):
    register(client)
    client.post("/logout", headers={"X-CSRFToken": form_token(client, "/dashboard")})
    response = register(client, email="JAMIE@example.com")
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)


# Sign-in ---------------------------------------------------------------------------------

def test_wrong_password_is_refused_and_audited(app, client, personas):
    response = login(client, personas["patient"].email, "wrong-password-here")
    assert response.status_code == 401
    assert "The email address or password is not right" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    assert audit_actions(app)[-1] == "auth.login_failed"


def test_unknown_account_gets_the_same_message(app, client):
    response = login(client, "nobody@example.com")
    assert response.status_code == 401
    assert "The email address or password is not right" in response.get_data(as_text=True)
    assert audit_actions(app)[-1] == "auth.login_failed"


def test_login_is_throttled_per_account(app, client, personas):
    email = personas["patient"].email
    for _ in range(5):
        assert login(client, email, "wrong-password-here").status_code == 401
    blocked = login(client, email, TEST_PASSWORD)  # even the right password waits now
    assert blocked.status_code == 429
    assert "sign-in is paused" in blocked.get_data(as_text=True)
    assert audit_actions(app)[-1] == "security.throttled"
    other = login(app.test_client(), personas["other_patient"].email)
    assert other.status_code == 302, "another account from the same address is not blocked by this one"


@pytest.mark.parametrize("app_config", [{"LOGIN_LIMIT_PER_ADDRESS": "3 per 15 minutes"}])
def test_login_is_throttled_per_address(client, personas):
    for i in range(3):
        assert login(client, f"guess{i}@example.com", "wrong-password-here").status_code == 401
    assert login(client, personas["patient"].email).status_code == 429


def test_disabled_account_cannot_sign_in(app, client, personas):
    with app.app_context():
        accounts.set_active(db.session.get(User, personas["patient"].user_id), False)
    response = login(client, personas["patient"].email)
    assert response.status_code == 401
    assert "disabled" in response.get_data(as_text=True)


def test_next_must_stay_on_site(client, personas):
    token = form_token(client, "/login")
    for target in ("//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"):
        response = client.post(f"/login?next={target}", data={"csrf_token": token, "email": personas["patient"].email,
                                                               "password": TEST_PASSWORD})
        assert response.status_code == 302
        assert "evil" not in response.headers["Location"]
        client.post("/logout", headers={"X-CSRFToken": form_token(client, "/dashboard")})
        token = form_token(client, "/login")


# Second factor ---------------------------------------------------------------------------

def test_staff_enrol_totp_then_reach_staff_pages(app, client, world):
    clinician = world.staff(Role.CLINICIAN, totp=False)
    response = login(client, clinician.email)
    assert response.headers["Location"] == "/auth/two-factor/setup"
    assert client.get("/staff").headers["Location"] == "/auth/two-factor/setup"
    page = client.get("/auth/two-factor/setup").get_data(as_text=True)
    secret = page.split('data-secret="')[1].split('"')[0]
    assert "<svg" in page, "the QR code is inline SVG (no inline script, no data URL)"
    wrong = submit_code(client, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
                        "/auth/two-factor/setup")
    assert wrong.status_code == 400
    done = submit_code(client, pyotp.TOTP(secret).now(), "/auth/two-factor/setup")
    codes = recovery_codes(done.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/staff").status_code == 200
    with app.app_context():
        user = db.session.get(User, clinician.user_id)
        assert user.has_totp
        assert secret.encode() not in user.totp_secret_enc, "the seed is encrypted at rest"
    assert "auth.totp_enrolled" in audit_actions(app)


def test_totp_code_cannot_be_replayed(app, personas):
    clinician = personas["clinician"]
    code = pyotp.TOTP(clinician.totp_secret).now()
    first = app.test_client()
    login(first, clinician.email)
    assert submit_code(first, code).status_code == 302
    assert first.get("/staff").status_code == 200
    second = app.test_client()
    login(second, clinician.email)
    replay = submit_code(second, code)
    assert replay.status_code == 401
    assert "already been used" in replay.get_data(as_text=True)
    assert second.get("/staff").status_code == 302
    assert audit_actions(app)[-1] == "auth.totp_verified_failed"


def test_replay_refused_in_services_across_clock_drift_window(ctx, personas):
    """A code accepted for step N is refused afterwards even while it is still inside the ±1 window."""
    user = db.session.get(User, personas["clinician"].user_id)
    totp = pyotp.TOTP(personas["clinician"].totp_secret)
    at = 1_900_000_000.0
    assert accounts.verify_totp(user, totp.at(at), at=at)
    assert not accounts.verify_totp(user, totp.at(at), at=at + 20)
    assert not accounts.verify_totp(user, totp.at(at - 30), at=at), "an older step is refused too"
    assert accounts.verify_totp(user, totp.at(at + 30), at=at + 30)


def test_recovery_code_works_once(app, client, world):
    clinician = world.staff(Role.CLINICIAN, totp=False)
    login(client, clinician.email)
    secret = client.get("/auth/two-factor/setup").get_data(as_text=True).split('data-secret="')[1].split('"')[0]
    page = submit_code(client, pyotp.TOTP(secret).now(), "/auth/two-factor/setup").get_data(as_text=True)
    code = recovery_codes(page)[0]
    client.post("/logout", headers={"X-CSRFToken": form_token(client, "/staff")})
    for attempt in (1, 2):
        login(client, clinician.email)
        token = form_token(client, "/auth/two-factor")
        response = client.post("/auth/two-factor", data={"csrf_token": token, "recovery-recovery_code": code})
        if attempt == 1:
            assert response.status_code == 302
            assert client.get("/staff").status_code == 200
            client.post("/logout", headers={"X-CSRFToken": form_token(client, "/staff")})
        else:
            assert response.status_code == 401
            assert "has been used" in response.get_data(as_text=True)


def test_second_factor_guesses_are_throttled(app, client, personas):
    login(client, personas["reception"].email)
    for _ in range(5):
        assert submit_code(client, "000000" if pyotp.TOTP(personas["reception"].totp_secret).now() != "000000"
                           else "111111").status_code == 401
    assert submit_code(client, pyotp.TOTP(personas["reception"].totp_secret).now()).status_code == 429


def test_role_change_needs_a_fresh_second_factor(app, client, personas):
    sign_in_as(client, personas["admin"], second_factor_age=6 * 60)
    response = client.get(f"/admin/users/{personas['reception'].user_id}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/step-up")
    code = pyotp.TOTP(personas["admin"].totp_secret).now()
    stepped = submit_code(client, code, response.headers["Location"])
    assert stepped.status_code == 302
    assert client.get(f"/admin/users/{personas['reception'].user_id}").status_code == 200
    assert "auth.step_up" in audit_actions(app)


def test_role_change_ends_the_users_sessions(app, personas):
    reception = app.test_client()
    sign_in_as(reception, personas["reception"])
    assert reception.get("/staff").status_code == 200
    admin = app.test_client()
    sign_in_as(admin, personas["admin"])
    token = form_token(admin, f"/admin/users/{personas['reception'].user_id}")
    with app.app_context():
        pharmacy_id = db.session.get(User, personas["pharmacist"].user_id).pharmacy_id
    changed = admin.post(f"/admin/users/{personas['reception'].user_id}",
                         data={"csrf_token": token, "role-role": "pharmacist", "role-pharmacy_id": str(pharmacy_id),
                               "role-save_role": "Save role"})
    assert changed.status_code == 302
    assert reception.get("/staff").status_code == 302, "the old session no longer signs anyone in"
    assert "user.role_changed" in audit_actions(app)


def test_disabling_ends_open_sessions(app, personas):
    patient = app.test_client()
    sign_in_as(patient, personas["patient"])
    assert patient.get("/dashboard").status_code == 200
    with app.app_context():
        accounts.set_active(db.session.get(User, personas["patient"].user_id), False)
    assert patient.get("/dashboard").status_code == 302


# Sessions and CSRF -----------------------------------------------------------------------

# Idle and absolute timeouts, and ending sessions everywhere: tests/test_sessions.py.


def test_missing_csrf_token_is_refused_and_audited(app, client, personas):
    sign_in_as(client, personas["patient"])
    response = client.post("/logout")
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    assert audit_actions(app)[-1] == "security.csrf_rejected"
    assert client.get("/dashboard").status_code == 200, "nothing was changed"


def test_htmx_sends_csrf_in_a_header(client, personas):
    sign_in_as(client, personas["patient"])
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    response = client.post("/logout", headers={"X-CSRFToken": csrf_from(page), "HX-Request": "true"})
    assert response.status_code == 302


def test_signed_out_visitor_is_told_why_and_sent_back_after_sign_in(client, personas):
    response = client.get("/dashboard")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/dashboard"
    assert "Sign in to continue." in client.get(response.headers["Location"]).get_data(as_text=True)
    signed_in = client.post(response.headers["Location"], data={
        "csrf_token": form_token(client, "/login"), "email": personas["patient"].email, "password": TEST_PASSWORD})
    assert signed_in.headers["Location"] == "/dashboard"
