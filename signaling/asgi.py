"""One ASGI application for the embedded server: Socket.IO at /socket.io/, Flask for the rest.

Flask runs through a2wsgi's thread pool (asgiref's WsgiToAsgi fails under concurrency; see
docs/performance.md for the measured cost of this layout against plain gunicorn).
"""

from __future__ import annotations

import socketio
from a2wsgi import WSGIMiddleware
from flask import Flask

from signaling.server import create_server


def build(flask_app: Flask, *, wsgi_threads: int = 16) -> socketio.ASGIApp:
    sio = create_server(flask_app)
    flask_app.extensions["socketio"] = sio
    return socketio.ASGIApp(sio, other_asgi_app=WSGIMiddleware(flask_app, workers=wsgi_threads),
                            socketio_path="socket.io")
