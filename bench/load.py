"""Load at clinic-group scale: the locust scenario (bench/locustfile.py) against the production layout.

One run: a scratch PostgreSQL database, migrated and seeded by `flask seed-scale` (2,000 patients with --quick,
else VERITY_BENCH_LOAD_PATIENTS, default 100,000), then `bin/run-prod` with 2 web workers (gunicorn, one sync
worker each), 1 signaling and 1 background worker on it and on Redis, then locust headless (VERITY_BENCH_LOAD_USERS
simulated people, default 40; 20 with --quick) spread over the web ports. Statistics are reset once every
person has signed in, so the figures are the steady mix of pages, not the sign-ins' Argon2.

Then the slowest queries: each page of the scenario is opened once in-process, timing every statement
(SQLAlchemy's cursor events), and the slowest few are run again under EXPLAIN ANALYZE.

VERITY_BENCH_LOAD_DATABASE=<url> uses an already seeded database instead (with the SECRET_KEY and
VERITY_DATA_KEY it was seeded under, from the environment): seeding 100,000 patients takes minutes.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import (
    LOCALHOST,
    Row,
    ServerProcess,
    free_port,
    postgres_unreachable,
    postgres_url,
    run_checked,
    scratch_database,
)

TARGET_P95_MS = 150.0
WEB_WORKERS = 2


@dataclass
class PageStats:
    name: str
    requests: int
    failures: int
    req_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class SlowQuery:
    page: str
    ms: float
    statement: str
    plan: str


@dataclass
class LoadReport:
    patients: int
    users: int
    seconds: int
    seed_s: float | None
    layout: str
    pages: list[PageStats]
    total_req_per_s: float
    slow: list[SlowQuery] = field(default_factory=list)

    def rows(self) -> list[Row]:
        rows = []
        for page in self.pages:
            verdict = "meets" if page.p95_ms <= TARGET_P95_MS else "MISSES"
            rows.append(Row("load", page.name, self.layout, page.req_per_s, "req/s", page.p50_ms, page.p95_ms,
                            page.p99_ms, f"{page.failures}/{page.requests}",
                            f"p95 {verdict} {TARGET_P95_MS:.0f} ms"))
        seeded = f"seeded in {self.seed_s:.0f} s" if self.seed_s is not None else "pre-seeded"
        rows.append(Row("load", "all pages", self.layout, self.total_req_per_s, "req/s", None, None, None, "-",
                        f"{self.users} users, {self.patients:,} patients ({seeded}), {self.seconds} s"))
        return rows

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _environment(folder: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("VERITY_ENV", "VERITY_PROXY_HOPS", "FLASK_RUN_FROM_CLI", "RATELIMIT_STORAGE_URI"):
        env.pop(name, None)
    env.update({
        "DATABASE_URL": database_url,
        "VERITY_INSTANCE_DIR": str(folder),
        "SECRET_KEY": env.get("SECRET_KEY") or secrets.token_urlsafe(48),
        "VERITY_DATA_KEY": env.get("VERITY_DATA_KEY") or secrets.token_hex(32),
        "VERITY_DEMO": "1",  # seeded accounts are demo accounts (published password)
        "REDIS_URL": env.get("VERITY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
        "VERITY_LOGIN_LIMIT_ACCOUNT": "100000 per minute",
        "VERITY_LOGIN_LIMIT_ADDRESS": "100000 per minute",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _read_stats(prefix: Path, seconds: int) -> tuple[list[PageStats], float]:
    pages, total = [], 0.0
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                total = float(row["Requests/s"])
                continue
            if "(setup)" in row["Name"] or row["Name"] in ("/login", "/auth/two-factor"):
                continue
            pages.append(PageStats(row["Name"], int(row["Request Count"]), int(row["Failure Count"]),
                                   float(row["Requests/s"]), float(row["50%"]), float(row["95%"]),
                                   float(row["99%"])))
    return sorted(pages, key=lambda p: p.name), total


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> LoadReport:
    base = postgres_url()
    problem = postgres_unreachable(base)
    if problem:
        raise RuntimeError(f"PostgreSQL {problem}")
    patients = 2000 if quick else int(os.environ.get("VERITY_BENCH_LOAD_PATIENTS", "100000"))
    users = int(os.environ.get("VERITY_BENCH_LOAD_USERS", "20" if quick else "40"))
    seconds = int(os.environ.get("VERITY_BENCH_LOAD_SECONDS", "20" if quick else "120"))
    preseeded = os.environ.get("VERITY_BENCH_LOAD_DATABASE")
    with tempfile.TemporaryDirectory(prefix="verity-load-") as tmp:
        folder = Path(tmp)
        if preseeded:
            return _measure(preseeded, folder, patients, users, seconds, None, log)
        with scratch_database(base) as url:
            env = _environment(folder, url)
            flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
            run_checked([*flask, "db", "upgrade", "heads"], env, timeout=300)
            log(f"load: seeding {patients:,} patients")
            started = time.monotonic()
            run_checked([*flask, "seed-scale", "--patients", str(patients)], env, timeout=3600)
            seed_s = time.monotonic() - started
            run_checked(["psql", sa_url_for_psql(url), "-qc", "VACUUM ANALYZE"], env, timeout=600)
            return _measure(url, folder, patients, users, seconds, seed_s, log, env)


def sa_url_for_psql(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _measure(url: str, folder: Path, patients: int, users: int, seconds: int, seed_s: float | None,
             log: Callable[[str], None], env: dict[str, str] | None = None) -> LoadReport:
    env = env or _environment(folder, url)
    web_port = free_port()  # and the next one: a small race, as elsewhere in the benchmarks
    signaling_port = web_port + WEB_WORKERS + 10
    env.update({"WEB_WORKERS": str(WEB_WORKERS), "SIGNALING_WORKERS": "1", "BACKGROUND_WORKERS": "1",
                "WEB_PORT": str(web_port), "SIGNALING_PORT": str(signaling_port), "LOAD_PATIENTS": str(patients)})
    hosts = [f"http://{LOCALHOST}:{web_port + i}" for i in range(WEB_WORKERS)]
    env["LOAD_HOSTS"] = ",".join(hosts)
    layout = f"run-prod {WEB_WORKERS} web + 1 signaling + 1 background, PostgreSQL + Redis"
    server = ServerProcess("run-prod", [sys.executable, "bin/run-prod"], env, folder / "run-prod.log")
    prefix = folder / "locust"
    with server:
        for host in hosts:
            server.wait_healthy(host, deadline_seconds=120)
        log(f"load: locust, {users} users for {seconds} s against {', '.join(hosts)}")
        ramp = max(1, users // 10)
        run_checked([sys.executable, "-m", "locust", "-f", "bench/locustfile.py", "--host", hosts[0], "--headless",
                     "-u", str(users), "-r", str(ramp), "-t", f"{seconds + users // ramp + 5}s", "--reset-stats",
                     "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"],
                    env, timeout=seconds + 600)
    pages, total = _read_stats(prefix, seconds)
    log("load: timing each page's queries in-process")
    slow = slow_queries(url, env, patients)
    return LoadReport(patients, users, seconds, seed_s, layout, pages, total, slow)


# Slowest queries ---------------------------------------------------------------------------------

def slow_queries(url: str, env: dict[str, str], patients: int, top: int = 6) -> list[SlowQuery]:
    """Open each page of the scenario once as its role, timing every statement; EXPLAIN ANALYZE the slowest."""
    import pyotp
    import sqlalchemy as sa

    from app import create_app, seed_scale
    from app.extensions import db

    os.environ.setdefault("VERITY_DATA_KEY", env["VERITY_DATA_KEY"])
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": env["SECRET_KEY"],
                      "DATA_KEY": env["VERITY_DATA_KEY"], "DEMO_MODE": True,
                      "INSTANCE_DIR": env["VERITY_INSTANCE_DIR"], "RATELIMIT_ENABLED": False})
    plan = seed_scale.Plan.for_patients(patients)
    timings: list[tuple[float, str, str, object]] = []
    current = {"page": ""}
    with app.app_context():
        engine = db.engine

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            conn.info["verity_started"] = time.perf_counter()

        @sa.event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            if current["page"]:
                timings.append(((time.perf_counter() - conn.info.pop("verity_started", time.perf_counter())) * 1000,
                                current["page"], statement, parameters))

    def sign_in(client, email, secret=None):
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        client.post("/login", data={"csrf_token": token, "email": email, "password": seed_scale.SEED_PASSWORD})
        if secret:
            page = client.get("/auth/two-factor").get_data(as_text=True)
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
            client.post("/auth/two-factor", data={"csrf_token": token, "totp-code": pyotp.TOTP(secret).now()})

    def visit(client, name, path):
        current["page"] = name
        client.get(path)
        current["page"] = ""

    number = next(n for n in range(1, patients + 1) if plan.journey_state_of(n) == "on_treatment")
    patient = app.test_client()
    sign_in(patient, seed_scale.patient_email(number))
    for name, path in (("patient /dashboard", "/dashboard"), ("patient /timeline", "/timeline"),
                       ("patient /book (week view)", "/book?type=follow-up")):
        visit(patient, name, path)
    with app.app_context():
        patient_id = db.session.execute(sa.text(
            "SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = :e"),
            {"e": seed_scale.patient_email(number)}).scalar()
    staff = {}
    for role in ("clinician", "reception", "pharmacist"):
        index = plan.clinician_of(number) if role == "clinician" else 1
        email = seed_scale.staff_email(role, index)
        client = app.test_client()
        sign_in(client, email, seed_scale.totp_secret(email))
        staff[role] = client
    visit(staff["clinician"], "clinician /scheduling/board", "/scheduling/board")
    visit(staff["clinician"], "clinician /patients/[id]", f"/patients/{patient_id}")
    visit(staff["clinician"], "clinician /patients/[id]/prescribing/panel", f"/patients/{patient_id}/prescribing/panel")
    visit(staff["reception"], "reception /scheduling/board", "/scheduling/board")
    visit(staff["reception"], "reception /scheduling/patients?q=", "/scheduling/patients?q=smit")
    visit(staff["pharmacist"], "pharmacist /pharmacy (queue)", "/pharmacy")
    # Wall time in-process mostly measures Python on a busy machine: rank by the server's own execution time.
    first: dict[str, tuple[str, object, float]] = {}
    for ms, page, statement, parameters in timings:
        if statement.lstrip().upper().startswith("SELECT") and statement not in first:
            first[statement] = (page, parameters, ms)
    found: list[SlowQuery] = []
    with app.app_context(), db.engine.connect() as conn:
        for statement, (page, parameters, _ms) in first.items():
            plan_rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).all()
            text = "\n".join(r[0] for r in plan_rows)
            executed = re.search(r"Execution Time: ([0-9.]+) ms", text)
            found.append(SlowQuery(page, float(executed.group(1)) if executed else 0.0, statement, text))
        conn.rollback()
    with app.app_context():
        db.engine.dispose()
    queries = {page: sum(1 for t in timings if t[1] == page) for page in {t[1] for t in timings}}
    for query in found:
        query.page = f"{query.page} ({queries[query.page]} statements on the page)"
    found = sorted(found, key=lambda q: q.ms, reverse=True)[:top]
    return found
