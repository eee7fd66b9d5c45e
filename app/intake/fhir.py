"""FHIR validation of intake resources, with the `fhir.resources` models.

Which FHIR release: fhir.resources 8.3.0 (pinned in requirements.txt) ships R5 at its top level
and R4B under `fhir.resources.R4B` (plus STU3); it no longer ships R4. R4B is R4 with a handful
of additions elsewhere in the specification: Questionnaire and QuestionnaireResponse are the same
as in R4, so every resource here is checked against the R4B models and is valid R4 as well.
"""

from __future__ import annotations

from typing import Any

import pydantic
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

FHIR_RELEASE = "R4B"
MEDIA_TYPE = "application/fhir+json"


def _problems(model: type[pydantic.BaseModel], data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["The file must hold one JSON object (a FHIR resource)."]
    try:
        model.model_validate(data)
    except pydantic.ValidationError as exc:
        return [f"{_path(error['loc'])}: {_message(error)}" for error in exc.errors()]
    except (TypeError, ValueError) as exc:  # fhir.resources raises plain errors for some shapes
        return [str(exc).splitlines()[0]]
    return []


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(resource)"


def _message(error: dict[str, Any]) -> str:
    return " ".join(str(error.get("msg", "is not valid")).split())


def questionnaire_problems(data: Any) -> list[str]:
    """What makes `data` an invalid FHIR Questionnaire (empty when valid)."""
    return _problems(Questionnaire, data)


def response_problems(data: Any) -> list[str]:
    """What makes `data` an invalid FHIR QuestionnaireResponse (empty when valid)."""
    return _problems(QuestionnaireResponse, data)


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    """A FHIR error body, e.g. ("not-found", "No QuestionnaireResponse with id 7")."""
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}
    OperationOutcome.model_validate(outcome)
    return outcome
