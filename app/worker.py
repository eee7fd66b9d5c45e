"""The background worker: delivers the outbox and runs periodic jobs.

Embedded mode runs one as a child process of the server; production runs K of them
(`flask --app wsgi worker`). Several may run at once: claims never overlap (see outbox).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable

from flask import Flask

from app import mail  # noqa: F401  (registers the email handler)
from app.extensions import db
from app.outbox import services as outbox

log = logging.getLogger(__name__)

#: Periodic jobs: (name, every seconds, function). Other domains add theirs with `periodic`.
_jobs: list[tuple[str, float, Callable[[], object]]] = []


def periodic(name: str, every_seconds: float) -> Callable[[Callable[[], object]], Callable[[], object]]:
    def register(fn: Callable[[], object]) -> Callable[[], object]:
        _jobs.append((name, every_seconds, fn))
        return fn

    return register


def run_cycle() -> int:
    """One pass: deliver what is due. Returns the number of messages delivered."""
    delivered = 0
    while True:
        batch = outbox.run_once(limit=20)
        delivered += batch
        if batch == 0:
            break
    return delivered


def run(app: Flask, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread (tests run the worker in a thread)
            signal.signal(sig, lambda *_: stop.set())
    poll = app.config["WORKER_POLL_SECONDS"]
    last_run: dict[str, float] = {}
    log.info("worker started")
    while not stop.is_set():
        with app.app_context():
            try:
                run_cycle()
                now = time.monotonic()
                for name, every, job in _jobs:
                    if now - last_run.get(name, 0.0) >= every:
                        last_run[name] = now
                        job()
            except Exception:  # keep the worker alive; the failure is logged and retried next cycle
                log.exception("worker cycle failed")
                db.session.rollback()
            finally:
                db.session.remove()
        stop.wait(poll)
    log.info("worker stopped")
