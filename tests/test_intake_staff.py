"""The staff side of the intake: FHIR reads, the review queue, decisions and overrides, who sees the
answers, questionnaire uploads, and the loaders for the command line and the demo."""

from __future__ import annotations

import copy
import io
import json

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from app.audit.models import AuditEvent
from app.extensions import db
from app.intake import services
from app.intake.models import IntakeDecision, QuestionnaireVersion
from tests.conftest import csrf_from, sign_in_as
from tests.test_intake_flow import fill, submit

RESOURCE = json.loads((services.QUESTIONNAIRE_DIR / "verity-intake.json").read_text())


def send_intake(app, persona, answers: dict, *, identity_checked: bool = True) -> None:
    """The patient answers and sends everything; then (optionally) their identity check passes."""
    client = app.test_client()
    sign_in_as(client, persona)
    assert fill(client, answers) == "/intake/check"
    assert submit(client).status_code == 302
    if identity_checked:
        with app.app_context():
            from app.patients import onboarding
            from app.patients import services as patients

            onboarding.identity_verified(patients.get(persona.patient_id))


def staff_client(app, persona):
    client = app.test_client()
    sign_in_as(client, persona)
    return client


def last_audit(app) -> AuditEvent:
    with app.app_context():
        return db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()


def response_id(app, persona) -> int:
    with app.app_context():
        from app.patients import services as patients

        return services.response_for(patients.get(persona.patient_id)).id


def state(app, persona) -> str:
    with app.app_context():
        from app.patients import services as patients

        return patients.get(persona.patient_id).journey_state


REVIEW = {**services.DEMO_ANSWERS, "substances.other_drugs": True, "substances.other_drugs_details": "Cocaine, twice"}


# FHIR -----------------------------------------------------------------------------------------

def test_the_clinician_reads_a_valid_questionnaire_response_and_the_read_is_audited(app, personas):
    send_intake(app, personas["patient"], services.DEMO_ANSWERS, identity_checked=False)
    rid = response_id(app, personas["patient"])
    reply = staff_client(app, personas["clinician"]).get(f"/fhir/QuestionnaireResponse/{rid}")
    assert reply.status_code == 200
    assert reply.mimetype == "application/fhir+json"
    resource = QuestionnaireResponse.model_validate(reply.get_json())
    assert resource.id == str(rid) and resource.status == "completed"
    assert resource.questionnaire == f"{services.INTAKE_URL}|1.0.0"
    assert resource.subject.reference == f"Patient/{personas['patient'].patient_id}"
    entry = last_audit(app)
    assert (entry.action, entry.actor_id, entry.patient_id) == (
        "record.read", personas["clinician"].user_id, personas["patient"].patient_id)
    assert json.loads(entry.detail) == {"section": "intake"}
    assert staff_client(app, personas["admin"]).get(f"/fhir/QuestionnaireResponse/{rid}").status_code == 200


@pytest.mark.parametrize("who", ["other_clinician", "reception", "pharmacist", "patient"])
def test_others_are_refused_the_questionnaire_response_and_the_refusal_is_audited(app, personas, who):
    send_intake(app, personas["patient"], services.DEMO_ANSWERS, identity_checked=False)
    rid = response_id(app, personas["patient"])
    reply = staff_client(app, personas[who]).get(f"/fhir/QuestionnaireResponse/{rid}")
    assert reply.status_code == 403 and reply.is_json
    entry = last_audit(app)
    assert (entry.action, entry.actor_id) == ("access.denied", personas[who].user_id)


@pytest.mark.parametrize("resource_id", ["999999", "abc", "99999999999999999999"])
def test_an_unknown_questionnaire_response_is_a_404_operation_outcome(app, personas, resource_id):
    reply = staff_client(app, personas["clinician"]).get(f"/fhir/QuestionnaireResponse/{resource_id}")
    assert reply.status_code == 404 and reply.mimetype == "application/fhir+json"
    body = reply.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-found"


def test_staff_read_the_questionnaire_as_fhir(app, personas):
    with app.app_context():
        version = services.load_default_questionnaires()[0].version.id
    reply = staff_client(app, personas["reception"]).get(f"/fhir/Questionnaire/{version}")
    assert reply.status_code == 200 and reply.mimetype == "application/fhir+json"
    resource = Questionnaire.model_validate(reply.get_json())
    assert (resource.id, resource.url, resource.version) == (str(version), services.INTAKE_URL, "1.0.0")
    assert staff_client(app, personas["reception"]).get("/fhir/Questionnaire/777").status_code == 404


# Who sees the answers ---------------------------------------------------------------------------

def test_reception_sees_where_the_patient_is_but_not_the_answers(app, personas):
    send_intake(app, personas["patient"], REVIEW)
    page = staff_client(app, personas["reception"]).get(f"/patients/{personas['patient'].patient_id}/intake")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Sent on" in html
    assert "Cocaine" not in html and "Use of other drugs" not in html
    assert json.loads(last_audit(app).detail) == {"section": "intake_status"}
    admin = staff_client(app, personas["admin"]).get(f"/patients/{personas['patient'].patient_id}/intake")
    assert "Cocaine, twice" in admin.get_data(as_text=True) and "Record decision" not in admin.get_data(as_text=True)


def test_the_clinician_sees_answers_scores_and_the_rules_findings(app, personas):
    answers = {**REVIEW, "psychiatric.history": True, "psychiatric.details": "Low mood",
               "psychosis.diagnosed": False, "psychosis.experiences": False, "psychosis.cannabis_reaction": False,
               "psychosis.family": "no",
               **{f"phq9.{c}": "LA6570-1" for c in ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                                                    "44258-2", "44252-5", "44253-3", "44260-8")},
               "phq9.69722-7": "LA6575-0",
               **{f"gad7.{c}": "LA6569-3" for c in ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9",
                                                    "69689-8", "69736-7")}, "gad7.69722-7": "LA6573-5"}
    send_intake(app, personas["patient"], answers)
    html = staff_client(app, personas["clinician"]).get(
        f"/patients/{personas['patient'].patient_id}/intake").get_data(as_text=True)
    assert 'id="score-phq9-44261-6">18 out of 27: moderately severe</dd>' in html
    assert 'id="score-gad7-70274-6">7 out of 21: mild</dd>' in html
    assert "Thoughts of self-harm" in html and "Use of other drugs" in html
    assert "Record decision" in html


# Review queue and decisions ---------------------------------------------------------------------

def test_the_review_queue_lists_the_clinicians_patients_with_reasons(app, personas):
    send_intake(app, personas["patient"], REVIEW)
    assert state(app, personas["patient"]) == "needs_clinical_review"
    mine = staff_client(app, personas["clinician"]).get("/intake/reviews").get_data(as_text=True)
    assert "Alice Example" in mine and "Use of other drugs that were not prescribed" in mine
    assert "Cocaine, twice" in mine
    theirs = staff_client(app, personas["other_clinician"]).get("/intake/reviews").get_data(as_text=True)
    assert "Alice Example" not in theirs and "No intakes are waiting for you." in theirs


def test_a_review_waiting_for_the_identity_check_can_be_read_but_not_decided(app, personas):
    send_intake(app, personas["patient"], REVIEW, identity_checked=False)
    html = staff_client(app, personas["clinician"]).get("/intake/reviews").get_data(as_text=True)
    assert "Waiting for identity check" in html and "Record decision" not in html


def decide(app, persona_clinician, patient, outcome: str | None, reason: str, back: str = "patient"):
    client = staff_client(app, persona_clinician)
    page = client.get(f"/patients/{patient.patient_id}/intake").get_data(as_text=True)
    form = {"csrf_token": csrf_from(page), "reason": reason, "back": back}
    if outcome:
        form["outcome"] = outcome
    return client.post(f"/patients/{patient.patient_id}/intake/decision", data=form)


def test_a_decision_needs_a_reason_and_changes_nothing_without_one(app, personas):
    send_intake(app, personas["patient"], REVIEW)
    reply = decide(app, personas["clinician"], personas["patient"], "eligible", "   ")
    assert reply.status_code == 400
    assert "Give a reason for this decision" in reply.get_data(as_text=True)
    reply = decide(app, personas["clinician"], personas["patient"], None, "Looks fine")
    assert reply.status_code == 400 and "Choose an outcome" in reply.get_data(as_text=True)
    reply = decide(app, personas["clinician"], personas["patient"], "booked", "Sneaky")
    assert reply.status_code == 400
    assert state(app, personas["patient"]) == "needs_clinical_review"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IntakeDecision)) == 0


def test_the_clinician_decides_a_review_with_a_reason_which_is_audited(app, personas):
    send_intake(app, personas["patient"], REVIEW)
    reply = decide(app, personas["clinician"], personas["patient"], "eligible",
                   "One-off use, discussed; no dependence.", back="reviews")
    assert reply.status_code == 302 and reply.headers["Location"] == "/intake/reviews"
    assert state(app, personas["patient"]) == "eligible"
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "journey.eligible")).one()
        detail = json.loads(entry.detail)
        assert (entry.actor_id, detail["from"], detail["reason"]) == (
            personas["clinician"].user_id, "needs_clinical_review", "One-off use, discussed; no dependence.")
        decision = db.session.scalars(sa.select(IntakeDecision)).one()
        assert (decision.from_state, decision.to_state, decision.clinician_id) == (
            "needs_clinical_review", "eligible", personas["clinician"].user_id)
    queue = staff_client(app, personas["clinician"]).get("/intake/reviews").get_data(as_text=True)
    assert "Alice Example" not in queue
    page = staff_client(app, personas["clinician"]).get(
        f"/patients/{personas['patient'].patient_id}/intake").get_data(as_text=True)
    assert "One-off use, discussed; no dependence." in page and "Override the outcome" in page


def test_the_clinician_overrides_a_not_eligible_outcome_with_a_reason(app, personas):
    send_intake(app, personas["patient"], {**services.DEMO_ANSWERS, "treatments.licensed": ["opioid"]})
    assert state(app, personas["patient"]) == "not_eligible"
    reply = decide(app, personas["clinician"], personas["patient"], "eligible",
                   "GP records show amitriptyline and duloxetine were tried in 2021.")
    assert reply.status_code == 302
    assert state(app, personas["patient"]) == "eligible"
    assert "journey.eligible" in [a for (a,) in _actions(app)]


def _actions(app):
    with app.app_context():
        return db.session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.seq)).all()


def test_another_clinician_cannot_decide(app, personas):
    send_intake(app, personas["patient"], REVIEW)
    other = staff_client(app, personas["other_clinician"])
    page = other.get("/intake/reviews").get_data(as_text=True)
    reply = other.post(f"/patients/{personas['patient'].patient_id}/intake/decision",
                       data={"csrf_token": csrf_from(page), "outcome": "eligible", "reason": "Mine now"})
    assert reply.status_code == 403
    assert state(app, personas["patient"]) == "needs_clinical_review"


# Questionnaire versions --------------------------------------------------------------------------

def upload(app, persona, questionnaire: bytes, rules: bytes | None = None):
    client = staff_client(app, persona)
    page = client.get("/admin/questionnaires/upload").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "questionnaire": (io.BytesIO(questionnaire), "intake.json")}
    if rules is not None:
        data["rules"] = (io.BytesIO(rules), "intake.rules.json")
    return client.post("/admin/questionnaires/upload", data=data, content_type="multipart/form-data")


def count_versions(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(QuestionnaireVersion))


def test_an_admin_uploads_a_new_version_and_new_patients_start_on_it(app, personas, world):
    send_intake(app, personas["patient"], services.DEMO_ANSWERS, identity_checked=False)
    newer = copy.deepcopy(RESOURCE)
    newer["version"] = "1.1.0"
    newer["item"][0]["item"][3]["text"] = "How does your condition affect you day to day?"
    reply = upload(app, personas["admin"], json.dumps(newer).encode())
    assert reply.status_code == 302, reply.get_data(as_text=True)
    listing = staff_client(app, personas["admin"]).get("/admin/questionnaires").get_data(as_text=True)
    assert "1.1.0" in listing and "In use" in listing
    assert count_versions(app) == 2
    newcomer = world.patient("dora")
    client = app.test_client()
    sign_in_as(client, newcomer)
    assert "How does your condition affect you day to day?" in client.get("/intake/step/1").get_data(as_text=True)
    with app.app_context():
        from app.patients import services as patients

        old = services.response_for(patients.get(personas["patient"].patient_id))
        assert old.questionnaire.version == "1.0.0"  # a sent intake keeps its version
        assert entry_actions(app).count("intake.questionnaire_loaded") == 2


def entry_actions(app):
    return [a for (a,) in _actions(app)]


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "is not valid JSON"),
    (json.dumps({**RESOURCE, "version": "2", "item": [{"linkId": "x", "type": "quantity", "text": "Q"}]}).encode(),
     "type quantity is not supported"),
    (json.dumps({**RESOURCE, "version": "2", "status": 7}).encode(), "Not a valid FHIR R4B Questionnaire"),
    (json.dumps({**RESOURCE, "title": "Changed but same version"}).encode(), "already loaded with different content"),
])
def test_a_bad_upload_lists_its_problems_and_loads_nothing(app, personas, content, problem):
    with app.app_context():
        services.load_default_questionnaires()
    reply = upload(app, personas["admin"], content)
    assert reply.status_code == 400
    html = reply.get_data(as_text=True)
    assert "The questionnaire was not loaded" in html and problem in html
    assert count_versions(app) == 1


def test_an_upload_whose_rules_no_longer_fit_is_refused(app, personas):
    with app.app_context():
        services.load_default_questionnaires()
    newer = copy.deepcopy(RESOURCE)
    newer["version"] = "1.2.0"
    newer["item"] = [step for step in newer["item"] if step["linkId"] != "pregnancy"]
    reply = upload(app, personas["admin"], json.dumps(newer).encode())
    assert reply.status_code == 400
    assert "pregnancy.status, which does not exist" in reply.get_data(as_text=True)
    assert count_versions(app) == 1


def test_the_command_line_loader_is_idempotent(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["intake", "load"])
    assert first.exit_code == 0 and "Loaded: Health questions version 1.0.0" in first.output
    again = runner.invoke(args=["intake", "load", str(services.QUESTIONNAIRE_DIR / "verity-intake.json")])
    assert again.exit_code == 0 and "Already loaded" in again.output
    assert count_versions(app) == 1


def test_the_command_line_loader_refuses_a_broken_file(app, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"resourceType": "Questionnaire", "status": "active"}))
    result = app.test_cli_runner().invoke(args=["intake", "load", str(broken)])
    assert result.exit_code == 1 and "needs a url" in result.output
    assert count_versions(app) == 0


def test_the_demo_patient_gets_a_completed_eligible_intake_once(app, world):
    person = world.patient("alex")
    with app.app_context():
        from app.patients import services as patients

        patient = patients.get(person.patient_id)
        response = services.complete_demo_intake(patient)
        again = services.complete_demo_intake(patient)
        assert again.id == response.id
        assert (response.status, response.outcome) == ("completed", "eligible")
        QuestionnaireResponse.model_validate(services.fhir_response(response))
        assert patients.get(person.patient_id).journey_state == "intake_submitted"
