"""Plumbing shared by the benchmarks: machine facts, child servers, readiness, percentiles, table rows.

Everything here talks to 127.0.0.1 only, and every wait is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import requests
import sqlalchemy as sa

#: The repository root: the servers are started from here so `wsgi` is importable.
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
LOCALHOST = "127.0.0.1"
#: PostgreSQL for the benchmarks when TEST_POSTGRES_URL is not set (the one `make test` uses).
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Sent by every client (requests and wrk) so the sessions see one consistent user agent.
USER_AGENT = "verity-bench/1"


# Machine ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    python: str
    date: str

    def describe(self) -> str:
        return f"{self.cpus} CPU(s) (nproc), {self.cpu_model}; Python {self.python}; {self.date}"


def machine() -> Machine:
    """The facts a reader needs to compare figures across runs."""
    return Machine(
        cpus=len(os.sched_getaffinity(0)),  # what `nproc` reports
        cpu_model=_cpu_model(),
        python=platform.python_version(),
        date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# Child processes --------------------------------------------------------------------------------

def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the usual small race is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def run_checked(argv: Sequence[str], env: dict[str, str], *, timeout: float) -> str:
    """Run a set-up command to completion; raise with its output when it fails."""
    done = subprocess.run(list(argv), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class ServerProcess:
    """A server started in its own process group, logging to a file, stopped by its own id on exit.

    The group matters for gunicorn, whose master forks workers: stopping the group stops them too,
    even if the master is wedged.
    """

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # start_new_session made the child the leader of a group whose id is its pid.
        self._signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(pgid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, base_url: str, *, deadline_seconds: float = 60.0) -> None:
        """Poll GET /healthz until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + deadline_seconds
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
            try:
                response = requests.get(f"{base_url}/healthz", timeout=2)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last_error = type(exc).__name__
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not healthy within {deadline_seconds:.0f} s ({last_error}):\n"
                           f"{self.log_tail()}")


# Statistics -------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# Reporting --------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the printed table. Latencies are milliseconds; None prints as a dash."""

    area: str
    target: str
    layout: str
    throughput: float | None
    unit: str
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: str = "-"
    note: str = ""


# PostgreSQL -------------------------------------------------------------------------------------

def postgres_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def postgres_unreachable(url: str) -> str | None:
    """Why PostgreSQL at `url` cannot be used (a line for the report), or None when it answers."""
    try:
        probe = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with probe.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            probe.dispose()
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return f"unreachable at {sa.make_url(url).render_as_string()} ({reason})"
    return None


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new, empty database on the server at `url`, dropped (connections and all) afterwards."""
    import secrets

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"verity_bench_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
