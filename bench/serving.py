"""Serving layout: the embedded server of `make run` against the same app on plain gunicorn.

One run starts both servers side by side on one fresh SQLite database with the demo data:

* embedded: `flask --app wsgi serve --no-worker`, i.e. uvicorn serving Flask through a2wsgi's
  thread pool plus python-socketio on the same port, exactly as `make run` starts it;
* gunicorn: `gunicorn -w 2 wsgi:app`, two sync workers, the production layout for the web app.

Each is loaded with wrk (2 threads, 20 connections, after a short warm-up) on three targets:
the health check, a vendored static file, and the signed-in patient's dashboard. Signaling is
measured by the time a Socket.IO client takes to connect over WebSocket with a join token.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
import socketio

from bench.common import LOCALHOST, USER_AGENT, Row, ServerProcess, free_port, percentile, run_checked
from signaling import tokens

DEMO_PATIENT_EMAIL = "patient@demo.example.com"
DEMO_PATIENT_PASSWORD = "VerityDemo-Patient1"  # noqa: S105 - published demo password (app/demo.py)
SESSION_COOKIE = "verity_session"

WRK_THREADS = 2
WRK_CONNECTIONS = 20
SIGNALING_CONNECTS = 20
#: Hard ceiling for the signaling loop, whatever the per-connect timeouts add up to.
SIGNALING_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class Target:
    path: str
    label: str
    signed_in: bool


TARGETS = (
    Target("/healthz", "/healthz", signed_in=False),
    Target("/static/vendor/htmx/htmx.min.js", "static htmx.min.js", signed_in=False),
    Target("/dashboard", "/dashboard (signed in)", signed_in=True),
)


@dataclass(frozen=True)
class Layout:
    key: str
    label: str


EMBEDDED = Layout("embedded", "embedded uvicorn+a2wsgi")
GUNICORN = Layout("gunicorn", "gunicorn 2 sync")

# wrk calls done() once, in the main Lua state; each thread counts its own non-2xx responses,
# which done() collects through the thread handles kept by setup(). wrk's own errors.status
# counts only statuses above 399, so a session that silently turned into 302s to /login would
# pass unnoticed without this count.
WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, non2xx_total,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""


# Results ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    req_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: dict[str, int]

    @property
    def socket_error_total(self) -> int:
        """Connect, read, write and timeout errors (wrk's "status" errors are already in non2xx)."""
        return sum(count for kind, count in self.socket_errors.items() if kind != "status")


@dataclass(frozen=True)
class LoadResult:
    target: str
    path: str
    layout: str
    layout_label: str
    wrk: WrkResult


@dataclass(frozen=True)
class SignalingResult:
    connects: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    failures: int


@dataclass(frozen=True)
class ServingReport:
    duration_s: int
    warmup_s: int
    loads: list[LoadResult]
    signaling: SignalingResult | None

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        by_key = {(load.path, load.layout): load for load in self.loads}
        for target in TARGETS:
            embedded = by_key.get((target.path, EMBEDDED.key))
            gunicorn = by_key.get((target.path, GUNICORN.key))
            ratio = ""
            if embedded and gunicorn and gunicorn.wrk.req_per_s > 0:
                ratio = f"embedded/gunicorn {embedded.wrk.req_per_s / gunicorn.wrk.req_per_s:.2f}"
            for load in (embedded, gunicorn):
                if load is None:
                    continue
                w = load.wrk
                rows.append(Row("serving", load.target, load.layout_label, w.req_per_s, "req/s", w.p50_ms,
                                w.p95_ms, w.p99_ms, f"{w.non2xx}/{w.socket_error_total}",
                                ratio if load.layout == GUNICORN.key else ""))
        if self.signaling is not None:
            s = self.signaling
            rows.append(Row("signaling", "Socket.IO connect (websocket)", EMBEDDED.label, None, "", s.median_ms,
                            s.p95_ms, None, f"{s.failures} failed",
                            f"median of {s.connects}; min {s.min_ms:.1f}, max {s.max_ms:.1f} ms"))
        return rows

    def to_json(self) -> dict[str, object]:
        return {"duration_s": self.duration_s, "warmup_s": self.warmup_s,
                "wrk": {"threads": WRK_THREADS, "connections": WRK_CONNECTIONS},
                "loads": [asdict(load) for load in self.loads],
                "signaling": asdict(self.signaling) if self.signaling else None}


# Set-up -----------------------------------------------------------------------------------------

def demo_environment(folder: Path) -> dict[str, str]:
    """The environment of `make run`, on a database of our own, with the login limits raised."""
    env = dict(os.environ)
    # A shared Redis or another environment's settings would make the two layouts incomparable.
    for name in ("REDIS_URL", "RATELIMIT_STORAGE_URI", "VERITY_ENV", "VERITY_PROXY_HOPS", "FLASK_RUN_FROM_CLI"):
        env.pop(name, None)
    env.update({
        "VERITY_INSTANCE_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'verity.db'}",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "VERITY_DATA_KEY": secrets.token_hex(32),
        "VERITY_DEMO": "1",
        "VERITY_LOGIN_LIMIT_ACCOUNT": "1000 per minute",
        "VERITY_LOGIN_LIMIT_ADDRESS": "1000 per minute",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def prepare_database(env: dict[str, str]) -> None:
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    # "heads", as `make run` does: each domain may add its own migration branch.
    run_checked([*flask, "db", "upgrade", "heads"], env, timeout=120)
    run_checked([*flask, "demo", "load"], env, timeout=120)


def sign_in(base_url: str) -> str:
    """Sign in as the demo patient through the real login form; return the session cookie."""
    with requests.Session() as http:
        http.headers["User-Agent"] = USER_AGENT
        page = http.get(f"{base_url}/login", timeout=10)
        page.raise_for_status()
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
        if match is None:
            raise RuntimeError("no csrf_token on the login page")
        answer = http.post(f"{base_url}/login", timeout=30, allow_redirects=False,
                           data={"csrf_token": match.group(1), "email": DEMO_PATIENT_EMAIL,
                                 "password": DEMO_PATIENT_PASSWORD})
        if answer.status_code != 302:
            raise RuntimeError(f"login answered {answer.status_code}, expected a redirect")
        cookie = http.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise RuntimeError("login set no session cookie")
        return cookie


def check_target(base_url: str, target: Target, cookie: str) -> None:
    """One request by hand before the load: a 302 to /login would otherwise be benchmarked."""
    headers = {"User-Agent": USER_AGENT}
    if target.signed_in:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    answer = requests.get(f"{base_url}{target.path}", headers=headers, timeout=10, allow_redirects=False)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {target.path} answered {answer.status_code} before the load")


# Load -------------------------------------------------------------------------------------------

def run_wrk(wrk: str, script: Path, url: str, *, seconds: int, cookie: str | None) -> WrkResult:
    """One bounded wrk run against a 127.0.0.1 URL; parse the JSON line the script prints."""
    if not url.startswith(f"http://{LOCALHOST}:"):
        raise ValueError(f"refusing to load anything but {LOCALHOST}: {url}")
    argv = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script),
            "-H", f"User-Agent: {USER_AGENT}"]
    if cookie:
        argv += ["-H", f"Cookie: {SESSION_COOKIE}={cookie}"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    duration_s = data["duration_us"] / 1e6
    latency = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        req_per_s=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=latency["p50"] / 1000,
        p95_ms=latency["p95"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        non2xx=data["non2xx"],
        socket_errors=data["errors"],
    )


def measure_signaling(base_url: str, secret_key: str, connects: int = SIGNALING_CONNECTS) -> SignalingResult:
    """Median time for a Socket.IO client to connect over WebSocket and be admitted to its room."""
    timings: list[float] = []
    failures = 0
    deadline = time.monotonic() + SIGNALING_DEADLINE_SECONDS
    for attempt in range(connects):
        if time.monotonic() > deadline:
            break
        # The pre-call namespace: call rooms admit only an appointment's own people.
        token = tokens.mint(secret_key, room=f"precall-{attempt}", user_id=1, role="precall",
                            expires_at=time.time() + 300)
        client = socketio.Client(reconnection=False)
        started = time.perf_counter()
        try:
            client.connect(base_url, namespaces=["/precall"], auth={"token": token}, transports=["websocket"],
                           wait_timeout=5)
            timings.append((time.perf_counter() - started) * 1000)
        except socketio.exceptions.ConnectionError:
            failures += 1
        finally:
            client.disconnect()
    if not timings:
        raise RuntimeError(f"no Socket.IO connect succeeded ({failures} failed)")
    return SignalingResult(connects=len(timings), median_ms=statistics.median(timings),
                           p95_ms=percentile(timings, 95), min_ms=min(timings), max_ms=max(timings),
                           failures=failures)


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> ServingReport:
    """Start both layouts, load each target on each, then time signaling connects."""
    seconds, warmup = (3, 1) if quick else (10, 2)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (sudo apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="verity-bench-") as tmp:
        folder = Path(tmp)
        script = folder / "report.lua"
        script.write_text(WRK_SCRIPT)
        env = demo_environment(folder)
        log("serving: migrating a fresh SQLite database and loading the demo data")
        prepare_database(env)

        embedded_port, gunicorn_port = free_port(), free_port()
        servers = {
            EMBEDDED.key: ServerProcess(
                EMBEDDED.label,
                [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--host", LOCALHOST,
                 "--port", str(embedded_port), "--no-worker"],
                env, folder / "embedded.log"),
            GUNICORN.key: ServerProcess(
                GUNICORN.label,
                [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"{LOCALHOST}:{gunicorn_port}", "wsgi:app"],
                env, folder / "gunicorn.log"),
        }
        urls = {EMBEDDED.key: f"http://{LOCALHOST}:{embedded_port}",
                GUNICORN.key: f"http://{LOCALHOST}:{gunicorn_port}"}
        loads: list[LoadResult] = []
        with servers[EMBEDDED.key], servers[GUNICORN.key]:
            for key, server in servers.items():
                server.wait_healthy(urls[key])
            for layout in (EMBEDDED, GUNICORN):
                base = urls[layout.key]
                cookie = sign_in(base)
                for target in TARGETS:
                    check_target(base, target, cookie)
                    session_cookie = cookie if target.signed_in else None
                    log(f"serving: {layout.label} {target.path}: {warmup} s warm-up, {seconds} s load")
                    run_wrk(wrk, script, base + target.path, seconds=warmup, cookie=session_cookie)
                    result = run_wrk(wrk, script, base + target.path, seconds=seconds, cookie=session_cookie)
                    loads.append(LoadResult(target.label, target.path, layout.key, layout.label, result))
                    # The session must still be good after the load, or the figures are for a redirect.
                    check_target(base, target, cookie)
            log("serving: Socket.IO connects to the embedded server")
            signaling = measure_signaling(urls[EMBEDDED.key], env["SECRET_KEY"])
        return ServingReport(duration_s=seconds, warmup_s=warmup, loads=loads, signaling=signaling)
