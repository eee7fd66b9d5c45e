"""`flask seed-scale`: a small seed on both engines, then the chain verifies and seeded people can work."""

from __future__ import annotations

from collections import Counter

import pyotp
import pytest
import sqlalchemy as sa

from app import seed_scale
from tests.conftest import csrf_from

PATIENTS = 200


@pytest.fixture
def seeded(app):
    result = app.test_cli_runner().invoke(args=["seed-scale", "--patients", str(PATIENTS)])
    assert result.exit_code == 0, result.output
    return result.output


def _scalar(app, sql: str, **params):
    from app.extensions import db

    with app.app_context():
        return db.session.execute(sa.text(sql), params).scalar()


def _rows(app, sql: str):
    from app.extensions import db

    with app.app_context():
        return db.session.execute(sa.text(sql)).all()


def test_seed_covers_every_state_and_the_chain_verifies(app, seeded):
    assert f"Seeded {PATIENTS:,} patients" in seeded
    plan = seed_scale.Plan.for_patients(PATIENTS)
    states = dict(_rows(app, "SELECT journey_state, count(*) FROM patients GROUP BY journey_state"))
    expected = Counter(plan.journey_state_of(n) for n in range(1, PATIENTS + 1))
    assert states == dict(expected)
    assert set(states) == {state for state, _ in seed_scale.JOURNEY_MIX}

    rx = dict(_rows(app, "SELECT status, count(*) FROM prescriptions GROUP BY status"))
    assert set(rx) == set(seed_scale.RX_PATHS), set(seed_scale.RX_PATHS) - set(rx)
    assert 2 * PATIENTS <= sum(rx.values()) <= 4 * PATIENTS
    # Each prescription's transitions end where its status is.
    mismatched = _scalar(app, """
        SELECT count(*) FROM prescriptions p WHERE p.status != 'draft' AND p.status != (
            SELECT t.to_state FROM prescription_transitions t WHERE t.prescription_id = p.id ORDER BY t.id DESC LIMIT 1)
    """)
    assert mismatched == 0

    appointments = dict(_rows(app, "SELECT status, count(*) FROM appointments GROUP BY status"))
    assert {"booked", "completed", "no_show", "cancelled"} <= set(appointments)
    # Every upcoming booking holds its clinician's and its patient's time, as a real booking does.
    unheld = _scalar(app, """SELECT count(*) FROM appointments a WHERE a.status = 'booked'
                             AND NOT EXISTS (SELECT 1 FROM time_holds h WHERE h.appointment_id = a.id)""")
    assert appointments["booked"] > 0 and unheld == 0
    assert _scalar(app, "SELECT count(*) FROM outcome_observations") > 0

    entries = _scalar(app, "SELECT count(*) FROM audit_events")
    assert entries >= 20 * PATIENTS
    assert _scalar(app, "SELECT seq FROM audit_head") == _scalar(app, "SELECT max(seq) FROM audit_events")
    verify = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    assert f"Audit chain intact: {entries} entries checked." in verify.output


def test_seed_refuses_a_second_time_unless_forced(app, seeded):
    again = app.test_cli_runner().invoke(args=["seed-scale", "--patients", "10"])
    assert again.exit_code != 0
    assert "already holds" in again.output
    forced = app.test_cli_runner().invoke(args=["seed-scale", "--patients", "10", "--force"])
    assert forced.exit_code == 0, forced.output
    assert _scalar(app, "SELECT count(*) FROM patients") == PATIENTS + 10
    assert _scalar(app, "SELECT count(*) FROM users WHERE email = :e",
                   e=seed_scale.patient_email(PATIENTS + 10)) == 1
    verify = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output


def _login(client, email: str, password: str = seed_scale.SEED_PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_from(page.get_data(as_text=True)), "email": email,
                                       "password": password})


def test_seeded_patient_and_clinician_sign_in_and_work(app, seeded):
    plan = seed_scale.Plan.for_patients(PATIENTS)
    number = next(n for n in range(1, PATIENTS + 1) if plan.journey_state_of(n) == "on_treatment")
    patient = app.test_client()
    answer = _login(patient, seed_scale.patient_email(number))
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    for path in ("/dashboard", "/timeline", "/book"):
        page = patient.get(path)
        assert page.status_code == 200, (path, page.status_code)

    clinician = app.test_client()
    email = seed_scale.staff_email("clinician", plan.clinician_of(number))
    answer = _login(clinician, email)
    assert answer.status_code == 302 and "/auth/two-factor" in answer.headers["Location"]
    page = clinician.get("/auth/two-factor")
    code = pyotp.TOTP(seed_scale.totp_secret(email)).now()
    answer = clinician.post("/auth/two-factor", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                                      "totp-code": code})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    board = clinician.get("/scheduling/board")
    assert board.status_code == 200
    patient_id = _scalar(app, "SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = :e",
                         e=seed_scale.patient_email(number))
    for path in (f"/patients/{patient_id}", f"/patients/{patient_id}/prescribing/panel"):
        page = clinician.get(path)
        assert page.status_code == 200, (path, page.status_code)
