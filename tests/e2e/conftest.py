"""End-to-end fixtures: the real embedded server (as `make run` starts it) and headless Chromium.

The server runs as a subprocess on a free port against a fresh SQLite database with the demo
data loaded; the browser is Debian's Chromium driven by Playwright's sync API (Playwright's own
browser download is not used). Every page a test opens has its console watched: the app runs
a strict CSP with no inline script, so a "Refused to ..." message is a bug.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, expect, sync_playwright

from tests.smtp import SMTPServer

# CI runs on a 2-core machine alongside the server under test: give assertions room to settle.
expect.set_options(timeout=15_000)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHROMIUM = os.environ.get("VERITY_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
STARTUP_DEADLINE = 30.0
CSP_MARKERS = ("Content Security Policy", "Refused to")


def pytest_collection_modifyitems(config, items) -> None:
    """Every test in this folder is an e2e test (the marker is registered in pyproject.toml)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# The live server ----------------------------------------------------------------------------

@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    folder: Path
    log: Path
    process: subprocess.Popen | None = None

    def flask(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `flask --app wsgi <args>` against the same database and secrets as the server."""
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"flask {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode} while starting")
        try:
            response = requests.get(f"{server.url}/healthz", timeout=2)
            if response.status_code == 200:
                return
            last_error = f"/healthz answered {response.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz with 200 within {STARTUP_DEADLINE:.0f} s ({last_error})")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its worker
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    """A real SMTP server (aiosmtpd) on a free port; the live server's worker delivers its email there."""
    server = SMTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def demo_server(folder: Path, *, smtp_port: int | None, host: str = "127.0.0.1", worker: bool = True,
                **settings: str) -> Iterator[LiveServer]:
    """A Verity server with the demo data, its own SQLite database and keys in `folder`, on a free port of
    127.0.0.1 (named `host` in its URL: passkeys need `localhost`). `settings` are extra environment variables,
    e.g. VERITY_STEP_UP_MINUTES="1". Email goes to the SMTP server on `smtp_port` (None: none is sent out)."""
    port = _free_port()
    url = f"http://{host}:{port}"
    env = {
        **os.environ,
        "VERITY_INSTANCE_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'verity.db'}",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "VERITY_DATA_KEY": secrets.token_hex(32),
        "VERITY_DEMO": "1",
        "VERITY_BASE_URL": url,
        "VERITY_LOGIN_LIMIT_ACCOUNT": "50 per 15 minutes",
        "VERITY_LOGIN_LIMIT_ADDRESS": "500 per 15 minutes",
        # Production's log format, so test_zz_logs_have_no_personal_data.py reads what production writes.
        "VERITY_LOG_FORMAT": "json",
        **({"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_port)} if smtp_port is not None else {}),
        **settings,
    }
    server = LiveServer(url=url, env=env, folder=folder, log=folder / "server.log")
    server.flask("db", "upgrade", "heads")
    server.flask("demo", "load")
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with server.log.open("wb") as log:
        server.process = subprocess.Popen([*command, *([] if worker else ["--no-worker"])], cwd=REPO, env=env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_healthy(replace(server, url=f"http://127.0.0.1:{port}"))
    except RuntimeError as exc:
        _stop(server.process)
        print(f"--- server log ({server.log}) ---\n{server.log_tail()}")
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, smtp_server) -> Iterator[LiveServer]:
    with demo_server(tmp_path_factory.mktemp("e2e-server"), smtp_port=smtp_server.port,
                     VERITY_METRICS_TOKEN=secrets.token_urlsafe(24)) as server:
        yield server


@pytest.fixture(scope="session")
def base_url(live_server) -> str:
    return live_server.url


@pytest.fixture(scope="session")
def flask_cli(live_server) -> Callable[..., subprocess.CompletedProcess]:
    """flask_cli("users", "create", "--email", ...): a CLI command against the live server's database."""
    return live_server.flask


# The browser --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """One Playwright driver for the whole run: the sync API allows only one at a time, so a test that needs a
    browser launched with other flags (the consultation's fake media) launches it from this one."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is not at {CHROMIUM}: `make browser-deps` installs Debian's package")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class ConsoleLog:
    messages: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        self.messages.append(f"[{message.type}] {page.url}: {message.text}")

    def check(self) -> None:
        violations = [m for m in self.messages if any(marker in m for marker in CSP_MARKERS)]
        assert not violations, "the browser reported CSP violations:\n" + "\n".join(violations)
        assert not self.page_errors, "uncaught errors in the page:\n" + "\n".join(self.page_errors)


def _watched_page(browser: Browser, base_url: str, **context_options) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(base_url=base_url, **context_options)
    context.set_default_timeout(10_000)
    console = ConsoleLog()
    context.on("page", console.watch)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
    console.check()


@pytest.fixture
def page(browser, base_url) -> Iterator[Page]:
    """A desktop page (1280 x 800) in a fresh context, its console watched for CSP violations."""
    yield from _watched_page(browser, base_url, viewport={"width": 1280, "height": 800})


@pytest.fixture
def phone(browser, base_url) -> Iterator[Page]:
    """A phone-sized page (375 x 812, touch) in a fresh context, its console watched likewise."""
    yield from _watched_page(browser, base_url, viewport={"width": 375, "height": 812}, is_mobile=True,
                             has_touch=True)
