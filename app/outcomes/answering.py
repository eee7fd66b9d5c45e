"""Answering a due questionnaire: the intake engine reads the form and branches it; answers are saved as a
FHIR QuestionnaireResponse in progress at every save, and scored only when complete.

The whole instrument is one page (the short scales take a minute on a phone). Scores become
Observations linked to the response; PHQ-9 item 9 above "not at all" shows the urgent-help card at once
and alerts the patient's clinician when the answers are sent.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import User
from app.database import transaction, utcnow
from app.extensions import db
from app.intake import answers as answer_forms
from app.intake import engine, fhir
from app.intake.answers import FieldError, FormData
from app.intake.questionnaire import Item, Questionnaire
from app.outcomes import alerts, instruments, schedule, scoring
from app.outcomes.models import OutcomeDue, OutcomeInstrument, OutcomeObservation, OutcomeResponse
from app.patients.models import Patient


class AnswerError(ValueError):
    """A refusal fit to show the person."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot store {type(value).__name__}")


@dataclass
class Form:
    """A due questionnaire as the page sees it: the instrument, the answers so far and their state."""

    patient: Patient
    due: OutcomeDue
    instrument: OutcomeInstrument
    response: OutcomeResponse | None
    answers: engine.Answers = field(default_factory=dict)

    @property
    def questionnaire(self) -> Questionnaire:
        return instruments.parsed(self.instrument)

    @cached_property
    def root(self) -> Item:
        """All the instrument's groups as one page (the intake's templates render an Item's children)."""
        return Item(link_id="outcome", type="group", text=self.questionnaire.title,
                    children=list(self.questionnaire.steps))

    @cached_property
    def _evaluation(self) -> engine.Evaluation:
        return engine.Evaluation(self.questionnaire, self.answers)

    def is_enabled(self, item: Item) -> bool:
        return item is self.root or self._evaluation.enabled(item)

    def urgent_help(self) -> bool:
        return scoring.urgent_help(self.questionnaire, self.answers)

    def controls(self) -> set[str]:
        """Questions whose answers change the page: other items' enableWhen, and PHQ-9 item 9."""
        wanted = {c.question for item in self.questionnaire.items() for c in item.enable_when}
        wanted |= {item.link_id for item in self.questionnaire.questions()
                   if any(c.code == scoring.PHQ9_ITEM9 for c in item.codes)}
        return wanted

    @property
    def completed(self) -> bool:
        return self.response is not None and self.response.status == "completed"


def _response_for(due: OutcomeDue) -> OutcomeResponse | None:
    return db.session.scalar(sa.select(OutcomeResponse).where(OutcomeResponse.due_id == due.id)
                             .order_by(OutcomeResponse.id.desc()).limit(1))


def _instrument_of(due: OutcomeDue, response: OutcomeResponse | None) -> OutcomeInstrument:
    if response is not None:
        return instruments.get(response.instrument_id)  # type: ignore[return-value]
    instrument = instruments.current(due.instrument_url)
    if instrument is None:
        raise AnswerError("This questionnaire is no longer available. The clinic has been told.")
    return instrument


def open_form(patient: Patient, due: OutcomeDue) -> Form:
    response = _response_for(due)
    instrument = _instrument_of(due, response)
    form = Form(patient, due, instrument, response)
    if response is not None:
        resource = json.loads(response.resource, parse_float=Decimal)
        form.answers = answer_forms.answers_from_items(form.questionnaire, resource.get("item") or [])
    return form


@dataclass
class SaveResult:
    form: Form
    errors: list[FieldError]
    scores: list[scoring.Score] = field(default_factory=list)


def _resource(form: Form, response: OutcomeResponse, status: str, at: dt.datetime) -> dict[str, Any]:
    questionnaire = form.questionnaire
    return {"resourceType": "QuestionnaireResponse", "id": str(response.id),
            "questionnaire": f"{questionnaire.url}|{questionnaire.version}", "status": status,
            "subject": {"reference": f"Patient/{form.patient.id}"}, "authored": at.isoformat(timespec="seconds"),
            "item": answer_forms.response_items(questionnaire, form.answers)}


def save(patient: Patient, due: OutcomeDue, data: FormData, *, author: User, complete: bool) -> SaveResult:
    """Save what the form holds; with `complete`, check every required answer and, when all are there,
    score and close the questionnaire. A partial save never scores."""
    if due.patient_id != patient.id:
        raise AnswerError("This questionnaire belongs to someone else.")
    if due.status != schedule.DUE:
        raise AnswerError("This questionnaire is closed: thank you, nothing more is needed.")
    form = open_form(patient, due)
    result = answer_forms.read_step(form.questionnaire, form.root, data, form.answers, check_required=complete)
    errors = list(result.errors)
    form.answers = result.answers
    form.__dict__.pop("_evaluation", None)
    now = utcnow()
    scores: list[scoring.Score] = []
    if complete and not errors:
        missing = answer_forms.missing(form.questionnaire, form.answers)
        errors = [FieldError(i.link_id, answer_forms.required_message(i), answer_forms.anchor_of(i)) for i in missing]
        if not errors:
            scores = scoring.score(form.questionnaire, form.answers)
    finished = complete and not errors
    with transaction() as session:
        response = form.response
        if response is None:
            response = OutcomeResponse(patient_id=patient.id, instrument_id=form.instrument.id, due_id=due.id,
                                       author_id=author.id, resource="{}", started_at=now)
            session.add(response)
            session.flush()
            form.response = response
        resource = _resource(form, response, "completed" if finished else "in-progress", now)
        problems = fhir.response_problems(json.loads(json.dumps(resource, default=_json_default)))
        if problems:
            raise RuntimeError(f"the QuestionnaireResponse is not valid FHIR: {problems}")
        response.resource = json.dumps(resource, default=_json_default, ensure_ascii=False)
        response.updated_at = now
        response.urgent = form.urgent_help()
        if finished:
            response.status, response.completed_at, response.author_id = "completed", now, author.id
            due.status, due.completed_at = schedule.COMPLETED, now
            for found in scores:
                session.add(OutcomeObservation(
                    patient_id=patient.id, system=found.system, code=found.code, display=found.display[:200],
                    value=found.value, unit="{score}", effective_at=now, source="questionnaire",
                    response_id=response.id, band=found.band))
            audit.record("outcomes.response_completed", subject=("outcome_response", response.id),
                         patient_id=patient.id, detail={"instrument": form.instrument.key, "timepoint": due.timepoint,
                                                        "scores": {s.code: str(s.value) for s in scores},
                                                        "urgent": response.urgent})
            if response.urgent:
                alerts.urgent_answers(patient, response)
        else:
            audit.record("outcomes.response_saved", subject=("outcome_response", response.id), patient_id=patient.id,
                         detail={"instrument": form.instrument.key, "errors": len(errors), "submitted": complete})
    return SaveResult(form, errors, scores)


def responses_of(patient: Patient, *, completed_only: bool = True) -> list[OutcomeResponse]:
    query = sa.select(OutcomeResponse).where(OutcomeResponse.patient_id == patient.id) \
        .order_by(OutcomeResponse.completed_at.desc().nulls_last(), OutcomeResponse.id.desc())
    if completed_only:
        query = query.where(OutcomeResponse.status == "completed")
    return list(db.session.scalars(query))


def get_response(response_id: int) -> OutcomeResponse | None:
    return db.session.get(OutcomeResponse, response_id)


def fhir_response(response: OutcomeResponse) -> dict[str, Any]:
    return json.loads(response.resource)


def answered_rows(response: OutcomeResponse) -> list[tuple[str, list[str]]]:
    """(question, answers as people read them) for a stored response."""
    instrument = instruments.get(response.instrument_id)
    questionnaire = instruments.parsed(instrument)
    stored = answer_forms.answers_from_items(questionnaire, json.loads(response.resource, parse_float=Decimal)
                                             .get("item") or [])
    return [(item.label, answer_forms.display(item, stored[item.link_id])) for item in questionnaire.questions()
            if stored.get(item.link_id)]
