"""The intake: questionnaire versions, a patient's answers step by step, eligibility, clinicians' decisions.

Everything that writes goes through here, inside `transaction()`, with its audit entry. Answers
are kept as a FHIR QuestionnaireResponse; every save merges one step into it, removes the answers
of questions the branching has disabled, and never touches what other steps hold.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import url_for

from app import policy
from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.intake import answers as answer_forms
from app.intake import engine, fhir, rules
from app.intake.answers import FieldError, FormData
from app.intake.engine import Answers
from app.intake.models import IntakeDecision, IntakeResponse, QuestionnaireVersion
from app.intake.questionnaire import Item, Questionnaire, QuestionnaireError, parse
from app.patients import journey, onboarding
from app.patients import services as patients
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient

HERE = Path(__file__).resolve().parent
QUESTIONNAIRE_DIR = HERE / "questionnaires"
RULES_DIR = HERE / "rules"
DEFAULT_FILES = (QUESTIONNAIRE_DIR / "verity-intake.json",)
#: The questionnaire every patient's intake uses (its newest active version).
INTAKE_URL = "https://verity.example/fhir/Questionnaire/verity-intake"
MAX_UPLOAD_BYTES = 1024 * 1024
MAX_REASON = 2000
S = journey.JourneyState


# Errors -------------------------------------------------------------------------------------

class IntakeError(ValueError):
    """A refusal with a message fit to show the person, and the HTTP status that goes with it."""

    status = 400


class UnknownStep(IntakeError):
    status = 404


class WrongQuestionnaire(IntakeError):
    status = 400


class StepNotAvailable(IntakeError):
    """The step exists but the answers so far skip it (e.g. the PHQ-9 without a mental health history)."""

    status = 409


class AlreadySubmitted(IntakeError):
    status = 409


class IncompleteIntake(IntakeError):
    def __init__(self, message: str, items: list[Item]):
        super().__init__(message)
        self.items = items


class NoQuestionnaire(IntakeError):
    status = 503


class LoadError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class DecisionError(ValueError):
    def __init__(self, message: str, field: str = "reason"):
        super().__init__(message)
        self.field = field


# Questionnaire versions ---------------------------------------------------------------------

def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_json_default)


@dataclass(frozen=True)
class Definition:
    """A stored version, read: the questionnaire and its rules."""

    version_id: int
    questionnaire: Questionnaire
    rules: list[rules.Rule]


_definitions: dict[tuple[int, str], Definition] = {}


def definition(version: QuestionnaireVersion) -> Definition:
    """The parsed questionnaire and rules of a version (parsed once per process and version)."""
    key = (version.id, version.digest)
    found = _definitions.get(key)
    if found is None:
        questionnaire = parse(json.loads(version.resource))
        found = Definition(version.id, questionnaire, rules.parse(json.loads(version.rules), questionnaire))
        _definitions[key] = found
    return found


def check(resource: Any, rules_data: Any) -> tuple[Questionnaire, list[rules.Rule]]:
    """Everything that must hold before a questionnaire version is stored; LoadError lists what fails."""
    problems = fhir.questionnaire_problems(resource)
    if problems:
        raise LoadError([f"Not a valid FHIR {fhir.FHIR_RELEASE} Questionnaire: {p}" for p in problems])
    try:
        questionnaire = parse(resource)
    except QuestionnaireError as exc:
        raise LoadError(exc.problems) from exc
    try:
        ruleset = rules.parse(rules_data, questionnaire)
    except rules.RulesError as exc:
        raise LoadError([f"Eligibility rules: {p}" for p in exc.problems]) from exc
    return questionnaire, ruleset


@dataclass(frozen=True)
class LoadResult:
    version: QuestionnaireVersion
    created: bool


def _latest_rules(url: str) -> Any | None:
    rules_text = db.session.scalar(sa.select(QuestionnaireVersion.rules).where(QuestionnaireVersion.url == url)
                                   .order_by(QuestionnaireVersion.id.desc()).limit(1))
    return json.loads(rules_text) if rules_text else None


def load(resource: Any, rules_data: Any | None = None, *, loaded_by: User | None = None) -> LoadResult:
    """Store one questionnaire version with its rules. Loading the same url and version again with
    the same content changes nothing; with different content it is refused. Without rules, the rules
    of the newest version of the same questionnaire are used, if they still fit it."""
    return load_many([(resource, rules_data)], loaded_by=loaded_by)[0]


def load_many(pairs: list[tuple[Any, Any | None]], *, loaded_by: User | None = None) -> list[LoadResult]:
    """Check everything first, then store it all in one transaction: nothing is half-loaded."""
    checked = []
    problems: list[str] = []
    for resource, rules_data in pairs:
        url = resource.get("url") if isinstance(resource, dict) else None
        if rules_data is None and url:
            rules_data = _latest_rules(url)
            if rules_data is None:
                problems.append(f"{url}: no eligibility rules were given, and no earlier version has any.")
                continue
        try:
            questionnaire, _ = check(resource, rules_data)
        except LoadError as exc:
            problems.extend(exc.problems)
            continue
        checked.append((questionnaire, resource, rules_data, hashlib.sha256(
            (_canonical(resource) + "\n" + _canonical(rules_data)).encode()).hexdigest()))
    if problems:
        raise LoadError(problems)
    results = []
    with transaction() as session:
        for questionnaire, resource, rules_data, digest in checked:
            existing = session.scalar(sa.select(QuestionnaireVersion).where(
                QuestionnaireVersion.url == questionnaire.url, QuestionnaireVersion.version == questionnaire.version))
            if existing is not None:
                if existing.digest != digest:
                    raise LoadError([f"Version {questionnaire.version} of {questionnaire.url} is already loaded with "
                                     "different content. Give the changed questionnaire a new version number."])
                results.append(LoadResult(existing, False))
                continue
            version = QuestionnaireVersion(
                url=questionnaire.url, version=questionnaire.version, status=questionnaire.status,
                title=(questionnaire.title or questionnaire.url)[:200], resource=_dump(resource),
                rules=_dump(rules_data), digest=digest, loaded_by_id=loaded_by.id if loaded_by else None)
            session.add(version)
            session.flush()
            audit.record("intake.questionnaire_loaded", subject=("questionnaire", version.id),
                         detail={"url": version.url, "version": version.version, "status": version.status})
            results.append(LoadResult(version, True))
    return results


def rules_path_for(path: Path) -> Path:
    """Where a questionnaire file's rules live: rules/<name>.rules.json next to questionnaires/."""
    return path.resolve().parent.parent / "rules" / f"{path.stem}.rules.json"


def read_json(data: bytes | str, name: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError([f"{name} is not valid JSON: {exc}"]) from exc


def load_files(paths: list[Path]) -> list[LoadResult]:
    pairs = []
    for path in paths:
        try:
            resource = read_json(path.read_bytes(), path.name)
        except OSError as exc:
            raise LoadError([f"Cannot read {path}: {exc.strerror}"]) from exc
        rules_file = rules_path_for(path)
        rules_data = read_json(rules_file.read_bytes(), rules_file.name) if rules_file.exists() else None
        pairs.append((resource, rules_data))
    return load_many(pairs)


def load_default_questionnaires() -> list[LoadResult]:
    """The clinic's default intake (idempotent): for the demo loader and first set-up."""
    return load_files(list(DEFAULT_FILES))


def versions() -> list[QuestionnaireVersion]:
    return list(db.session.scalars(sa.select(QuestionnaireVersion)
                                   .order_by(QuestionnaireVersion.url, QuestionnaireVersion.id.desc())))


def get_version(version_id: int) -> QuestionnaireVersion | None:
    return db.session.get(QuestionnaireVersion, version_id)


def current_version(url: str = INTAKE_URL) -> QuestionnaireVersion | None:
    """The version new intakes start on: the newest active one."""
    return db.session.scalar(sa.select(QuestionnaireVersion)
                             .where(QuestionnaireVersion.url == url, QuestionnaireVersion.status == "active")
                             .order_by(QuestionnaireVersion.id.desc()).limit(1))


# A patient's intake ------------------------------------------------------------------------

def _answers_of(response: IntakeResponse | None, questionnaire: Questionnaire) -> Answers:
    if response is None:
        return {}
    resource = json.loads(response.resource, parse_float=Decimal)
    return answer_forms.answers_from_items(questionnaire, resource.get("item") or [])


@dataclass
class Intake:
    """A patient's intake as the pages see it: the version, the answers so far and the steps."""

    patient: Patient
    version: QuestionnaireVersion
    definition: Definition
    response: IntakeResponse | None
    answers: Answers = field(default_factory=dict)

    @property
    def questionnaire(self) -> Questionnaire:
        return self.definition.questionnaire

    @property
    def submitted(self) -> bool:
        return self.response is not None and self.response.status == "completed"

    @cached_property
    def _evaluation(self) -> engine.Evaluation:
        return engine.Evaluation(self.questionnaire, self.answers)

    def step(self, number: int) -> Item:
        if not 1 <= number <= len(self.questionnaire.steps):
            raise UnknownStep(f"There is no step {number} in your health questions.")
        return self.questionnaire.steps[number - 1]

    def enabled_steps(self) -> list[int]:
        return [n for n, step in enumerate(self.questionnaire.steps, 1) if self._evaluation.enabled(step)]

    def is_enabled(self, item: Item) -> bool:
        return self._evaluation.enabled(item)

    def position(self, number: int) -> tuple[int, int]:
        """("Step n of m") counting only the steps these answers lead through."""
        steps = self.enabled_steps()
        shown = sum(1 for n in steps if n <= number)
        return max(shown, 1), len(steps)

    def next_step(self, after: int) -> int | None:
        return next((n for n in self.enabled_steps() if n > after), None)

    def previous_step(self, before: int) -> int | None:
        return next((n for n in reversed(self.enabled_steps()) if n < before), None)

    def incomplete_steps(self) -> list[int]:
        """Enabled steps with a required question still unanswered."""
        return sorted({self.questionnaire.step_of(item)
                       for item in answer_forms.missing(self.questionnaire, self.answers)})

    def resume_step(self) -> int | None:
        """Where the patient carries on: the furthest step they reached, or an earlier one that a
        changed answer opened up and is not done yet. None: every step is done (check your answers)."""
        current = self.response.current_step if self.response else 1
        behind = [n for n in self.incomplete_steps() if n < current]
        if behind:
            return behind[0]
        return next((n for n in self.enabled_steps() if n >= current), None)

    def urgent_help(self) -> bool:
        """Whether the answers so far call for urgent-help numbers, live while the patient answers."""
        return "urgent_help" in rules.signposts(self.definition.rules, self.answers)


def _current_or_default() -> QuestionnaireVersion | None:
    """The current intake version; on a fresh installation, the clinic's default intake, loaded now."""
    version = current_version()
    if version is None:
        try:
            load_default_questionnaires()
        except sa.exc.IntegrityError:
            db.session.rollback()  # loaded by a concurrent request a moment ago
        version = current_version()
    return version


def response_for(patient: Patient) -> IntakeResponse | None:
    """The patient's latest intake response."""
    return db.session.scalar(sa.select(IntakeResponse).where(IntakeResponse.patient_id == patient.id)
                             .order_by(IntakeResponse.id.desc()).limit(1))


def get_response(response_id: int) -> IntakeResponse | None:
    return db.session.get(IntakeResponse, response_id)


def open_intake(patient: Patient) -> Intake:
    response = response_for(patient)
    version = response.questionnaire if response is not None else _current_or_default()
    if version is None:
        raise NoQuestionnaire("The health questions are not available yet. Please try again later.")
    found = definition(version)
    return Intake(patient, version, found, response, _answers_of(response, found.questionnaire))


def _check_questionnaire_id(intake: Intake, questionnaire_id: str | None) -> None:
    if not questionnaire_id or not questionnaire_id.isdigit():
        raise WrongQuestionnaire("The form was missing which questions it belongs to. Go back to your health "
                                 "questions and try again.")
    if int(questionnaire_id) != intake.version.id:
        raise WrongQuestionnaire("These answers are for a different set of questions from the ones you are "
                                 "answering. Go back to your health questions: your saved answers are kept.")


def _resource(intake: Intake, response: IntakeResponse, answers: Answers, status: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": str(response.id),
        "questionnaire": f"{intake.version.url}|{intake.version.version}",
        "status": status,
        "subject": {"reference": f"Patient/{intake.patient.id}"},
        "author": {"reference": f"Patient/{intake.patient.id}"},
        "authored": utcnow().isoformat(timespec="seconds"),
    }
    items = answer_forms.response_items(intake.questionnaire, answers)
    if items:
        resource["item"] = items
    problems = fhir.response_problems(json.loads(_dump(resource)))
    if problems:  # the engine built it: a failure here is a bug, never the patient's input
        raise RuntimeError(f"built an invalid QuestionnaireResponse: {problems}")
    return resource


def _locked_response(intake: Intake) -> IntakeResponse | None:
    """The response row, read afresh and locked for this write (another device may have saved since)."""
    return db.session.scalar(sa.select(IntakeResponse).where(IntakeResponse.patient_id == intake.patient.id,
                                                             IntakeResponse.questionnaire_id == intake.version.id)
                             .with_for_update())


@dataclass
class SaveResult:
    errors: list[FieldError]
    #: The step to go to next (None: every step is done, show the check-your-answers page).
    next_step: int | None
    intake: Intake


def save_step(patient: Patient, number: int, form: FormData, *, questionnaire_id: str | None,
              complete: bool) -> SaveResult:
    """Save one step's answers. `complete` (Save and continue) also requires its required questions
    and moves the patient on; otherwise (autosave, Save and come back later) whatever is valid is kept.

    Badly answered questions keep their previous answer and come back as errors; the rest is saved.
    """
    try:
        return _save_step(patient, number, form, questionnaire_id=questionnaire_id, complete=complete)
    except sa.exc.IntegrityError:
        # Two devices made the first save at the same moment: the other one created the response,
        # so merge into it.
        db.session.rollback()
        return _save_step(patient, number, form, questionnaire_id=questionnaire_id, complete=complete)


def _save_step(patient: Patient, number: int, form: FormData, *, questionnaire_id: str | None,
               complete: bool) -> SaveResult:
    intake = open_intake(patient)
    _check_questionnaire_id(intake, questionnaire_id)
    if intake.submitted:
        raise AlreadySubmitted("You have already sent your health questions, so they cannot be changed. "
                               "Contact the clinic if something has changed.")
    step = intake.step(number)
    if not intake.is_enabled(step):
        raise StepNotAvailable("Your answers mean this part of the questions does not apply to you.")
    with transaction() as session:
        response = _locked_response(intake)
        if response is not None and response.status == "completed":  # sent from another device meanwhile
            raise AlreadySubmitted("You have already sent your health questions, so they cannot be changed.")
        saved = _answers_of(response, intake.questionnaire)
        result = answer_forms.read_step(intake.questionnaire, step, form, saved, check_required=complete)
        first_save = response is None
        if response is None:
            response = IntakeResponse(patient_id=patient.id, questionnaire_id=intake.version.id, resource="{}")
            session.add(response)
            session.flush()
        intake.response, intake.answers = response, result.answers
        intake.__dict__.pop("_evaluation", None)
        next_step = intake.next_step(number) if result.ok and complete else number
        reached = (next_step or len(intake.questionnaire.steps) + 1) if result.ok and complete else number
        response.current_step = max(response.current_step or 1, reached)
        response.resource = _dump(_resource(intake, response, result.answers, "in-progress"))
        response.updated_at = utcnow()
        audit.record("intake.saved", subject=("intake_response", response.id), patient_id=patient.id,
                     detail={"step": number, "complete": complete, "errors": len(result.errors)})
        if first_save:
            onboarding.intake_started(patient)
    return SaveResult(result.errors, next_step if result.ok and complete else number, intake)


def submit(patient: Patient, *, questionnaire_id: str | None) -> rules.Eligibility:
    """Send the intake: every required question answered, eligibility worked out, answers frozen."""
    intake = open_intake(patient)
    _check_questionnaire_id(intake, questionnaire_id)
    if intake.response is None:
        raise IntakeError("You have not answered any health questions yet.")
    if intake.submitted:
        raise AlreadySubmitted("You have already sent your health questions.")
    with transaction():
        response = _locked_response(intake)
        if response is None or response.status == "completed":  # sent from another device meanwhile
            raise AlreadySubmitted("You have already sent your health questions.")
        answers = engine.settle(intake.questionnaire, _answers_of(response, intake.questionnaire))
        gaps = answer_forms.missing(intake.questionnaire, answers)
        if gaps:
            raise IncompleteIntake("Some questions still need an answer.", gaps)
        eligibility = rules.evaluate(intake.definition.rules, answers)
        response.status = "completed"
        response.submitted_at = response.updated_at = utcnow()
        response.outcome = eligibility.outcome
        response.findings = _dump([f.as_json() for f in eligibility.findings])
        response.urgent_help = eligibility.urgent_help
        response.current_step = len(intake.questionnaire.steps) + 1
        intake.response, intake.answers = response, answers
        response.resource = _dump(_resource(intake, response, answers, "completed"))
        audit.record("intake.submitted", subject=("intake_response", response.id), patient_id=patient.id,
                     detail={"outcome": eligibility.outcome, "rules": [f.rule for f in eligibility.findings]})
        onboarding.intake_submitted(patient, eligibility.outcome, eligibility.reasons)
    return eligibility


def findings_of(response: IntakeResponse | None) -> list[rules.Finding]:
    if response is None or not response.findings:
        return []
    return [rules.Finding.from_json(f) for f in json.loads(response.findings)]


def checklist_steps(patient: Patient) -> list[Step]:
    """The "Health questions" step of the patient's onboarding checklist."""
    response = response_for(patient)
    title = "Health questions"
    if response is None:
        return [Step("intake", title, StepStatus.TODO,
                     "About 10 minutes: your condition, treatments you have tried and your health.",
                     url_for("intake.start"), "Start your health questions", order=20)]
    if response.status == "completed":
        sent = response.submitted_at.strftime("%-d %B %Y") if response.submitted_at else ""
        return [Step("intake", title, StepStatus.DONE, f"Sent on {sent}.", None, None, order=20)]
    intake = open_intake(patient)
    resume = intake.resume_step()
    if resume is None:
        hint = "All questions answered: check your answers and send them."
    else:
        n, m = intake.position(resume)
        hint = f"Step {n} of {m}."
    return [Step("intake", title, StepStatus.IN_PROGRESS, hint, url_for("intake.start"),
                 "Continue your health questions", order=20)]


# Staff --------------------------------------------------------------------------------------

def can_read_answers(user: User, patient: Patient) -> bool:
    """Health answers are clinical data: the patient's own clinician and admins may read them.
    Reception sees only where the patient is (see tests/access/intake.py)."""
    if user.role is Role.ADMIN:
        return True
    return user.role is Role.CLINICIAN and patient.clinician_id == user.id


def status_text(patient: Patient) -> str:
    """Where the patient is with their health questions, in a few words, for staff."""
    response = response_for(patient)
    if response is None:
        return "Not started"
    if response.status == "completed":
        sent = response.submitted_at.strftime("%-d %B %Y, %H:%M") if response.submitted_at else ""
        return f"Sent on {sent} UTC"
    intake = open_intake(patient)
    resume = intake.resume_step()
    saved = response.updated_at.strftime("%-d %B %Y")
    if resume is None:
        return f"All questions answered, not sent yet (last saved {saved})"
    n, m = intake.position(resume)
    return f"In progress: step {n} of {m} (last saved {saved})"


def controls(intake: Intake, step: Item) -> set[str]:
    """Questions on this step whose answers change what the step shows: other questions' enableWhen,
    or urgent-help signposting. Changing one re-renders the step."""
    inside = {item.link_id for item in step.walk() if item.is_question}
    wanted: set[str] = set()
    for item in step.walk():
        if item is not step:
            wanted.update(condition.question for condition in item.enable_when)
    for rule in intake.definition.rules:
        if rule.signpost:
            wanted.update(rules.questions_in(rule.when))
    return wanted & inside


@dataclass(frozen=True)
class AnswerRow:
    item: Item
    text: list[str]


@dataclass(frozen=True)
class StepAnswers:
    number: int
    step: Item
    rows: list[AnswerRow]


def answers_by_step(intake: Intake, *, include_computed: bool) -> list[StepAnswers]:
    """The enabled questions of each enabled step with their answers (unanswered ones included)."""
    found = []
    for number in intake.enabled_steps():
        step = intake.questionnaire.steps[number - 1]
        rows = [AnswerRow(item, answer_forms.display(item, intake.answers.get(item.link_id, [])))
                for item in step.walk()
                if item.is_question and intake.is_enabled(item) and (include_computed or not item.read_only)]
        found.append(StepAnswers(number, step, rows))
    return found


#: Severity bands of the standard scores, by the LOINC code of the total: (lowest score, label).
SCORE_BANDS = {
    "44261-6": ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately severe"), (20, "severe")),
    "70274-6": ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "severe")),
}


@dataclass(frozen=True)
class Score:
    link_id: str
    label: str
    value: Decimal
    maximum: Decimal
    band: str | None


def scores(intake: Intake) -> list[Score]:
    """The totals the questionnaire works out (PHQ-9, GAD-7), with their severity band."""
    found = []
    for item in intake.questionnaire.items():
        values = intake.answers.get(item.link_id)
        group = intake.questionnaire.item(item.total_of) if item.total_of else None
        if group is None or not values:
            continue
        maximum = sum((max(o.score for o in q.options if o.score is not None) for q in group.walk()
                       if q.is_question and any(o.score is not None for o in q.options)), Decimal(0))
        value = Decimal(values[0])
        bands = next((SCORE_BANDS[c.code] for c in item.codes if c.code in SCORE_BANDS), ())
        band = next((label for low, label in reversed(bands) if value >= low), None)
        found.append(Score(item.link_id, group.text, value, maximum, band))
    return found


@dataclass(frozen=True)
class ReviewItem:
    patient: Patient
    user: User
    response: IntakeResponse
    findings: list[rules.Finding]
    #: True while the identity check is outstanding: the clinician can read, and decide afterwards.
    waiting_for_identity: bool


def review_queue(clinician: User) -> list[ReviewItem]:
    """The clinician's patients whose intake needs a clinical decision, longest waiting first."""
    responses = db.session.scalars(sa.select(IntakeResponse).where(IntakeResponse.status == "completed")
                                   .order_by(IntakeResponse.submitted_at))
    queue = []
    for response in responses:
        patient = patients.get(response.patient_id)
        if patient is None or not policy.can_view_patient(clinician, patient):
            continue
        state = journey.state_of(patient)
        waiting = state is S.INTAKE_SUBMITTED and response.outcome == rules.NEEDS_REVIEW
        if state is S.NEEDS_REVIEW or waiting:
            queue.append(ReviewItem(patient, patients.user_of(patient), response, findings_of(response), waiting))
    return queue


DECISION_LABELS = {S.ELIGIBLE: "Eligible: the patient can book a consultation",
                   S.NOT_ELIGIBLE: "Not eligible",
                   S.NEEDS_REVIEW: "Needs clinical review"}


def decision_choices(patient: Patient) -> list[tuple[str, str]]:
    """The outcomes a clinician can move this patient to now (each needs a reason)."""
    return [(state.value, label) for state, label in DECISION_LABELS.items()
            if journey.allowed(patient, state, role=journey.CLINICIAN)]


def decide(patient: Patient, to: str, reason: str, *, clinician: User) -> IntakeDecision:
    """A clinician's decision on a review, or their override of the rules' outcome, with a reason."""
    reason = (reason or "").strip()
    if clinician.role is not Role.CLINICIAN:
        raise DecisionError("Only a clinician can make this decision.", "outcome")
    response = response_for(patient)
    if response is None or response.status != "completed":
        raise DecisionError("The patient has not sent their health questions yet.", "outcome")
    if to not in dict(decision_choices(patient)):
        raise DecisionError("Choose one of the outcomes shown.", "outcome")
    if not reason:
        raise DecisionError("Give a reason for this decision: it is kept in the record.")
    if len(reason) > MAX_REASON:
        raise DecisionError(f"The reason must be {MAX_REASON} characters or fewer.")
    with transaction() as session:
        before = journey.state_of(patient).value
        try:
            onboarding.decide(patient, to, reason)
        except journey.JourneyError as exc:
            raise DecisionError(str(exc), "outcome") from exc
        decision = IntakeDecision(response_id=response.id, patient_id=patient.id, clinician_id=clinician.id,
                                  from_state=before, to_state=to, reason=reason)
        session.add(decision)
    return decision


def decisions_of(patient: Patient) -> list[tuple[IntakeDecision, User]]:
    rows = db.session.execute(sa.select(IntakeDecision, User).join(User, User.id == IntakeDecision.clinician_id)
                              .where(IntakeDecision.patient_id == patient.id)
                              .order_by(IntakeDecision.decided_at.desc(), IntakeDecision.id.desc()))
    return [(d, u) for d, u in rows]


# FHIR ---------------------------------------------------------------------------------------

def fhir_response(response: IntakeResponse) -> dict[str, Any]:
    """The stored QuestionnaireResponse, checked with fhir.resources before it is served."""
    resource = json.loads(response.resource)
    resource["id"] = str(response.id)
    problems = fhir.response_problems(resource)
    if problems:
        raise RuntimeError(f"stored QuestionnaireResponse {response.id} is not valid FHIR: {problems}")
    return resource


def fhir_questionnaire(version: QuestionnaireVersion) -> dict[str, Any]:
    resource = json.loads(version.resource)
    resource["id"] = str(version.id)
    return resource


# Demo ---------------------------------------------------------------------------------------

#: The demo patient's answers: chronic pain, two licensed treatments tried, nothing for review.
DEMO_ANSWERS: dict[str, Any] = {
    "condition.main": ["chronic-pain", "neuropathic-pain"],
    "condition.diagnosed": "specialist",
    "condition.diagnosis_date": "2019-03",
    "condition.impact": "Constant pain in my lower back and legs. I sleep badly and had to cut my hours at work.",
    "treatments.licensed": ["opioid", "neuropathic", "nsaid"],
    "treatments.other": ["physiotherapy", "pain-clinic"],
    "treatments.outcome": "Codeine and naproxen did not help enough. Pregabalin helped a little but made me "
                          "too drowsy to work.",
    "medication.current": True,
    "medication.list": "Pregabalin 75mg twice a day. Paracetamol 1g when needed.",
    "medication.allergies": False,
    "substances.alcohol_units": 4,
    "substances.tobacco": "never",
    "substances.cannabis": "never",
    "substances.other_drugs": False,
    "substances.dependence": False,
    "psychiatric.history": False,
    "pregnancy.status": "none",
    "work.drives": True,
    "work.drives_for_work": False,
    "work.job": "Graphic designer",
    "work.safety_critical": False,
}


def complete_demo_intake(patient: Patient) -> IntakeResponse:
    """Give the demo patient a completed, eligible intake (idempotent)."""
    existing = response_for(patient)
    if existing is not None and existing.status == "completed":
        return existing
    intake = open_intake(patient)
    answers = answer_forms.settled_simple(intake.questionnaire, DEMO_ANSWERS)
    with transaction() as session:
        response = intake.response
        if response is None:
            response = IntakeResponse(patient_id=patient.id, questionnaire_id=intake.version.id, resource="{}")
            session.add(response)
            session.flush()
            onboarding.intake_started(patient)
        intake.response, intake.answers = response, answers
        response.resource = _dump(_resource(intake, response, answers, "in-progress"))
        audit.record("intake.saved", subject=("intake_response", response.id), patient_id=patient.id,
                     detail={"step": None, "complete": True, "errors": 0, "demo": True})
    eligibility = submit(patient, questionnaire_id=str(intake.version.id))
    if eligibility.outcome != rules.ELIGIBLE:
        raise RuntimeError(f"the demo answers should be eligible, not {eligibility.outcome}")
    return response_for(patient)  # type: ignore[return-value]
