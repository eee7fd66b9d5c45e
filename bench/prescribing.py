"""Prescribing: how long rendering and signing a prescription takes.

A throw-away SQLite database is migrated and loaded with the demo data (the clinic CA, the demo
clinician's key, a patient ready for a prescription). Then, each timed N times (median and
percentiles over the runs, after 3 warm-up runs):

- render: the prescription PDF by WeasyPrint (every reg. 15 field, the QR code);
- PAdES: pyHanko signing that PDF with the clinician's P-256 key;
- render + PAdES: both, as signing does them;
- JWS: the FHIR Bundle of MedicationRequests signed ES256 with joserfc;
- sign(): the whole signing service in one transaction (checks, key, PDF, PAdES, JWS, state change, audit,
  outbox), each on a fresh draft; the prescription is cancelled afterwards, outside the timing.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import Row, percentile

RUNS = 50
QUICK_RUNS = 10
WARM_UP = 3


@dataclass(frozen=True)
class Timing:
    target: str
    runs: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    note: str = ""


@dataclass(frozen=True)
class PrescribingReport:
    timings: list[Timing]
    pdf_bytes: int

    def rows(self) -> list[Row]:
        return [Row("prescribing", t.target, "in-process", 1000.0 / t.median_ms if t.median_ms else None, "ops/s",
                    t.median_ms, t.p95_ms, t.p99_ms, note=t.note or f"median of {t.runs}") for t in self.timings]

    def to_json(self) -> dict[str, Any]:
        return {"timings": [asdict(t) for t in self.timings], "pdf_bytes": self.pdf_bytes}


def _time(runs: int, fn: Callable[[], object], *, after: Callable[[], object] | None = None) -> list[float]:
    for _ in range(WARM_UP):
        fn()
        if after:
            after()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
        if after:
            after()
    return samples


def _timing(target: str, samples: list[float], note: str = "") -> Timing:
    return Timing(target, len(samples), round(statistics.median(samples), 2), round(percentile(samples, 95), 2),
                  round(percentile(samples, 99), 2), note)


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> PrescribingReport:
    runs = QUICK_RUNS if quick else RUNS
    with tempfile.TemporaryDirectory(prefix="verity-bench-rx-") as tmp:
        folder = Path(tmp)
        os.environ.setdefault("FLASK_RUN_FROM_CLI", "1")  # no demo-account start-up refusal in this process
        from flask_migrate import upgrade

        from app import create_app

        app = create_app({"ENV": "test", "TESTING": False, "DEMO_MODE": True,
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}", "INSTANCE_DIR": str(folder),
                          "SECRET_KEY": secrets.token_urlsafe(32), "DATA_KEY": secrets.token_hex(32),
                          "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1})
        with app.app_context():
            upgrade(revision="heads")
            return _measure(app, runs, log)


def _measure(app, runs: int, log: Callable[[str], None]) -> PrescribingReport:
    from app import demo
    from app.audit import context
    from app.auth import services as accounts
    from app.patients import services as patients
    from app.prescribing import fhir, pdf, pki, plans, services, signing
    from app.prescribing.demo import load_all

    log("prescribing: demo data, CA, clinician key")
    demo.load()
    load_all()
    clinician = accounts.find_by_email(next(a.email for a in demo.ACCOUNTS if a.role.value == "clinician"))
    patient = patients.for_user(accounts.find_by_email(demo.ACCOUNTS[0].email))
    flower = next(p for p in services.formulary.products() if p.name == "Verdant T22 Flower")
    values = {"product_id": str(flower.id), "quantity": "30", "days_supply": "30",
              "dose": "Vaporise 0.1 g up to ten times a day"}
    token = context.bind(context.Actor(user_id=clinician.id, role="clinician"))
    try:
        draft = services.add_item(patient, clinician, values)
        material = pki.signing_material(clinician, prescriber_id=clinician.id)
        version = plans.current(patient)
        from app.database import utcnow

        draft.signed_at = utcnow()  # not flushed: the facts need a date to print
        draft.valid_until = draft.signed_at
        draft.pharmacy_id = patient.pharmacy_id
        facts = signing._facts(draft, patient, clinician, version)
        document = pdf.render("prescribing/pdf/prescription.html", **facts)
        payload = fhir.bundle(**signing._fhir_facts(draft, facts, version))

        timings = []
        log(f"prescribing: render x{runs}")
        with app.test_request_context():
            timings.append(_timing("PDF render (WeasyPrint)", _time(runs, lambda: pdf.render(
                "prescribing/pdf/prescription.html", **facts))))
        log(f"prescribing: PAdES x{runs}")
        timings.append(_timing("PAdES sign (pyHanko)", _time(runs, lambda: pdf.pades_sign(
            document, material, signer_name=clinician.full_name, reason="bench"))))
        with app.test_request_context():
            timings.append(_timing("PDF render + PAdES sign", _time(runs, lambda: pdf.pades_sign(
                pdf.render("prescribing/pdf/prescription.html", **facts), material,
                signer_name=clinician.full_name, reason="bench")), "what signing does for the PDF"))
        log(f"prescribing: JWS x{runs}")
        timings.append(_timing("JWS sign (joserfc ES256)", _time(runs, lambda: signing.sign_jws(payload, material))))
        from app.extensions import db

        db.session.rollback()  # drop the unflushed dates set for the facts above
        services.discard(services.draft_for(patient, clinician), clinician)

        log(f"prescribing: full sign() x{runs}")
        state: dict[str, Any] = {}

        def sign_once() -> None:
            fresh = services.add_item(patient, clinician, values)
            start = time.perf_counter()
            state["signed"] = services.sign(fresh, clinician, token=secrets.token_urlsafe(24),
                                            revision=fresh.revision).prescription
            state["elapsed"] = (time.perf_counter() - start) * 1000

        def cancel() -> None:
            services.cancel(state["signed"], clinician, "benchmark")

        full = []
        for i in range(WARM_UP + runs):
            sign_once()
            cancel()
            if i >= WARM_UP:
                full.append(state["elapsed"])
        timings.append(_timing("sign() whole transaction (SQLite)", full,
                               "checks, key, PDF, PAdES, JWS, state, audit, outbox"))
        return PrescribingReport(timings, len(state["signed"].pdf))
    finally:
        context.reset(token)


if __name__ == "__main__":
    report = run(quick=False)
    for row in report.rows():
        print(row)
