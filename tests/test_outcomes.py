"""Outcomes through the services and the pages: the schedule, answering (partial saves are not scored),
urgent-help answers, the daily check-in, adverse events and the prescriber's alert, exports (valid FHIR,
pseudonymised cohorts) and the clinic summary."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from fhir.resources.R4B.bundle import Bundle

from app.auth.models import User
from app.extensions import db
from app.notifications.models import Notification
from app.outbox.models import OutboxMessage
from app.outcomes import adverse, exports, instruments, schedule, services, summary
from app.outcomes.models import OutcomeDue, OutcomeObservation, OutcomeResponse
from app.patients import onboarding
from app.patients import services as patients
from tests.conftest import csrf_from, sign_in_as
from tests.test_prescribing_helpers import acting_as, prepare, sign_new

GAD7_URL = "https://verity.example/fhir/Questionnaire/gad-7"


def _in_care(app, persona) -> None:
    with app.app_context():
        patient = patients.get(persona.patient_id)
        onboarding.intake_submitted(patient, "eligible", [])
        onboarding.identity_verified(patient)


def _gad7_due(app, persona) -> int:
    with app.app_context():
        patient = patients.get(persona.patient_id)
        opened = schedule.make_due(patient)
        return next(d.id for d in opened if d.instrument_url == GAD7_URL)


def _gad7_form(app, scores: list[int]) -> dict[str, str]:
    with app.app_context():
        questionnaire = instruments.parsed(instruments.current("gad-7"))
        scored = [i for i in questionnaire.questions() if i.options and all(o.score is not None for o in i.options)]
        form = {item.link_id: next(o.key for o in item.options if o.score == s) for item, s in zip(scored, scores,
                                                                                                     strict=True)}
        difficulty = next(i for i in questionnaire.questions() if i.link_id.endswith("69722-7"))
        form[difficulty.link_id] = difficulty.options[1].key  # asked once any problem is ticked
        return form


def _post(client, url: str, data: dict, **headers):
    token = csrf_from(client.get("/dashboard").get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token}, headers=headers)


# The schedule ---------------------------------------------------------------------------------

def test_a_patient_in_care_gets_a_baseline_and_is_told_once(app, personas):
    _in_care(app, personas["patient"])
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        opened = schedule.make_due(patient)
        again = schedule.make_due(patient)
        keys = sorted(d.instrument_url.rsplit("/", 1)[1] for d in opened)
        assert keys == ["gad-7", "phq-9", "verity-pain", "verity-sleep"]
        assert {d.timepoint for d in opened} == {"baseline"}
        assert again == []
        notices = db.session.scalars(sa.select(Notification).where(Notification.user_id == patient.user_id,
                                                                   Notification.event == "outcome.due")).all()
        assert len(notices) == 1 and notices[0].link == "/outcomes"
    with app.test_request_context():
        patient = patients.get(personas["patient"].patient_id)
        (step,) = services.checklist_steps(patient)
        assert (step.title, step.order, step.url) == ("Questionnaire due", 80, "/outcomes")


def test_a_patient_not_yet_onboarded_is_asked_nothing(ctx, personas):
    patient = patients.get(personas["patient"].patient_id)
    assert schedule.make_due(patient) == []


def test_follow_ups_count_from_the_first_prescription_and_close_when_the_next_comes(ctx, personas):
    ready = prepare(personas)
    sign_new(ready)
    patient = patients.get(ready.patient_id)
    first = dt.date.today()
    opened = schedule.make_due(patient, today=first)
    assert {d.timepoint for d in opened} == {"baseline"}
    month_one = schedule.make_due(patient, today=first + relativedelta(months=1))
    assert {d.timepoint for d in month_one} == {"m1"}
    assert {d.instrument_url.rsplit("/", 1)[1] for d in month_one} == {"gad-7", "phq-9", "verity-pain", "verity-sleep",
                                                                       "verity-change"}
    statuses = {(d.timepoint, d.status) for d in schedule.dues_of(patient)}
    assert ("baseline", "missed") in statuses  # unanswered when month 1 came
    month_three = schedule.make_due(patient, today=first + relativedelta(months=3, days=2))
    assert {d.timepoint for d in month_three} == {"m3"}
    assert {d.status for d in schedule.dues_of(patient) if d.timepoint == "m1"} == {"missed"}


def test_a_clinicians_schedule_replaces_the_clinics(ctx, personas):
    ready = prepare(personas)
    sign_new(ready)
    patient = patients.get(ready.patient_id)
    doctor = db.session.get(User, ready.clinician_id)
    with acting_as(doctor.id, "clinician"):
        schedule.set_schedule(patient, months=[2], instrument_keys=["gad-7", "not-loaded"], by=doctor)
    opened = schedule.make_due(patient, today=dt.date.today() + relativedelta(months=2))
    assert {(d.timepoint, d.instrument_url.rsplit("/", 1)[1]) for d in opened} == {("m2", "gad-7")}


def test_overdue_questionnaires_show_to_the_care_team_after_two_weeks(ctx, personas):
    ready = prepare(personas)
    patient = patients.get(ready.patient_id)
    schedule.make_due(patient)
    doctor = db.session.get(User, ready.clinician_id)
    assert schedule.overdue(clinician=doctor) == []
    later = schedule.overdue(clinician=doctor, today=dt.date.today() + dt.timedelta(days=15))
    assert len(later) == 4 and all(p.id == patient.id for _, p in later)
    other = db.session.get(User, personas["other_clinician"].user_id)
    assert schedule.overdue(clinician=other, today=dt.date.today() + dt.timedelta(days=15)) == []


# Answering ------------------------------------------------------------------------------------

def test_a_partial_save_is_kept_but_not_scored_until_complete(app, client, personas):
    _in_care(app, personas["patient"])
    due_id = _gad7_due(app, personas["patient"])
    answers = _gad7_form(app, [3, 2, 2, 1, 1, 0, 1])
    sign_in_as(client, personas["patient"])
    page = client.get(f"/outcomes/due/{due_id}")
    assert page.status_code == 200 and "Feeling nervous, anxious or on edge" in page.get_data(as_text=True)
    partial = dict(list(answers.items())[:3])
    response = _post(client, f"/outcomes/due/{due_id}", {**partial, "action": "later"})
    assert response.status_code == 302
    with app.app_context():
        stored = db.session.scalar(sa.select(OutcomeResponse).where(OutcomeResponse.due_id == due_id))
        assert stored.status == "in-progress"
        assert len(json.loads(stored.resource)["item"][0]["item"]) == 3
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutcomeObservation)) == 0
    # Sending with items missing: a clear error per question, still nothing scored, what was typed kept.
    refused = _post(client, f"/outcomes/due/{due_id}", {**partial, "action": "submit"})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "There is a problem" in body and body.count("Select an answer") >= 4
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutcomeObservation)) == 0
    # Out-of-range or foreign values are refused the same way.
    first = next(iter(answers))
    bad = _post(client, f"/outcomes/due/{due_id}", {**answers, first: "LA9999-9", "action": "submit"})
    assert bad.status_code == 400 and "Select one of the options shown" in bad.get_data(as_text=True)
    done = _post(client, f"/outcomes/due/{due_id}", {**answers, "action": "submit"})
    assert done.status_code == 302
    with app.app_context():
        observation = db.session.scalar(sa.select(OutcomeObservation))
        stored = db.session.scalar(sa.select(OutcomeResponse).where(OutcomeResponse.due_id == due_id))
        assert (observation.code, observation.value, observation.band) == ("70274-6", Decimal(10), "moderate")
        assert observation.response_id == stored.id and stored.status == "completed"
        assert db.session.get(OutcomeDue, due_id).status == "completed"
    assert client.get(f"/outcomes/due/{due_id}").status_code == 302  # answered: nothing more to do


def test_phq9_item_9_shows_urgent_help_at_once_and_alerts_the_clinician(app, client, personas):
    _in_care(app, personas["patient"])
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        due = next(d for d in schedule.make_due(patient) if d.instrument_url.endswith("phq-9"))
        questionnaire = instruments.parsed(instruments.current("phq-9"))
        scored = [i for i in questionnaire.questions() if i.options and all(o.score is not None for o in i.options)]
        item9 = scored[8]
        form = {item.link_id: item.options[0].key for item in scored[:8]}
        form[item9.link_id] = item9.options[1].key
        difficulty = next(i for i in questionnaire.questions() if i.link_id.endswith("69722-7"))
        form[difficulty.link_id] = difficulty.options[0].key
    sign_in_as(client, personas["patient"])
    preview = _post(client, f"/outcomes/due/{due.id}/preview", {item9.link_id: item9.options[1].key},
                    **{"HX-Request": "true"})
    assert preview.status_code == 200 and 'id="urgent-help"' in preview.get_data(as_text=True)
    assert _post(client, f"/outcomes/due/{due.id}", {**form, "action": "submit"}).status_code == 302
    with app.app_context():
        stored = db.session.scalar(sa.select(OutcomeResponse).where(OutcomeResponse.due_id == due.id))
        assert stored.urgent is True
        clinician = db.session.get(User, personas["clinician"].user_id)
        alert = db.session.scalar(sa.select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"outcome-urgent:{stored.id}:{clinician.id}"))
        payload = json.loads(alert.payload)
        assert payload["to"] == clinician.email
        assert "PHQ" not in payload["text"] and "harm" not in payload["text"]  # no clinical content


def test_another_patient_cannot_open_or_answer_a_questionnaire(app, client, personas):
    _in_care(app, personas["patient"])
    due_id = _gad7_due(app, personas["patient"])
    sign_in_as(client, personas["other_patient"])
    assert client.get(f"/outcomes/due/{due_id}").status_code == 403
    assert _post(client, f"/outcomes/due/{due_id}", {"action": "submit"}).status_code == 403


# Check-in -------------------------------------------------------------------------------------

def test_the_daily_check_in_records_pain_and_sleep_and_a_second_replaces_the_first(app, client, personas):
    sign_in_as(client, personas["patient"])
    bad = _post(client, "/outcomes/check-in", {"pain": "11"})
    assert bad.status_code == 400 and "Choose your pain from 0 to 10" in bad.get_data(as_text=True)
    assert _post(client, "/outcomes/check-in", {"pain": "6", "sleep": "4", "side_effects": ["dry_mouth", "x"],
                                                "note": "Slept badly"}).status_code == 302
    assert _post(client, "/outcomes/check-in", {"pain": "5"}).status_code == 302
    with app.app_context():
        rows = db.session.scalars(sa.select(OutcomeObservation).where(
            OutcomeObservation.patient_id == personas["patient"].patient_id)).all()
        assert [(o.code, o.value, o.source) for o in rows] == [("pain-today", Decimal(5), "check-in")]


# Adverse events -------------------------------------------------------------------------------

def test_a_serious_event_alerts_the_prescriber_at_once_without_clinical_content(app, client, personas):
    with app.app_context():
        ready = prepare(personas)
        prescription = sign_new(ready)
        product_id = prescription.items[0].product_id
    sign_in_as(client, personas["patient"])
    refused = _post(client, "/outcomes/side-effects", {"description": "", "severity": "severe"})
    assert refused.status_code == 400 and "Describe what happened" in refused.get_data(as_text=True)
    today = dt.date.today()
    response = _post(client, "/outcomes/side-effects", {
        "description": "Fainted and was taken to hospital", "started_day": today.day, "started_month": today.month,
        "started_year": today.year, "severity": "severe", "criteria": ["hospitalisation"], "outcome": "recovering",
        "product_id": str(product_id)})
    assert response.status_code == 302
    with app.app_context():
        doctor = db.session.get(User, personas["clinician"].user_id)
        event = adverse.events_of(patients.get(personas["patient"].patient_id))[0]
        assert event.serious and event.alerted_at is not None and event.dose
        message = db.session.scalar(sa.select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"outcome-ae:{event.id}:{doctor.id}"))
        payload = json.loads(message.payload)
        assert payload["to"] == doctor.email
        assert "Fainted" not in payload["text"] + payload["html"] + payload["subject"]
        card = {f.name: f.value for f in adverse.yellow_card_for(event, by=doctor)}
        assert card["Brand or medicine name"] == "Verdant T22 Flower"
        assert card["Seriousness"] == "Needed a hospital stay (or made one longer)"
        assert card["Initials"] == "AE"


def test_a_mild_side_effect_alerts_no_one(app, personas):
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        user = patients.user_of(patient)
        event = adverse.report(patient, {"description": "Dry mouth", "started_on": dt.date.today(),
                                         "severity": "mild"}, by=user)
        assert not event.serious and event.alerted_at is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key.like("outcome-ae:%"))) == 0


# Exports and the summary ----------------------------------------------------------------------

def _scored_patient(app, persona, scores_by_timepoint: dict[str, int]):
    """GAD-7 answered at each time point (through the demo helper the pages' scoring uses)."""
    from app.outcomes import services as outcome_services

    with app.app_context():
        patient = patients.get(persona.patient_id)
        instruments.ensure_built_in()
        for index, (timepoint, value) in enumerate(scores_by_timepoint.items()):
            at = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=31 * index)
            outcome_services._record_completed(patient, "gad-7", timepoint, value, at)


def test_a_patients_fhir_export_is_a_valid_bundle(app, client, personas):
    _scored_patient(app, personas["patient"], {"baseline": 14, "m1": 9})
    sign_in_as(client, personas["patient"])
    response = client.get("/outcomes/export.json")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    data = json.loads(response.get_data(as_text=True))
    Bundle.model_validate(data)
    kinds = [e["resource"]["resourceType"] for e in data["entry"]]
    assert kinds.count("Observation") == 2 and kinds.count("QuestionnaireResponse") == 2
    observation = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation")
    assert observation["code"]["coding"][0] == {"system": "http://loinc.org", "code": "70274-6",
                                                 "display": "Generalized anxiety disorder 7 item (GAD-7) total score"}
    assert observation["derivedFrom"][0]["reference"].startswith("QuestionnaireResponse/")
    csv_text = client.get("/outcomes/export.csv").get_data(as_text=True)
    assert csv_text.splitlines()[0].startswith("patient,condition,products,date,measure")
    assert len(csv_text.splitlines()) == 3


def test_a_cohort_export_is_pseudonymised_with_stable_pseudonyms(app, client, personas):
    _scored_patient(app, personas["patient"], {"baseline": 14, "m1": 9})
    _scored_patient(app, personas["other_patient"], {"baseline": 12})
    sign_in_as(client, personas["admin"])
    first = client.get("/outcomes/export?format=json").get_data(as_text=True)
    second = client.get("/outcomes/export?format=csv").get_data(as_text=True)
    data = json.loads(first)
    Bundle.model_validate(data)
    with app.app_context():
        alias = exports.pseudonym(personas["patient"].patient_id)
        name = patients.user_of(patients.get(personas["patient"].patient_id)).full_name
    assert alias in first and alias in second
    assert name not in first and name not in second
    assert "QuestionnaireResponse" not in first
    # A clinician's cohort holds their own patients only.
    sign_in_as(client, personas["clinician"])
    mine = client.get("/outcomes/export?format=csv").get_data(as_text=True)
    assert alias in mine
    with app.app_context():
        assert exports.pseudonym(personas["other_patient"].patient_id) not in mine
    bad = client.get("/outcomes/export?date_from=14-03-2026&format=csv")
    assert bad.status_code == 400 and "Enter a date like 2026-03-14" in bad.get_data(as_text=True)


def test_the_summary_gives_the_mean_change_from_baseline_with_counts(app, personas, world):
    _scored_patient(app, personas["patient"], {"baseline": 14, "m1": 10, "m3": 6})
    _scored_patient(app, personas["other_patient"], {"baseline": 10, "m1": 8})
    with app.app_context():
        admin = db.session.get(User, personas["admin"].user_id)
        result = summary.clinic_summary(user=admin)
        assert result.timepoints == ["m1", "m3", "latest"]
        (group,) = result.by_condition
        gad7 = next(r for r in group.rows if r.code == "70274-6")
        assert (gad7.cells["m1"].patients, gad7.cells["m1"].baseline, gad7.cells["m1"].then) == (
            2, Decimal("12.0"), Decimal("9.0"))
        assert gad7.cells["m1"].change == Decimal("-3.0")
        assert (gad7.cells["m3"].patients, gad7.cells["m3"].change) == (1, Decimal("-8.0"))
        assert (gad7.cells["latest"].patients, gad7.cells["latest"].change) == (2, Decimal("-5.0"))
        clinician = db.session.get(User, personas["clinician"].user_id)
        assert summary.clinic_summary(user=clinician).patients == 1


def test_the_clinics_schedule_comes_from_its_settings(ctx, personas):
    ctx.config["OUTCOMES_SCHEDULE_MONTHS"] = "2, 9"
    ctx.config["OUTCOMES_FOLLOW_UP_INSTRUMENTS"] = "verity-pain"
    ready = prepare(personas)
    sign_new(ready)
    patient = patients.get(ready.patient_id)
    assert [p.key for p in schedule.timepoints(patient, today=dt.date.today())] == ["baseline", "m2", "m9"]
    opened = schedule.make_due(patient, today=dt.date.today() + relativedelta(months=2))
    assert {(d.timepoint, d.instrument_url.rsplit("/", 1)[1]) for d in opened} == {("m2", "verity-pain")}


def test_an_admin_loads_a_clinics_own_instrument_and_a_bad_one_is_refused_with_reasons(app, client, personas):
    resource = {
        "resourceType": "Questionnaire", "id": "clinic-fatigue", "url": "https://clinic.example/fhir/Questionnaire/fatigue",
        "version": "1", "title": "Fatigue (0 to 10)", "status": "active",
        "item": [{"linkId": "fatigue", "type": "group", "text": "Fatigue", "item": [
            {"linkId": "fatigue.score", "type": "integer", "required": True, "text": "How tired have you been?",
             "code": [{"system": "https://clinic.example/codes", "code": "fatigue"}],
             "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": 0},
                           {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 10},
                           {"url": "https://verity.example/fhir/StructureDefinition/outcome-score",
                            "valueBoolean": True}]}]}]}
    import io

    sign_in_as(client, personas["admin"])
    token = csrf_from(client.get("/admin/outcome-instruments/upload").get_data(as_text=True))
    broken = json.loads(json.dumps(resource))
    del broken["item"][0]["item"][0]["code"]
    refused = client.post("/admin/outcome-instruments/upload", data={
        "csrf_token": token, "questionnaire": (io.BytesIO(json.dumps(broken).encode()), "fatigue.json")},
        content_type="multipart/form-data")
    assert refused.status_code == 400 and "needs a code" in refused.get_data(as_text=True)
    loaded = client.post("/admin/outcome-instruments/upload", data={
        "csrf_token": token, "questionnaire": (io.BytesIO(json.dumps(resource).encode()), "fatigue.json")},
        content_type="multipart/form-data")
    assert loaded.status_code == 302
    assert "Fatigue (0 to 10)" in client.get("/admin/outcome-instruments").get_data(as_text=True)
    # A clinician can now ask for it, and the patient's answer is scored and charted like the others.
    _in_care(app, personas["patient"])
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        doctor = db.session.get(User, personas["clinician"].user_id)
        with acting_as(doctor.id, "clinician"):
            due_id = schedule.request_extra(patient, "clinic-fatigue", by=doctor).id
    sign_in_as(client, personas["patient"])
    out_of_range = _post(client, f"/outcomes/due/{due_id}", {"fatigue.score": "12", "action": "submit"})
    assert out_of_range.status_code == 400 and "Enter a number between 0 and 10" in out_of_range.get_data(as_text=True)
    assert _post(client, f"/outcomes/due/{due_id}", {"fatigue.score": "6", "action": "submit"}).status_code == 302
    page = client.get("/outcomes").get_data(as_text=True)
    assert 'id="chart-fatigue"' in page
