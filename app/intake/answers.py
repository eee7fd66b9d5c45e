"""Answers in and out: what a step's form says, checked against the item definitions, and the
QuestionnaireResponse JSON they are stored as.

Form fields are named after linkIds: `<linkId>` for most questions (repeated for checkboxes),
`<linkId>.other` for an open-choice's own answer, `<linkId>.day/.month/.year` for a date.
`form_data()` turns stored answers back into the same shape, so a page always renders from one
kind of data, whether it shows what was saved or what was just typed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.intake.engine import Answers, Evaluation, compare_dates, settle
from app.intake.questionnaire import Attachment, Coding, Item, Questionnaire, Value

FormData = Mapping[str, list[str]]
#: Looks up an uploaded document by the id a form sent; None when it is not the patient's.
AttachmentResolver = Callable[[str], Attachment | None]

DEFAULT_MAX_STRING = 250
DEFAULT_MAX_TEXT = 5000
INTEGER = re.compile(r"^[+-]?\d{1,12}$")
DECIMAL = re.compile(r"^[+-]?(\d{1,12}(\.\d{0,6})?|\.\d{1,6})$")
DIGITS = re.compile(r"^\d{1,4}$")


@dataclass(frozen=True)
class FieldError:
    link_id: str
    message: str
    #: The id of the input the error summary links to.
    anchor: str


@dataclass
class StepResult:
    #: All the answers after this step, settled (disabled items removed).
    answers: Answers
    errors: list[FieldError]

    @property
    def ok(self) -> bool:
        return not self.errors


def _values(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.get(name, []) if v is not None]


def _first(form: FormData, name: str) -> str:
    values = [v for v in _values(form, name) if v]
    return values[0] if values else ""


def anchor_of(item: Item) -> str:
    """The id of the input an error summary links to (the first of a date's three)."""
    return f"{item.html_id}--day" if item.type == "date" else item.html_id


def _range_message(item: Item, unit: str = "") -> str:
    low, high = item.min_value, item.max_value
    if low is not None and high is not None:
        return f"Enter a number between {low} and {high}{unit}"
    if low is not None:
        return f"Enter a number of {low} or more{unit}"
    return f"Enter a number of {high} or less{unit}"


def parse_item(item: Item, form: FormData,
               resolve: AttachmentResolver | None = None) -> tuple[list[Value] | None, str | None]:
    """The answers a form gives to one question, or an error message.

    Returns (None, None) when the form says nothing about the question at all (an attachment with no
    resolver), ([], None) when it was left empty.
    """
    kind = item.type
    raw = [v for v in _values(form, item.link_id) if v]
    if kind == "boolean":
        if not raw:
            return [], None
        if len(raw) > 1 or raw[0] not in ("true", "false"):
            return None, "Select yes or no"
        return [raw[0] == "true"], None
    if kind in ("choice", "open-choice"):
        return _parse_choice(item, raw, _first(form, f"{item.link_id}.other"))
    if kind == "integer" or kind == "decimal":
        if not raw:
            return [], None
        text = raw[0].replace(",", "").replace(" ", "")
        if len(raw) > 1:
            return None, "Enter one number"
        if kind == "integer":
            if not INTEGER.match(text):
                return None, "Enter a whole number, like 12"
            number: int | Decimal = int(text)
        else:
            if not DECIMAL.match(text):
                return None, "Enter a number, like 3.5"
            try:
                number = Decimal(text)
            except InvalidOperation:
                return None, "Enter a number, like 3.5"
        if (item.min_value is not None and number < item.min_value) or (
                item.max_value is not None and number > item.max_value):
            return None, _range_message(item)
        return [number], None
    if kind == "date":
        return _parse_date(item, form)
    if kind in ("string", "text"):
        if not raw:
            return [], None
        if len(raw) > 1:
            return None, "Enter one answer"
        text = raw[0] if kind == "text" else " ".join(raw[0].split())
        limit = item.max_length or (DEFAULT_MAX_TEXT if kind == "text" else DEFAULT_MAX_STRING)
        if len(text) > limit:
            return None, f"Answer must be {limit} characters or fewer"
        return [text], None
    if kind == "attachment":
        if resolve is None:
            return None, None
        found = [resolve(value) for value in raw]
        if any(a is None for a in found):
            return None, "Choose one of your uploaded documents"
        return [a for a in found if a is not None], None
    return None, None


def _parse_choice(item: Item, keys: list[str], other: str) -> tuple[list[Value] | None, str | None]:
    chosen: list[Value] = []
    for key in dict.fromkeys(keys):  # ignore a value sent twice
        option = item.option(key)
        if option is None:
            return None, "Select one of the options shown"
        chosen.append(option.value)
    if item.type == "open-choice" and other:
        limit = item.max_length or DEFAULT_MAX_STRING
        if len(other) > limit:
            return None, f"Your own answer must be {limit} characters or fewer"
        chosen.append(" ".join(other.split()))
    if len(chosen) > 1 and not item.repeats:
        if item.type == "open-choice" and other:
            return None, "Select an option or type your own answer, not both"
        return None, "Select only one answer"
    return chosen, None


def _parse_date(item: Item, form: FormData) -> tuple[list[Value] | None, str | None]:
    day, month, year = (_first(form, f"{item.link_id}.{part}") for part in ("day", "month", "year"))
    if not (day or month or year):
        return [], None
    problem = "Enter a real date, like 14 3 2019, or just the year, like 2019"
    if not year or not all(DIGITS.match(p) for p in (day, month, year) if p) or len(year) != 4:
        return None, problem
    if day and not month:
        return None, "Enter the month as well as the day"
    y = int(year)
    if not 1900 <= y <= 2100:
        return None, "Enter a year between 1900 and 2100"
    value = f"{y:04d}"
    if month:
        m = int(month)
        if not 1 <= m <= 12:
            return None, problem
        value += f"-{m:02d}"
        if day:
            d = int(day)
            if not 1 <= d <= calendar.monthrange(y, m)[1]:
                return None, problem
            value += f"-{d:02d}"
    if isinstance(item.min_value, str) and (compare_dates(value, item.min_value) or 0) < 0:
        return None, f"Enter a date on or after {item.min_value}"
    if isinstance(item.max_value, str) and (compare_dates(value, item.max_value) or 0) > 0:
        return None, f"Enter a date on or before {item.max_value}"
    return [value], None


def required_message(item: Item) -> str:
    if item.type == "boolean":
        return "Select yes or no"
    if item.type in ("choice", "open-choice"):
        return "Select at least one option" if item.repeats else "Select an answer"
    if item.type == "date":
        return "Enter a date"
    return "Enter an answer"


def read_step(questionnaire: Questionnaire, step: Item, form: FormData, saved: Answers, *,
              check_required: bool, resolve: AttachmentResolver | None = None) -> StepResult:
    """Merge one step's form into the saved answers.

    A question the form answers badly keeps its saved answer (and gets an error); every other
    question of the step takes what the form says, including being emptied. Questions of other
    steps are untouched except that, like everything, they are removed once disabled.
    """
    merged: Answers = {k: list(v) for k, v in saved.items()}
    errors: dict[str, str] = {}
    for item in step.walk():
        if not item.is_question or item.read_only:
            continue
        values, error = parse_item(item, form, resolve)
        if error:
            errors[item.link_id] = error
        elif values is not None:
            if values:
                merged[item.link_id] = values
            else:
                merged.pop(item.link_id, None)
    settled = settle(questionnaire, merged)
    evaluation = Evaluation(questionnaire, settled)
    found: list[FieldError] = []
    for item in step.walk():
        if not item.is_question or item.read_only or not evaluation.enabled(item):
            continue
        message = errors.get(item.link_id)
        if message is None and check_required and item.required and not settled.get(item.link_id):
            message = required_message(item)
        if message:
            found.append(FieldError(item.link_id, message, anchor_of(item)))
    return StepResult(settled, found)


def missing(questionnaire: Questionnaire, answers: Answers) -> list[Item]:
    """Required questions that are enabled and unanswered: what stops a submission."""
    evaluation = Evaluation(questionnaire, answers)
    return [item for item in questionnaire.questions()
            if item.required and not item.read_only and evaluation.enabled(item) and not answers.get(item.link_id)]


# Stored answers back into form fields --------------------------------------------------------

def form_data(questionnaire: Questionnaire, answers: Answers) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for item in questionnaire.questions():
        values = answers.get(item.link_id, [])
        if not values:
            continue
        if item.type == "boolean":
            data[item.link_id] = ["true" if values[0] else "false"]
        elif item.type in ("choice", "open-choice"):
            keys = [option.key for option in item.options for v in values if _is_option(option.value, v)]
            data[item.link_id] = keys
            own = [v for v in values if isinstance(v, str) and not any(_is_option(o.value, v) for o in item.options)]
            if own:
                data[f"{item.link_id}.other"] = [own[0]]
        elif item.type == "date":
            parts = str(values[0]).split("-")
            for name, part in zip(("year", "month", "day"), parts, strict=False):
                data[f"{item.link_id}.{name}"] = [str(int(part))]
        elif item.type == "attachment":
            data[item.link_id] = [v.url for v in values if isinstance(v, Attachment)]
        else:
            data[item.link_id] = [str(values[0])]
    return data


def _is_option(option_value: Value, value: Value) -> bool:
    if isinstance(option_value, Coding) and isinstance(value, Coding):
        return option_value.matches(value)
    return type(option_value) is type(value) and option_value == value


def display(item: Item, values: list[Value]) -> list[str]:
    """Answers as a person reads them."""
    shown = []
    for value in values:
        if isinstance(value, bool):
            shown.append("Yes" if value else "No")
        elif isinstance(value, Coding):
            option = next((o for o in item.options if isinstance(o.value, Coding) and o.value.matches(value)), None)
            shown.append(option.label if option else (value.display or value.code))
        elif isinstance(value, Attachment):
            shown.append(value.title or "Document")
        elif item.type == "date" and isinstance(value, str):
            shown.append(_date_text(value))
        else:
            shown.append(f"{value} {item.unit}" if item.unit else str(value))
    return shown


def _date_text(value: str) -> str:
    parts = [int(p) for p in value.split("-")]
    if len(parts) == 1:
        return str(parts[0])
    month = calendar.month_name[parts[1]]
    return f"{month} {parts[0]}" if len(parts) == 2 else f"{parts[2]} {month} {parts[0]}"


# QuestionnaireResponse items -----------------------------------------------------------------

def _fhir_value(item: Item, value: Value) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, Coding):
        return {"valueCoding": value.as_fhir()}
    if isinstance(value, Attachment):
        return {"valueAttachment": value.as_fhir()}
    if isinstance(value, Decimal):
        return {"valueDecimal": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if item.type == "date":
        return {"valueDate": value}
    return {"valueString": value}


def response_items(questionnaire: Questionnaire, answers: Answers) -> list[dict[str, Any]]:
    """The `item` tree of a QuestionnaireResponse: answered questions, in their groups, in order."""

    def build(item: Item) -> dict[str, Any] | None:
        if item.is_question:
            values = answers.get(item.link_id)
            if not values:
                return None
            # Enrich codings with the option's display, so the stored response reads on its own.
            shown = [_with_display(item, v) for v in values]
            return {"linkId": item.link_id, "text": item.text, "answer": [_fhir_value(item, v) for v in shown]}
        if item.is_group:
            children = [c for c in (build(child) for child in item.children) if c]
            return {"linkId": item.link_id, "text": item.text, "item": children} if children else None
        return None

    return [built for built in (build(step) for step in questionnaire.steps) if built]


def _with_display(item: Item, value: Value) -> Value:
    if isinstance(value, Coding):
        for option in item.options:
            if isinstance(option.value, Coding) and option.value.matches(value):
                return option.value
    return value


def answers_from_items(questionnaire: Questionnaire, items: list[dict[str, Any]]) -> Answers:
    """The answers held in a QuestionnaireResponse's items (linkIds this questionnaire lacks are dropped)."""
    found: Answers = {}

    def visit(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            item = questionnaire.item(entry.get("linkId", ""))
            for answer in entry.get("answer") or []:
                if item is not None and item.is_question:
                    value = _from_fhir(answer)
                    if value is not None:
                        found.setdefault(item.link_id, []).append(value)
                visit(answer.get("item") or [])
            visit(entry.get("item") or [])

    visit(items)
    return found


def _from_fhir(answer: dict[str, Any]) -> Value | None:
    if "valueBoolean" in answer:
        return bool(answer["valueBoolean"])
    if "valueCoding" in answer:
        return Coding.from_fhir(answer["valueCoding"])
    if "valueInteger" in answer:
        return int(answer["valueInteger"])
    if "valueDecimal" in answer:
        return Decimal(str(answer["valueDecimal"]))
    if "valueAttachment" in answer:
        attachment = answer["valueAttachment"]
        return Attachment(str(attachment.get("url", "")), attachment.get("title"))
    for key in ("valueDate", "valueString"):
        if key in answer:
            return str(answer[key])
    return None


def simple_answers(questionnaire: Questionnaire, simple: Mapping[str, Any]) -> Answers:
    """Answers written the short way (rules' examples, demo data, tests): booleans, numbers,
    strings, option codes, lists for several answers, dates as "2019-03". Raises KeyError/ValueError
    for an unknown linkId or option."""
    answers: Answers = {}
    for link_id, given in simple.items():
        item = questionnaire.item(link_id)
        if item is None or not item.is_question:
            raise KeyError(f"{link_id} is not a question of {questionnaire.url}")
        values = given if isinstance(given, list) else [given]
        typed: list[Value] = []
        for value in values:
            if item.type in ("choice", "open-choice"):
                option = item.option(str(value))
                if option is None and item.type == "choice":
                    raise ValueError(f"{value!r} is not an option of {link_id}")
                typed.append(option.value if option else str(value))
            elif item.type == "decimal":
                typed.append(Decimal(str(value)))
            elif item.type == "integer":
                typed.append(int(value))
            elif item.type == "boolean":
                if not isinstance(value, bool):
                    raise ValueError(f"{link_id} takes true or false")
                typed.append(value)
            else:
                typed.append(str(value))
        answers[link_id] = typed
    return answers


def settled_simple(questionnaire: Questionnaire, simple: Mapping[str, Any]) -> Answers:
    return settle(questionnaire, simple_answers(questionnaire, simple))
