"""Video consultation: time from "admit" to the first decoded remote frame, time to ICE connected, decoded
frames per second, and the signaling round trip.

Everything runs inside a private network namespace that has only the loopback interface (made here with
`unshare --net`, by this process, and torn down at the end): the embedded server (web, signaling and the
aiortc echo peer) and two headless Chromium browsers with fake camera and microphone, signed in as the
demo clinician and the demo patient. No media can leave 127.0.0.1, because there is no other address.

For each of N calls (10; 3 with --quick) a fresh demo appointment is booked a few minutes ahead; the
patient joins the waiting room; the clinician presses "Admit" and the clock starts:

* **admit → first frame**: until the clinician's page has decoded a first frame of the patient's video
  (getStats framesDecoded > 0, polled every 20 ms in the page); target under 1.5 s on loopback;
* **admit → ICE connected**: until the clinician's peer connection reports iceConnectionState "connected";
* **frames per second**: decoded frames over 5 s once connected (the fake camera sends about 30 fps at
  640x480; the browser decides the rate it actually sends);
* **signaling round trip**: 50 `ping` messages with acknowledgement over a Socket.IO connection (websocket)
  from the clinician's page, to the same server; target under 50 ms.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Row, free_port, percentile, run_checked

CALLS, QUICK_CALLS = 10, 3
PINGS = 50
FPS_SECONDS = 5.0
CHROMIUM = os.environ.get("VERITY_E2E_CHROMIUM", "/usr/bin/chromium")


class NamespaceUnavailable(RuntimeError):
    pass


class LoopbackNamespace:
    """A network namespace with only `lo` (up), held open by a sleeping child; commands run in it through
    nsenter. Needs root (or user namespaces) and util-linux's unshare and nsenter."""

    def __init__(self) -> None:
        self.holder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackNamespace:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise NamespaceUnavailable(f"{tool} is not installed")
        self.holder = subprocess.Popen(["unshare", "--net", "--fork", "--kill-child", "sh", "-c",
                                        "ip link set lo up && echo up && exec sleep 86400"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.holder.stdout.readline().decode().strip()
        if line != "up":
            error = self.holder.stderr.read().decode(errors="replace").strip()
            self.close()
            raise NamespaceUnavailable(f"could not make a network namespace: {error or 'unshare failed'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.holder.wait(timeout=5)
        self.holder = None

    @property
    def enter(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net"]

    def wrapper(self, folder: Path, executable: str) -> str:
        """A script that runs `executable` inside the namespace (for Playwright's executable_path)."""
        path = folder / f"in-namespace-{Path(executable).name}"
        path.write_text(f"#!/bin/sh\nexec {' '.join(self.enter)} {executable} \"$@\"\n")
        path.chmod(0o755)
        return str(path)

    def wait_healthy(self, url: str, process: subprocess.Popen[bytes], deadline_seconds: float = 40.0) -> None:
        probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} while starting")
            done = subprocess.run([*self.enter, sys.executable, "-c", probe, f"{url}/healthz"], capture_output=True,
                                  timeout=10, check=False)
            if done.returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"the server did not answer {url}/healthz within {deadline_seconds:.0f} s")


@dataclass
class CallServer:
    url: str
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def flask(self, *args: str) -> str:
        return run_checked([sys.executable, "-m", "flask", "--app", "wsgi", *args], self.env, timeout=120)

    def book(self) -> int:
        """A demo appointment starting in three minutes: its id."""
        return int(self.flask("consult", "demo-call", "--lead", "3").strip().splitlines()[-1].split()[0])

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.folder / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def call_server(namespace: LoopbackNamespace, folder: Path, extra_env: dict[str, str] | None = None
                ) -> Iterator[CallServer]:
    """The embedded server (`flask serve`) with demo data, inside the namespace, on its loopback."""
    port = free_port()  # a free port here is as good as any inside the fresh namespace
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VERITY_INSTANCE_DIR": str(folder), "DATABASE_URL": f"sqlite:///{folder / 'verity.db'}",
           "SECRET_KEY": secrets.token_urlsafe(48), "VERITY_DATA_KEY": secrets.token_hex(32), "VERITY_DEMO": "1",
           "VERITY_BASE_URL": url, "VERITY_LOGIN_LIMIT_ACCOUNT": "500 per 15 minutes",
           "VERITY_LOGIN_LIMIT_ADDRESS": "5000 per 15 minutes", "CONSULT_ECHO_ADDRESSES": "127.0.0.1",
           **(extra_env or {})}
    env.pop("MAIL_SERVER", None)  # emails go to files: the namespace reaches no SMTP server
    server = CallServer(url, env, folder)
    server.flask("db", "upgrade", "heads")
    server.flask("demo", "load")
    with (folder / "server.log").open("wb") as log:
        server.process = subprocess.Popen(
            [*namespace.enter, sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--host", "127.0.0.1",
             "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        namespace.wait_healthy(url, server.process)
        yield server
    finally:
        _stop(server.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# The benchmark ---------------------------------------------------------------------------------------

#: In the clinician's page, before "Admit" is pressed: from the click, milliseconds to ICE connected and
#: to the first decoded frame of the patient's video (window.__timing resolves with both).
TIMING = """
() => {
  window.__timing = new Promise((resolve, reject) => {
    document.getElementById('admit').addEventListener('click', () => {
      const started = performance.now()
      const out = { ice: null, frame: null }
      const timer = setInterval(async () => {
        const pc = (window.__pcs || []).filter(p => p.connectionState !== 'closed').pop()
        if (pc && out.ice === null && ['connected', 'completed'].includes(pc.iceConnectionState)) {
          out.ice = performance.now() - started
        }
        if (pc && out.frame === null) {
          const report = await pc.getStats()
          report.forEach(s => {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0 && out.frame === null) {
              out.frame = performance.now() - started
            }
          })
        }
        if (out.ice !== null && out.frame !== null) { clearInterval(timer); resolve(out) }
        if (performance.now() - started > 20000) { clearInterval(timer); reject(new Error('no frame within 20 s')) }
      }, 20)
    }, { capture: true, once: true })
  })
}
"""

FRAMES = """
async () => {
  const pc = (window.__pcs || []).filter(p => p.connectionState === 'connected').pop()
  if (!pc) return null
  const report = await pc.getStats()
  let frames = 0
  report.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0 })
  return frames
}
"""

#: Round trips of `ping` over a Socket.IO connection of the page's own, on the pre-call namespace (a second
#: connection to the call itself would replace the page's own, as a second window does).
PING = """
async ([tokenUrl, count]) => {
  const { io } = await import('/static/vendor/socket.io-client/socket.io.esm.min.js')
  const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']
  const ticket = await (await fetch(tokenUrl, { method: 'POST', headers: { 'X-CSRFToken': csrf } })).json()
  const socket = io('/precall', { transports: ['websocket'], reconnection: false, auth: { token: ticket.token } })
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject) })
  const times = []
  for (let i = 0; i < count; i++) {
    const t = performance.now()
    await socket.timeout(5000).emitWithAck('ping', { t })
    times.push(performance.now() - t)
  }
  socket.disconnect()
  return times
}
"""


@dataclass(frozen=True)
class CallFigures:
    admit_to_frame_ms: float
    admit_to_ice_ms: float
    fps: float


@dataclass(frozen=True)
class ConsultReport:
    calls: list[CallFigures]
    ping_ms: list[float]
    skipped: str | None = None

    def rows(self) -> list[Row]:
        if self.skipped:
            return [Row("consult", "video call (two browsers)", "embedded", None, "", note=f"skipped: {self.skipped}")]
        frames = [c.admit_to_frame_ms for c in self.calls]
        ice = [c.admit_to_ice_ms for c in self.calls]
        fps = [c.fps for c in self.calls]
        n = len(self.calls)
        return [
            Row("consult", "admit -> first decoded remote frame", "loopback", None, "", statistics.median(frames),
                percentile(frames, 95), percentile(frames, 99), note=f"median of {n} calls; target < 1500 ms"),
            Row("consult", "admit -> ICE connected", "loopback", None, "", statistics.median(ice), percentile(ice, 95),
                percentile(ice, 99), note=f"{n} calls"),
            Row("consult", f"decoded frames per second over {FPS_SECONDS:.0f} s", "loopback", statistics.median(fps),
                "fps", note=f"median of {n} calls (min {min(fps):.1f})"),
            Row("consult", "signaling round trip (Socket.IO ping)", "embedded", None, "",
                statistics.median(self.ping_ms), percentile(self.ping_ms, 95), percentile(self.ping_ms, 99),
                note=f"{len(self.ping_ms)} pings; target < 50 ms"),
        ]

    def to_json(self) -> dict[str, Any]:
        return {"calls": [asdict(c) for c in self.calls], "ping_ms": self.ping_ms, "skipped": self.skipped}


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> ConsultReport:
    try:
        namespace = LoopbackNamespace().__enter__()
    except NamespaceUnavailable as exc:
        log(f"consult: skipped ({exc})")
        return ConsultReport([], [], skipped=str(exc))
    try:
        with tempfile.TemporaryDirectory(prefix="verity-bench-consult-") as scratch:
            folder = Path(scratch)
            with call_server(namespace, folder) as server:
                return _measure(server, namespace, folder, CALLS if not quick else QUICK_CALLS, log)
    finally:
        namespace.close()


#: Run against the server's database: N pairs of a clinician (with a TOTP secret) and an eligible patient of
#: theirs, each pair booked a few minutes ahead (one pair per call: a pair's next free time would be past the
#: waiting room's 30-minute window). Prints one JSON line per pair.
MAKE_PAIRS = """
import datetime as dt, json, secrets, sys
import pyotp
from app import create_app
app = create_app()
with app.app_context():
    from app import crypto
    from app.auth import services as accounts
    from app.auth.models import Role
    from app.consult import demo
    from app.database import transaction, utcnow
    from app.patients import onboarding, services as patients
    password = "bench-" + secrets.token_urlsafe(12)
    reception = accounts.find_by_email("reception@demo.example.com")
    for k in range(int(sys.argv[1])):
        tag = secrets.token_hex(3)
        secret = pyotp.random_base32()
        clinician = accounts.create_user(email=f"bench.doctor.{tag}@example.com", password=password,
                                         full_name=f"Dr Bench {tag}", role=Role.CLINICIAN)
        with transaction():
            clinician.totp_secret_enc = crypto.encrypt(secret.encode(), accounts.TOTP_PURPOSE)
            clinician.totp_confirmed_at = utcnow()
        patient = patients.register(email=f"bench.patient.{tag}@example.com", password=password,
                                    full_name=f"Bench Patient {tag}", date_of_birth=dt.date(1980, 1, 1))
        onboarding.intake_submitted(patient, "eligible", [])
        onboarding.identity_verified(patient)
        patients.assign_clinician(patient, clinician)
        appointment = demo.book_soon(patient, clinician, by=reception, lead_minutes=3)
        print(json.dumps({"appointment": appointment.id, "password": password, "totp": secret,
                          "clinician": clinician.email, "patient": f"bench.patient.{tag}@example.com"}))
"""


def make_pairs(server: CallServer, count: int) -> list[dict[str, Any]]:
    import json

    output = run_checked([sys.executable, "-c", MAKE_PAIRS, str(count)], server.env, timeout=300)
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _measure(server: CallServer, namespace: LoopbackNamespace, folder: Path, calls: int,
             log: Callable[[str], None]) -> ConsultReport:
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM_ARGS
    from tests.e2e.test_consult_e2e import LOOPBACK_ONLY, MEDIA_ARGS, sign_in

    figures: list[CallFigures] = []
    pings: list[float] = []
    pairs = make_pairs(server, calls)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=namespace.wrapper(folder, CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS + MEDIA_ARGS)
        try:
            for number, pair in enumerate(pairs):
                contexts = []
                for _who in ("clinician", "patient"):
                    context = browser.new_context(base_url=server.url, permissions=["camera", "microphone"])
                    context.set_default_timeout(20_000)
                    context.add_init_script(LOOPBACK_ONLY)
                    contexts.append(context)
                doctor, patient = contexts[0].new_page(), contexts[1].new_page()
                sign_in(doctor, pair["clinician"], pair["password"], pair["totp"])
                sign_in(patient, pair["patient"], pair["password"])
                appointment = pair["appointment"]
                patient.goto(f"/consult/{appointment}")
                patient.locator("#join").click()
                patient.locator("#lobby-status").filter(has_text="clinician").wait_for()
                doctor.goto(f"/consult/{appointment}")
                doctor.locator("#admit:not([disabled])").wait_for()
                doctor.evaluate(TIMING)  # the clock starts at the click, inside the page
                doctor.locator("#admit").click()
                result = doctor.evaluate("() => window.__timing")
                start_frames = doctor.evaluate(FRAMES)
                t0 = time.monotonic()
                doctor.wait_for_timeout(FPS_SECONDS * 1000)
                fps = (doctor.evaluate(FRAMES) - start_frames) / (time.monotonic() - t0)
                figures.append(CallFigures(result["frame"], result["ice"], fps))
                log(f"consult: call {number + 1}/{calls}: first frame {result['frame']:.0f} ms, "
                    f"ICE {result['ice']:.0f} ms, {fps:.1f} fps")
                if number == len(pairs) - 1:
                    pings = doctor.evaluate(PING, ["/consult/check/token", PINGS])
                doctor.locator("#end").click()
                doctor.wait_for_url("**/patients/*")
                patient.locator("#after-call-heading").wait_for()
                for context in contexts:
                    context.close()
        finally:
            browser.close()
    return ConsultReport(figures, pings)
