"""The embedded server of `make run`: web app and signaling on one port, worker alongside.

uvicorn serves one ASGI app (Flask through a2wsgi plus python-socketio); the background
worker runs as a child process, so it has its own interpreter and database connections and
ends with the server.
"""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys

import uvicorn
from flask import Flask

from app import demo


def serve(app: Flask, host: str, port: int, *, with_worker: bool = True, log_level: str = "info") -> None:
    with app.app_context():
        demo.refuse_unsafe_start(app)
    from signaling.asgi import build

    worker = None
    if with_worker:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], env=os.environ.copy())
    asgi = build(app)
    # With our logging configured, uvicorn logs through it and leaves out its access log (which prints
    # query strings); each request is logged once by app/observability/logs.py.
    logging_options = {"log_config": None, "access_log": False} if app.config.get("LOG_FORMAT") else {}
    try:
        # Run in an empty context: the `flask` CLI has pushed an app context, and every request
        # thread would inherit it and share `g` and the database session across requests.
        contextvars.Context().run(
            uvicorn.run, asgi, host=host, port=port, log_level=log_level, lifespan="off",
            ws="websockets-sansio", proxy_headers=bool(app.config["PROXY_HOPS"]), server_header=False,
            **logging_options)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
