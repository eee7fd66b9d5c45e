"""A patient's health questions through HTTP: steps, branching with htmx, bad input, resuming, sending."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from app.intake import services
from app.intake.questionnaire import parse
from tests.conftest import audit_actions, csrf_from, sign_in_as

QUESTIONNAIRE = parse(json.loads((services.QUESTIONNAIRE_DIR / "verity-intake.json").read_text()))
STEPS = {step.link_id: number for number, step in enumerate(QUESTIONNAIRE.steps, 1)}
PSYCHIATRIC_YES = {
    "psychiatric.history": True, "psychiatric.details": "Depression since 2015, treated with sertraline.",
    "psychosis.diagnosed": False, "psychosis.experiences": False, "psychosis.cannabis_reaction": False,
    "psychosis.family": "no",
    **{f"phq9.{c}": "LA6569-3" for c in ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2",
                                         "44252-5", "44253-3")},
    "phq9.44260-8": "LA6568-5", "phq9.69722-7": "LA6573-5",
    **{f"gad7.{c}": "LA6568-5" for c in ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8",
                                         "69736-7")},
}


# Helpers (also used by test_intake_staff.py) --------------------------------------------------

def fields(number: int, answers: dict[str, Any]) -> dict[str, list[str]]:
    """The form fields of one step for answers written the short way (see answers.simple_answers)."""
    data: dict[str, list[str]] = {}
    for item in QUESTIONNAIRE.steps[number - 1].walk():
        if not item.is_question or item.link_id not in answers:
            continue
        given = answers[item.link_id]
        values = given if isinstance(given, list) else [given]
        if item.type == "boolean":
            data[item.link_id] = ["true" if values[0] else "false"]
        elif item.type == "date":
            for part, value in zip(("year", "month", "day"), str(values[0]).split("-"), strict=False):
                data[f"{item.link_id}.{part}"] = [value]
        elif item.type in ("choice", "open-choice"):
            data[item.link_id] = [str(v) for v in values if item.option(str(v))]
            own = [str(v) for v in values if not item.option(str(v))]
            if own:
                data[f"{item.link_id}.other"] = own[:1]
        else:
            data[item.link_id] = [str(values[0])]
    return data


def questionnaire_id(html: str) -> str:
    return re.search(r'name="questionnaire" value="(\d+)"', html).group(1)


def post_step(client, number: int, data: dict[str, list[str]], *, action: str = "continue", page: str | None = None,
              extra: dict[str, Any] | None = None, path: str = ""):
    page = page if page is not None else client.get(f"/intake/step/{number}").get_data(as_text=True)
    form = {"csrf_token": csrf_from(page), "questionnaire": questionnaire_id(page), "action": action, **data,
            **(extra or {})}
    return client.post(f"/intake/step/{number}{path}", data=form, headers={} if not path else {"HX-Request": "true"})


def fill(client, answers: dict[str, Any], *, stop_before: int | None = None) -> str:
    """Answer step after step as the redirects lead; return where it stopped (a step or the check page)."""
    start = client.get("/intake")
    url = "/intake/step/1" if start.status_code == 200 else start.headers["Location"]
    while found := re.search(r"/intake/step/(\d+)", url):
        number = int(found.group(1))
        if stop_before is not None and number >= stop_before:
            break
        response = post_step(client, number, fields(number, answers))
        assert response.status_code == 302, response.get_data(as_text=True)
        url = response.headers["Location"]
    return url


def submit(client):
    page = client.get("/intake/check").get_data(as_text=True)
    return client.post("/intake/submit", data={"csrf_token": csrf_from(page), "questionnaire": questionnaire_id(page)})


def stored(app, persona) -> dict[str, Any] | None:
    with app.app_context():
        from app.patients import services as patients

        response = services.response_for(patients.get(persona.patient_id))
        return json.loads(response.resource) if response else None


def link_ids(resource: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def visit(items):
        for item in items or []:
            found.add(item["linkId"])
            visit(item.get("item"))

    visit(resource.get("item"))
    return found


def journey_state(app, persona) -> str:
    with app.app_context():
        from app.patients import services as patients

        return patients.get(persona.patient_id).journey_state


@pytest.fixture
def patient(world, client):
    person = world.patient("alice")
    sign_in_as(client, person)
    return person


# Branching ------------------------------------------------------------------------------------

def test_psychiatric_history_reveals_the_screens_and_no_removes_them_from_the_response(app, client, patient):
    stopped = fill(client, services.DEMO_ANSWERS, stop_before=STEPS["psychiatric"])
    assert stopped == f"/intake/step/{STEPS['psychiatric']}"
    page = client.get(f"/intake/step/{STEPS['psychiatric']}").get_data(as_text=True)
    assert "Step 5 of 7" in page  # without a history, the three screens are not counted
    response = post_step(client, STEPS["psychiatric"], fields(STEPS["psychiatric"], PSYCHIATRIC_YES))
    assert response.headers["Location"] == f"/intake/step/{STEPS['psychosis']}"
    psychosis = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Step 6 of 10" in psychosis and "Psychosis" in psychosis
    for group in ("psychosis", "phq9", "gad7"):
        reply = post_step(client, STEPS[group], fields(STEPS[group], PSYCHIATRIC_YES))
        assert reply.status_code == 302, reply.get_data(as_text=True)
    phq9 = client.get(f"/intake/step/{STEPS['phq9']}").get_data(as_text=True)
    assert "Little interest or pleasure in doing things" in phq9 and "Nearly every day" in phq9
    saved = link_ids(stored(app, patient))
    assert {"psychosis.family", "phq9.44250-9", "phq9.44261-6", "gad7.69725-0", "gad7.70274-6"} <= saved

    # A different answer hides the screens, and their answers leave the stored response.
    reply = post_step(client, STEPS["psychiatric"], {"psychiatric.history": ["false"]})
    assert reply.headers["Location"] == f"/intake/step/{STEPS['pregnancy']}"
    saved = link_ids(stored(app, patient))
    assert not {i for i in saved if i.split(".")[0] in ("psychosis", "phq9", "gad7")}
    assert "psychiatric.details" not in saved and "psychiatric.history" in saved
    assert client.get(f"/intake/step/{STEPS['phq9']}").headers["Location"] == f"/intake/step/{STEPS['pregnancy']}"

    assert fill(client, services.DEMO_ANSWERS) == "/intake/check"
    assert submit(client).headers["Location"] == "/intake/sent"
    resource = stored(app, patient)
    QuestionnaireResponse.model_validate(resource)
    assert resource["status"] == "completed"
    assert not any(i.startswith(("phq9", "gad7", "psychosis")) for i in link_ids(resource))


def test_an_answer_that_reveals_questions_re_renders_the_step_and_saves(app, client, patient):
    number = STEPS["medication"]
    page = client.get(f"/intake/step/{number}").get_data(as_text=True)
    # Only the questions that others depend on ask the server to re-render.
    assert re.search(r'id="q-medication-current--group" hx-post="/intake/step/3/preview" hx-trigger="change"', page)
    assert 'id="q-medication-list--group" hx-post' not in page
    assert 'name="medication.list"' not in page
    revealed = post_step(client, number, {"medication.current": ["true"]}, path="/preview", page=page)
    assert revealed.status_code == 200
    fragment = revealed.get_data(as_text=True)
    assert fragment.lstrip().startswith("<div id=\"intake-fields\">") and "<html" not in fragment
    assert 'name="medication.list"' in fragment and "There is a problem" not in fragment  # no nagging yet
    assert stored(app, patient)["item"][0]["item"][0] == {
        "linkId": "medication.current", "text": "Do you take any medicines now?", "answer": [{"valueBoolean": True}]}
    hidden = post_step(client, number, {"medication.current": ["false"], "medication.list": ["Aspirin"]},
                       path="/preview", page=page)
    assert 'name="medication.list"' not in hidden.get_data(as_text=True)
    assert "medication.list" not in link_ids(stored(app, patient))


def test_the_progress_count_follows_the_branching_on_the_same_page(client, patient):
    fill(client, services.DEMO_ANSWERS, stop_before=STEPS["psychiatric"])
    reply = post_step(client, STEPS["psychiatric"], {"psychiatric.history": ["true"]}, path="/preview")
    fragment = reply.get_data(as_text=True)
    assert 'id="intake-progress" hx-swap-oob="true">Step 5 of 10' in fragment
    assert 'name="psychiatric.details"' in fragment


def test_preview_without_htmx_falls_back_to_the_step_page(client, patient):
    page = client.get("/intake/step/3").get_data(as_text=True)
    reply = client.post("/intake/step/3/preview", data={"csrf_token": csrf_from(page), "questionnaire":
                                                        questionnaire_id(page), "medication.current": "true"})
    assert reply.status_code == 302 and reply.headers["Location"] == "/intake/step/3"


# Bad input ------------------------------------------------------------------------------------

def test_a_wrong_type_is_a_field_error_that_keeps_what_was_typed(app, client, patient):
    fill(client, services.DEMO_ANSWERS, stop_before=STEPS["substances"])
    number = STEPS["substances"]
    answers = fields(number, services.DEMO_ANSWERS) | {"substances.alcohol_units": ["lots"]}
    reply = post_step(client, number, answers)
    assert reply.status_code == 400
    page = reply.get_data(as_text=True)
    assert "There is a problem" in page and 'href="#q-substances-alcohol_units"' in page
    assert "Enter a whole number, like 12" in page
    assert 'value="lots"' in page  # what was typed is shown again
    saved = stored(app, patient)
    assert "substances.alcohol_units" not in link_ids(saved)
    assert "substances.tobacco" in link_ids(saved)  # the step's valid answers are kept
    assert "condition.main" in link_ids(saved)  # and earlier steps are untouched
    reply = post_step(client, number, answers | {"substances.alcohol_units": ["500"]})
    assert "Enter a number between 0 and 300" in reply.get_data(as_text=True)
    reply = post_step(client, number, answers | {"substances.alcohol_units": ["4"], "substances.cannabis": ["weekly"],
                                                 "substances.cannabis_grams": ["about 3"]})
    assert reply.status_code == 400 and "Enter a number, like 3.5" in reply.get_data(as_text=True)


def test_a_skipped_required_question_is_a_field_error(app, client, patient):
    answers = fields(1, services.DEMO_ANSWERS)
    del answers["condition.diagnosed"]
    reply = post_step(client, 1, answers)
    assert reply.status_code == 400
    page = reply.get_data(as_text=True)
    assert '<a href="#q-condition-diagnosed">Select an answer: Has a doctor diagnosed this condition?</a>' in page
    assert 'id="q-condition-diagnosed--error"' in page
    assert "condition.impact" in link_ids(stored(app, patient))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("condition.diagnosed", "nonsense", "Select one of the options shown"),
    ("condition.diagnosis_date.month", "13", "Enter a real date"),
    ("condition.impact", "x" * 2001, "Answer must be 2000 characters or fewer"),
])
def test_tampered_or_impossible_answers_are_field_errors(client, patient, field, value, message):
    reply = post_step(client, 1, fields(1, services.DEMO_ANSWERS) | {field: [value]})
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)


def test_a_boolean_with_a_made_up_value_is_refused(client, patient):
    fill(client, services.DEMO_ANSWERS, stop_before=STEPS["medication"])
    reply = post_step(client, STEPS["medication"], fields(STEPS["medication"], services.DEMO_ANSWERS)
                      | {"medication.allergies": ["maybe"]})
    assert reply.status_code == 400 and "Select yes or no" in reply.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/intake/step/99", "/intake/step/0", "/intake/step/abc", "/intake/step/-1"])
def test_a_tampered_step_number_is_a_clear_404(client, patient, url):
    reply = client.get(url)
    assert reply.status_code == 404
    assert "There is no step" in reply.get_data(as_text=True) or "Page not found" in reply.get_data(as_text=True)


def test_posting_to_a_step_that_does_not_exist_is_a_404_and_saves_nothing(app, client, patient):
    page = client.get("/intake/step/1").get_data(as_text=True)
    reply = client.post("/intake/step/99",
                        data={"csrf_token": csrf_from(page), "questionnaire": questionnaire_id(page)})
    assert reply.status_code == 404 and "There is no step 99" in reply.get_data(as_text=True)
    assert stored(app, patient) is None


@pytest.mark.parametrize("tampered", ["999999", "abc", ""])
def test_a_tampered_questionnaire_id_is_a_clear_400_and_saves_nothing(app, client, patient, tampered):
    page = client.get("/intake/step/1").get_data(as_text=True)
    form = {"csrf_token": csrf_from(page), "questionnaire": tampered, **fields(1, services.DEMO_ANSWERS)}
    reply = client.post("/intake/step/1", data=form)
    assert reply.status_code == 400
    assert "questions" in reply.get_data(as_text=True)
    assert stored(app, patient) is None
    preview = client.post("/intake/step/1/preview", data=form, headers={"HX-Request": "true"})
    assert preview.status_code == 400


# Saving and resuming -------------------------------------------------------------------------

def test_the_first_save_starts_the_journey(app, client, patient):
    assert journey_state(app, patient) == "registered"
    post_step(client, 1, fields(1, services.DEMO_ANSWERS))
    assert journey_state(app, patient) == "intake_in_progress"
    assert "journey.intake_in_progress" in audit_actions(app)


def test_a_patient_continues_on_another_device_at_the_saved_step(app, client, patient):
    fill(client, services.DEMO_ANSWERS, stop_before=3)
    phone = app.test_client()
    sign_in_as(phone, patient)
    resume = phone.get("/intake")
    assert resume.status_code == 302 and resume.headers["Location"] == "/intake/step/3"
    first = phone.get("/intake/step/1").get_data(as_text=True)
    assert re.search(r'value="specialist" checked', first)  # the laptop's answers are there
    assert "Constant pain in my lower back" in first


def test_save_and_come_back_later_keeps_answers_without_asking_for_the_rest(app, client, patient):
    reply = post_step(client, 1, {"condition.main": ["migraine"]}, action="later")
    assert reply.status_code == 302 and reply.headers["Location"] == "/dashboard"
    assert link_ids(stored(app, patient)) == {"condition", "condition.main"}
    assert client.get("/intake").headers["Location"] == "/intake/step/1"


def test_changing_an_answer_from_the_summary_returns_to_it(app, client, patient):
    fill(client, services.DEMO_ANSWERS)
    page = client.get("/intake/check").get_data(as_text=True)
    assert 'href="/intake/step/9?return=check#q-pregnancy-status--group"' in page
    reply = post_step(client, STEPS["pregnancy"], {"pregnancy.status": ["planning"]}, extra={"return": "check"})
    assert reply.headers["Location"] == "/intake/check"
    # A change that opens new required questions leads to them first.
    reply = post_step(client, STEPS["psychiatric"], {"psychiatric.history": ["true"]}, extra={"return": "check"})
    assert reply.status_code == 400  # psychiatric.details is now required on this page
    reply = post_step(client, STEPS["psychiatric"], fields(STEPS["psychiatric"], PSYCHIATRIC_YES),
                      extra={"return": "check"})
    assert reply.headers["Location"] == f"/intake/step/{STEPS['psychosis']}?return=check"


# Sending ---------------------------------------------------------------------------------------

def test_sending_an_incomplete_intake_lists_what_is_missing(client, patient):
    fill(client, services.DEMO_ANSWERS, stop_before=3)
    reply = submit(client)
    assert reply.status_code == 400
    page = reply.get_data(as_text=True)
    assert "Some questions still need an answer." in page
    assert 'href="/intake/step/3?return=check#q-medication-current--group"' in page


def test_sending_records_the_outcome_moves_the_journey_and_freezes_the_answers(app, client, patient):
    assert fill(client, services.DEMO_ANSWERS) == "/intake/check"
    check = client.get("/intake/check").get_data(as_text=True)
    assert "Check your answers before sending them" in check and "Graphic designer" in check
    sent = client.get(submit(client).headers["Location"]).get_data(as_text=True)
    assert "Health questions sent" in sent and "book a consultation" in sent
    assert journey_state(app, patient) == "intake_submitted"
    with app.app_context():
        from app.patients import services as patients

        record = patients.get(patient.patient_id)
        assert record.eligibility_outcome == "eligible"
        response = services.response_for(record)
        assert (response.status, response.outcome) == ("completed", "eligible")
    before = stored(app, patient)
    reply = post_step(client, 1, {"condition.main": ["migraine"]}, page=check)
    assert reply.status_code == 302 and reply.headers["Location"] == "/intake/check"
    assert stored(app, patient) == before
    readonly = client.get("/intake/check").get_data(as_text=True)
    assert "cannot be changed now" in readonly and "?return=check" not in readonly
    assert client.get("/intake/step/2").headers["Location"] == "/intake/check"


def test_a_not_eligible_outcome_says_why_and_what_to_do_next(client, patient):
    fill(client, {**services.DEMO_ANSWERS, "pregnancy.status": "breastfeeding"})
    sent = client.get(submit(client).headers["Location"]).get_data(as_text=True)
    assert "not suitable for you at the moment" in sent
    assert "not prescribed during pregnancy or while breastfeeding" in sent
    assert "What you can do:" in sent and "midwife" in sent


def test_thoughts_of_self_harm_show_urgent_help_numbers_at_once(app, client, patient):
    answers = {**services.DEMO_ANSWERS, **PSYCHIATRIC_YES, "phq9.44260-8": "LA6569-3"}
    fill(client, answers, stop_before=STEPS["phq9"])
    page = client.get(f"/intake/step/{STEPS['phq9']}").get_data(as_text=True)
    assert "116 123" not in page
    assert 'id="q-phq9-44260-8--group" hx-post' in page  # question 9 is watched
    live = post_step(client, STEPS["phq9"], fields(STEPS["phq9"], answers), path="/preview", page=page)
    assert "Samaritans free on 116 123" in live.get_data(as_text=True)
    fill(client, answers)
    sent = client.get(submit(client).headers["Location"]).get_data(as_text=True)
    assert "116 123" in sent and "NHS 111" in sent and "999" in sent
    assert "A clinician will read your answers" in sent


def test_the_checklist_step_follows_the_patient(app, client, patient):
    def step():
        with app.test_request_context():
            from app.patients import services as patients

            return services.checklist_steps(patients.get(patient.patient_id))[0]

    first = step()
    assert (first.status.name, first.order, first.url) == ("TODO", 20, "/intake")
    fill(client, services.DEMO_ANSWERS, stop_before=3)
    assert (step().status.name, step().hint) == ("IN_PROGRESS", "Step 3 of 7.")
    fill(client, services.DEMO_ANSWERS)
    submit(client)
    assert step().status.name == "DONE" and step().url is None


def test_staff_cannot_reach_the_patient_pages(app, personas):
    staff = app.test_client()
    sign_in_as(staff, personas["clinician"])
    assert staff.get("/intake").status_code == 403
    with app.app_context():
        from app.audit.models import AuditEvent
        from app.extensions import db

        assert db.session.scalar(sa.select(AuditEvent.action).order_by(AuditEvent.seq.desc())) == "access.denied"


def test_two_devices_making_the_first_save_at_once_both_land(app, patient, monkeypatch):
    """The second insert of a first save meets the unique constraint; the save then merges into the row."""
    with app.test_request_context():
        from app.patients import services as patients

        record = patients.get(patient.patient_id)
        version = str(services.open_intake(record).version.id)
        services.save_step(record, 1, {"condition.main": ["migraine"]}, questionnaire_id=version, complete=False)
        real = services._locked_response
        calls = []

        def stale_once(intake):
            calls.append(intake)
            return None if len(calls) == 1 else real(intake)  # the other device's row is not seen yet

        monkeypatch.setattr(services, "_locked_response", stale_once)
        result = services.save_step(record, 1, {"condition.impact": ["Pain"]}, questionnaire_id=version,
                                    complete=False)
        assert len(calls) == 2 and not result.errors
        answers = services.open_intake(record).answers
        assert answers["condition.impact"] == ["Pain"]
