"""Instruments as data: FHIR Questionnaires that Verity asks over time and scores.

Verity ships GAD-7 and PHQ-9 (free to reproduce) and its own plainly worded 0-10 pain and sleep-quality
scales and 7-point change question (app/outcomes/questionnaires/). A clinic loads a licensed instrument
(e.g. EQ-5D-5L, which needs a EuroQol licence, so Verity ships no copy) the same way: a valid R4
Questionnaire whose score items carry the outcome-score extension and a code. The intake's engine
reads, checks, branches and renders them; this module keeps the versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import User
from app.database import transaction
from app.extensions import db
from app.intake import fhir, questionnaire
from app.intake.questionnaire import Questionnaire
from app.outcomes import scoring
from app.outcomes.models import OutcomeInstrument

HERE = Path(__file__).resolve().parent
BUILT_IN = sorted((HERE / "questionnaires").glob("*.json"))
MAX_UPLOAD_BYTES = 1024 * 1024


class InstrumentError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


_parsed: dict[int, Questionnaire] = {}


def parsed(instrument: OutcomeInstrument) -> Questionnaire:
    """The instrument read by the intake engine (cached: versions never change)."""
    found = _parsed.get(instrument.id)
    if found is None or found.url != instrument.url or found.version != instrument.version:
        found = questionnaire.parse(json.loads(instrument.resource))
        _parsed[instrument.id] = found
    return found


def check(resource: Any) -> Questionnaire:
    """A Questionnaire Verity can ask and score, or InstrumentError naming every problem."""
    problems = fhir.questionnaire_problems(resource)
    if problems:
        raise InstrumentError(problems)
    if not resource.get("id"):
        raise InstrumentError(["The questionnaire needs an id (e.g. eq-5d-5l): schedules name instruments by it."])
    try:
        parsed_resource = questionnaire.parse(resource)
    except questionnaire.QuestionnaireError as exc:
        raise InstrumentError(exc.problems) from None
    problems = scoring.check_instrument(parsed_resource)
    if problems:
        raise InstrumentError(problems)
    return parsed_resource


@dataclass(frozen=True)
class LoadResult:
    instrument: OutcomeInstrument
    created: bool


def load(resource: Any, *, loaded_by: User | None = None) -> LoadResult:
    """Store a version (the same url and version twice is the same instrument, if the content matches)."""
    parsed_resource = check(resource)
    text = json.dumps(resource, sort_keys=True, ensure_ascii=False)
    with transaction() as session:
        existing = session.scalar(sa.select(OutcomeInstrument).where(
            OutcomeInstrument.url == parsed_resource.url, OutcomeInstrument.version == parsed_resource.version))
        if existing is not None:
            if json.loads(existing.resource) != json.loads(text):
                raise InstrumentError([f"Version {parsed_resource.version} of {parsed_resource.url} is already loaded "
                                       "with different content: give the new one a new version."])
            return LoadResult(existing, False)
        instrument = OutcomeInstrument(url=parsed_resource.url, version=parsed_resource.version,
                                       key=str(resource["id"])[:64],
                                       title=parsed_resource.title[:200] or resource["id"],
                                       resource=text, loaded_by_id=loaded_by.id if loaded_by else None)
        session.add(instrument)
        session.flush()
        audit.record("outcomes.instrument_loaded", subject=("outcome_instrument", instrument.id),
                     detail={"url": instrument.url, "version": instrument.version})
    return LoadResult(instrument, True)


def read_json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentError([f"{name} is not a JSON file ({exc})."]) from None


def ensure_built_in() -> None:
    """Load the instruments Verity ships when they are missing (a fresh installation)."""
    known = set(db.session.execute(sa.select(OutcomeInstrument.url, OutcomeInstrument.version)).all())
    for path in BUILT_IN:
        resource = json.loads(path.read_text())
        if (resource["url"], resource["version"]) not in known:
            try:
                load(resource)
            except sa.exc.IntegrityError:
                db.session.rollback()  # loaded by a concurrent request a moment ago


def all_versions() -> list[OutcomeInstrument]:
    return list(db.session.scalars(sa.select(OutcomeInstrument).order_by(OutcomeInstrument.title,
                                                                          OutcomeInstrument.id.desc())))


def get(instrument_id: int) -> OutcomeInstrument | None:
    return db.session.get(OutcomeInstrument, instrument_id)


def current(name: str) -> OutcomeInstrument | None:
    """The newest version of an instrument, by its key (Questionnaire id) or url."""
    return db.session.scalar(sa.select(OutcomeInstrument).where(
        sa.or_(OutcomeInstrument.key == name, OutcomeInstrument.url == name))
        .order_by(OutcomeInstrument.loaded_at.desc(), OutcomeInstrument.id.desc()).limit(1))


def current_all() -> list[OutcomeInstrument]:
    """The newest version of every instrument, by title."""
    newest: dict[str, OutcomeInstrument] = {}
    for instrument in sorted(all_versions(), key=lambda i: (i.loaded_at, i.id)):
        newest[instrument.url] = instrument
    return sorted(newest.values(), key=lambda i: i.title)
