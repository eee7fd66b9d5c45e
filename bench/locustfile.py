"""The clinic-group load scenario (locust), against a database seeded by `flask seed-scale`.

    LOAD_PATIENTS=100000 .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000 --headless \
        -u 40 -r 4 -t 2m --reset-stats --csv /tmp/load

bench/load.py runs it that way against the production layout; LOAD_PATIENTS must be the seed's size (the
seeded accounts, their clinicians and pharmacies follow from it: app/seed_scale.py). Each simulated person
signs in once through the real forms (staff with their TOTP code) and then works:

* patients (on treatment) browse their dashboard and timeline, and open the booking week view;
* reception works a clinician's day board and searches for patients by name;
* clinicians open their day board, then one of their patients' record and its prescribing panel;
* pharmacists work their pharmacy's queue and open prescriptions from it.

Request names group pages by kind ("/patients/[id]"), so the statistics are per page.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sys
import threading
import time
from pathlib import Path

import pyotp
from locust import HttpUser, between, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import seed_scale

PLAN = seed_scale.Plan.for_patients(int(os.environ.get("LOAD_PATIENTS", "2000")))
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PATIENT_LINK = re.compile(r'href="/patients/(\d+)"')
PHARMACY_LINK = re.compile(r'href="/pharmacy/prescriptions/(\d+)"')
_lock = threading.Lock()
_counters: dict[str, itertools.count] = {}


def _next(kind: str) -> int:
    with _lock:
        return next(_counters.setdefault(kind, itertools.count(1)))


def _on_treatment() -> list[int]:
    return [n for n in range(1, PLAN.patients + 1) if PLAN.journey_state_of(n) == "on_treatment"]


ON_TREATMENT = _on_treatment()


#: The web workers' addresses (one gunicorn per port, as nginx would balance them): people are spread over them.
HOSTS = [h for h in os.environ.get("LOAD_HOSTS", "").split(",") if h]


class Person(HttpUser):
    abstract = True
    wait_time = between(0.5, 2.0)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if HOSTS:
            self.client.base_url = HOSTS[_next("host") % len(HOSTS)]

    def sign_in(self, email: str, totp_secret: str | None = None) -> None:
        page = self.client.get("/login", name="/login")
        token = CSRF.search(page.text)
        if token is None:
            raise RuntimeError("no CSRF token on /login")
        answer = self.client.post("/login", name="/login", allow_redirects=False,
                                  data={"csrf_token": token.group(1), "email": email,
                                        "password": seed_scale.SEED_PASSWORD})
        if answer.status_code != 302:
            raise RuntimeError(f"sign-in of {email} answered {answer.status_code}")
        if totp_secret is None:
            return
        # Several simulated people may share an account: a code is good once, so wait for the next one.
        for _attempt in range(4):
            page = self.client.get("/auth/two-factor", name="/auth/two-factor")
            token = CSRF.search(page.text)
            answer = self.client.post("/auth/two-factor", name="/auth/two-factor", allow_redirects=False,
                                      data={"csrf_token": token.group(1) if token else "",
                                            "totp-code": pyotp.TOTP(totp_secret).now()})
            if answer.status_code == 302:
                return
            time.sleep(30 - time.time() % 30 + 0.5)
        raise RuntimeError(f"second factor of {email} refused")

    def staff(self, role: str, count: int) -> tuple[int, str]:
        number = (_next(role) - 1) % count + 1
        email = seed_scale.staff_email(role, number)
        self.sign_in(email, seed_scale.totp_secret(email))
        return number, email


class Patient(Person):
    weight = 6

    def on_start(self) -> None:
        self.number = ON_TREATMENT[(_next("patient") * 7919) % len(ON_TREATMENT)]
        self.sign_in(seed_scale.patient_email(self.number))

    @task(3)
    def dashboard(self) -> None:
        self.client.get("/dashboard", name="patient /dashboard")

    @task(3)
    def timeline(self) -> None:
        self.client.get("/timeline", name="patient /timeline")

    @task(1)
    def booking_week(self) -> None:
        self.client.get("/book?type=follow-up", name="patient /book (week view)")


class Reception(Person):
    weight = 2

    def on_start(self) -> None:
        self.staff("reception", PLAN.receptionists)

    @task(3)
    def board(self) -> None:
        clinician = random.randint(1, PLAN.clinicians)
        # Reception picks the clinician by user id; staff are seeded first, clinicians first among them.
        self.client.get(f"/scheduling/board?clinician={self.clinician_ids[clinician - 1]}"
                        if self.clinician_ids else "/scheduling/board", name="reception /scheduling/board")

    @task(2)
    def search(self) -> None:
        term = random.choice(seed_scale.SURNAMES)[:5].lower()
        self.client.get(f"/scheduling/patients?q={term}", name="reception /scheduling/patients?q=")

    @property
    def clinician_ids(self) -> list[int]:
        if not hasattr(self, "_clinicians"):
            page = self.client.get("/scheduling/board", name="reception /scheduling/board")
            self._clinicians = [int(v) for v in re.findall(r'<option value="(\d+)"', page.text)]
        return self._clinicians


class Clinician(Person):
    weight = 2

    def on_start(self) -> None:
        number, _email = self.staff("clinician", PLAN.clinicians)
        mine = [n for n in ON_TREATMENT if PLAN.clinician_of(n) == number]
        self.patients: list[int] = []
        for patient in random.sample(mine, min(5, len(mine))):
            page = self.client.get(f"/staff?q={seed_scale.patient_email(patient)}", name="clinician /staff?q= (setup)")
            found = PATIENT_LINK.search(page.text)
            if found:
                self.patients.append(int(found.group(1)))
        if not self.patients:
            raise RuntimeError(f"clinician {number} found none of their patients")

    @task(2)
    def board(self) -> None:
        self.client.get("/scheduling/board", name="clinician /scheduling/board")

    @task(2)
    def record(self) -> None:
        self.client.get(f"/patients/{random.choice(self.patients)}", name="clinician /patients/[id]")

    @task(2)
    def panel(self) -> None:
        self.client.get(f"/patients/{random.choice(self.patients)}/prescribing/panel",
                        name="clinician /patients/[id]/prescribing/panel")


class Pharmacist(Person):
    weight = 1

    def on_start(self) -> None:
        self.staff("pharmacist", PLAN.pharmacies * PLAN.pharmacists_per_pharmacy)
        self.queue_ids: list[int] = []

    @task(3)
    def queue(self) -> None:
        page = self.client.get("/pharmacy", name="pharmacist /pharmacy (queue)")
        self.queue_ids = [int(v) for v in PHARMACY_LINK.findall(page.text)][:50]

    @task(1)
    def prescription(self) -> None:
        if self.queue_ids:
            self.client.get(f"/pharmacy/prescriptions/{random.choice(self.queue_ids)}",
                            name="pharmacist /pharmacy/prescriptions/[id]")
