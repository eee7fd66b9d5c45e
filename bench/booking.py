"""Booking: throughput and latency of `scheduling.services.book()` with 50 concurrent clients.

For PostgreSQL (a scratch database at TEST_POSTGRES_URL) and SQLite (a temporary file), the schema is
made by the migrations, then one clinician gets 15-minute slots from 06:00 to 22:00 every day for 12
weeks and 50 eligible patients are registered. Fifty threads, each with its own app context, session
and database connection, then book through the real service (checks, the appointment row, the
clinician's and patient's time holds, the audit entries, the journey move, the confirmation email in
the outbox), as reception does:

* **distinct slots**: each client books its own run of free slots for a fixed time (no contention:
  what the booking path costs when 50 people book at once);
* **one slot, 50 clients**: in each round all 50 clients are released together on the same slot; exactly
  one must win and 49 hear "That time has just been taken" (with alternatives). The figure is the
  latency of an answer, win or refusal.

Every wait is bounded: the rounds are counted, the distinct-slot load runs for a fixed time, and the
barrier that releases the clients times out.
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Flask

from bench.common import Row, percentile, postgres_unreachable, postgres_url, scratch_database

CLIENTS = 50
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}
SLOT_MINUTES = 15
DAY_START, DAY_END = dt.time(6), dt.time(22)
BARRIER_TIMEOUT = 60.0


@dataclass(frozen=True)
class BookingResult:
    engine: str
    clients: int
    #: Distinct slots: bookings made, seconds, bookings per second, latencies (ms).
    booked: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    #: One slot raced by every client, per round.
    rounds: int
    rounds_with_one_winner: int
    refusals: int
    race_p50_ms: float
    race_p95_ms: float
    race_p99_ms: float


@dataclass(frozen=True)
class BookingReport:
    results: list[BookingResult]
    skipped: dict[str, str]

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        for r in self.results:
            rows.append(Row("booking", f"book distinct slots, {r.clients} clients", r.engine, r.per_second,
                            "bookings/s", r.p50_ms, r.p95_ms, r.p99_ms, errors=str(r.errors),
                            note=f"{r.booked:,} bookings in {r.seconds:.1f} s"))
            rows.append(Row("booking", f"one slot raced by {r.clients} clients", r.engine, None, "",
                            r.race_p50_ms, r.race_p95_ms, r.race_p99_ms,
                            errors=str(r.rounds - r.rounds_with_one_winner),
                            note=f"{r.rounds_with_one_winner}/{r.rounds} rounds with exactly one booking, "
                                 f"{r.refusals:,} refusals"))
        for engine, reason in self.skipped.items():
            rows.append(Row("booking", "book / race", engine, None, "", note=f"skipped: {reason}"))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"results": [asdict(r) for r in self.results], "skipped": self.skipped}


# Set-up -------------------------------------------------------------------------------------------

def _app_for(database_url: str, instance_dir: Path) -> Flask:
    from app import create_app

    return create_app({"ENV": "test", "SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_DIR": str(instance_dir),
                       "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": CLIENTS + 5, "max_overflow": 0,
                                                     "pool_timeout": 60},
                       **FAST_ARGON2})


def _prepare(app: Flask) -> tuple[int, int, list[int]]:
    """Migrate; one clinician with every day's slots for 12 weeks; reception; 50 eligible patients."""
    from flask_migrate import upgrade

    from app.auth import services as accounts
    from app.auth.models import Role
    from app.patients import onboarding
    from app.patients import services as patients
    from app.scheduling import availability

    with app.app_context():
        upgrade(revision="heads")
        password = secrets.token_urlsafe(16)
        clinician = accounts.create_user(email="bench.clinician@example.com", password=password,
                                         full_name="Dr Bench", role=Role.CLINICIAN)
        reception = accounts.create_user(email="bench.reception@example.com", password=password,
                                         full_name="Bench Reception", role=Role.RECEPTION)
        today = dt.datetime.now(ZoneInfo(app.config["CLINIC_TIMEZONE"])).date()
        for weekday in range(7):
            availability.add_pattern(availability.PatternData(
                clinician_id=clinician.id, weekday=weekday, start_time=DAY_START, end_time=DAY_END,
                slot_minutes=SLOT_MINUTES, consultation_type="follow-up", valid_from=today,
                valid_to=today + dt.timedelta(weeks=12)), by=reception)
        patient_ids = []
        for i in range(CLIENTS):
            patient = patients.register(email=f"bench.patient{i}@example.com", password=password,
                                        full_name=f"Bench Patient {i}", date_of_birth=dt.date(1980, 1, 1))
            onboarding.intake_submitted(patient, "eligible", [])
            onboarding.identity_verified(patient)
            patient_ids.append(patient.id)
        return clinician.id, reception.id, patient_ids


def _future_slots(app: Flask, clinician_id: int) -> list[str]:
    from app.scheduling import availability

    with app.app_context():
        zone = ZoneInfo(app.config["CLINIC_TIMEZONE"])
        first = dt.datetime.now(zone).date() + dt.timedelta(days=1)
        return [s.id for s in availability.all_slots([clinician_id], first, first + dt.timedelta(weeks=11))]


# The two loads ------------------------------------------------------------------------------------

def _client(app: Flask, reception_id: int, patient_id: int, work: Callable[..., Any]) -> Any:
    """Run `work(patient, by)` in a fresh app context bound to reception, as a request would be."""
    from app.audit import context
    from app.auth.models import User
    from app.extensions import db
    from app.patients import services as patients

    with app.app_context():
        token = context.bind(context.Actor(user_id=reception_id, role="reception", ip="127.0.0.1",
                                           user_agent="verity-bench/1"))
        try:
            by = db.session.get(User, reception_id)
            patient = patients.get(patient_id)
            db.session.commit()
            return work(patient, by)
        finally:
            context.reset(token)
            db.session.remove()


def _distinct(app: Flask, reception_id: int, patient_ids: list[int], slots: list[str],
              seconds: float) -> tuple[list[float], int]:
    from app.scheduling import services

    start = threading.Barrier(len(patient_ids), timeout=BARRIER_TIMEOUT)
    stop_at: list[float] = []

    def work_for(index: int) -> Callable[..., tuple[list[float], int]]:
        def work(patient, by) -> tuple[list[float], int]:
            timings: list[float] = []
            errors = 0
            start.wait()
            if not stop_at:
                stop_at.append(time.monotonic() + seconds)
            for slot_id in slots[index::len(patient_ids)]:
                if time.monotonic() >= stop_at[0]:
                    break
                began = time.perf_counter()
                try:
                    services.book(patient, slot_id, by=by)
                except services.BookingError:
                    errors += 1
                timings.append((time.perf_counter() - began) * 1000)
            return timings, errors

        return work

    with ThreadPoolExecutor(max_workers=len(patient_ids)) as pool:
        outcomes = list(pool.map(lambda i: _client(app, reception_id, patient_ids[i], work_for(i)),
                                 range(len(patient_ids))))
    return [t for timings, _ in outcomes for t in timings], sum(errors for _, errors in outcomes)


def _race(app: Flask, reception_id: int, patient_ids: list[int], slot_id: str) -> tuple[int, list[float]]:
    from app.scheduling import services

    start = threading.Barrier(len(patient_ids), timeout=BARRIER_TIMEOUT)

    def work(patient, by) -> tuple[bool, float]:
        start.wait()
        began = time.perf_counter()
        try:
            services.book(patient, slot_id, by=by)
            won = True
        except services.SlotTaken as exc:
            if not exc.alternatives:
                raise AssertionError("a refusal without alternatives") from exc
            won = False
        return won, (time.perf_counter() - began) * 1000

    with ThreadPoolExecutor(max_workers=len(patient_ids)) as pool:
        outcomes = list(pool.map(lambda pid: _client(app, reception_id, pid, work), patient_ids))
    return sum(won for won, _ in outcomes), [ms for _, ms in outcomes]


def measure(engine: str, database_url: str, instance_dir: Path, *, seconds: float, rounds: int,
            log: Callable[[str], None]) -> BookingResult:
    from app.extensions import db
    from app.scheduling.models import Appointment

    app = _app_for(database_url, instance_dir)
    try:
        clinician_id, reception_id, patient_ids = _prepare(app)
        slots = _future_slots(app, clinician_id)
        race_slots, free = slots[-rounds:], slots[:-rounds]
        log(f"booking: {engine}, {CLIENTS} clients booking distinct slots for {seconds:.0f} s")
        began = time.monotonic()
        timings, errors = _distinct(app, reception_id, patient_ids, free, seconds)
        elapsed = time.monotonic() - began
        with app.app_context():
            made = db.session.scalar(sa.select(sa.func.count()).select_from(Appointment))
        if made != len(timings) - errors:
            raise AssertionError(f"{engine}: {made} appointments for {len(timings) - errors} successful bookings")
        log(f"booking: {engine}, {rounds} rounds of {CLIENTS} clients racing for one slot")
        winners, race_ms = 0, []
        for slot_id in race_slots:
            won, latencies = _race(app, reception_id, patient_ids, slot_id)
            winners += won == 1
            race_ms.extend(latencies)
        return BookingResult(
            engine=engine, clients=CLIENTS, booked=made, seconds=elapsed, per_second=made / elapsed,
            p50_ms=percentile(timings, 50), p95_ms=percentile(timings, 95), p99_ms=percentile(timings, 99),
            errors=errors, rounds=rounds, rounds_with_one_winner=winners, refusals=rounds * CLIENTS - winners,
            race_p50_ms=percentile(race_ms, 50), race_p95_ms=percentile(race_ms, 95),
            race_p99_ms=percentile(race_ms, 99))
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _postgres(url: str, instance_dir: Path, **kwargs) -> BookingResult:
    with scratch_database(url) as scratch:
        return measure("postgresql", scratch, instance_dir, **kwargs)


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> BookingReport:
    seconds, rounds = (3.0, 5) if quick else (10.0, 20)
    results: list[BookingResult] = []
    skipped: dict[str, str] = {}
    pg_url = postgres_url()
    with tempfile.TemporaryDirectory(prefix="verity-bench-booking-") as tmp:
        folder = Path(tmp)
        unreachable = postgres_unreachable(pg_url)
        if unreachable:
            skipped["postgresql"] = unreachable
            log(f"booking: PostgreSQL skipped: {unreachable}")
        else:
            results.append(_postgres(pg_url, folder, seconds=seconds, rounds=rounds, log=log))
        results.append(measure("sqlite", f"sqlite:///{folder / 'booking.db'}", folder, seconds=seconds,
                               rounds=rounds, log=log))
    return BookingReport(results=results, skipped=skipped)


if __name__ == "__main__":  # python -m bench.booking [--quick]: this area alone
    import sys

    from bench.__main__ import format_table

    report = run(quick="--quick" in sys.argv)
    print(format_table(report.rows()))
