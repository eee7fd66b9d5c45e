"""One ASGI application for the embedded server: Socket.IO at /socket.io/, Flask for the rest.

Flask runs through a2wsgi's thread pool (asgiref's WsgiToAsgi fails under concurrency; see
docs/performance.md for the measured cost of this layout against plain gunicorn).
"""

from __future__ import annotations

import contextvars

import socketio
from a2wsgi import WSGIMiddleware
from a2wsgi import wsgi as a2wsgi_wsgi
from flask import Flask

from signaling.server import create_server


def _isolate_body_reads() -> None:
    """Make a2wsgi ask uvicorn for more request body from an empty context.

    a2wsgi reads a large body by scheduling uvicorn's `receive()` on the event loop from the
    request thread, inside Flask's context; uvicorn can then start the next request on the same
    keep-alive connection in that context, which hands it the finished request's app context
    (its `g`, its signed-in user). Found with 1 MiB upload chunks; the regression test is
    tests/test_documents_*.py's live-server upload followed by another request.
    """
    body = a2wsgi_wsgi.Body
    if getattr(body, "_verity_isolated", False):
        return
    original = body._receive_more_data

    def receive_more_data(self) -> bytes:
        return contextvars.Context().run(original, self)

    body._receive_more_data = receive_more_data
    body._verity_isolated = True


_isolate_body_reads()


def _fresh_context(wsgi_app):
    """Run every request in an empty context, whatever the event loop's task carried in."""

    def app(environ, start_response):
        return contextvars.Context().run(wsgi_app, environ, start_response)

    return app


def build(flask_app: Flask, *, wsgi_threads: int = 16) -> socketio.ASGIApp:
    sio = create_server(flask_app)
    flask_app.extensions["socketio"] = sio
    wsgi = WSGIMiddleware(_fresh_context(flask_app), workers=wsgi_threads)
    return socketio.ASGIApp(sio, other_asgi_app=wsgi, socketio_path="socket.io")


def create() -> socketio.ASGIApp:
    """`uvicorn --factory signaling.asgi:create`: a signaling process (with the web app behind it) configured
    from the environment, as production runs several of them with REDIS_URL set."""
    from app import create_app

    return build(create_app())
