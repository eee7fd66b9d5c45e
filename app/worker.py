"""The background worker: delivers the outbox and runs periodic jobs.

Embedded mode runs one as a child process of the server; production runs K of them
(`flask --app wsgi worker`). Several may run at once: claims never overlap (see outbox), and a
periodic job runs on one worker at a time (`singleton`), unless it shares out its own work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from flask import Flask

from app import mail  # noqa: F401  (registers the email handler)
from app.extensions import db
from app.observability import services as observability
from app.outbox import services as outbox

log = logging.getLogger(__name__)

#: Periodic jobs: (name, every seconds, function). Other domains add theirs with `periodic`.
_jobs: list[tuple[str, float, Callable[[], object]]] = []
#: Jobs registered with `singleton=False`: they share out their own work (claims), so every worker runs them.
_shared: set[str] = set()


def periodic(name: str, every_seconds: float, *, singleton: bool = True,
             ) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Register a periodic job. By default it runs on one worker at a time across all of them (see
    `singleton`); pass `singleton=False` for a job whose claims already keep workers apart."""
    def register(fn: Callable[[], object]) -> Callable[[], object]:
        _jobs.append((name, every_seconds, fn))
        if not singleton:
            _shared.add(name)
        return fn

    return register


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.blake2b(f"verity:{name}".encode(), digest_size=8).digest(), "big", signed=True)


@contextlib.contextmanager
def singleton(name: str) -> Iterator[bool]:
    """Yield True when this worker holds the cluster-wide lock `name` for the block, False when another does.

    PostgreSQL: `pg_try_advisory_xact_lock` in a transaction on a connection of its own, held until the
    block ends, so the job's own commits (on the session's connection) do not let the lock go; a worker that
    dies mid-job loses its connection and with it the lock. SQLite: always True (one background worker
    only; bin/run-prod refuses more). The lock keeps runs apart, not counted: the jobs stay idempotent
    (outbox keys, conditional updates), so a second run in the same period finds nothing to do.
    """
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    with db.engine.connect() as connection, connection.begin():
        yield bool(connection.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(lock_key(name)))))


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
    heartbeat = observability.Heartbeat(float(app.config.get("WORKER_HEARTBEAT_SECONDS", 10)))
    log.info("worker started", extra={"worker": heartbeat.name})
    while not stop.is_set():
        with app.app_context():
            try:
                heartbeat.maybe()  # first: a failing job does not make the worker look dead
                run_cycle()
                now = time.monotonic()
                for name, every, job in _jobs:
                    if now - last_run.get(name, 0.0) >= every:
                        last_run[name] = now
                        _run_job(name, job)
            except Exception:  # keep the worker alive; the failure is logged and retried next cycle
                log.exception("worker cycle failed")
                db.session.rollback()
            finally:
                db.session.remove()
        stop.wait(poll)
    with app.app_context(), contextlib.suppress(Exception):  # stopping cleanly: no longer counts as a live worker
        heartbeat.stop()
    log.info("worker stopped", extra={"worker": heartbeat.name})


def _run_job(name: str, job: Callable[[], object]) -> None:
    if name in _shared:
        job()
        return
    with singleton(name) as ours:
        if ours:
            job()
