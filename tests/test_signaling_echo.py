"""The pre-call check's echo peer: an aiortc peer on the signaling server answers a WebRTC offer and sends
the media straight back, so the caller sees its own frames return and can measure the round trip.

The caller here is aiortc too (the browser's side is in tests/e2e/test_consult_e2e.py). Both ends gather
host candidates on 127.0.0.1 only: the server through CONSULT_ECHO_ADDRESSES, this test's client through
the same hook (signaling.echo's address variable), so no media touches another address of the machine.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import socketio
import uvicorn
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from app import create_app
from app.auth.models import Role
from signaling import echo, tokens
from signaling.asgi import build
from tests.conftest import World, config_for, migrate
from tests.smtp import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("echo")
    url = f"sqlite:///{folder}/x.db"
    migrate(url, folder)
    app = create_app(config_for(url, folder, CONSULT_ECHO_ADDRESSES="127.0.0.1", CONSULT_ECHO_SECONDS="20"))
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(build(app), host="127.0.0.1", port=port, lifespan="off",
                                             log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def precall_token(app) -> str:
    from app.consult import services
    from app.extensions import db

    person = World(app).patient("echo")
    with app.app_context():
        ticket = services.issue_precall(db.session.get(__import__("app.auth.models", fromlist=["User"]).User,
                                                       person.user_id))
        return ticket.token


async def round_trip(url: str, token: str) -> dict:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, namespaces=["/precall"], auth={"token": token}, transports=["websocket"],
                         wait_timeout=5)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    echoed: asyncio.Queue = asyncio.Queue()
    pc.on("track", echoed.put_nowait)
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    try:
        only_loopback = echo._only_addresses.set(("127.0.0.1",))
        try:
            await pc.setLocalDescription(await pc.createOffer())
        finally:
            echo._only_addresses.reset(only_loopback)
        reply = await client.call("offer", {"type": "offer", "sdp": pc.localDescription.sdp}, namespace="/precall",
                                  timeout=15)
        assert reply["ok"] is True, reply
        candidates = [line.split()[4] for line in reply["sdp"].splitlines() if line.startswith("a=candidate:")]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        tracks = {}
        while len(tracks) < 2:
            track = await asyncio.wait_for(echoed.get(), 10)
            tracks[track.kind] = track
        frame = await asyncio.wait_for(tracks["video"].recv(), 10)
        await asyncio.wait_for(tracks["audio"].recv(), 10)
        rtt = None
        deadline = time.monotonic() + 15
        while rtt is None and time.monotonic() < deadline:  # RTCP receiver reports come about once a second
            for stats in (await pc.getStats()).values():
                if stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
                    rtt = stats.roundTripTime
            await asyncio.sleep(0.2)
        # aiortc has no candidate-pair stats: read the nominated pairs from its ICE connection (aioice).
        pair = pc.getTransceivers()[0].sender.transport.transport._connection._nominated
        addresses = {(p.local_candidate.host, p.remote_candidate.host) for p in pair.values()}
        return {"candidates": candidates, "width": frame.width, "rtt": rtt, "addresses": addresses}
    finally:
        await pc.close()
        await client.disconnect()


def test_echo_peer_sends_the_media_back_and_a_round_trip_is_measured(server):
    app, url = server
    result = asyncio.run(round_trip(url, precall_token(app)))
    assert result["candidates"] and set(result["candidates"]) == {"127.0.0.1"}
    assert result["addresses"] == {("127.0.0.1", "127.0.0.1")}
    assert result["width"] == 640  # aiortc's test pattern, decoded after its round trip
    assert result["rtt"] is not None and 0 <= result["rtt"] < 1.0


def test_echo_refuses_tokens_that_are_not_for_the_check(server):
    app, url = server

    async def attempt(token: str) -> str:
        client = socketio.AsyncClient(reconnection=False)
        errors: list = []
        client.on("connect_error", errors.append, namespace="/precall")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url, namespaces=["/precall"], auth={"token": token}, transports=["websocket"],
                                 wait_timeout=5)
        return str(errors)

    call_token = tokens.mint(app.config["SECRET_KEY"], room="appointment-1", user_id=1, role="patient",
                             expires_at=time.time() + 60)
    assert "not valid" in asyncio.run(attempt(call_token))
    assert "token" in asyncio.run(attempt(""))


def test_a_malformed_offer_is_refused_and_the_echo_carries_on(server):
    app, url = server
    token = precall_token(app)

    async def scenario():
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, namespaces=["/precall"], auth={"token": token}, transports=["websocket"])
        try:
            bad_type = await client.call("offer", {"type": "answer", "sdp": "v=0"}, namespace="/precall", timeout=5)
            garbage = await client.call("offer", {"type": "offer", "sdp": "this is not SDP"}, namespace="/precall",
                                        timeout=15)
            pong = await client.call("ping", {"t": 3}, namespace="/precall", timeout=5)
        finally:
            await client.disconnect()
        return bad_type, garbage, pong

    bad_type, garbage, pong = asyncio.run(scenario())
    assert bad_type == {"ok": False, "error": "malformed"}
    assert garbage["ok"] is False
    assert pong == {"t": 3.0}
    assert server[0].extensions["socketio"].verity_echo.peers == {}  # nothing left running


def test_role_is_checked_for_the_echo(server):
    # A clinician may test their kit too: the check is for anyone signed in.
    app, url = server
    from app.auth.models import User
    from app.consult import services
    from app.extensions import db

    clinician = World(app).staff(Role.CLINICIAN)
    with app.app_context():
        token = services.issue_precall(db.session.get(User, clinician.user_id)).token
    result = asyncio.run(round_trip(url, token))
    assert result["width"] == 640
