"""The signaling server admits only holders of a valid join token, on the same port as the web app."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import socketio
import uvicorn

from app import create_app
from signaling import tokens
from signaling.asgi import build
from tests.conftest import config_for
from tests.smtp import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signaling")
    app = create_app(config_for(f"sqlite:///{folder}/x.db", folder))
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


def _token(app, room="appointment-1", user_id=7, role="patient", ttl=60.0):
    return tokens.mint(app.config["SECRET_KEY"], room=room, user_id=user_id, role=role, expires_at=time.time() + ttl)


def _connect(url, auth):
    client = socketio.Client(reconnection=False)
    client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    return client


def _refusal(url, auth) -> str:
    """Try to connect; return the server's reason for refusing (fails the test if admitted)."""
    client = socketio.Client(reconnection=False)
    reasons: list[object] = []
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    assert reasons, "refused without a reason"
    return str(reasons[0])


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


def test_holders_of_a_room_token_see_each_other(server):
    app, url = server
    seen = threading.Event()
    clinician = _connect(url, {"token": _token(app, user_id=1, role="clinician")})

    @clinician.on("presence")
    def _presence(data):
        if data == {"user_id": 7, "role": "patient", "state": "joined"}:
            seen.set()

    patient = _connect(url, {"token": _token(app, user_id=7, role="patient")})
    try:
        assert seen.wait(5), "the clinician was told the patient joined"
    finally:
        patient.disconnect()
        clinician.disconnect()


def test_token_check_unit():
    token = tokens.mint("k", room="r", user_id=1, role="patient", expires_at=100.0)
    assert tokens.check("k", token, now=99.0).room == "r"
    with pytest.raises(tokens.InvalidToken):
        tokens.check("k", token, now=101.0)
    with pytest.raises(tokens.InvalidToken):
        tokens.check("k", token[:-2] + "xx", now=99.0)
