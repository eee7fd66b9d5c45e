"""Pharmacy handshake: how soon a signed prescription reaches the pharmacy, and how fast the worker delivers.

For PostgreSQL (a scratch database at TEST_POSTGRES_URL) and SQLite (a temporary file), the schema is made by
the migrations and a patient made ready for prescriptions through the real services (clinic CA, prescriber,
identity, address, pharmacy consent, treatment plan with MDT approval). Then:

* **signed → in the portal queue**: the clinician signs 100 prescriptions one after another (the real
  signing: PAdES PDF, JWS over the FHIR Bundle, the outbox message, in one transaction); a pharmacist's
  client polls the queue fragment (`GET /pharmacy`, HX-Request) every 10 ms from another thread, and the
  latency is from the signing transaction's commit to the first answer that lists it. The browser adds up to
  PHARMACY_QUEUE_POLL_SECONDS (5 s) on top: its htmx poll interval.
* **signed → acknowledged by an API pharmacy**: the same for a pharmacy connected through the API, with a
  background worker running at its default poll interval (VERITY_WORKER_POLL_SECONDS, 1 s) pushing the signed
  webhook to a local HTTP receiver; the latency is from the commit to the receiver's 200.
* **worker throughput**: 500 pharmacy webhook messages queued at once, delivered by one worker (and, on
  PostgreSQL, by two workers claiming with SKIP LOCKED), each a real signed POST to the local receiver with the
  attempt recorded; the figure is messages per second until the outbox is empty.

Every loop is bounded by count and deadline; the receiver and workers run on 127.0.0.1 and are stopped at the end.
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from bench.common import Row, percentile, postgres_unreachable, postgres_url, scratch_database

FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}
DEADLINE = 120.0


@dataclass(frozen=True)
class Latency:
    engine: str
    what: str
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    missed: int


@dataclass(frozen=True)
class Throughput:
    engine: str
    workers: int
    messages: int
    seconds: float
    per_second: float
    failed: int


@dataclass
class PharmacyReport:
    latencies: list[Latency]
    throughput: list[Throughput]
    skipped: dict[str, str]

    def rows(self) -> list[Row]:
        rows = [Row("pharmacy", r.what, r.engine, None, "", r.p50_ms, r.p95_ms, r.p99_ms,
                    errors=str(r.missed), note=f"{r.samples} prescriptions") for r in self.latencies]
        rows += [Row("pharmacy", f"worker delivers webhooks ({r.workers} worker{'s' * (r.workers > 1)})", r.engine,
                     r.per_second, "msg/s", errors=str(r.failed), note=f"{r.messages} messages in {r.seconds:.1f} s")
                 for r in self.throughput]
        rows += [Row("pharmacy", "handshake", engine, None, "", note=f"skipped: {reason}")
                 for engine, reason in self.skipped.items()]
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"latencies": [asdict(r) for r in self.latencies], "throughput": [asdict(r) for r in self.throughput],
                "skipped": self.skipped}


# A pharmacy's webhook receiver ----------------------------------------------------------------

class Receiver:
    """Answers 200 to every POST and notes when each Idempotency-Key first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.arrived.setdefault(self.headers.get("Idempotency-Key", ""), time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Set-up through the services ------------------------------------------------------------------

@dataclass
class Setup:
    clinician_id: int
    pharmacist_id: int
    patient_id: int
    pharmacy_id: int
    product_id: int


def _app_for(database_url: str, instance_dir: Path) -> Flask:
    from app import create_app

    return create_app({"ENV": "test", "SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_DIR": str(instance_dir),
                       "PHARMACY_WEBHOOK_TIMEOUT_SECONDS": 5.0, "WORKER_POLL_SECONDS": 1.0, **FAST_ARGON2})


def _prepare(app: Flask) -> Setup:
    from flask_migrate import upgrade

    from app.audit import context
    from app.auth import services as accounts
    from app.auth.models import Role
    from app.consent import services as consents
    from app.patients import details, onboarding
    from app.patients import services as patients
    from app.pharmacy import services as pharmacies
    from app.prescribing import pki, plans, prescribers
    from app.prescribing.demo import load_demo_formulary

    with app.app_context():
        upgrade(revision="heads")
        pharmacy = pharmacies.create(name="Bench Pharmacy", gphc_number="9100001", address="1 Bench Row, Leeds")
        password = secrets.token_urlsafe(16)
        doctor = accounts.create_user(email="doctor@bench.example.com", password=password, full_name="Dr Bench",
                                      role=Role.CLINICIAN)
        second = accounts.create_user(email="second@bench.example.com", password=password, full_name="Dr Second",
                                      role=Role.CLINICIAN)
        pharmacist = accounts.create_user(email="pharmacist@bench.example.com", password=password,
                                          full_name="Pharmacist Bench", role=Role.PHARMACIST, pharmacy_id=pharmacy.id)
        pki.init_ca()
        products = {p.name: p for p in load_demo_formulary()}
        flower = products["Verdant T22 Flower"]
        prescribers.save(doctor, gmc_number="7100001", specialist=True, cd_prescriber_code="610001")
        prescribers.save(second, gmc_number="7100002", specialist=True, cd_prescriber_code="610002")
        patient = patients.register(email="patient@bench.example.com", password=password, full_name="Pat Bench",
                                    date_of_birth=dt.date(1980, 1, 1))
        patients.assign_clinician(patient, doctor)
        patients.nominate_pharmacy(patient, pharmacy.id)
        onboarding.identity_verified(patient)
        details.update(patient, "booking", {"address_line1": "2 Bench Lane", "town": "Leeds", "postcode": "LS1 4AP",
                                            "phone": "07700 900456"})
        consents.load_defaults()
        token = context.bind(context.Actor(user_id=patient.user_id, role="patient"))
        consents.accept(patient, [d.id for d in consents.outstanding(patient)])
        context.reset(token)
        token = context.bind(context.Actor(user_id=doctor.id, role="clinician"))
        plans.save_version(patient, doctor, {
            "snomed_code": "82423001", "indication": "Chronic pain", "products": {flower.id: ("0.1", "1")},
            "quotas": {"g": "1000"}, "review_date": dt.date.today() + dt.timedelta(days=90),
            "goals": "Less pain."}, reason="Bench plan")
        review = plans.refer(patient, doctor, "Chronic pain for years; licensed options failed.")
        context.reset(token)
        token = context.bind(context.Actor(user_id=second.id, role="clinician"))
        plans.decide(review, second, decision="approved", decided_on=dt.date.today(), note="Agreed.")
        context.reset(token)
        return Setup(doctor.id, pharmacist.id, patient.id, pharmacy.id, flower.id)


def _sign(app: Flask, setup: Setup) -> tuple[int, float]:
    """Sign one prescription; returns its id and the perf_counter when the signing transaction committed."""
    from app.audit import context
    from app.auth.models import User
    from app.extensions import db
    from app.patients import services as patients
    from app.prescribing import services as prescribing

    with app.app_context():
        doctor = db.session.get(User, setup.clinician_id)
        patient = patients.get(setup.patient_id)
        token = context.bind(context.Actor(user_id=doctor.id, role="clinician"))
        try:
            draft = prescribing.add_item(patient, doctor, {"product_id": str(setup.product_id), "quantity": "1",
                                                           "days_supply": "10", "dose": "Vaporise 0.1 g daily"})
            signed = prescribing.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=draft.revision)
            committed = time.perf_counter()
            return signed.prescription.id, committed
        finally:
            context.reset(token)
            db.session.remove()


def _pharmacist_client(app: Flask, setup: Setup):
    from app.auth import sessions
    from app.auth.models import User
    from app.auth.session_routes import TOKEN_KEY
    from app.extensions import db

    client = app.test_client()
    with app.app_context():
        pharmacist = db.session.get(User, setup.pharmacist_id)
        session_id, token = pharmacist.get_id(), sessions.start(pharmacist)
    now = time.time()
    with client.session_transaction() as session:
        session.update({"_user_id": session_id, "_fresh": True, TOKEN_KEY: token, "mfa_at": now})
    return client


def _queue_latency(app: Flask, setup: Setup, engine: str, samples: int, log: Callable[[str], None]) -> Latency:
    """Signed → listed in the pharmacist's queue fragment."""
    client = _pharmacist_client(app, setup)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        # Each answer is matched against prescriptions already signed before it was asked for.
        while not stop.is_set():
            asked = time.perf_counter()
            html = client.get("/pharmacy", headers={"HX-Request": "true"}).get_data(as_text=True)
            for prescription_id in list(pending):
                if f'/pharmacy/prescriptions/{prescription_id}"' in html:
                    seen.setdefault(prescription_id, max(asked, pending[prescription_id]))
            stop.wait(0.01)

    pending: dict[int, float] = {}
    latencies: list[float] = []
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        for index in range(samples):
            prescription_id, committed = _sign(app, setup)
            pending[prescription_id] = committed
            deadline = time.monotonic() + DEADLINE
            while prescription_id not in seen and time.monotonic() < deadline:
                time.sleep(0.002)
            if prescription_id in seen:
                latencies.append((seen[prescription_id] - committed) * 1000)
            if (index + 1) % 25 == 0:
                log(f"pharmacy[{engine}]: queue latency {index + 1}/{samples}")
    finally:
        stop.set()
        thread.join(timeout=10)
    return _latency(engine, "signed → in the pharmacy queue (portal)", samples, latencies)


def _latency(engine: str, what: str, samples: int, values: list[float]) -> Latency:
    if not values:
        return Latency(engine, what, samples, 0.0, 0.0, 0.0, samples)
    return Latency(engine, what, samples, round(percentile(values, 50), 1), round(percentile(values, 95), 1),
                   round(percentile(values, 99), 1), samples - len(values))


def _run_workers(app: Flask, count: int) -> tuple[threading.Event, list[threading.Thread]]:
    from app.worker import run

    stop = threading.Event()
    threads = [threading.Thread(target=run, args=(app, stop), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return stop, threads


def _api_latency(app: Flask, setup: Setup, engine: str, samples: int, receiver: Receiver,
                 log: Callable[[str], None]) -> Latency:
    """Signed → acknowledged at an API pharmacy's webhook, with one worker at its default poll interval."""
    from app.pharmacy import services as pharmacies

    with app.app_context():
        pharmacy = pharmacies.get(setup.pharmacy_id)
        pharmacies.update(pharmacy, {"name": pharmacy.name, "gphc_number": pharmacy.gphc_number,
                                     "address": pharmacy.address, "connection": "api", "webhook_url": receiver.url})
        pharmacies.rotate_signing_secret(pharmacy)
    stop, threads = _run_workers(app, 1)
    latencies: list[float] = []
    try:
        for index in range(samples):
            prescription_id, committed = _sign(app, setup)
            key = f"prescription:{prescription_id}:signed"
            deadline = time.monotonic() + DEADLINE
            while key not in receiver.arrived and time.monotonic() < deadline:
                time.sleep(0.002)
            if key in receiver.arrived:
                latencies.append((receiver.arrived[key] - committed) * 1000)
            if (index + 1) % 25 == 0:
                log(f"pharmacy[{engine}]: webhook latency {index + 1}/{samples}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return _latency(engine, "signed → acknowledged by an API pharmacy (worker poll 1 s)", samples, latencies)


def _throughput(app: Flask, setup: Setup, engine: str, messages: int, workers: int, receiver: Receiver,
                log: Callable[[str], None]) -> Throughput:
    """Queue `messages` pharmacy events at once; time the workers until the outbox has delivered them all."""
    from app.database import transaction
    from app.extensions import db
    from app.outbox import services as outbox
    from app.outbox.models import DELIVERED, OutboxMessage
    from app.prescribing import services as prescribing

    with app.app_context():
        prescription = prescribing.by_status(["signed", "transmitted"], pharmacy_id=setup.pharmacy_id, limit=1)
        prescription = prescription[0] if prescription else prescribing.get(_sign(app, setup)[0])
        tag = secrets.token_hex(3)
        with transaction():
            for index in range(messages):
                outbox.enqueue("pharmacy.prescription", f"bench:{tag}:{index}", {
                    "prescription_id": prescription.id, "public_id": prescription.public_id,
                    "pharmacy_id": setup.pharmacy_id, "event": f"bench_{index}"})
        db.session.remove()
    started = time.perf_counter()
    stop, threads = _run_workers(app, workers)
    failed = 0
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            with app.app_context():
                left = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.idempotency_key.startswith(f"bench:{tag}:"), OutboxMessage.status != DELIVERED))
                db.session.remove()
            if left == 0:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        failed = left
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    log(f"pharmacy[{engine}]: {messages} webhooks with {workers} worker(s) in {seconds:.1f} s")
    return Throughput(engine, workers, messages, round(seconds, 2), round((messages - failed) / seconds, 1), failed)


def measure(engine: str, database_url: str, folder: Path, *, samples: int, messages: int,
            log: Callable[[str], None]) -> tuple[list[Latency], list[Throughput]]:
    from app.extensions import db

    app = _app_for(database_url, folder)
    receiver = Receiver()
    try:
        setup = _prepare(app)
        log(f"pharmacy[{engine}]: ready; measuring {samples} prescriptions")
        latencies = [_queue_latency(app, setup, engine, samples, log),
                     _api_latency(app, setup, engine, samples, receiver, log)]
        throughput = [_throughput(app, setup, engine, messages, 1, receiver, log)]
        if engine == "postgresql":
            throughput.append(_throughput(app, setup, engine, messages, 2, receiver, log))
        return latencies, throughput
    finally:
        receiver.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _postgres(url: str, folder: Path, **kwargs) -> tuple[list[Latency], list[Throughput]]:
    with scratch_database(url) as scratch:
        return measure("postgresql", scratch, folder, **kwargs)


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> PharmacyReport:
    samples, messages = (20, 100) if quick else (100, 500)
    latencies: list[Latency] = []
    throughput: list[Throughput] = []
    skipped: dict[str, str] = {}
    pg_url = postgres_url()
    with tempfile.TemporaryDirectory(prefix="verity-bench-pharmacy-") as tmp:
        folder = Path(tmp)
        unreachable = postgres_unreachable(pg_url)
        if unreachable:
            skipped["postgresql"] = unreachable
            log(f"pharmacy: PostgreSQL skipped: {unreachable}")
        else:
            (folder / "pg").mkdir()
            found = _postgres(pg_url, folder / "pg", samples=samples, messages=messages, log=log)
            latencies += found[0]
            throughput += found[1]
        (folder / "sqlite").mkdir()
        found = measure("sqlite", f"sqlite:///{folder / 'sqlite' / 'pharmacy.db'}", folder / "sqlite",
                        samples=samples, messages=messages, log=log)
        latencies += found[0]
        throughput += found[1]
    return PharmacyReport(latencies, throughput, skipped)


if __name__ == "__main__":  # python -m bench.pharmacy [--quick]: this area alone
    import sys

    from bench.__main__ import format_table

    report = run(quick="--quick" in sys.argv)
    print(format_table(report.rows()))
