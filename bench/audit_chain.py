"""Audit chain: how long verifying the hash chain takes per 100,000 entries, and how fast it grows.

For each engine (SQLite always; PostgreSQL when TEST_POSTGRES_URL answers) a fresh database is
made by the migrations, then filled with a valid chain computed here with the app's own
`entry_hash` and bulk-inserted in batches (going through `audit.record()` for 100,000 entries
would take minutes and measure something else). `verify_chain()` is then timed on it, exactly
as `flask audit verify` runs it. Finally 1,000 entries are appended through `audit.record()`,
the real write path with one transaction per entry, to give the append rate.
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from bench.common import Row, percentile, postgres_url

FULL_ENTRIES = 100_000
QUICK_ENTRIES = 20_000
APPENDS = 1_000
BATCH = 5_000
PER = 100_000  # figures are reported per this many entries

# Field values shaped like real entries (a browser user agent, a small JSON detail), so the
# hashing and row decoding cost what they cost in production.
_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/126.0.0.0 Safari/537.36")
_ACTIONS = (("record.read", "clinician", {"section": "summary"}),
            ("auth.login", "patient", {"second_factor": None}),
            ("patient.clinician_assigned", "admin", {"clinician_id": 2}),
            ("access.denied", "reception", {"endpoint": "patients.record", "reason": "not assigned"}))


@dataclass(frozen=True)
class AuditResult:
    engine: str
    entries: int
    load_s: float
    verify_s: float
    verify_s_per_100k: float
    verify_entries_per_s: float
    appends: int
    append_s: float
    appends_per_s: float
    append_p50_ms: float
    append_p95_ms: float
    append_p99_ms: float


@dataclass(frozen=True)
class AuditReport:
    results: list[AuditResult]
    #: Engine name -> why it was not measured (PostgreSQL unreachable, say).
    skipped: dict[str, str]

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        for r in self.results:
            rows.append(Row("audit", f"verify chain ({r.entries:,} entries)", r.engine, r.verify_entries_per_s,
                            "entries/s", note=f"{r.verify_s_per_100k:.2f} s per 100k entries"))
            rows.append(Row("audit", "append via audit.record()", r.engine, r.appends_per_s, "appends/s",
                            r.append_p50_ms, r.append_p95_ms, r.append_p99_ms,
                            note=f"{r.appends:,} entries, one transaction each"))
        for engine, reason in self.skipped.items():
            rows.append(Row("audit", "verify chain / append", engine, None, "", note=f"skipped: {reason}"))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"results": [asdict(r) for r in self.results], "skipped": self.skipped}


# The chain --------------------------------------------------------------------------------------

def chained_rows(count: int, *, batch: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    """Batches of `audit_events` rows forming a valid chain from the genesis, seq 1..count."""
    from app.audit.models import GENESIS_HASH
    from app.audit.services import canonical_detail, entry_hash

    prev_hash = GENESIS_HASH
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    rows: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        action, role, detail = _ACTIONS[seq % len(_ACTIONS)]
        at = start + dt.timedelta(microseconds=seq * 25_013)
        actor_id, patient_id = 2 + seq % 7, 1 + seq % 500
        detail_text = canonical_detail(detail)
        digest = entry_hash(prev_hash, seq, at, actor_id, role, action, "patient", str(patient_id), patient_id,
                            "127.0.0.1", _USER_AGENT, detail_text)
        rows.append({"seq": seq, "at": at, "actor_id": actor_id, "actor_role": role, "action": action,
                     "subject_type": "patient", "subject_id": str(patient_id), "patient_id": patient_id,
                     "ip": "127.0.0.1", "user_agent": _USER_AGENT, "detail": detail_text,
                     "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
        if len(rows) == batch:
            yield rows
            rows = []
    if rows:
        yield rows


def load_chain(count: int) -> None:
    """Bulk-insert a valid chain of `count` entries and point the chain head at its end."""
    from app.audit.models import AuditEvent, AuditHead
    from app.audit.services import HEAD_ID
    from app.database import transaction
    from app.extensions import db

    last: dict[str, Any] | None = None
    with transaction():
        for rows in chained_rows(count):
            db.session.execute(sa.insert(AuditEvent), rows)
            last = rows[-1]
        if last is None:
            raise ValueError("an empty chain needs no loading")
        db.session.execute(sa.update(AuditHead).where(AuditHead.id == HEAD_ID)
                           .values(seq=last["seq"], hash=last["hash"]))


# One engine -------------------------------------------------------------------------------------

def _app_for(database_url: str, instance_dir: Path) -> Flask:
    """The app on the given database with the test configuration (as tests/conftest.py's config_for)."""
    from app import create_app

    return create_app({"ENV": "test", "SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_DIR": str(instance_dir)})


def measure(engine: str, database_url: str, instance_dir: Path, *, entries: int, appends: int) -> AuditResult:
    """Migrate an empty database, load the chain, time verify_chain(), then time real appends."""
    from flask_migrate import upgrade

    from app.audit import services as audit
    from app.audit.context import Actor
    from app.audit.models import AuditHead
    from app.extensions import db

    app = _app_for(database_url, instance_dir)
    try:
        with app.app_context():
            upgrade(revision="heads")  # every migration branch, as `make run` and the tests do

            started = time.perf_counter()
            load_chain(entries)
            load_s = time.perf_counter() - started
            db.session.remove()

            started = time.perf_counter()
            result = audit.verify_chain()
            verify_s = time.perf_counter() - started
            if not (result.ok and result.checked == entries):
                raise AssertionError(f"{engine}: verify_chain() gave {result}, expected ok with {entries} checked")
            db.session.remove()

            actor = Actor(user_id=2, role="clinician", ip="127.0.0.1", user_agent=_USER_AGENT)
            timings: list[float] = []
            for _ in range(appends):
                one = time.perf_counter()
                audit.record("record.read", subject=("patient", 1), patient_id=1, detail={"section": "summary"},
                             actor=actor)
                timings.append((time.perf_counter() - one) * 1000)
            append_s = sum(timings) / 1000
            head_seq = db.session.scalar(sa.select(AuditHead.seq).where(AuditHead.id == audit.HEAD_ID))
            if head_seq != entries + appends:
                raise AssertionError(f"{engine}: chain head at {head_seq}, expected {entries + appends}")
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return AuditResult(
        engine=engine, entries=entries, load_s=load_s, verify_s=verify_s,
        verify_s_per_100k=verify_s * PER / entries, verify_entries_per_s=entries / verify_s,
        appends=appends, append_s=append_s, appends_per_s=appends / append_s,
        append_p50_ms=percentile(timings, 50), append_p95_ms=percentile(timings, 95),
        append_p99_ms=percentile(timings, 99),
    )


# PostgreSQL scratch database --------------------------------------------------------------------

def _postgres_admin(url: str) -> sa.Engine:
    """An autocommit engine on the server's maintenance URL; raises when it does not answer."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        engine.dispose()
        raise
    return engine


def _measure_postgres(url: str, instance_dir: Path, *, entries: int, appends: int) -> AuditResult:
    admin = _postgres_admin(url)
    name = f"verity_bench_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            scratch = sa.make_url(url).set(database=name).render_as_string(hide_password=False)
            return measure("postgresql", scratch, instance_dir, entries=entries, appends=appends)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# Entry point ------------------------------------------------------------------------------------

def run(*, quick: bool = False, log: Callable[[str], None] = print) -> AuditReport:
    entries = QUICK_ENTRIES if quick else FULL_ENTRIES
    results: list[AuditResult] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="verity-bench-audit-") as tmp:
        folder = Path(tmp)
        log(f"audit: SQLite, {entries:,} entries")
        results.append(measure("sqlite", f"sqlite:///{folder / 'audit.db'}", folder, entries=entries,
                               appends=APPENDS))

        pg_url = postgres_url()
        try:
            _postgres_admin(pg_url).dispose()
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            skipped["postgresql"] = f"unreachable at {sa.make_url(pg_url).render_as_string()} ({reason})"
            log(f"audit: PostgreSQL skipped: {skipped['postgresql']}")
        else:
            log(f"audit: PostgreSQL, {entries:,} entries")
            results.append(_measure_postgres(pg_url, folder, entries=entries, appends=APPENDS))
    return AuditReport(results=results, skipped=skipped)
