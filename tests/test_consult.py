"""The consultation's services and pages: who gets a join token and when, the waiting room (join, admit,
enter, leave, end), presence for the boards, TURN credentials, and guests. Notes are in test_consult_notes.py.

Appointments are booked through the scheduling services a few minutes ahead (app.consult.demo.book_soon),
so the waiting room is open.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
import sqlalchemy as sa

from app.auth.models import User
from app.consult import demo, services, settings
from app.consult.models import CallEvent
from app.extensions import db
from app.patients import services as patients
from app.scheduling import services as scheduling
from signaling import tokens
from tests.conftest import audit_actions, csrf_from, sign_in_as
from tests.test_scheduling import future_monday, ready, set_up_clinic, slot_id


def user(persona) -> User:
    return db.session.get(User, persona.user_id)


def book_soon(app, personas, patient="patient", clinician="clinician") -> int:
    """An appointment starting in about five minutes; returns its id."""
    with app.app_context():
        ready(personas[patient])
        appointment = demo.book_soon(patients.get(personas[patient].patient_id), user(personas[clinician]),
                                     by=user(personas["reception"]))
        return appointment.id


def grant_for(app, appointment_id: int, persona) -> tokens.JoinGrant:
    with app.test_request_context():
        ticket = services.issue_join(scheduling.get(appointment_id), user(persona))
        return tokens.check(app.config["SECRET_KEY"], ticket.token)


def connect(app, appointment_id: int, persona, sid: str) -> services.Admission:
    grant = grant_for(app, appointment_id, persona)
    with app.app_context():
        return services.admit_connection(grant, sid)


def post_json(client, url):
    page = client.get("/dashboard")
    return client.post(url, headers={"X-CSRFToken": csrf_from(page.get_data(as_text=True))})


@pytest.fixture
def soon(app, personas) -> int:
    return book_soon(app, personas)


# Join tokens -----------------------------------------------------------------------------------------

def test_patient_and_clinician_get_a_token_for_their_own_seat(app, personas, soon):
    for who, seat in (("patient", "patient"), ("clinician", "clinician")):
        client = app.test_client()
        sign_in_as(client, personas[who])
        response = post_json(client, f"/consult/{soon}/token")
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        grant = tokens.check(app.config["SECRET_KEY"], body["token"])
        assert (grant.room, grant.user_id, grant.role) == (f"appointment-{soon}", personas[who].user_id, seat)
        assert body["ice_servers"] == []  # nothing configured: host candidates only
        assert grant.nonce and len(grant.nonce) == 32


@pytest.mark.parametrize("who", ["other_patient", "other_clinician", "reception", "pharmacist"])
def test_nobody_else_gets_a_token_for_the_appointment(app, personas, soon, who):
    client = app.test_client()
    sign_in_as(client, personas[who])
    assert post_json(client, f"/consult/{soon}/token").status_code == 403
    assert "access.denied" in audit_actions(app)


def test_token_is_refused_before_the_waiting_room_opens(app, personas):
    with app.app_context():
        set_up_clinic(personas)
        slot = slot_id(personas["clinician"], future_monday(), "09:00")
        far = scheduling.book(patients.get(personas["patient"].patient_id), slot, by=user(personas["reception"])).id
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    response = post_json(client, f"/consult/{far}/token")
    assert response.status_code == 409
    assert "opens 30 minutes before" in response.get_json()["error"]


def test_token_never_outlives_the_call_window(app, personas, soon):
    grant = grant_for(app, soon, personas["patient"])
    with app.app_context():
        _, closes = services.window(scheduling.get(soon))
    assert grant.expires_at <= closes.timestamp()
    assert grant.expires_at - time.time() <= settings.DEFAULTS["CONSULT_JOIN_TOKEN_SECONDS"] + 1


def test_a_join_token_is_spent_at_connect_and_cannot_be_replayed(app, personas, soon):
    grant = grant_for(app, soon, personas["patient"])
    with app.app_context():
        services.admit_connection(grant, "first")
        with pytest.raises(services.Refused, match="already been used"):
            services.admit_connection(grant, "second")


def test_a_token_for_a_seat_that_is_not_the_holders_is_refused(app, personas, soon):
    # Signed with the right key but naming another patient's user: the database says no.
    forged = tokens.mint(app.config["SECRET_KEY"], room=f"appointment-{soon}",
                         user_id=personas["other_patient"].user_id, role="patient", expires_at=time.time() + 60,
                         nonce="a" * 32)
    with app.app_context(), pytest.raises(services.Refused, match="not a participant"):
        services.admit_connection(tokens.check(app.config["SECRET_KEY"], forged), "x")


# The waiting room --------------------------------------------------------------------------------

def test_patient_waits_is_checked_in_and_enters_only_once_admitted(app, personas, soon):
    admission = connect(app, soon, personas["patient"], "patient-1")
    assert (admission.seat, admission.state, admission.reconnect) == ("patient", "waiting", False)
    with app.app_context():
        assert scheduling.get(soon).status == "checked_in"
        assert services.enter(soon, "patient", "patient-1") is False  # not admitted yet
    clinician = connect(app, soon, personas["clinician"], "clinician-1")
    assert clinician.state == "in_call"
    with app.app_context():
        with pytest.raises(services.ConsultError):
            services.admit(soon, personas["patient"].user_id)  # a patient cannot admit
        services.admit(soon, personas["clinician"].user_id)
        assert scheduling.get(soon).status == "in_call"
        assert services.enter(soon, "patient", "patient-1") is True
        seats = {s["seat"]: s["state"] for s in services.lobby_state(soon)}
    assert seats == {"patient": "in_call", "clinician": "in_call"}


def test_a_reload_replaces_the_old_connection_and_rejoins_the_call(app, personas, soon):
    connect(app, soon, personas["patient"], "old")
    connect(app, soon, personas["clinician"], "doctor")
    with app.app_context():
        services.admit(soon, personas["clinician"].user_id)
        services.enter(soon, "patient", "old")
    again = connect(app, soon, personas["patient"], "new")
    assert again.replaced_sid == "old"
    assert (again.state, again.reconnect) == ("in_call", True)
    with app.app_context():
        assert services.left(soon, "patient", "old") is False  # the old socket closing frees nothing
        assert services.presence_of(scheduling.get(soon)).sid == "new"
        kinds = [e.kind for e in services.events_of(scheduling.get(soon))]
    assert "reconnect" in kinds


def test_ending_completes_the_appointment_and_moves_the_journey(app, personas, soon):
    connect(app, soon, personas["patient"], "p")
    connect(app, soon, personas["clinician"], "c")
    with app.app_context():
        with pytest.raises(services.ConsultError, match="Admit the patient"):
            services.end(soon, personas["clinician"].user_id)
        services.admit(soon, personas["clinician"].user_id)
        services.enter(soon, "patient", "p")
        services.left(soon, "patient", "p")
        services.end(soon, personas["clinician"].user_id)
        appointment = scheduling.get(soon)
        assert appointment.status == "completed"
        assert patients.get(personas["patient"].patient_id).journey_state == "consulted"
        kinds = [e.kind for e in services.events_of(appointment)]
        assert services.join_problem(appointment) == "This consultation has ended."
    assert kinds[:2] == ["join", "wait"] and {"admit", "enter", "leave", "end"} <= set(kinds)
    actions = audit_actions(app)
    for action in ("consult.joined", "consult.admitted", "consult.left", "consult.ended", "appointment.completed"):
        assert action in actions
    with app.app_context(), pytest.raises(services.Refused, match="ended"):
        services.admit_connection(grant_for_any(app, soon, personas["patient"]), "late")


def grant_for_any(app, appointment_id, persona) -> tokens.JoinGrant:
    """A token minted directly (the endpoint refuses an ended call): the connect must refuse it too."""
    return tokens.JoinGrant(room=f"appointment-{appointment_id}", user_id=persona.user_id, role="patient",
                            expires_at=time.time() + 60, nonce="b" * 32)


def test_events_hold_times_and_no_media(app, personas, soon):
    connect(app, soon, personas["patient"], "p")
    with app.app_context():
        columns = set(CallEvent.__table__.columns.keys())
        event = db.session.scalars(sa.select(CallEvent)).first()
    assert columns == {"id", "session_id", "kind", "seat", "user_id", "at"}
    assert abs((event.at - dt.datetime.now(dt.UTC)).total_seconds()) < 60


# The boards ----------------------------------------------------------------------------------------

def test_waiting_board_says_who_waits_for_the_front_desk_and_the_clinician(app, personas, soon):
    connect(app, soon, personas["patient"], "p")
    reception = app.test_client()
    sign_in_as(reception, personas["reception"])
    html = reception.get("/consult/waiting").get_data(as_text=True)
    assert "Alice Example" in html and "Waiting 0 min" in html
    clinician = app.test_client()
    sign_in_as(clinician, personas["clinician"])
    html = clinician.get("/consult/waiting", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f"/consult/{soon}?admit=1" in html and "<html" not in html
    other = app.test_client()
    sign_in_as(other, personas["other_clinician"])
    assert "Alice Example" not in other.get("/consult/waiting").get_data(as_text=True)


def test_join_link_macro_offers_the_call_to_its_people_only(app, personas, soon):
    with app.test_request_context():
        appointment = scheduling.get(soon)
        assert services.join_link(appointment, user(personas["patient"])).open
        assert services.join_link(appointment, user(personas["clinician"])).label.startswith("Open")
        assert services.join_link(appointment, user(personas["other_patient"])) is None
        assert services.join_link(appointment, user(personas["reception"])) is None


def test_call_pages_may_use_camera_and_microphone_and_others_may_not(app, personas, soon):
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    call = client.get(f"/consult/{soon}")
    assert call.status_code == 200
    assert "camera=(self)" in call.headers["Permissions-Policy"]
    assert 'data-seat="patient"' in call.get_data(as_text=True)
    assert "camera=()" in client.get("/dashboard").headers["Permissions-Policy"]
    clinician = app.test_client()
    sign_in_as(clinician, personas["clinician"])
    page = clinician.get(f"/consult/{soon}").get_data(as_text=True)
    assert 'data-seat="clinician"' in page and 'id="panel"' in page
    patient_id = personas["patient"].patient_id
    assert f'hx-get="/patients/{patient_id}/prescribing/panel?appointment_id={soon}"' in page
    assert f'hx-get="/patients/{patient_id}/outcomes/panel"' in page


# TURN --------------------------------------------------------------------------------------------

def test_turn_credentials_follow_coturns_rest_scheme():
    username, credential = settings.turn_credentials("s3cret", "42", ttl=600, now=1_000_000)
    assert username == "1000600:42"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:42", hashlib.sha1).digest()).decode()
    assert credential == expected


@pytest.mark.parametrize("engine_config", [
    {"TURN_URLS": "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349", "TURN_SECRET": "k",
     "TURN_TTL_SECONDS": "3600", "STUN_URLS": "stun:turn.example.org:3478"}])
def test_configured_ice_servers_reach_the_browser_with_fresh_credentials(app, personas, soon, engine_config):
    app.config.update(engine_config)
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    servers = post_json(client, f"/consult/{soon}/token").get_json()["ice_servers"]
    stun, turn = servers
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
    expiry, user_id = turn["username"].split(":")
    assert user_id == str(personas["patient"].user_id)
    assert 3590 <= int(expiry) - time.time() <= 3610
    digest = hmac.new(b"k", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()


# Guests ---------------------------------------------------------------------------------------------

def test_invited_guest_joins_with_their_own_link_and_a_new_invitation_revokes_it(app, personas, soon):
    clinician = app.test_client()
    sign_in_as(clinician, personas["clinician"])
    page = clinician.get(f"/consult/{soon}").get_data(as_text=True)
    response = clinician.post(f"/consult/{soon}/guest", data={"name": "Maria Lopez", "role": "interpreter"},
                              headers={"X-CSRFToken": csrf_from(page), "HX-Request": "true"})
    assert response.status_code == 200
    link = response.get_data(as_text=True).split('id="guest-link">')[1].split("<")[0]
    path = "/" + link.split("/", 3)[3]
    guest = app.test_client()
    guest_page = guest.get(path)
    assert guest_page.status_code == 200 and 'data-seat="guest"' in guest_page.get_data(as_text=True)
    ticket = guest.post(path + "/token", headers={"X-CSRFToken": csrf_from(guest_page.get_data(as_text=True))})
    grant = tokens.check(app.config["SECRET_KEY"], ticket.get_json()["token"])
    assert grant.role == "guest"
    with app.app_context():
        admission = services.admit_connection(grant, "guest-1")
        assert admission.name == "Maria Lopez (interpreter)" and admission.state == "waiting"
        services.invite_guest(scheduling.get(soon), user(personas["clinician"]), name="Sam Carer", role="carer")
    assert guest.get(path).status_code == 404
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert app.test_client().get(tampered).status_code == 404


def test_only_the_appointments_clinician_invites_a_guest(app, personas, soon):
    other = app.test_client()
    sign_in_as(other, personas["other_clinician"])
    page = other.get("/dashboard").get_data(as_text=True)
    response = other.post(f"/consult/{soon}/guest", data={"name": "X", "role": "carer"},
                          headers={"X-CSRFToken": csrf_from(page)})
    assert response.status_code == 403


def test_precall_token_is_for_the_echo_only(app, personas):
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    body = post_json(client, "/consult/check/token").get_json()
    grant = tokens.check(app.config["SECRET_KEY"], body["token"])
    assert grant.role == "precall" and grant.room == f"precall-{personas['patient'].user_id}"
    with app.app_context(), pytest.raises(services.Refused):
        services.admit_connection(grant, "x")


def test_token_endpoint_answers_json_not_a_page(app, personas, soon):
    client = app.test_client()
    sign_in_as(client, personas["patient"])
    response = post_json(client, f"/consult/{soon}/token")
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data())["appointment"] == soon


def test_token_bucket_allows_a_burst_then_refills_at_its_rate():
    from signaling.ratelimit import TokenBucket

    bucket = TokenBucket(capacity=3, rate=2, stamp=100.0)
    assert [bucket.take(now=100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(now=100.4) is False  # 0.8 of a token back
    assert bucket.take(now=100.6) is True
    assert bucket.refused == 2
