"""The Socket.IO signaling server. Only holders of a valid join token get in; rooms are appointments.

Namespace "/" is the call. A connection is admitted only with a join token for the appointment it
names, whose seat (patient, clinician or the invited guest) is the token holder's; the token is spent
at connect, so it cannot be replayed. Each appointment has two rooms: its lobby (everyone connected:
presence, "admitted", "ended") and its call (those let in: offers, answers and candidates). A patient
waits in the lobby until the clinician admits them; a reload rejoins the same call.

Namespace "/precall" is the pre-call check: an aiortc peer that echoes the browser's media back.

Who is where is written to the database by app.consult.services (through signaling.bridge), so the
boards of any web process read it and several signaling processes agree; with REDIS_URL set, the
processes share rooms through python-socketio's Redis manager.

Events the client sends (see signaling/messages.py for their schemas; every reply to a bad one is a
`problem` event {event, code, message}):
  hello {}                          -> ack {sid, seat, state, name, seats: [{seat, state, since, sid, name}]}
  admit {}            (clinician)   -> ack {ok}; lobby gets `admitted`
  enter {}            (admitted)    -> ack {ok}; the call gets `peer-joined` {sid, seat, name}
  signal {to, description|candidate} -> the call gets `signal` {from, to, description|candidate}
  media {muted, camera, sharing}    -> the call gets `media` {from, seat, muted, camera, sharing}
  end {}              (clinician)   -> ack {ok}; lobby gets `ended`
  ping {t}                          -> ack {t}
Events the server sends: presence {sid, seat, name, state}, peer-joined, peer-left {sid, seat},
admitted, ended, signal, media, problem, replaced.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from flask import Flask

from app.consult import services as consult
from app.consult import settings
from app.observability import metrics
from signaling import messages, tokens
from signaling.bridge import Bridge, actor_of
from signaling.echo import EchoBusy, EchoPeers
from signaling.ratelimit import TokenBucket

log = logging.getLogger(__name__)

PRECALL = "/precall"
#: A client still flooding after this many refused messages is disconnected.
FLOOD_LIMIT = 200


def lobby_of(appointment_id: int) -> str:
    return f"lobby-{appointment_id}"


def call_of(appointment_id: int) -> str:
    return f"call-{appointment_id}"


def create_server(flask_app: Flask) -> socketio.AsyncServer:
    redis_url = flask_app.config.get("REDIS_URL")
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=[],  # same origin only
        max_http_buffer_size=64 * 1024,
        logger=False,
        engineio_logger=False,
    )
    secret = flask_app.config["SECRET_KEY"]
    bridge = Bridge(flask_app)
    buckets: dict[str, TokenBucket] = {}
    addresses = tuple(settings.url_list(flask_app.config, "CONSULT_ECHO_ADDRESSES")) or None
    echo = EchoPeers(ice_servers=settings.ice_servers(flask_app.config, "echo"), addresses=addresses,
                     lifetime=float(settings.get(flask_app.config, "CONSULT_ECHO_SECONDS")),
                     limit=int(settings.get(flask_app.config, "CONSULT_ECHO_LIMIT")))
    sio.verity_echo = echo  # for tests and shutdown

    async def problem(sid: str, event: str, code: str, message: str, namespace: str = "/") -> None:
        await sio.emit("problem", {"event": event, "code": code, "message": message}, to=sid, namespace=namespace)

    def guarded(event: str, schema: type[messages.Message], namespace: str = "/"):
        """Rate-limit, validate, and never let a handler's error reach the server loop."""

        def wrap(handler: Callable[..., Awaitable[Any]]):
            @functools.wraps(handler)
            async def run(sid: str, data: Any = None) -> Any:
                bucket = buckets.setdefault(sid, TokenBucket())
                if not bucket.take():
                    if bucket.refused > FLOOD_LIMIT:
                        await sio.disconnect(sid, namespace=namespace)
                    elif bucket.refused == 1 or bucket.refused % 50 == 0:
                        await problem(sid, event, "rate_limited", "Too many messages; slow down.", namespace)
                    return {"ok": False, "error": "rate_limited"}
                try:
                    parsed = schema.model_validate({} if data is None and schema is messages.Empty else data)
                except messages.ValidationError:
                    await problem(sid, event, "malformed", f"The {event} message is not valid.", namespace)
                    return {"ok": False, "error": "malformed"}
                try:
                    return await handler(sid, parsed)
                except consult.ConsultError as exc:
                    await problem(sid, event, "refused", str(exc), namespace)
                    return {"ok": False, "error": str(exc)}
                except Exception:
                    log.exception("signaling handler %s failed", event)
                    await problem(sid, event, "error", "Something went wrong; try again.", namespace)
                    return {"ok": False, "error": "error"}

            sio.on(event, run, namespace=namespace)
            return run

        return wrap

    async def session_of(sid: str) -> dict[str, Any]:
        return await sio.get_session(sid)

    async def step_in(sid: str, session: dict[str, Any]) -> None:
        """Into the call room; everyone already there offers a connection to the newcomer."""
        session["state"] = consult.IN_CALL
        await sio.save_session(sid, session)
        await sio.enter_room(sid, call_of(session["appointment"]))
        await sio.emit("peer-joined", {"sid": sid, "seat": session["seat"], "name": session["name"]},
                       room=call_of(session["appointment"]), skip_sid=sid)
        await sio.emit("presence", {"sid": sid, "seat": session["seat"], "name": session["name"],
                                    "state": consult.IN_CALL}, room=lobby_of(session["appointment"]), skip_sid=sid)

    # The call ------------------------------------------------------------------------------------------

    @sio.event
    async def connect(sid, environ, auth):
        try:
            parsed = messages.Auth.model_validate(auth if isinstance(auth, dict) else {})
        except messages.ValidationError:
            raise socketio.exceptions.ConnectionRefusedError("no join token") from None
        try:
            grant = tokens.check(secret, parsed.token)
        except tokens.InvalidToken as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        if parsed.appointment is not None and grant.room != consult.room_of(parsed.appointment):
            raise socketio.exceptions.ConnectionRefusedError("join token is for another appointment")
        actor = actor_of(environ, user_id=grant.user_id, role=grant.role if grant.role != consult.GUEST else None)
        try:
            admission = await bridge.run(consult.admit_connection, grant, sid, actor=actor)
        except consult.Refused as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        except consult.ConsultError as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        session = {"appointment": admission.appointment_id, "seat": admission.seat, "user_id": grant.user_id,
                   "role": grant.role, "name": admission.name, "state": admission.state, "actor": actor}
        await sio.save_session(sid, session)
        await sio.enter_room(sid, lobby_of(admission.appointment_id))
        if admission.replaced_sid:
            await sio.emit("replaced", {"message": "You joined from another window or device."},
                           to=admission.replaced_sid)
            await sio.disconnect(admission.replaced_sid)
        if admission.state == consult.IN_CALL:
            await step_in(sid, session)
        else:
            await sio.emit("presence", {"sid": sid, "seat": admission.seat, "name": admission.name,
                                        "state": consult.WAITING, "user_id": grant.user_id, "role": grant.role},
                           room=lobby_of(admission.appointment_id), skip_sid=sid)
        metrics.connection_opened("/", sid)
        log.info("call connection opened", extra={"appointment_id": admission.appointment_id,
                                                   "seat": admission.seat, "user_id": grant.user_id or None})

    @sio.event
    async def disconnect(sid, reason=None):
        buckets.pop(sid, None)
        metrics.connection_closed("/", sid)
        session = await sio.get_session(sid)
        if not session or "appointment" not in session:
            return
        appointment = session["appointment"]
        if session.get("state") == consult.IN_CALL:
            await sio.emit("peer-left", {"sid": sid, "seat": session["seat"]}, room=call_of(appointment), skip_sid=sid)
        await sio.emit("presence", {"sid": sid, "seat": session["seat"], "name": session["name"], "state": "left",
                                    "user_id": session["user_id"], "role": session["role"]},
                       room=lobby_of(appointment), skip_sid=sid)
        try:
            await bridge.run(consult.left, appointment, session["seat"], sid, actor=session["actor"])
        except Exception:
            log.exception("could not record a departure")

    @guarded("hello", messages.Empty)
    async def hello(sid, _message):
        session = await session_of(sid)
        seats = await bridge.run(consult.lobby_state, session["appointment"])
        return {"ok": True, "sid": sid, "seat": session["seat"], "state": session["state"], "name": session["name"],
                "seats": [s for s in seats if s["sid"] != sid]}

    @guarded("admit", messages.Empty)
    async def admit(sid, _message):
        session = await session_of(sid)
        if session["seat"] != consult.CLINICIAN:
            raise consult.ConsultError("Only the clinician can admit people.")
        await bridge.run(consult.admit, session["appointment"], session["user_id"], actor=session["actor"])
        await sio.emit("admitted", {}, room=lobby_of(session["appointment"]))
        return {"ok": True}

    @guarded("enter", messages.Empty)
    async def enter(sid, _message):
        session = await session_of(sid)
        if session["state"] == consult.IN_CALL:
            return {"ok": True}
        entered = await bridge.run(consult.enter, session["appointment"], session["seat"], sid,
                                   actor=session["actor"])
        if not entered:
            raise consult.ConsultError("Your clinician has not let you in yet.")
        await step_in(sid, session)
        return {"ok": True}

    @guarded("signal", messages.Signal)
    async def signal(sid, message: messages.Signal):
        session = await session_of(sid)
        if session["state"] != consult.IN_CALL:
            raise consult.ConsultError("You are not in the call yet.")
        # To the call room (never wider): each client keeps only what is addressed to it.
        await sio.emit("signal", {"from": sid, **message.model_dump(exclude_none=True)},
                       room=call_of(session["appointment"]), skip_sid=sid)
        return {"ok": True}

    @guarded("media", messages.MediaState)
    async def media(sid, message: messages.MediaState):
        session = await session_of(sid)
        if session["state"] != consult.IN_CALL:
            raise consult.ConsultError("You are not in the call yet.")
        await sio.emit("media", {"from": sid, "seat": session["seat"], **message.model_dump()},
                       room=call_of(session["appointment"]), skip_sid=sid)
        return {"ok": True}

    @guarded("end", messages.Empty)
    async def end(sid, _message):
        session = await session_of(sid)
        if session["seat"] != consult.CLINICIAN:
            raise consult.ConsultError("Only the clinician can end the call.")
        await bridge.run(consult.end, session["appointment"], session["user_id"], actor=session["actor"])
        await sio.emit("ended", {}, room=lobby_of(session["appointment"]))
        return {"ok": True}

    @guarded("ping", messages.Ping)
    async def ping(sid, message: messages.Ping):
        return {"t": message.t}

    # The pre-call check --------------------------------------------------------------------------------

    @sio.on("connect", namespace=PRECALL)
    async def precall_connect(sid, environ, auth):
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            grant = tokens.check(secret, token)
        except tokens.InvalidToken as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        if grant.role != "precall" or grant.room != consult.precall_room(grant.user_id):
            raise socketio.exceptions.ConnectionRefusedError("join token is not valid")
        metrics.connection_opened(PRECALL, sid)

    @sio.on("disconnect", namespace=PRECALL)
    async def precall_disconnect(sid, reason=None):
        buckets.pop(sid, None)
        metrics.connection_closed(PRECALL, sid)
        await echo.close(sid)

    @guarded("offer", messages.EchoOffer, namespace=PRECALL)
    async def echo_offer(sid, message: messages.EchoOffer):
        try:
            sdp = await echo.answer(sid, message.sdp)
        except EchoBusy as exc:
            raise consult.ConsultError(str(exc)) from None
        return {"ok": True, "type": "answer", "sdp": sdp}

    @guarded("ping", messages.Ping, namespace=PRECALL)
    async def precall_ping(sid, message: messages.Ping):
        return {"t": message.t}

    return sio
