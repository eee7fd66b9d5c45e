"""The Socket.IO signaling server. Only holders of a valid join token get in; rooms are appointments."""

from __future__ import annotations

import logging

import socketio
from flask import Flask

from signaling import tokens

log = logging.getLogger(__name__)


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

    @sio.event
    async def connect(sid, environ, auth):
        try:
            grant = tokens.check(secret, (auth or {}).get("token") if isinstance(auth, dict) else None)
        except tokens.InvalidToken as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        await sio.save_session(sid, {"room": grant.room, "user_id": grant.user_id, "role": grant.role})
        await sio.enter_room(sid, grant.room)
        await sio.emit("presence", {"user_id": grant.user_id, "role": grant.role, "state": "joined"},
                       room=grant.room, skip_sid=sid)

    @sio.event
    async def disconnect(sid, reason=None):
        session = await sio.get_session(sid)
        if session:
            await sio.emit("presence", {"user_id": session["user_id"], "role": session["role"], "state": "left"},
                           room=session["room"], skip_sid=sid)

    return sio
