"""Last of the end-to-end run (the file name sorts it last): the logs of every live server this session
started hold no personal data.

Before the logs are read, the demo patient and the demo admin walk the paths most likely to leak over
plain HTTP: signing in (the email in the form), a wrong password, a registration refused for an email
already in use (name, email and date of birth in the form), the patient saving their NHS number, and
the admin searching patients by name, email, date of birth and NHS number (all in the query string).
Then every `server.log` under the session's temporary folder (the shared live server's and any other
e2e server's, such as the video consultation's) is searched for the name, email, date of birth and NHS
number of every person in that server's database (the demo patient's, and everyone the e2e tests
registered), and for the demo patient's own details whatever the database says.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pyotp
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import demo
from app.auth.models import Role
from tests.conftest import csrf_from

DEMO_PATIENT = next(account for account in demo.ACCOUNTS if account.role is Role.PATIENT)
DEMO_ADMIN = next(account for account in demo.ACCOUNTS if account.role is Role.ADMIN)
#: A valid (modulus 11) NHS number from the NHS's own examples; the demo patient saves it below.
NHS_NUMBER = "9434765919"
#: What `flask serve` prints on purpose at start in demo mode (the demo accounts, README's table): not a log.
DEMO_BANNER = "Demo accounts (demo mode only):"
DEADLINE = 35.0


@dataclass
class Personal:
    """Strings that must not appear in a log, with where each came from (for the failure message)."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, value: object, source: str) -> None:
        text = str(value or "").strip()
        if len(text) < 6:  # shorter values (an initial, a town) would match by chance
            return
        for form in (text, quote(text), quote_plus(text)):  # as typed, and as it travels in a URL
            self.values.setdefault(form.lower(), source)

    def add_date_of_birth(self, born: dt.date, source: str) -> None:
        for text in (born.isoformat(), born.strftime("%d/%m/%Y"), f"{born.day} {born:%B %Y}",
                     born.strftime("%d %B %Y"), born.strftime("%Y%m%d")):
            self.add(text, source)

    def add_nhs_number(self, number: str, source: str) -> None:
        self.add(number, source)
        self.add(f"{number[:3]} {number[3:6]} {number[6:]}", source)


def _signed_in(base_url: str, email: str, password: str, totp_secret: str | None = None) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/login", timeout=10)
    response = session.post(f"{base_url}/login", data={"email": email, "password": password,
                                                       "csrf_token": csrf_from(page.text)}, timeout=10)
    assert response.status_code == 200, response.status_code
    if totp_secret is None:
        return session
    deadline = time.monotonic() + DEADLINE
    while "/auth/two-factor" in response.url:  # a code this step already used (by another test) is refused
        assert time.monotonic() < deadline, "the second factor was not accepted"
        step = int(time.time() // 30)
        response = session.post(f"{base_url}/auth/two-factor", timeout=10, data={
            "totp-code": pyotp.TOTP(totp_secret).now(), "totp-csrf_token": csrf_from(response.text)})
        if "/auth/two-factor" in response.url:
            while int(time.time() // 30) == step and time.monotonic() < deadline:
                time.sleep(0.2)
            response = session.get(f"{base_url}/auth/two-factor", timeout=10)
    return session


def _server_logs(base: Path) -> list[Path]:
    return sorted(base.rglob("server.log"))


def _personal_data_of(log: Path) -> Personal:
    personal = Personal()
    personal.add(DEMO_PATIENT.full_name, "the demo patient's name")
    personal.add(DEMO_PATIENT.email, "the demo patient's email")
    personal.add_date_of_birth(demo.DEMO_PATIENT_DOB, "the demo patient's date of birth")
    personal.add_nhs_number(NHS_NUMBER, "the demo patient's NHS number")
    database = log.parent / "verity.db"
    if not database.exists():
        return personal
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        for user_id, name, email in connection.execute("SELECT id, full_name, email FROM users"):
            personal.add(name, f"the name of user {user_id}")
            personal.add(email, f"the email of user {user_id}")
        for patient_id, born, nhs_number in connection.execute(
                "SELECT id, date_of_birth, nhs_number FROM patients"):
            personal.add_date_of_birth(dt.date.fromisoformat(str(born)[:10]), f"patient {patient_id}'s date of birth")
            if nhs_number:
                personal.add_nhs_number(nhs_number, f"patient {patient_id}'s NHS number")
    return personal


def _log_lines(log: Path) -> list[str]:
    """The log's lines, less the demo-accounts banner `flask serve` prints at start in demo mode."""
    lines, banner = [], False
    for line in log.read_text(errors="replace").splitlines():
        if line.strip() == DEMO_BANNER:
            banner = True
        elif banner and not line.strip():
            banner = False
        elif not banner:
            lines.append(line)
    return lines


def test_the_embedded_server_is_ready_once_its_worker_beats(live_server):
    deadline = time.monotonic() + DEADLINE
    while (response := requests.get(f"{live_server.url}/readyz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, f"/readyz still says {response.status_code}: {response.text}"
        time.sleep(0.2)
    body = response.json()
    assert body["checks"]["worker"]["status"] == "ok" and body["checks"]["database"]["status"] == "ok"


def test_the_embedded_server_exposes_metrics_to_the_token_holder(live_server):
    url = f"{live_server.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    token = live_server.env.get("VERITY_METRICS_TOKEN")
    if not token:
        pytest.skip("the live server runs without VERITY_METRICS_TOKEN")
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    workers = families["verity_worker_last_seen_timestamp_seconds"].samples
    assert workers and all(time.time() - sample.value < 120 for sample in workers)  # the worker child's beat
    requests_seen = {sample.labels["endpoint"] for sample in families["verity_http_request_duration_seconds"].samples}
    assert "core.healthz" in requests_seen
    assert {"verity_outbox_messages", "verity_prescriptions", "verity_signaling_connections"} <= set(families)


def test_the_logs_hold_no_personal_data(live_server, tmp_path_factory):
    base = live_server.url
    patient = _signed_in(base, DEMO_PATIENT.email, DEMO_PATIENT.password)
    form = patient.get(f"{base}/details/records", timeout=10)
    saved = patient.post(f"{base}/details/records", timeout=10, data={
        "gp_practice": "Harbourside Medical Practice, Bristol", "nhs_number": NHS_NUMBER,
        "csrf_token": csrf_from(form.text)})
    assert saved.status_code == 200 and "/details/records" not in saved.url, saved.status_code

    stranger = requests.Session()
    page = stranger.get(f"{base}/login", timeout=10)
    refused = stranger.post(f"{base}/login", timeout=10, data={
        "email": DEMO_PATIENT.email, "password": "not-the-password", "csrf_token": csrf_from(page.text)})
    assert refused.status_code == 401
    page = stranger.get(f"{base}/register", timeout=10)
    born = demo.DEMO_PATIENT_DOB
    taken = stranger.post(f"{base}/register", timeout=10, data={
        "full_name": DEMO_PATIENT.full_name, "email": DEMO_PATIENT.email, "dob_day": str(born.day),
        "dob_month": str(born.month), "dob_year": str(born.year), "password": "Another-Long-Password-1",
        "confirm": "Another-Long-Password-1", "csrf_token": csrf_from(page.text)})
    assert taken.status_code == 400

    admin = _signed_in(base, DEMO_ADMIN.email, DEMO_ADMIN.password, DEMO_ADMIN.totp_secret)
    for term in (DEMO_PATIENT.full_name, DEMO_PATIENT.email, born.strftime("%d/%m/%Y"), born.isoformat(),
                 NHS_NUMBER, f"{NHS_NUMBER[:3]} {NHS_NUMBER[3:6]} {NHS_NUMBER[6:]}"):
        found = admin.get(f"{base}/staff", params={"q": term}, headers={"HX-Request": "true"}, timeout=10)
        assert found.status_code == 200 and DEMO_PATIENT.full_name in found.text, f"searching by {term!r}"

    # The last request carries a known id: once its line is in the log, everything before it is too.
    marker = f"pii-scan-{uuid.uuid4().hex}"
    assert admin.get(f"{base}/staff", headers={"X-Request-ID": marker}, timeout=10).status_code == 200
    deadline = time.monotonic() + DEADLINE
    while marker not in live_server.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the marked request never reached the server log"
        time.sleep(0.1)
    if live_server.env.get("VERITY_LOG_FORMAT") == "json":
        (line,) = [json.loads(line) for line in _log_lines(live_server.log) if marker in line]
        assert line["request_id"] == marker and line["path"] == "/staff" and line["role"] == "admin"

    logs = _server_logs(tmp_path_factory.getbasetemp())
    assert live_server.log in logs
    leaks = []
    for log in logs:
        personal = _personal_data_of(log)
        assert len(personal.values) >= 8, f"no personal data to look for beside {log}"
        for number, line in enumerate(_log_lines(log), start=1):
            lowered = line.lower()
            leaks += [f"{log.parent.name}/server.log:{number}: {source}: {line[:300]}"
                      for value, source in personal.values.items() if value in lowered]
    assert not leaks, "personal data in the server logs:\n" + "\n".join(leaks[:40])
