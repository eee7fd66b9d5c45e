"""The signaling server admits only holders of a valid join token, on the same port as the web app, and
only into their own appointment's call; it relays offers, answers and candidates to the other people of
the call, and survives bad input, floods and peers that vanish.

One server (uvicorn in a thread, the embedded layout) on a migrated SQLite database for the module; each
test books its own appointment a few minutes ahead.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest
import requests
import socketio
import uvicorn

from app import create_app
from app.auth.models import Role
from signaling import tokens
from signaling.asgi import build
from tests.conftest import World, config_for, migrate
from tests.smtp import free_port

WAIT = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signaling")
    url = f"sqlite:///{folder}/x.db"
    migrate(url, folder)
    app = create_app(config_for(url, folder, CONSULT_ECHO_ADDRESSES="127.0.0.1"))
    port = free_port()
    config = uvicorn.Config(build(app), host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                            ws="websockets-sansio")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def people(server):
    """A clinician with two patients, fresh for each test (so each test's appointments start in minutes)."""
    app, _ = server
    world = World(app)
    clinician = world.staff(Role.CLINICIAN, "clinician")
    other_clinician = world.staff(Role.CLINICIAN, "otherclinician")
    return {"clinician": clinician, "other_clinician": other_clinician,
            "reception": world.staff(Role.RECEPTION), "patient": world.patient("alice", clinician=clinician),
            "other_patient": world.patient("bob", clinician=other_clinician)}


def _book(app, people, patient="patient") -> int:
    from tests.test_consult import book_soon

    return book_soon(app, people, patient=patient, clinician="clinician" if patient == "patient" else "other_clinician")


def _join_token(app, appointment_id: int, persona) -> str:
    from app.consult import services
    from app.extensions import db
    from app.scheduling import services as scheduling
    from tests.test_consult import user

    with app.app_context():
        ticket = services.issue_join(scheduling.get(appointment_id), user(persona))
        db.session.remove()
        return ticket.token


def _token(app, room="appointment-1", user_id=7, role="patient", ttl=60.0):
    return tokens.mint(app.config["SECRET_KEY"], room=room, user_id=user_id, role=role, expires_at=time.time() + ttl)


class Peer:
    """A Socket.IO client that keeps every event it receives, to wait on."""

    def __init__(self, url: str, auth: dict | None):
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.seen: list[tuple[str, Any]] = []
        self.client = socketio.Client(reconnection=False)
        for name in ("presence", "peer-joined", "peer-left", "admitted", "ended", "signal", "media", "problem",
                     "replaced"):
            self.client.on(name, self._keeper(name))
        self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=WAIT)

    def _keeper(self, name: str):
        def keep(data=None):
            self.events.put((name, data))

        return keep

    @property
    def sid(self) -> str:
        return self.client.get_sid()

    def call(self, event: str, data: Any = None) -> Any:
        return self.client.call(event, data, timeout=WAIT)

    def wait_for(self, name: str, match=lambda data: True) -> Any:
        deadline = time.monotonic() + WAIT
        for event, data in self.seen:
            if event == name and match(data):
                self.seen.remove((event, data))
                return data
        while time.monotonic() < deadline:
            try:
                event, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event == name and match(data):
                return data
            self.seen.append((event, data))
        raise AssertionError(f"no {name!r} event within {WAIT} s; saw {self.seen}")

    def got(self, name: str) -> list[Any]:
        """Every `name` event received so far (without waiting)."""
        while not self.events.empty():
            self.seen.append(self.events.get())
        return [data for event, data in self.seen if event == name]

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()


def _join(url, app, appointment_id, persona) -> Peer:
    return Peer(url, {"token": _join_token(app, appointment_id, persona), "appointment": appointment_id})


def _refusal(url, auth) -> str:
    """Try to connect; return the server's reason for refusing (fails the test if admitted)."""
    client = socketio.Client(reconnection=False)
    reasons: list[object] = []
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    assert reasons, "refused without a reason"
    return str(reasons[0])


def _in_call(url, app, people, appointment_id) -> tuple[Peer, Peer]:
    """The clinician and the patient, admitted and in the call."""
    clinician = _join(url, app, appointment_id, people["clinician"])
    patient = _join(url, app, appointment_id, people["patient"])
    clinician.wait_for("presence", lambda d: d["seat"] == "patient" and d["state"] == "waiting")
    assert clinician.call("admit") == {"ok": True}
    patient.wait_for("admitted")
    assert patient.call("enter") == {"ok": True}
    joined = clinician.wait_for("peer-joined")
    assert joined["seat"] == "patient" and joined["sid"] == patient.sid
    return clinician, patient


def test_web_app_and_signaling_share_the_port(server):
    _, url = server
    assert requests.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": "forged.token"}, {"token": 12}])
def test_connection_without_a_valid_token_is_refused(server, auth):
    _, url = server
    assert "token" in _refusal(url, auth)


def test_expired_token_is_refused(server):
    app, url = server
    assert "expired" in _refusal(url, {"token": _token(app, ttl=-1)})


def test_token_signed_with_another_key_is_refused(server):
    _, url = server
    forged = tokens.mint("another-key", room="appointment-1", user_id=7, role="patient", expires_at=time.time() + 60)
    assert "not valid" in _refusal(url, {"token": forged})


def test_tampered_token_is_refused(server, people):
    app, url = server
    appointment = _book(app, people)
    token = _join_token(app, appointment, people["patient"])
    assert "not valid" in _refusal(url, {"token": token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")})


def test_holders_of_a_room_token_see_each_other(server, people):
    app, url = server
    appointment = _book(app, people)
    clinician = _join(url, app, appointment, people["clinician"])
    patient = _join(url, app, appointment, people["patient"])
    try:
        seen = clinician.wait_for("presence", lambda d: d["seat"] == "patient")
        assert (seen["state"], seen["user_id"], seen["name"]) == ("waiting", people["patient"].user_id, "Alice Example")
        hello = patient.call("hello")
        assert (hello["seat"], hello["state"]) == ("patient", "waiting")
        assert [s["seat"] for s in hello["seats"]] == ["clinician"]
    finally:
        patient.close()
        clinician.close()


def test_a_token_for_another_appointment_is_refused_at_connect(server, people):
    app, url = server
    mine, theirs = _book(app, people), _book(app, people, patient="other_patient")
    token = _join_token(app, theirs, people["other_patient"])
    assert "another appointment" in _refusal(url, {"token": token, "appointment": mine})


def test_a_replayed_token_is_refused(server, people):
    app, url = server
    appointment = _book(app, people)
    token = _join_token(app, appointment, people["patient"])
    first = Peer(url, {"token": token, "appointment": appointment})
    try:
        assert "already been used" in _refusal(url, {"token": token, "appointment": appointment})
    finally:
        first.close()


def test_another_patient_and_anonymous_get_nothing_of_the_call(server, people):
    app, url = server
    appointment, theirs = _book(app, people), _book(app, people, patient="other_patient")
    clinician, patient = _in_call(url, app, people, appointment)
    intruder = _join(url, app, theirs, people["other_patient"])  # a valid token, for their own appointment
    try:
        assert "token" in _refusal(url, {"appointment": appointment})
        reply = intruder.call("signal", {"to": patient.sid, "description": {"type": "offer", "sdp": "v=0"}})
        assert reply["ok"] is False
        candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}
        clinician.call("signal", {"to": patient.sid, "candidate": candidate})
        patient.wait_for("signal")
        time.sleep(0.2)  # not a timing crutch: time for a stray event to arrive, so its absence means something
        assert intruder.got("signal") == [] and intruder.got("presence") == []
        assert patient.got("signal") == []  # only the clinician's one candidate came
    finally:
        for peer in (intruder, patient, clinician):
            peer.close()


def test_offers_answers_and_candidates_reach_the_other_peer_with_its_sender(server, people):
    app, url = server
    appointment = _book(app, people)
    clinician, patient = _in_call(url, app, people, appointment)
    try:
        offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
        assert clinician.call("signal", {"to": patient.sid, "description": offer}) == {"ok": True}
        got = patient.wait_for("signal")
        assert got == {"from": clinician.sid, "to": patient.sid, "description": offer}
        candidate = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0",
                     "sdpMLineIndex": 0}
        patient.call("signal", {"to": clinician.sid, "candidate": candidate})
        assert clinician.wait_for("signal")["candidate"] == candidate
        patient.call("media", {"muted": True, "camera": False, "sharing": False})
        assert clinician.wait_for("media")["muted"] is True
    finally:
        patient.close()
        clinician.close()


def test_waiting_patients_cannot_signal_and_patients_cannot_admit_or_end(server, people):
    app, url = server
    appointment = _book(app, people)
    patient = _join(url, app, appointment, people["patient"])
    try:
        assert patient.call("signal", {"to": "abc", "candidate": {"candidate": "x"}})["ok"] is False
        assert patient.call("admit")["ok"] is False
        assert patient.call("end")["ok"] is False
        assert patient.call("enter")["ok"] is False
        assert {p["code"] for p in patient.got("problem")} == {"refused"}
    finally:
        patient.close()


@pytest.mark.parametrize("event,data", [
    ("signal", {"to": 5}),
    ("signal", {"to": "abc"}),
    ("signal", {"to": "abc", "description": {"type": "bogus", "sdp": ""}}),
    ("signal", {"to": "abc", "candidate": {"candidate": "x"}, "description": {"type": "offer", "sdp": "x"}}),
    ("signal", {"to": "a b", "candidate": {"candidate": "x"}}),
    ("signal", "not an object"),
    ("signal", {"to": "abc", "candidate": {"candidate": "x" * 5000}}),
    ("media", {"muted": "yes", "camera": True, "sharing": False}),
    ("hello", {"unexpected": 1}),
    ("ping", {"t": "now"}),
])
def test_malformed_messages_are_refused_and_the_server_carries_on(server, people, event, data):
    app, url = server
    appointment = _book(app, people)
    clinician = _join(url, app, appointment, people["clinician"])
    try:
        assert clinician.call(event, data) == {"ok": False, "error": "malformed"}
        assert clinician.wait_for("problem")["code"] == "malformed"
        assert clinician.call("ping", {"t": 1.5}) == {"t": 1.5}
    finally:
        clinician.close()


def test_a_flood_is_rate_limited_and_the_client_can_carry_on_after(server, people):
    app, url = server
    appointment = _book(app, people)
    clinician = _join(url, app, appointment, people["clinician"])
    try:
        for n in range(150):
            clinician.client.emit("ping", {"t": n})
        assert clinician.wait_for("problem")["code"] == "rate_limited"
        deadline = time.monotonic() + WAIT
        while clinician.call("ping", {"t": 1}) != {"t": 1.0}:  # the bucket refills at 20 a second
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        clinician.close()


def test_a_peer_that_vanishes_is_reported_and_the_call_resumes(server, people):
    from app.consult import services
    from app.scheduling import services as scheduling

    app, url = server
    appointment = _book(app, people)
    clinician, patient = _in_call(url, app, people, appointment)
    try:
        gone = patient.sid
        patient.client.eio.disconnect(abort=True)  # no goodbye: the network went
        left = clinician.wait_for("peer-left")
        assert left == {"sid": gone, "seat": "patient"}
        back = _join(url, app, appointment, people["patient"])  # the reload: a fresh token, straight back in
        assert back.call("hello")["state"] == "in_call"
        assert clinician.wait_for("peer-joined")["sid"] == back.sid
        with app.app_context():
            kinds = [e.kind for e in services.events_of(scheduling.get(appointment))]
        assert "leave" in kinds and kinds[-1] == "reconnect"
        back.close()
    finally:
        clinician.close()


def test_a_second_window_replaces_the_first(server, people):
    app, url = server
    appointment = _book(app, people)
    first = _join(url, app, appointment, people["patient"])
    second = _join(url, app, appointment, people["patient"])
    try:
        first.wait_for("replaced")
        deadline = time.monotonic() + WAIT
        while first.client.connected:
            assert time.monotonic() < deadline, "the first window stayed connected"
            time.sleep(0.05)
        assert second.call("hello")["seat"] == "patient"
    finally:
        second.close()
        first.close()


def test_the_clinician_ends_the_call_for_everyone(server, people):
    from app.scheduling import services as scheduling

    app, url = server
    appointment = _book(app, people)
    clinician, patient = _in_call(url, app, people, appointment)
    try:
        assert clinician.call("end") == {"ok": True}
        patient.wait_for("ended")
        with app.app_context():
            assert scheduling.get(appointment).status == "completed"
        assert "ended" in _refusal(url, {"token": _token(app, room=f"appointment-{appointment}",
                                                         user_id=people["patient"].user_id),
                                         "appointment": appointment})
    finally:
        patient.close()
        clinician.close()


def test_token_check_unit():
    token = tokens.mint("k", room="r", user_id=1, role="patient", expires_at=100.0)
    assert tokens.check("k", token, now=99.0).room == "r"
    with pytest.raises(tokens.InvalidToken):
        tokens.check("k", token, now=101.0)
    with pytest.raises(tokens.InvalidToken):
        tokens.check("k", token[:-2] + "xx", now=99.0)
