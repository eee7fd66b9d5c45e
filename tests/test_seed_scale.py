"""`flask seed-scale`: a small seed on both engines, then the chain verifies and seeded people can work."""

from __future__ import annotations

import json
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


# What a real clinic's records hold between the journey's moves: consents, health answers, plans ----------

#: Journey states whose path went through the identity check (consents come just before it).
PAST_IDENTITY = {state for state, path in seed_scale._PATHS.items() if "identity_verified" in path}


def test_every_patient_has_the_consents_and_health_answers_of_the_steps_they_passed(app, seeded):
    from app.consent import services as consents
    from app.extensions import db
    from app.intake import answers as answer_forms
    from app.intake import engine
    from app.intake import rules as intake_rules
    from app.intake import services as intake
    from app.intake.models import IntakeDecision
    from app.patients.models import Patient

    with app.app_context():
        kinds_seen, outcomes = Counter(), Counter()
        for patient in db.session.scalars(sa.select(Patient).order_by(Patient.id)):
            state = patient.journey_state
            statuses = consents.statuses(patient)
            assert {s.document.kind for s in statuses} == {"terms", "privacy", "video", "pharmacy_sharing"}
            if state in PAST_IDENTITY:
                # Every current version accepted, the pharmacy's for the nominated pharmacy, before identity.
                assert consents.outstanding(patient) == [], (patient.id, state)
                assert consents.has_consent(patient, "pharmacy_sharing", patient.pharmacy_id)
                assert all(s.decided_at <= patient.identity_verified_at for s in statuses)
                kinds_seen.update(s.document.kind for s in statuses)
            else:
                assert consents.history(patient) == [], (patient.id, state)

            response = intake.response_for(patient)
            if state == "registered":
                assert response is None
                continue
            found = intake.open_intake(patient)
            answers = engine.settle(found.questionnaire, found.answers)
            assert answers == found.answers  # stored as the service stores them: settled, nothing disabled kept
            if state == "intake_in_progress":
                assert response.status == "in-progress" and response.outcome is None
                assert found.resume_step() is not None  # some steps are left to answer
                assert answers, patient.id
                continue
            # Sent: complete, and what the loaded questionnaire's own rules make of the answers.
            assert response.status == "completed" and response.submitted_at is not None
            assert answer_forms.missing(found.questionnaire, answers) == []
            judged = intake_rules.evaluate(found.definition.rules, answers)
            assert (response.outcome, patient.eligibility_outcome) == (judged.outcome, judged.outcome)
            assert [f.rule for f in intake.findings_of(response)] == [f.rule for f in judged.findings]
            assert response.urgent_help == judged.urgent_help
            outcomes[response.outcome] += 1
            decisions = intake.decisions_of(patient)
            if state == "needs_clinical_review":
                assert response.outcome == "needs_clinical_review" and decisions == []
            for decision, clinician in decisions:
                # Only a review leads to a decision, made by the patient's clinician with a reason.
                assert (response.outcome, decision.from_state) == ("needs_clinical_review", "needs_clinical_review")
                assert clinician.id == patient.clinician_id and decision.reason
                assert decision.to_state == ("not_eligible" if state == "not_eligible" else "eligible")
        assert set(kinds_seen) == {"terms", "privacy", "video", "pharmacy_sharing"}
        assert set(outcomes) == {"eligible", "needs_clinical_review", "not_eligible"}
        decided = db.session.scalar(sa.select(sa.func.count()).select_from(IntakeDecision))
        assert decided > 0

    # The audit trail holds what the services write for each of those.
    for action, table in (("consent.accepted", "consent_records"), ("intake.submitted", "intake_responses "
                                                                    "WHERE status = 'completed'"),
                          ("treatment_plan.version_created", "treatment_plan_versions"),
                          ("mdt.referred", "mdt_reviews"), ("mdt.approved", "mdt_reviews WHERE decision = 'approved'")):
        assert _scalar(app, "SELECT count(*) FROM audit_events WHERE action = :a", a=action) == \
            _scalar(app, f"SELECT count(*) FROM {table}"), action  # noqa: S608 - constant table names
    # Each response saved step by step ("Save and continue"), each save audited against it.
    assert _scalar(app, "SELECT count(DISTINCT subject_id) FROM audit_events WHERE action = 'intake.saved'") == \
        _scalar(app, "SELECT count(*) FROM intake_responses")
    assert _scalar(app, "SELECT count(*) FROM audit_events WHERE action = 'intake.saved'") > \
        5 * _scalar(app, "SELECT count(*) FROM intake_responses")
    decided_moves = _scalar(app, """SELECT count(*) FROM audit_events WHERE action IN ('journey.eligible',
                                    'journey.not_eligible') AND actor_role = 'clinician'""")
    assert decided_moves == _scalar(app, "SELECT count(*) FROM intake_decisions")


def test_every_prescription_belongs_to_an_approved_plan_and_passes_the_signing_rules(app, seeded):
    from app.auth.models import User
    from app.extensions import db
    from app.patients.models import Patient
    from app.prescribing import plans, rules
    from app.prescribing.models import Prescription, TreatmentPlan, TreatmentPlanVersion

    with app.app_context():
        treated = set(db.session.scalars(sa.select(Prescription.patient_id).distinct()))
        assert treated == set(db.session.scalars(sa.select(TreatmentPlan.patient_id)))
        checked = 0
        for patient_id in sorted(treated):
            patient = db.session.get(Patient, patient_id)
            approval = plans.approval(patient)
            assert approval is not None and approval.decided_by_id != approval.referred_by_id
            versions = sorted(plans.versions(patient), key=lambda v: v.version)
            assert [v.version for v in versions] == list(range(1, len(versions) + 1))
            prescriptions = sorted(db.session.scalars(sa.select(Prescription).where(
                Prescription.patient_id == patient_id)), key=lambda p: (p.signed_at is None, p.signed_at))
            for prescription in prescriptions:
                if prescription.signed_at is None:
                    assert prescription.status == "draft" and prescription.plan_version_id is None
                    continue
                # Signed under the version in force then, after the MDT approved treatment.
                in_force = [v for v in versions if v.created_at <= prescription.signed_at][-1]
                assert prescription.plan_version_id == in_force.id
                assert in_force.review_date >= prescription.signed_at.date()
                assert approval.recorded_at <= prescription.signed_at
                # And what signing checks, as of its signing time: nothing would have blocked it. Prescriptions
                # signed later are left out, as they did not exist yet.
                later = {p.id for p in prescriptions if p.signed_at and p.signed_at > prescription.signed_at}
                lines = [rules.line_of(item) for item in prescription.items]
                for item in prescription.items:
                    _, errors = rules.line_errors({"product_id": item.product_id, "unit": item.unit,
                                                      "quantity": str(item.quantity), "dose": item.dose,
                                                      "days_supply": str(item.days_supply)})
                    assert errors == {}, errors
                prescriber = db.session.get(User, prescription.prescriber_id)
                blocks = rules.blocking_reasons(patient, prescriber, lines, exclude={prescription.id} | later,
                                                now=prescription.signed_at)
                assert blocks == [], (prescription.id, [b.message for b in blocks])
                checked += 1
        assert checked > PATIENTS  # most of the treated patients' prescriptions are signed
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TreatmentPlanVersion)) > len(treated)


def _patient_number(app, plan, state: str, where: str = "1 = 1") -> int:
    """The seeded number of the first patient in `state` matching a SQL condition on `p` (the patient)."""
    for number in range(1, PATIENTS + 1):
        if plan.journey_state_of(number) != state:
            continue
        if _scalar(app, f"SELECT count(*) FROM patients p JOIN users u ON u.id = p.user_id "  # noqa: S608
                        f"WHERE u.email = :e AND {where}", e=seed_scale.patient_email(number)):
            return number
    raise AssertionError(f"no seeded patient in {state} with {where}")


def _patient_of(app, number: int) -> int:
    return _scalar(app, "SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = :e",
                   e=seed_scale.patient_email(number))


def _signed_in_clinician(app, number: int):
    client = app.test_client()
    email = seed_scale.staff_email("clinician", number)
    _login(client, email)
    page = client.get("/auth/two-factor")
    answer = client.post("/auth/two-factor", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                                   "totp-code": pyotp.TOTP(seed_scale.totp_secret(email)).now()})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    return client


def _page(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return page.get_data(as_text=True)


def test_seeded_consents_answers_and_plans_show_on_the_patients_and_clinicians_pages(app, seeded):
    from html import unescape

    plan = seed_scale.Plan.for_patients(PATIENTS)
    # A patient on treatment whose intake went to a clinician, who decided they were eligible.
    number = _patient_number(app, plan, "on_treatment",
                             "EXISTS (SELECT 1 FROM intake_decisions d WHERE d.patient_id = p.id)")
    patient_id = _patient_of(app, number)
    reason = _scalar(app, "SELECT reason FROM intake_decisions WHERE patient_id = :p", p=patient_id)
    with app.app_context():
        from app.extensions import db
        from app.intake import services as intake
        from app.patients.models import Patient

        sent = intake.response_for(db.session.get(Patient, patient_id)).submitted_at
    pharmacy = _scalar(app, "SELECT ph.name FROM pharmacies ph JOIN patients p ON p.pharmacy_id = ph.id "
                            "WHERE p.id = :p", p=patient_id)
    indication = _scalar(app, """SELECT v.indication FROM treatment_plan_versions v JOIN treatment_plans t
                                 ON t.id = v.plan_id WHERE t.patient_id = :p ORDER BY v.version DESC LIMIT 1""",
                         p=patient_id)

    patient = app.test_client()
    assert _login(patient, seed_scale.patient_email(number)).status_code == 302
    dashboard = unescape(_page(patient, "/dashboard"))
    assert "You have agreed to the terms, privacy notice and video consultations." in dashboard
    assert f"Sent on {sent:%-d %B %Y}." in dashboard  # the health questions step, done
    consents_page = unescape(_page(patient, "/consents"))
    assert "You have agreed to everything needed for your care." in consents_page
    assert f"Sharing your prescription with {pharmacy}" in consents_page
    timeline = unescape(_page(patient, "/timeline"))
    for label in ("Health questions sent", "Identity confirmed", "A clinician is reviewing your answers",
                  "Ready to book", "On treatment"):
        assert label in timeline, label

    clinician = _signed_in_clinician(app, plan.clinician_of(number))
    answers = unescape(_page(clinician, f"/patients/{patient_id}/intake"))
    assert reason in answers  # the clinician's decision, with its reason
    assert "Sent on " in answers and "What the eligibility rules found" in answers
    condition = _scalar(app, "SELECT resource FROM intake_responses WHERE patient_id = :p", p=patient_id)
    shown = json.loads(condition)["item"][0]["item"][0]["answer"][0]["valueCoding"]["display"]
    assert shown in answers  # the patient's own answers, from the stored QuestionnaireResponse
    response_id = _scalar(app, "SELECT id FROM intake_responses WHERE patient_id = :p", p=patient_id)
    fhir = clinician.get(f"/fhir/QuestionnaireResponse/{response_id}")  # checked by fhir.resources before serving
    assert fhir.status_code == 200 and fhir.json["status"] == "completed"
    assert fhir.json["subject"] == {"reference": f"Patient/{patient_id}"}
    prescribing = unescape(_page(clinician, f"/patients/{patient_id}/prescribing"))
    assert indication in prescribing and "Approved</strong> at the MDT meeting of" in prescribing
    assert "There is no treatment plan yet." not in prescribing
    record = unescape(_page(clinician, f"/patients/{patient_id}"))
    assert "Eligibility notes" in record  # the reasons the rules sent the intake for review

    # A patient still waiting for that review: on their clinician's review list, with the rules' reasons.
    waiting = _patient_number(app, plan, "needs_clinical_review")
    waiting_id = _patient_of(app, waiting)
    name = _scalar(app, "SELECT u.full_name FROM users u JOIN patients p ON p.user_id = u.id WHERE p.id = :p",
                   p=waiting_id)
    reasons = json.loads(_scalar(app, "SELECT eligibility_reasons FROM patients WHERE id = :p", p=waiting_id))
    # (A code is good for one sign-in: the same clinician carries on in the same browser.)
    same = plan.clinician_of(waiting) == plan.clinician_of(number)
    reviewer = clinician if same else _signed_in_clinician(app, plan.clinician_of(waiting))
    queue = unescape(_page(reviewer, "/intake/reviews"))
    assert name in queue and reasons and reasons[0] in queue

    # A patient the rules found not eligible reads why on their dashboard.
    refused = _patient_number(app, plan, "not_eligible",
                              "NOT EXISTS (SELECT 1 FROM intake_decisions d WHERE d.patient_id = p.id)")
    reasons = json.loads(_scalar(app, "SELECT eligibility_reasons FROM patients WHERE id = :p",
                                 p=_patient_of(app, refused)))
    client = app.test_client()
    assert _login(client, seed_scale.patient_email(refused)).status_code == 302
    dashboard = unescape(_page(client, "/dashboard"))
    assert "We cannot offer you treatment now" in dashboard and reasons and reasons[0] in dashboard
