"""The production layout end to end: `bin/run-prod` starts 2 web workers (gunicorn), 2 signaling workers (uvicorn,
python-socketio's Redis manager) and 2 background workers on a scratch PostgreSQL database and a private Redis,
and the demo patient's journey crosses them:

the patient signs in and books on web worker 1; patient and clinician take join tokens from different web
workers, meet in the call's lobby on different signaling workers (presence, admit, a relayed offer); the
clinician prescribes on web worker 2, with a TOTP step-up before signing; a background worker delivers the
prescription to the demo (portal) pharmacy, whose pharmacist finds it in the queue and allocates, records the
paper original, verifies, dispenses and books the courier, alternating between the web workers; the courier's
signed webhook says "delivered", and the patient's order page on web worker 1 says so. The audit chain, written
by six processes at once, still verifies. Then deploy/nginx.conf, run by nginx with this test's ports and
certificate, fronts the same workers (HTTPS, HSTS, limits, the WebSocket upgrade), and SIGTERM to run-prod stops
every process.

Also: run-prod's refusals, and that the set stops when one of its processes dies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
import pytest
import requests
import socketio
import sqlalchemy as sa

from app import create_app
from app.auth.models import Role
from app.extensions import db
from tests.conftest import Persona, _drop, _pg_url, config_for, csrf_from, sign_in_as
from tests.pharmacy_peer import SandboxCourier
from tests.test_signaling import Peer
from tests.test_signaling_redis import redis_url  # noqa: F401  (the private Redis fixture)

REPO = Path(__file__).resolve().parent.parent
RUN_PROD = REPO / "bin" / "run-prod"
STARTUP_DEADLINE = 120.0
STOP_DEADLINE = 30.0
DELIVERY_DEADLINE = 60.0
COURIER_SECRET = "multiworker-courier-secret"
TRACKING = "AB123456785GB"
FLOWER = "Verdant T22 Flower"
HX = {"HX-Request": "true"}
STARTED = re.compile(r"\|\s*([a-z]+\.\d+) started \(pid=(\d+)\)")


# The stack ------------------------------------------------------------------------------------

def _free_ports(count: int) -> int:
    """The first of `count` consecutive ports of 127.0.0.1 that were all free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise AssertionError("no run of free ports")


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@dataclass
class Stack:
    """A running bin/run-prod and what the test needs to reach each of its processes."""

    process: subprocess.Popen
    log: Path
    env: dict[str, str]
    web: list[str]
    signaling: list[str]
    pids: dict[str, int] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_started(self, names: list[str], deadline: float) -> None:
        """Every process started and ready: web and signaling answer /healthz, background workers said so."""
        pending = set(names)
        while pending:
            assert self.process.poll() is None, f"run-prod exited ({self.process.returncode}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"not ready: {sorted(pending)}\n{self.tail()}"
            text = self.output()
            self.pids.update({name: int(pid) for name, pid in STARTED.findall(text)})
            for name in sorted(pending):
                kind, number = name.split(".")
                if kind == "background":
                    ready = re.search(rf"{re.escape(name)}\s*\|.*worker started", text) is not None
                else:
                    url = (self.web if kind == "web" else self.signaling)[int(number) - 1]
                    try:
                        ready = requests.get(f"{url}/healthz", timeout=2).status_code == 200
                    except requests.RequestException:
                        ready = False
                if ready and name in self.pids:
                    pending.discard(name)
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for pid in self.pids.values():  # whatever a failure left behind
            if not _gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        return self.process.returncode


def start_stack(folder: Path, env: dict[str, str], *, web: int, signaling: int, background: int) -> Stack:
    web_port = _free_ports(web + signaling)  # one run of ports: the two kinds cannot overlap
    signaling_port = web_port + web
    env = {**env, "WEB_WORKERS": str(web), "SIGNALING_WORKERS": str(signaling), "BACKGROUND_WORKERS": str(background),
           "WEB_PORT": str(web_port), "SIGNALING_PORT": str(signaling_port)}
    log = folder / "run-prod.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(RUN_PROD)], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return Stack(process, log, env, [f"http://127.0.0.1:{web_port + n}" for n in range(web)],
                 [f"http://127.0.0.1:{signaling_port + n}" for n in range(signaling)])


def _base_env(folder: Path, database_url: str, secret_key: str, data_key: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("VERITY_", "WEB_", "SIGNALING_", "BACKGROUND_")) and name not in (
               "DATABASE_URL", "REDIS_URL", "RATELIMIT_STORAGE_URI", "SECRET_KEY")}
    return {**env, "DATABASE_URL": database_url, "SECRET_KEY": secret_key, "VERITY_DATA_KEY": data_key,
            "VERITY_INSTANCE_DIR": str(folder)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_admin, redis_url) -> Iterator[tuple[Stack, object]]:  # noqa: F811 (the fixture)
    folder = tmp_path_factory.mktemp("multiworker")
    name = f"verity_mw_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database_url = _pg_url(name)
    secret_key, data_key = secrets.token_urlsafe(48), secrets.token_hex(32)
    env = {**_base_env(folder, database_url, secret_key, data_key), "REDIS_URL": redis_url, "VERITY_DEMO": "1",
           "VERITY_PROXY_HOPS": "1", "VERITY_WORKER_POLL_SECONDS": "0.2", "VERITY_PATIENT_NOTICE_MINUTES": "0",
           "VERITY_COURIER_WEBHOOK_SECRET": COURIER_SECRET}
    running = start_stack(folder, env, web=2, signaling=2, background=2)
    # The test's own view of the same database and secrets: set-up (the demo data, a session cookie as the
    # login flow leaves it) and checks. The schema is run-prod's: it migrates before it starts anything.
    app = create_app(config_for(database_url, folder, SECRET_KEY=secret_key, DATA_KEY=data_key,
                                COURIER_WEBHOOK_SECRET=COURIER_SECRET))
    try:
        running.wait_started([f"{kind}.{n}" for kind in ("web", "signaling", "background") for n in (1, 2)],
                             time.monotonic() + STARTUP_DEADLINE)
        from app import demo

        with app.app_context():
            demo.load()
            db.session.remove()
        yield running, app
    finally:
        running.stop()
        with app.app_context():
            db.engine.dispose()
        _drop(pg_admin, name)


# People over HTTP -----------------------------------------------------------------------------

def _demo(role: Role):
    from app import demo

    return next(a for a in demo.ACCOUNTS if a.role is role)


def sign_in(base: str, role: Role, *, verify: bool | str = True) -> requests.Session:
    """The login form (and the second factor for staff), as a person fills it in."""
    account = _demo(role)
    http = requests.Session()
    http.verify = verify
    http.trust_env = verify is True  # REQUESTS_CA_BUNDLE in the environment would win over a session's own CA
    http.headers["Referer"] = f"{base}/"  # as a browser sends it (CSRF checks it over HTTPS)
    page = http.get(f"{base}/login", timeout=10)
    answer = http.post(f"{base}/login", data={"csrf_token": csrf_from(page.text), "email": account.email,
                                              "password": account.password}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:2000]
    if account.totp_secret:
        assert answer.headers["Location"].startswith("/auth/two-factor"), answer.headers["Location"]
        form = http.get(f"{base}/auth/two-factor", timeout=10)
        answer = http.post(f"{base}/auth/two-factor", data={"csrf_token": csrf_from(form.text),
                                                            "totp-code": pyotp.TOTP(account.totp_secret).now()},
                           allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[:2000]
    return http


def stale_clinician(app) -> requests.Session:
    """The demo clinician signed in ten minutes ago (as the prescribing web tests do it), so signing asks for a
    fresh code: the cookie is made by the test's app with the secret the workers share."""
    from app.auth import services as accounts

    account = _demo(Role.CLINICIAN)
    with app.app_context():
        user_id = accounts.find_by_email(account.email).id
        db.session.remove()
    persona = Persona("clinician", user_id, Role.CLINICIAN, account.email, account.totp_secret)
    client = app.test_client()
    sign_in_as(client, persona, second_factor_age=600)
    http = requests.Session()
    # Host-only for 127.0.0.1, as the workers set it (the cookie jar then replaces it when a response renews it).
    name = app.config["SESSION_COOKIE_NAME"]
    http.cookies.set(name, client.get_cookie(name).value, domain="127.0.0.1", path="/")
    return http


def _csrf(http: requests.Session, url: str) -> str:
    page = http.get(url, timeout=10)
    assert page.status_code == 200, (url, page.status_code)
    return csrf_from(page.text)


# Set-up through the services --------------------------------------------------------------------

def _ids(app) -> dict[str, int]:
    from app.auth import services as accounts
    from app.patients import services as patients
    from app.prescribing import formulary

    with app.app_context():
        clinician = accounts.find_by_email(_demo(Role.CLINICIAN).email)
        patient = patients.for_user(accounts.find_by_email(_demo(Role.PATIENT).email))
        product = next(p for p in formulary.products() if p.name == FLOWER)
        ids = {"clinician": clinician.id, "patient": patient.id, "product": product.id}
        db.session.remove()
    return ids


def _offer_soon(app, clinician_id: int) -> tuple[str, str, dt.date]:
    """The front desk clears the clinician's weekly hours and adds an extra session starting within minutes (so
    the call can be joined at once); returns the consultation type, the slot's id and its local date."""
    from app.auth import services as accounts
    from app.scheduling import availability, settings
    from app.scheduling.slots import Slot

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    first = soon.replace(second=0, microsecond=0) + dt.timedelta(minutes=(-soon.minute) % 5)
    with app.app_context():
        reception = accounts.find_by_email(_demo(Role.RECEPTION).email)
        for pattern in availability.patterns_of(clinician_id):
            availability.delete_pattern(pattern, by=reception)
        # An extra session starts and ends on one day: near midnight the shorter type, or just after it, fits.
        for start, (kind, minutes) in itertools.product([first + dt.timedelta(minutes=5 * n) for n in range(4)],
                                                        (("initial", 30), ("follow-up", 15))):
            try:
                availability.add_exception(clinician_id=clinician_id, kind="extra", starts_at=start,
                                           ends_at=start + dt.timedelta(minutes=minutes), by=reception,
                                           slot_minutes=minutes, consultation_type=kind, note="Multi-worker test")
            except availability.AvailabilityError:
                continue
            day = start.astimezone(settings.clinic_zone()).date()
            db.session.remove()
            return kind, Slot(start, clinician_id, kind, minutes).id, day
    raise AssertionError("no extra session could be added in the next twenty minutes")


def _book(app, http: requests.Session, base: str, clinician_id: int) -> int:
    kind, slot, day = _offer_soon(app, clinician_id)
    url = f"{base}/book?type={kind}&week={day.isoformat()}"
    page = http.get(url, timeout=10)
    assert page.status_code == 200 and f'value="{slot}"' in page.text, (slot, page.text[:3000])
    booked = http.post(url, data={"csrf_token": csrf_from(page.text), "slot": slot}, allow_redirects=False, timeout=10)
    assert booked.status_code == 302, booked.text[:2000]
    return int(re.fullmatch(r"/appointments/(\d+)", booked.headers["Location"]).group(1))


def _join_token(http: requests.Session, base: str, appointment_id: int) -> str:
    token = _csrf(http, f"{base}/consult/{appointment_id}")
    answer = http.post(f"{base}/consult/{appointment_id}/token", headers={"X-CSRFToken": token}, timeout=10)
    assert answer.status_code == 200, answer.text[:2000]
    return answer.json()["token"]


def _db_value(app, query):
    with app.app_context():
        try:
            return db.session.execute(query).scalar()
        finally:
            db.session.remove()


def _pharmacy_step(http: requests.Session, base: str, prescription_id: int, action: str, **form: str) -> str:
    url = f"{base}/pharmacy/prescriptions/{prescription_id}"
    page = http.get(url, timeout=10)
    assert page.status_code == 200, page.text[:2000]
    seen = re.search(r'name="seen_state" value="([a-z_]+)"', page.text).group(1)
    answer = http.post(f"{url}/{action}", data={"csrf_token": csrf_from(page.text), "seen_state": seen, **form},
                       allow_redirects=False, timeout=30)
    assert answer.status_code == 302, (action, answer.status_code, answer.text[:3000])
    return http.get(url, timeout=10).text


# The journey ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_booking_consult_prescribing_pharmacy_and_delivery_cross_every_worker(stack):
    from app.outbox.models import OutboxAttempt, OutboxMessage
    from app.prescribing.models import Prescription

    running, app = stack
    web1, web2 = running.web
    signaling1, signaling2 = running.signaling
    ids = _ids(app)

    # The patient signs in and books on web worker 1, in a session the front desk has just opened.
    patient = sign_in(web1, Role.PATIENT)
    appointment_id = _book(app, patient, web1, ids["clinician"])
    assert "Your consultation is booked" in patient.get(f"{web1}/appointments/{appointment_id}", timeout=10).text

    # The call: join tokens from different web workers, the lobby on different signaling workers.
    clinician = stale_clinician(app)
    doctor = Peer(signaling2, {"token": _join_token(clinician, web2, appointment_id), "appointment": appointment_id})
    person = Peer(signaling1, {"token": _join_token(patient, web1, appointment_id), "appointment": appointment_id})
    try:
        assert doctor.wait_for("presence", lambda d: d["seat"] == "patient")["state"] == "waiting"
        assert doctor.call("admit") == {"ok": True}
        person.wait_for("admitted")  # sent by signaling worker 2, delivered by signaling worker 1 through Redis
        assert person.call("enter") == {"ok": True}
        assert doctor.wait_for("peer-joined")["sid"] == person.sid
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        assert doctor.call("signal", {"to": person.sid, "description": offer}) == {"ok": True}
        assert person.wait_for("signal") == {"from": doctor.sid, "to": person.sid, "description": offer}
        assert doctor.call("end") == {"ok": True}
        person.wait_for("ended")
    finally:
        person.close()
        doctor.close()

    # The clinician prescribes on web worker 2; signing asks for a fresh second factor first.
    builder = f"{web2}/patients/{ids['patient']}/prescribing"
    token = _csrf(clinician, builder)
    added = clinician.post(f"{builder}/items", headers={**HX, "X-CSRFToken": token}, timeout=30,
                           data={"product_id": ids["product"], "quantity": "10", "days_supply": "10",
                                 "dose": "Vaporise 0.1 g up to ten times a day"})
    assert added.status_code == 200, added.text[:2000]
    draft_id = _db_value(app, sa.select(Prescription.id).where(Prescription.patient_id == ids["patient"],
                                                               Prescription.status == "draft"))
    asked = clinician.get(f"{web2}/prescriptions/{draft_id}/sign", allow_redirects=False, timeout=10)
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/auth/step-up")
    step_up = f"{web2}{asked.headers['Location']}"
    code = pyotp.TOTP(_demo(Role.CLINICIAN).totp_secret).now()
    stepped = clinician.post(step_up, data={"csrf_token": _csrf(clinician, step_up), "code": code},
                             allow_redirects=False, timeout=10)
    assert stepped.status_code == 302, stepped.text[:2000]
    sign_page = clinician.get(f"{web2}/prescriptions/{draft_id}/sign", timeout=30)
    assert sign_page.status_code == 200, sign_page.text[:2000]
    form = {"csrf_token": csrf_from(sign_page.text),
            "token": re.search(r'name="token" value="([^"]+)"', sign_page.text).group(1),
            "revision": re.search(r'name="revision" value="([^"]+)"', sign_page.text).group(1)}
    signed = clinician.post(f"{web2}/prescriptions/{draft_id}/sign", data=form, allow_redirects=False, timeout=60)
    assert signed.status_code == 302 and signed.headers["Location"] == f"/prescriptions/{draft_id}", signed.text[:2000]

    # A background worker delivers it to the portal pharmacy: it appears in the pharmacist's queue.
    pharmacist = sign_in(web1, Role.PHARMACIST)
    link = f"/pharmacy/prescriptions/{draft_id}"
    deadline = time.monotonic() + DELIVERY_DEADLINE
    while link not in (queue := pharmacist.get(f"{web1}/pharmacy", timeout=10)).text:
        assert queue.status_code == 200, queue.text[:2000]
        assert time.monotonic() < deadline, f"the prescription never reached the queue\n{running.tail()}"
        time.sleep(0.2)
    with app.app_context():
        message = db.session.scalar(sa.select(OutboxMessage).where(
            OutboxMessage.kind == "pharmacy.prescription", OutboxMessage.idempotency_key.contains(f":{draft_id}:")))
        assert message is not None and message.status == "delivered"
        background = {running.pids["background.1"], running.pids["background.2"]}
        workers = set(db.session.scalars(sa.select(OutboxAttempt.worker)))
        db.session.remove()
    assert workers and {int(w.rsplit(":", 1)[1]) for w in workers} <= background, (workers, running.pids)

    # The pharmacist works it, on either web worker.
    steps = [(web1, "allocate", {}), (web2, "original", {"paper_matches": "yes"}), (web1, "verify", {}),
             (web2, "dispense", {}), (web1, "dispatch", {"carrier": "royal_mail", "tracking": TRACKING})]
    for base, action, values in steps:
        _pharmacy_step(pharmacist, base, draft_id, action, **values)
    assert _db_value(app, sa.select(Prescription.status).where(Prescription.id == draft_id)) == "dispatched"

    # The courier's signed webhook delivers it; the patient's order page (web worker 1) says so.
    delivered = SandboxCourier(web2, COURIER_SECRET, carrier="royal_mail").emit(TRACKING, "delivered")
    assert delivered.status == 200 and delivered.body["status"] == "delivered", delivered.body
    order = patient.get(f"{web1}/my/orders/{draft_id}", timeout=10)
    assert re.search(r'id="order-status">\s*Delivered\s*<', order.text), order.text[:3000]

    # Six processes wrote the audit trail at once: the chain is intact.
    from app.audit import services as audit

    with app.app_context():
        result = audit.verify_chain()
        db.session.remove()
    assert result.ok and result.checked > 50, result
    assert "Traceback" not in running.output(), running.tail(200)  # no process logged an unhandled error


# The sample nginx configuration in front of the same workers -----------------------------------

def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic.example")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def _sample_for(running: Stack, folder: Path, http_port: int, https_port: int) -> Path:
    """deploy/nginx.conf with this machine's ports and a test certificate, inside a minimal nginx.conf."""
    cert, key = _self_signed(folder)
    site = (REPO / "deploy" / "nginx.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/clinic.example/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/clinic.example/privkey.pem", str(key))
    site = re.sub(r"listen \[::\]:\d+[^;]*;", "", site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    for group, urls in (("verity_web", running.web), ("verity_signaling", running.signaling)):
        servers = "".join(f"    server {url.removeprefix('http://')};\n" for url in urls)
        site = re.sub(rf"(upstream {group} {{\n(?:    #.*\n)*    least_conn;\n)(?:    server .*\n)+",
                      lambda match, servers=servers: match.group(1) + servers, site)
    assert site.count("server 127.0.0.1:") == 4, site
    (folder / "verity.conf").write_text(site)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = folder / "nginx.conf"
    main.write_text("\n".join([
        "user root root;" if os.geteuid() == 0 else "",  # the worker writes request bodies to this test's folder
        f"pid {folder / 'nginx.pid'};", f"error_log {folder / 'error.log'};", "worker_processes 1;", "events {}",
        "http {", "  include /etc/nginx/mime.types;", f"  access_log {folder / 'access.log'};",
        *(f"  {name}_temp_path {path};" if name != "body" else f"  client_body_temp_path {path};"
          for name, path in temp.items()),
        f"  include {folder / 'verity.conf'};", "}", ""]))
    return main


@pytest.fixture
def nginx(stack, tmp_path) -> Iterator[tuple[str, str, Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx is not installed: `make browser-deps` installs Debian's nginx-light")
    running, _app = stack
    http_port = _free_ports(2)
    https_port = http_port + 1
    config = _sample_for(running, tmp_path, http_port, https_port)
    checked = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"https://127.0.0.1:{https_port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", verify=str(tmp_path / "cert.pem"), timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{http_port}", base, tmp_path / "cert.pem"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_the_sample_nginx_config_fronts_the_workers(nginx):
    plain, base, cert = nginx
    moved = requests.get(f"{plain}/login", allow_redirects=False, timeout=10)
    assert moved.status_code == 301 and moved.headers["Location"] == "https://127.0.0.1/login"

    page = requests.get(f"{base}/login", verify=str(cert), timeout=10)
    assert page.status_code == 200 and "Sign in" in page.text
    # HSTS once (nginx's; Verity's copy hidden), Verity's own headers through, a request id for the logs.
    assert page.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY" and re.fullmatch(r"[0-9a-f]{32}", page.headers["X-Request-ID"])

    too_large = requests.post(f"{base}/login", data=b"x" * (2 * 1024 * 1024 + 1), verify=str(cert), timeout=30)
    assert too_large.status_code == 413 and "nginx" in too_large.text

    # Signaling through the WebSocket upgrade: the patient's pre-call check connects and answers a ping.
    patient = sign_in(base, Role.PATIENT, verify=str(cert))
    token = _csrf(patient, f"{base}/consult/check")
    ticket = patient.post(f"{base}/consult/check/token", headers={"X-CSRFToken": token}, timeout=10)
    assert ticket.status_code == 200, ticket.text[:2000]
    client = socketio.Client(reconnection=False, http_session=patient)
    try:
        client.connect(base, namespaces=["/precall"], auth={"token": ticket.json()["token"]}, transports=["websocket"],
                       wait_timeout=10)
        assert client.transport() == "websocket"
        assert client.call("ping", {"t": 7}, namespace="/precall", timeout=10) == {"t": 7}
    finally:
        client.disconnect()


@pytest.mark.slow
def test_sigterm_stops_every_process(stack):
    running, _app = stack
    pids = dict(running.pids)
    assert len(pids) == 6 and not any(_gone(pid) for pid in pids.values()), pids
    assert running.stop(signal.SIGTERM) == 0, running.tail()
    deadline = time.monotonic() + STOP_DEADLINE
    while not all(_gone(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, {name: pid for name, pid in pids.items() if not _gone(pid)}
        time.sleep(0.1)
    assert "SIGTERM received" in running.output()


# The supervisor on its own ----------------------------------------------------------------------

@pytest.mark.slow
def test_when_one_process_dies_the_others_are_stopped_and_run_prod_fails(tmp_path):
    env = _base_env(tmp_path, f"sqlite:///{tmp_path / 'verity.db'}", secrets.token_urlsafe(32), secrets.token_hex(32))
    running = start_stack(tmp_path, env, web=1, signaling=1, background=1)
    try:
        running.wait_started(["web.1", "signaling.1", "background.1"], time.monotonic() + STARTUP_DEADLINE)
        os.kill(running.pids["background.1"], signal.SIGKILL)
        running.process.wait(timeout=STOP_DEADLINE)
    finally:
        running.stop()
    assert running.process.returncode == 1, running.tail()
    assert all(_gone(pid) for pid in running.pids.values()), running.pids
    assert "background.1 stopped (rc=-9)" in running.output()


@pytest.mark.parametrize(("settings", "says"), [
    ({"WEB_WORKERS": "2", "REDIS_URL": "redis://127.0.0.1:1/0"}, "DATABASE_URL is SQLite"),
    ({"WEB_WORKERS": "1", "BACKGROUND_WORKERS": "2"}, "DATABASE_URL is SQLite"),
    ({"WEB_WORKERS": "1", "SIGNALING_WORKERS": "2"}, "SIGNALING_WORKERS=2 needs REDIS_URL"),
    ({"WEB_WORKERS": "1", "WEB_PORT": "8000", "SIGNALING_PORT": "8000"}, "overlap"),
    ({"WEB_WORKERS": "two"}, "WEB_WORKERS must be a whole number"),
])
def test_run_prod_refuses_a_layout_it_cannot_run_and_changes_nothing(tmp_path, settings, says):
    database = tmp_path / "verity.db"
    env = {**_base_env(tmp_path, f"sqlite:///{database}", "k", "00" * 32), **settings}
    done = subprocess.run([sys.executable, str(RUN_PROD)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start" in done.stderr and says in done.stderr, done.stderr
    assert not database.exists()  # refused before migrating


def test_several_web_workers_on_postgresql_need_a_shared_rate_limit_store(tmp_path):
    env = {**_base_env(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", "k", "00" * 32),
           "WEB_WORKERS": "2"}
    done = subprocess.run([sys.executable, str(RUN_PROD)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "WEB_WORKERS=2 needs REDIS_URL" in done.stderr, done.stderr
    allowed = {**env, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, str(RUN_PROD)], cwd=REPO, env=allowed, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "needs REDIS_URL" not in done.stderr, done.stderr  # the layout passes...
    assert "does not answer" in done.stderr and "nobody@127.0.0.1:1/none" in done.stderr  # ...the database not


def test_the_migrations_run_as_the_migration_role_when_one_is_given(tmp_path):
    database = tmp_path / "verity.db"
    env = {**_base_env(tmp_path, f"sqlite:///{database}", "k", "00" * 32), "WEB_WORKERS": "1",
           "MIGRATION_DATABASE_URL": "postgresql+psycopg://owner:hidden@127.0.0.1:1/verity"}
    done = subprocess.run([sys.executable, str(RUN_PROD)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "The database at postgresql+psycopg://owner:***@127.0.0.1:1/verity does not answer" in done.stderr
    assert "hidden" not in done.stdout + done.stderr and not database.exists()
