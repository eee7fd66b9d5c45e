"""Server-side sessions: a new session at sign-in, every session of a person ended at once (logout, password
change, role change, disablement), idle and absolute timeouts on a controllable clock, the idle warning's
endpoints, and the person's own sessions page. Through HTTP, as a browser would."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.auth import services as accounts
from app.auth import sessions
from app.auth.models import Role, User, UserSession
from app.auth.session_routes import TOKEN_KEY
from app.extensions import db
from tests.conftest import TEST_PASSWORD, audit_actions, csrf_from, sign_in_as

COOKIE = "verity_session"
JSON = {"Accept": "application/json"}


class Clock:
    """The sessions module's `utcnow`, moved by the test."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sessions, "utcnow", clock)
    return clock


def login(client, email: str, password: str = TEST_PASSWORD):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "email": email, "password": password})


def token_of(client) -> str | None:
    with client.session_transaction() as session:
        return session.get(TOKEN_KEY)


def rows_of(app, user_id: int) -> list[UserSession]:
    with app.app_context():
        return list(db.session.scalars(sa.select(UserSession).where(UserSession.user_id == user_id)
                                       .order_by(UserSession.id)))


def post(client, path: str, page: str, **kwargs):
    return client.post(path, headers={"X-CSRFToken": csrf_from(client.get(page).get_data(as_text=True)),
                                      **kwargs.pop("headers", {})}, **kwargs)


def signed_out_with(client, response, message: str) -> None:
    assert response.status_code == 302 and response.headers["Location"] == "/login", response.status_code
    assert message in client.get("/login").get_data(as_text=True)


# Sign-in --------------------------------------------------------------------------------------------

def test_sign_in_starts_a_new_session_and_stores_only_the_tokens_hash(app, client, personas):
    patient = personas["patient"]
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    assert login(client, patient.email).status_code == 302
    first = token_of(client)
    with client.session_transaction() as session:
        assert "planted" not in session, "nothing from before sign-in is carried over"
    [row] = rows_of(app, patient.user_id)
    assert row.token_hash == sessions.hash_token(first) and first not in row.token_hash
    assert len(first) >= 43, "256 random bits"
    assert row.ended_at is None
    post(client, "/logout", "/dashboard")
    login(client, patient.email)
    second = token_of(client)
    assert second and second != first
    assert [r.end_reason for r in rows_of(app, patient.user_id)] == ["logout", None]


def test_a_cookie_from_before_sign_in_signs_nobody_in(app, client, personas):
    client.get("/login")
    planted = client.get_cookie(COOKIE).value  # what an attacker could have set in the victim's browser
    login(client, personas["patient"].email)
    assert client.get("/dashboard").status_code == 200
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, planted)
    assert attacker.get("/dashboard").status_code == 302


def test_the_device_is_described_without_keeping_the_header(app, client, personas):
    client.get("/login", headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) "
                                                "Gecko/20100101 Firefox/128.0"})
    token = csrf_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"csrf_token": token, "email": personas["patient"].email, "password": TEST_PASSWORD},
                headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 "
                                       "Firefox/128.0"})
    assert [r.user_agent for r in rows_of(app, personas["patient"].user_id)] == ["Firefox on Windows"]


# Ending every session of a person ----------------------------------------------------------------------

def test_signing_out_ends_the_persons_sessions_on_every_device(app, personas):
    patient = personas["patient"]
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, patient.email)
    login(phone, patient.email)
    assert phone.get("/dashboard").status_code == 200
    assert post(laptop, "/logout", "/dashboard").status_code == 302
    signed_out_with(phone, phone.get("/dashboard"), "you signed out on another device")
    assert {r.end_reason for r in rows_of(app, patient.user_id)} == {"logout"}


def test_a_copied_cookie_is_useless_after_sign_out(app, client, personas):
    login(client, personas["patient"].email)
    stolen = client.get_cookie(COOKIE).value
    post(client, "/logout", "/dashboard")
    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen)
    assert thief.get("/dashboard").status_code == 302
    assert thief.get("/auth/session", headers=JSON).status_code == 401


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app, personas):
    patient = personas["patient"]
    here, elsewhere = app.test_client(), app.test_client()
    login(here, patient.email)
    login(elsewhere, patient.email)
    before = token_of(here)
    new_password = "a-brand-new-passphrase"
    page = here.get("/account/password").get_data(as_text=True)
    changed = here.post("/account/password", data={"csrf_token": csrf_from(page), "current": TEST_PASSWORD,
                                                   "password": new_password, "confirm": new_password})
    assert changed.status_code == 302 and changed.headers["Location"] == "/account"
    assert here.get("/dashboard").status_code == 200, "this browser carries on"
    assert token_of(here) != before, "in a new session"
    signed_out_with(elsewhere, elsewhere.get("/dashboard"), "your password was changed")
    assert [r.end_reason for r in rows_of(app, patient.user_id)][:2] == ["password_changed", "password_changed"]
    assert "auth.password_changed" in audit_actions(app)
    assert login(app.test_client(), patient.email, new_password).status_code == 302
    assert login(app.test_client(), patient.email, TEST_PASSWORD).status_code == 401


def test_a_wrong_current_password_changes_nothing(app, personas):
    patient = personas["patient"]
    here, elsewhere = app.test_client(), app.test_client()
    login(here, patient.email)
    login(elsewhere, patient.email)
    page = here.get("/account/password").get_data(as_text=True)
    refused = here.post("/account/password", data={"csrf_token": csrf_from(page), "current": "not-my-password",
                                                    "password": "a-brand-new-passphrase",
                                                    "confirm": "a-brand-new-passphrase"})
    assert refused.status_code == 400
    assert "Your current password is not right." in refused.get_data(as_text=True)
    assert elsewhere.get("/dashboard").status_code == 200
    assert audit_actions(app)[-1] == "auth.password_change_failed"


def test_a_role_change_ends_every_session_and_says_why(app, personas):
    reception = personas["reception"]
    desk, home = app.test_client(), app.test_client()
    sign_in_as(desk, reception)
    sign_in_as(home, reception)
    with app.app_context():
        accounts.change_role(db.session.get(User, reception.user_id), Role.CLINICIAN)
    signed_out_with(desk, desk.get("/staff"), "your role was changed")
    signed_out_with(home, home.get("/staff"), "your role was changed")


def test_disabling_ends_every_session_and_says_why(app, personas):
    patient = personas["patient"]
    laptop, phone = app.test_client(), app.test_client()
    sign_in_as(laptop, patient)
    sign_in_as(phone, patient)
    with app.app_context():
        accounts.set_active(db.session.get(User, patient.user_id), False)
    signed_out_with(laptop, laptop.get("/dashboard"), "your account has been disabled")
    fragment = phone.get("/notifications/badge", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"] == "/login"
    assert {r.end_reason for r in rows_of(app, patient.user_id)} == {"disabled"}


def test_a_signed_in_cookie_without_a_session_token_signs_nobody_in(app, client, personas):
    """Cookies made before server-side sessions (or with the token removed) no longer count."""
    sign_in_as(client, personas["patient"])
    with client.session_transaction() as session:
        session.pop(TOKEN_KEY)
    signed_out_with(client, client.get("/dashboard"), "Your session ended. Sign in again to continue.")


def test_a_token_of_another_person_signs_nobody_in(app, client, personas):
    other = app.test_client()
    sign_in_as(other, personas["other_patient"])
    sign_in_as(client, personas["patient"])
    with client.session_transaction() as session:
        session[TOKEN_KEY] = token_of(other)
    assert client.get("/dashboard").status_code == 302


# Idle and absolute timeouts -----------------------------------------------------------------------------

def test_an_idle_staff_session_ends_after_15_minutes(app, client, personas, clock):
    sign_in_as(client, personas["reception"])
    clock.advance(minutes=14)
    assert client.get("/staff").status_code == 200
    clock.advance(minutes=14)
    assert client.get("/staff").status_code == 200, "each request moved the idle time on"
    clock.advance(minutes=15, seconds=1)
    signed_out_with(client, client.get("/staff"), "you were inactive for 15 minutes")
    assert "auth.session_expired" in audit_actions(app)
    assert rows_of(app, personas["reception"].user_id)[-1].end_reason == "idle"


def test_patients_have_30_minutes(client, personas, clock):
    sign_in_as(client, personas["patient"])
    clock.advance(minutes=29)
    assert client.get("/dashboard").status_code == 200
    clock.advance(minutes=30, seconds=1)
    signed_out_with(client, client.get("/dashboard"), "you were inactive for 30 minutes")


@pytest.mark.parametrize("app_config", [{"IDLE_TIMEOUT_STAFF": 5, "SESSION_ABSOLUTE_HOURS_STAFF": 1}])
def test_the_limits_come_from_configuration_and_activity_never_passes_the_absolute_one(app, client, personas, clock):
    sign_in_as(client, personas["reception"])
    clock.advance(minutes=5, seconds=1)
    signed_out_with(client, client.get("/staff"), "you were inactive for 5 minutes")
    sign_in_as(client, personas["reception"])
    for _ in range(14):  # busy for 56 minutes
        clock.advance(minutes=4)
        assert client.get("/staff").status_code == 200
    clock.advance(minutes=4, seconds=1)
    signed_out_with(client, client.get("/staff"), "you had been signed in for 1 hour, the longest")
    assert rows_of(app, personas["reception"].user_id)[-1].end_reason == "absolute"


def test_activity_is_written_at_most_once_a_minute(app, client, personas, clock):
    sign_in_as(client, personas["reception"])
    started = rows_of(app, personas["reception"].user_id)[-1].last_seen_at
    clock.advance(seconds=30)
    client.get("/staff")
    assert rows_of(app, personas["reception"].user_id)[-1].last_seen_at == started
    clock.advance(seconds=31)
    client.get("/staff")
    assert rows_of(app, personas["reception"].user_id)[-1].last_seen_at == clock.now


def test_a_page_refreshing_itself_does_not_keep_an_idle_session_alive(client, personas, clock):
    sign_in_as(client, personas["reception"])
    poll = {"HX-Request": "true", "X-Verity-Poll": "1"}
    clock.advance(minutes=14)
    assert client.get("/consult/waiting", headers=poll).status_code == 200, "still inside the 15 minutes"
    clock.advance(minutes=1, seconds=1)
    expired = client.get("/consult/waiting", headers=poll)
    assert expired.status_code == 401, "a fragment request is not answered with a page to swap in"
    assert expired.headers["HX-Redirect"] == "/login"
    assert client.get("/staff").status_code == 302


# The idle warning's endpoints ---------------------------------------------------------------------------

def test_asking_for_the_time_left_does_not_extend_the_session(app, client, personas, clock):
    sign_in_as(client, personas["reception"])
    clock.advance(minutes=5)
    status = client.get("/auth/session", headers=JSON)
    assert status.status_code == 200
    assert status.get_json() == {"remaining_seconds": 600, "warning_seconds": 120}
    clock.advance(minutes=9)
    assert client.get("/auth/session", headers=JSON).get_json()["remaining_seconds"] == 60
    clock.advance(minutes=1, seconds=1)
    ended = client.get("/auth/session", headers=JSON)
    assert ended.status_code == 401
    assert "inactive for 15 minutes" in ended.get_json()["detail"]
    assert ended.get_json()["sign_in"] == "/login"


def test_stay_signed_in_starts_the_idle_time_again(client, personas, clock):
    sign_in_as(client, personas["reception"])
    clock.advance(minutes=14)
    page = client.get("/auth/two-factor").get_data(as_text=True)  # any page: it carries the CSRF token
    stayed = client.post("/auth/session/extend", headers={**JSON, "X-CSRFToken": csrf_from(page)})
    assert stayed.status_code == 200 and stayed.get_json()["remaining_seconds"] == 900
    clock.advance(minutes=14)
    assert client.get("/staff").status_code == 200


def test_stay_signed_in_needs_the_csrf_token(client, personas, clock):
    sign_in_as(client, personas["reception"])
    clock.advance(minutes=14)
    assert client.post("/auth/session/extend", headers=JSON).status_code == 400
    clock.advance(minutes=1, seconds=1)
    assert client.get("/staff").status_code == 302


def test_signed_in_pages_carry_the_warning_dialog_and_its_script(client, personas, clock):
    assert "session-timeout" not in client.get("/login").get_data(as_text=True)
    sign_in_as(client, personas["patient"])
    page = client.get("/dashboard").get_data(as_text=True)
    assert '<dialog class="verity-session-dialog" id="session-timeout"' in page
    assert 'data-remaining="1800"' in page and 'data-warning="120"' in page
    assert 'src="/static/js/session-timeout.js"' in page
    assert "<script>" not in page and "style=" not in page, "no inline script or style (CSP)"


# The person's own sessions ------------------------------------------------------------------------------

def test_a_person_sees_their_sessions_and_ends_the_others(app, personas):
    clinician = personas["clinician"]
    here, other, third = app.test_client(), app.test_client(), app.test_client()
    for client in (here, other, third):
        sign_in_as(client, clinician)
    with app.app_context():
        elsewhere = db.session.get(User, personas["other_clinician"].user_id)
        sessions.start(elsewhere)
    page = here.get("/account").get_data(as_text=True)
    assert page.count('class="nhsuk-table__row"') == 3, "their three sessions, not someone else's"
    assert "This device" in page
    other_row = rows_of(app, clinician.user_id)[1]
    ended = post(here, f"/account/sessions/{other_row.id}/end", "/account")
    assert ended.status_code == 302
    signed_out_with(other, other.get("/staff"), "you signed it out from another device")
    assert third.get("/staff").status_code == 200
    assert post(here, "/account/sessions/end-others", "/account").status_code == 302
    assert third.get("/staff").status_code == 302
    assert here.get("/staff").status_code == 200, "this one stays"
    assert audit_actions(app).count("auth.sessions_ended") == 2


def test_nobody_ends_someone_elses_session(app, client, personas):
    with app.app_context():
        token = sessions.start(db.session.get(User, personas["patient"].user_id))
        target = sessions.find(token).id
    sign_in_as(client, personas["other_patient"])
    assert post(client, f"/account/sessions/{target}/end", "/dashboard").status_code == 403
    with app.app_context():
        assert db.session.get(UserSession, target).ended_at is None
