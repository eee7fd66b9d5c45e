"""Two signaling processes on one Redis (python-socketio's Redis manager): a clinician connected to one
and a patient connected to the other still see each other, and the admit, the offer and the candidates
cross between the processes.

Each worker is `uvicorn --factory signaling.asgi:create` (as production runs them) on the same database;
Redis is a private redis-server on a free loopback port when the binary is installed, else REDIS_URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from app import create_app
from app.auth.models import Role
from tests.conftest import World, config_for, migrate
from tests.smtp import free_port
from tests.test_signaling import Peer, _book, _join

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if shutil.which("redis-server"):
        port = free_port()
        folder = tmp_path_factory.mktemp("redis")
        process = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                    "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + DEADLINE
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis.from_url(url).ping():
                    break
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        yield url
        _stop(process)
        return
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("no redis-server binary and no REDIS_URL: the two-worker test needs a Redis")
    yield url


@pytest.fixture(scope="module")
def workers(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("workers")
    database = f"sqlite:///{folder}/verity.db"
    migrate(database, folder)
    app = create_app(config_for(database, folder))
    env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": redis_url, "SECRET_KEY": app.config["SECRET_KEY"],
           "VERITY_DATA_KEY": app.config["DATA_KEY"], "VERITY_INSTANCE_DIR": str(folder)}
    env.pop("VERITY_DEMO", None)
    processes, urls = [], []
    try:
        for number in (1, 2):
            port = free_port()
            log = (folder / f"worker{number}.log").open("wb")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "signaling.asgi:create", "--host", "127.0.0.1",
                 "--port", str(port), "--ws", "websockets-sansio", "--lifespan", "off", "--log-level", "warning"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            deadline = time.monotonic() + DEADLINE
            while True:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                logs = "".join((folder / f"worker{n}.log").read_text() for n in (1, 2))
                assert process.poll() is None, logs
                assert time.monotonic() < deadline, "a signaling worker did not start"
                time.sleep(0.1)
        yield app, urls
    finally:
        for process in processes:
            _stop(process)


def test_peers_on_different_workers_are_admitted_and_exchange_signals(workers):
    app, (first, second) = workers
    world = World(app)
    clinician = world.staff(Role.CLINICIAN, "clinician")
    people = {"clinician": clinician, "reception": world.staff(Role.RECEPTION),
              "patient": world.patient("alice", clinician=clinician)}
    appointment = _book(app, people)
    doctor = _join(first, app, appointment, people["clinician"])
    patient = _join(second, app, appointment, people["patient"])
    try:
        assert doctor.wait_for("presence", lambda d: d["seat"] == "patient")["state"] == "waiting"
        assert doctor.call("admit") == {"ok": True}
        patient.wait_for("admitted")  # sent by the first worker, delivered by the second
        assert patient.call("enter") == {"ok": True}
        assert doctor.wait_for("peer-joined")["sid"] == patient.sid
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        doctor.call("signal", {"to": patient.sid, "description": offer})
        assert patient.wait_for("signal") == {"from": doctor.sid, "to": patient.sid, "description": offer}
        candidate = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0",
                     "sdpMLineIndex": 0}
        patient.call("signal", {"to": doctor.sid, "candidate": candidate})
        assert doctor.wait_for("signal")["candidate"] == candidate
    finally:
        patient.close()
        doctor.close()


def test_a_token_spent_on_one_worker_is_refused_by_the_other(workers):
    from tests.test_signaling import _join_token, _refusal

    app, (first, second) = workers
    world = World(app)
    clinician = world.staff(Role.CLINICIAN, "clinician")
    people = {"clinician": clinician, "reception": world.staff(Role.RECEPTION),
              "patient": world.patient("bob", clinician=clinician)}
    appointment = _book(app, people)
    token = _join_token(app, appointment, people["patient"])
    peer = Peer(first, {"token": token, "appointment": appointment})
    try:
        assert "already been used" in _refusal(second, {"token": token, "appointment": appointment})
    finally:
        peer.close()
