"""Fault injection: signed prescriptions pushed to a pharmacy endpoint that times out, answers 5xx, drops
connections and answers twice, by real worker processes (`flask --app wsgi worker`, two of them on
PostgreSQL) one of which is killed with SIGKILL mid-run and restarted. At the end the pharmacy received
every prescription exactly once, and the clinic's states agree with what the pharmacy holds."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.outbox.models import DELIVERED, OutboxAttempt, OutboxMessage
from app.prescribing import services as prescribing
from app.prescribing import states
from tests.pharmacy_peer import Faults, PharmacyPeer
from tests.test_pharmacy_helpers import make_api, ready, sign_new, status

REPO = Path(__file__).resolve().parent.parent
KIND = "pharmacy.prescription"


def _worker_env(database_url: str, folder: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "fault-test", "VERITY_DATA_KEY": "00" * 32,
            "VERITY_INSTANCE_DIR": str(folder), "VERITY_BASE_URL": "http://localhost",
            "VERITY_WORKER_POLL_SECONDS": "0.2", "VERITY_OUTBOX_LEASE_SECONDS": "8",
            "VERITY_OUTBOX_MAX_ATTEMPTS": "60", "VERITY_OUTBOX_BACKOFF_CAP_SECONDS": "2",
            "VERITY_PHARMACY_WEBHOOK_TIMEOUT_SECONDS": "1"}


class Worker:
    """`flask --app wsgi worker` in a process group of its own, stopped (or killed) by its own id."""

    def __init__(self, name: str, env: dict[str, str], folder: Path):
        self.log = folder / f"worker-{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=REPO,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def _outbox_settled(app, count: int) -> bool:
    with app.app_context():
        delivered = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == KIND, OutboxMessage.status == DELIVERED))
        db.session.remove()
        return delivered == count


def test_every_prescription_reaches_a_faulty_pharmacy_exactly_once_despite_a_killed_worker(app, database_url,
                                                                                           personas, tmp_path):
    postgres = database_url.startswith("postgresql")
    count = 200 if postgres else 60
    peer = PharmacyPeer(secret="", seed=20, faults=Faults(timeout=0.08, error=0.15, drop=0.1, double_answer=0.1,
                                                          hang_seconds=1.5)).start()
    workers: list[Worker] = []
    try:
        with app.app_context():
            r = ready(personas, quota_g="1000")
            credentials = make_api(r.pharmacy_id, webhook_url=peer.url)
            peer.secret = credentials.secret
            prescriptions = {p.id: p.public_id for p in (sign_new(r, quantity="1", days="10") for _ in range(count))}
        expected_keys = {f"prescription:{pid}:signed" for pid in prescriptions}
        env = _worker_env(database_url, tmp_path)
        workers = [Worker("a", env, tmp_path)] + ([Worker("b", env, tmp_path)] if postgres else [])
        assert peer.wait_for(count // 4, timeout=120), f"deliveries did not start: {workers[0].log.read_text()[-2000:]}"
        workers[0].kill()  # mid-run: it holds leased messages, maybe one half-delivered
        killed_at = len(peer.received)
        assert killed_at < count, "the worker was killed after the end: the test proves nothing"
        workers.append(Worker("a-restarted", env, tmp_path))
        assert peer.wait_for(count, timeout=300), f"only {len(peer.received)} of {count} arrived"
        deadline = time.monotonic() + 120
        while not _outbox_settled(app, count):
            assert time.monotonic() < deadline, "the outbox did not settle"
            time.sleep(0.25)
    finally:
        for worker in workers:
            worker.stop()
        peer.stop()

    # The pharmacy: every prescription once, nothing else, every signature good.
    assert set(peer.received) == expected_keys
    assert set(peer.applied.values()) == {1}
    assert peer.refused == []
    outcomes = Counter(outcome for outcome, _key in peer.log)
    assert {"timeout", "error", "drop", "double", "ok"} <= set(outcomes), outcomes
    assert sum(peer.deliveries.values()) > count, "faults made Verity send again"
    assert {event["prescription"]["id"] for event in peer.received.values()} == set(prescriptions.values())
    # The clinic: each one transmitted once, every attempt recorded, nothing given up.
    with app.app_context():
        for prescription_id in prescriptions:
            moves = [t.to_state for t in states.history(prescribing.get(prescription_id))]
            assert moves == ["signed", "transmitted"], (prescription_id, moves)
        attempts = Counter(db.session.scalars(sa.select(OutboxAttempt.outcome).join(
            OutboxMessage, OutboxMessage.id == OutboxAttempt.message_id).where(OutboxMessage.kind == KIND)))
        assert attempts["delivered"] >= count and attempts["failed"] > 0 and attempts["dead"] == 0

    # The pharmacy's system acknowledges each one through the API, sometimes twice over: the duplicates are
    # refused, and every prescription is received exactly once.
    client = app.test_client()
    rng = random.Random(4)
    refusals = Counter()
    for public_id in prescriptions.values():
        key = f"ack-{public_id}"
        assert status(client, credentials, public_id, {"status": "received"}, key=key).status_code == 200
        if rng.random() < 0.2:
            again = status(client, credentials, public_id, {"status": "received"}, key=key)
            refusals[again.status_code] += 1
        if rng.random() < 0.1:
            later = status(client, credentials, public_id, {"status": "received"}, timestamp=int(time.time()) - 2)
            refusals[later.status_code] += 1
    assert set(refusals) <= {409} and refusals[409] > 0
    with app.app_context():
        for prescription_id in prescriptions:
            moves = [t.to_state for t in states.history(prescribing.get(prescription_id))]
            assert moves == ["signed", "transmitted", "received_by_pharmacy"], (prescription_id, moves)


@pytest.fixture
def app_config():
    return {"PHARMACY_WEBHOOK_TIMEOUT_SECONDS": 1.0}
