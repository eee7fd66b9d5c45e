"""A FHIR Questionnaire read into plain, typed Python, and the checks that make it one Verity can run.

`fhir.resources` says whether a resource is valid FHIR; this module says whether it is a
questionnaire the intake engine supports: its item types, its branching (every `enableWhen` points
at a question that exists, with an answer of that question's type, and no branch depends on
itself), its steps (each top-level item is a group: one page), and field names that are safe in
HTML. `parse()` returns a `Questionnaire` or raises `QuestionnaireError` listing every problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

QUESTION_TYPES = ("boolean", "choice", "open-choice", "integer", "decimal", "date", "string", "text", "attachment")
SUPPORTED_TYPES = ("group", "display", *QUESTION_TYPES)
OPERATORS = ("exists", "=", "!=", ">", "<", ">=", "<=")
ORDERED_TYPES = ("integer", "decimal", "date", "string", "text")

EXT_MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
EXT_MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
EXT_UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
#: Where a score lives on an answer option: R4's ordinalValue, R5's itemWeight, and the older name.
EXT_SCORES = ("http://hl7.org/fhir/StructureDefinition/ordinalValue",
              "http://hl7.org/fhir/StructureDefinition/itemWeight",
              "http://hl7.org/fhir/StructureDefinition/iso21090-CO-value")
#: Verity's own extension on a read-only number item: the sum of the option scores in the group named.
EXT_TOTAL_SCORE = "https://verity.example/fhir/StructureDefinition/total-score"
UNSUPPORTED_EXTENSIONS = {
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression":
        "enableWhenExpression is not supported: use enableWhen",
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression":
        "calculatedExpression is not supported",
}

#: linkIds become HTML field names and ids: letters, digits, '.', '-' and '_'.
LINK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Names the step form uses for itself.
RESERVED = frozenset({"csrf_token", "questionnaire", "action", "return", "back"})
#: Extra fields some questions use, named <linkId><suffix>.
FIELD_SUFFIXES = {"open-choice": (".other",), "date": (".day", ".month", ".year")}
DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")

ANSWER_KEYS = {
    "answerBoolean": "boolean", "answerCoding": "coding", "answerInteger": "integer", "answerDecimal": "decimal",
    "answerDate": "date", "answerString": "string", "answerDateTime": "dateTime", "answerTime": "time",
    "answerQuantity": "quantity", "answerReference": "reference",
}
#: Which enableWhen answer kinds may be compared with answers to a question of each type.
COMPATIBLE = {
    "boolean": {"boolean"}, "choice": {"coding", "string", "integer"}, "open-choice": {"coding", "string"},
    "integer": {"integer", "decimal"}, "decimal": {"integer", "decimal"}, "date": {"date"},
    "string": {"string"}, "text": {"string"}, "attachment": set(),
}


class QuestionnaireError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Coding:
    """A coded answer. Two codings are the same answer when their system and code match."""

    system: str | None
    code: str
    display: str | None = field(default=None, compare=False)

    def matches(self, other: Coding) -> bool:
        """FHIR matching: the code must match, and the system too when both name one."""
        return self.code == other.code and (self.system is None or other.system is None or self.system == other.system)

    def as_fhir(self) -> dict[str, str]:
        return {k: v for k, v in (("system", self.system), ("code", self.code), ("display", self.display)) if v}

    @classmethod
    def from_fhir(cls, data: dict[str, Any]) -> Coding:
        return cls(data.get("system"), str(data.get("code", "")), data.get("display"))


@dataclass(frozen=True)
class Attachment:
    """An answer to an attachment question: a link to a document the patient uploaded."""

    url: str
    title: str | None = None

    def as_fhir(self) -> dict[str, str]:
        return {k: v for k, v in (("url", self.url), ("title", self.title)) if v}


#: One answer value: bool, int, Decimal, str (also dates, as FHIR partial dates), Coding or Attachment.
Value = bool | int | Decimal | str | Coding | Attachment


@dataclass(frozen=True)
class Option:
    value: Coding | str | int
    #: The option's score (e.g. 0-3 on the PHQ-9), when the questionnaire gives one.
    score: Decimal | None = None

    @property
    def key(self) -> str:
        """The option's value in an HTML form."""
        return self.value.code if isinstance(self.value, Coding) else str(self.value)

    @property
    def label(self) -> str:
        if isinstance(self.value, Coding):
            return self.value.display or self.value.code
        return str(self.value)


@dataclass(frozen=True)
class EnableWhen:
    question: str
    operator: str
    #: The kind of `answer`, from its FHIR name: boolean, coding, integer, decimal, date, string.
    kind: str
    answer: Value

    def as_fhir(self) -> dict[str, Any]:
        key = next(k for k, kind in ANSWER_KEYS.items() if kind == self.kind)
        value: Any = self.answer.as_fhir() if isinstance(self.answer, Coding) else self.answer
        return {"question": self.question, "operator": self.operator, key: value}


@dataclass
class Item:
    link_id: str
    type: str
    text: str = ""
    prefix: str | None = None
    required: bool = False
    repeats: bool = False
    read_only: bool = False
    max_length: int | None = None
    options: tuple[Option, ...] = ()
    enable_when: tuple[EnableWhen, ...] = ()
    enable_behavior: str = "all"
    min_value: Decimal | str | None = None
    max_value: Decimal | str | None = None
    unit: str | None = None
    #: Help for the person answering: the text of the item's display children.
    help: str | None = None
    #: For a read-only total: the linkId of the group whose option scores it adds up.
    total_of: str | None = None
    codes: tuple[Coding, ...] = ()
    children: list[Item] = field(default_factory=list)
    parent: Item | None = field(default=None, repr=False)

    @property
    def is_question(self) -> bool:
        return self.type in QUESTION_TYPES

    @property
    def is_group(self) -> bool:
        return self.type == "group"

    @property
    def label(self) -> str:
        return f"{self.prefix} {self.text}" if self.prefix else self.text

    @property
    def html_id(self) -> str:
        """The item's id in a page: a valid CSS identifier (htmx and the design system's scripts look
        elements up by selector, where a '.' would not work). Derived ids add "--<part>"."""
        return "q-" + self.link_id.replace(".", "-")

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)

    def walk(self) -> Iterator[Item]:
        """This item and everything inside it, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Questionnaire:
    url: str
    version: str
    status: str
    title: str
    description: str
    #: The top-level groups: one step (page) each.
    steps: list[Item]
    resource: dict[str, Any]
    by_link_id: dict[str, Item] = field(default_factory=dict)

    def item(self, link_id: str) -> Item | None:
        return self.by_link_id.get(link_id)

    def items(self) -> Iterator[Item]:
        for step in self.steps:
            yield from step.walk()

    def questions(self) -> Iterator[Item]:
        return (item for item in self.items() if item.is_question)

    def step_of(self, item: Item) -> int:
        """The 1-based number of the step holding `item`."""
        top = item
        while top.parent is not None:
            top = top.parent
        return self.steps.index(top) + 1


# Reading ------------------------------------------------------------------------------------

def parse(resource: dict[str, Any]) -> Questionnaire:
    """Read a (FHIR-valid) Questionnaire; raise QuestionnaireError naming every unsupported part."""
    problems: list[str] = []
    for key in ("url", "version", "status"):
        if not resource.get(key):
            problems.append(f"The questionnaire needs a {key}: Verity stores each version by url and version.")
    if resource.get("modifierExtension"):
        problems.append("modifierExtension on the questionnaire is not supported.")
    steps = [_item(raw, None, problems) for raw in resource.get("item") or []]
    if not steps:
        problems.append("The questionnaire has no items.")
    for step in steps:
        if step.type != "group":
            problems.append(f"Item {step.link_id}: every top-level item must be a group (one page of questions).")
    questionnaire = Questionnaire(
        url=str(resource.get("url", "")), version=str(resource.get("version", "")),
        status=str(resource.get("status", "")), title=str(resource.get("title") or resource.get("name") or ""),
        description=str(resource.get("description") or ""), steps=steps, resource=resource)
    for item in questionnaire.items():
        if item.link_id in questionnaire.by_link_id:
            problems.append(f"linkId {item.link_id} is used more than once.")
        if item.link_id in RESERVED:
            problems.append(f"linkId {item.link_id} is reserved: choose another.")
        questionnaire.by_link_id[item.link_id] = item
    html_ids: dict[str, str] = {}
    for item in questionnaire.items():
        if "--" in item.html_id:
            problems.append(f"linkId {item.link_id}: '.' and '-' must not follow each other.")
        elif html_ids.setdefault(item.html_id, item.link_id) != item.link_id:
            problems.append(f"linkIds {html_ids[item.html_id]} and {item.link_id} differ only in '.' and '-'.")
    for item in questionnaire.items():
        for suffix in FIELD_SUFFIXES.get(item.type, ()):
            if item.link_id + suffix in questionnaire.by_link_id:
                problems.append(f"linkId {item.link_id}{suffix} clashes with a field of {item.link_id}.")
    if not problems:
        _check_references(questionnaire, problems)
    if problems:
        raise QuestionnaireError(problems)
    return questionnaire


def _item(raw: dict[str, Any], parent: Item | None, problems: list[str]) -> Item:
    link_id = str(raw.get("linkId", ""))
    where = f"Item {link_id or '(no linkId)'}"
    if not LINK_ID.match(link_id):
        problems.append(f"{where}: a linkId must be 1-64 letters, digits, '.', '-' or '_', starting with a "
                        "letter or digit.")
    kind = str(raw.get("type", ""))
    if kind not in SUPPORTED_TYPES:
        problems.append(f"{where}: type {kind or '(none)'} is not supported (use one of {', '.join(SUPPORTED_TYPES)}).")
    item = Item(link_id=link_id, type=kind, text=str(raw.get("text") or ""), prefix=raw.get("prefix"),
                required=bool(raw.get("required")), repeats=bool(raw.get("repeats")),
                read_only=bool(raw.get("readOnly")), max_length=raw.get("maxLength"),
                enable_behavior=raw.get("enableBehavior") or "all", parent=parent,
                codes=tuple(Coding.from_fhir(c) for c in raw.get("code") or []))
    if raw.get("modifierExtension"):
        problems.append(f"{where}: modifierExtension is not supported.")
    if raw.get("answerValueSet"):
        problems.append(f"{where}: answerValueSet is not supported: list the answers as answerOption.")
    if raw.get("initial"):
        problems.append(f"{where}: initial answers are not supported.")
    if kind in ("choice", "open-choice"):
        item.options = tuple(_option(o, where, problems) for o in raw.get("answerOption") or [])
        if not item.options:
            problems.append(f"{where}: a {kind} question needs answerOption entries.")
        keys = [o.key for o in item.options]
        if len(set(keys)) != len(keys):
            problems.append(f"{where}: two answer options share a code.")
    elif raw.get("answerOption"):
        problems.append(f"{where}: answerOption is only for choice and open-choice questions.")
    if item.repeats and kind not in ("choice", "open-choice"):
        problems.append(f"{where}: repeats is supported on choice and open-choice questions only.")
    if item.max_length is not None and kind not in ("string", "text", "open-choice"):
        problems.append(f"{where}: maxLength applies to string and text questions only.")
    if kind in ("group", "display") and item.required:
        problems.append(f"{where}: a {kind} cannot be required.")
    if kind in QUESTION_TYPES and not item.text:
        problems.append(f"{where}: a question needs text.")
    if kind == "display" and not item.text:
        problems.append(f"{where}: a display item needs text.")
    _extensions(raw, item, where, problems)
    item.enable_when = tuple(read_condition(e, where, problems) for e in raw.get("enableWhen") or [])
    if len(item.enable_when) > 1 and not raw.get("enableBehavior"):
        problems.append(f"{where}: enableBehavior (all or any) is required with more than one enableWhen.")
    if item.enable_behavior not in ("all", "any"):
        problems.append(f"{where}: enableBehavior must be all or any.")
    item.children = [_item(child, item, problems) for child in raw.get("item") or []]
    if kind == "group" and not item.children:
        problems.append(f"{where}: a group needs items.")
    if kind in QUESTION_TYPES:
        helps = [child for child in item.children if child.type == "display"]
        if len(helps) != len(item.children):
            problems.append(f"{where}: questions inside a question are not supported (use enableWhen); "
                            "only display items (help text) may be nested in a question.")
        item.help = " ".join(child.text for child in helps) or None
    if kind == "display" and item.children:
        problems.append(f"{where}: a display item cannot hold items.")
    return item


def _option(raw: dict[str, Any], where: str, problems: list[str]) -> Option:
    value: Coding | str | int
    if "valueCoding" in raw:
        value = Coding.from_fhir(raw["valueCoding"])
        if not value.code:
            problems.append(f"{where}: every coded answer option needs a code.")
    elif "valueString" in raw:
        value = str(raw["valueString"])
    elif "valueInteger" in raw:
        value = int(raw["valueInteger"])
    else:
        problems.append(f"{where}: answer options must be valueCoding, valueString or valueInteger.")
        value = ""
    extensions = list(raw.get("extension") or []) + list((raw.get("valueCoding") or {}).get("extension") or [])
    score = None
    for extension in extensions:
        if extension.get("url") in EXT_SCORES:
            score = _decimal(extension.get("valueDecimal", extension.get("valueInteger")))
            if score is None:
                problems.append(f"{where}: an option score must be a number.")
    return Option(value, score)


def _extensions(raw: dict[str, Any], item: Item, where: str, problems: list[str]) -> None:
    for extension in raw.get("extension") or []:
        url = extension.get("url")
        if url in UNSUPPORTED_EXTENSIONS:
            problems.append(f"{where}: {UNSUPPORTED_EXTENSIONS[url]}.")
        elif url in (EXT_MIN_VALUE, EXT_MAX_VALUE):
            bound = _bound(extension, item.type)
            if bound is None:
                problems.append(f"{where}: minValue/maxValue must be a value of the question's type "
                                f"({item.type}).")
            elif url == EXT_MIN_VALUE:
                item.min_value = bound
            else:
                item.max_value = bound
        elif url == EXT_UNIT:
            coding = extension.get("valueCoding") or {}
            item.unit = coding.get("display") or coding.get("code")
        elif url == EXT_TOTAL_SCORE:
            item.total_of = extension.get("valueString")
            if not (item.read_only and item.type in ("integer", "decimal") and item.total_of):
                problems.append(f"{where}: a total score must be a read-only integer or decimal naming a group.")


def _bound(extension: dict[str, Any], kind: str) -> Decimal | str | None:
    if kind in ("integer", "decimal"):
        raw = extension.get("valueInteger", extension.get("valueDecimal"))
        if kind == "integer" and "valueDecimal" in extension:
            return None
        return _decimal(raw)
    if kind == "date" and isinstance(extension.get("valueDate"), str) and DATE.match(extension["valueDate"]):
        return extension["valueDate"]
    return None


def _decimal(raw: Any) -> Decimal | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def read_condition(raw: Any, where: str, problems: list[str], noun: str = "enableWhen") -> EnableWhen:
    """One enableWhen (or a rule's condition of the same shape), checked on its own."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: each {noun} must be an object.")
        return EnableWhen("", "=", "string", "")
    keys = [k for k in raw if k.startswith("answer")]
    operator = str(raw.get("operator", ""))
    question = raw.get("question")
    if not isinstance(question, str) or not question:
        problems.append(f"{where}: each {noun} needs the linkId of a question.")
        question = ""
    if operator not in OPERATORS:
        problems.append(f"{where}: {noun} operator {operator or '(none)'} is not one of {' '.join(OPERATORS)}.")
    if len(keys) != 1 or keys[0] not in ANSWER_KEYS:
        problems.append(f"{where}: each {noun} needs exactly one answer[x].")
        return EnableWhen(question, operator, "string", "")
    key = keys[0]
    kind = ANSWER_KEYS[key]
    raw_value = raw[key]
    value: Value = raw_value
    well_typed = {
        "boolean": isinstance(raw_value, bool),
        "coding": isinstance(raw_value, dict) and bool(raw_value.get("code")),
        "integer": isinstance(raw_value, int) and not isinstance(raw_value, bool),
        "decimal": isinstance(raw_value, int | float | str) and not isinstance(raw_value, bool)
                   and _decimal(raw_value) is not None,
        "date": isinstance(raw_value, str) and bool(DATE.match(raw_value)),
        "string": isinstance(raw_value, str),
    }
    if kind not in well_typed:
        problems.append(f"{where}: {noun} {key} is not supported.")
    elif not well_typed[kind]:
        problems.append(f"{where}: {noun} {key} is not a valid {kind}.")
        value = ""
    elif kind == "coding":
        value = Coding.from_fhir(raw_value)
    elif kind == "decimal":
        value = _decimal(raw_value) or Decimal(0)
    if operator == "exists" and kind != "boolean":
        problems.append(f"{where}: a {noun} with operator exists needs answerBoolean.")
    return EnableWhen(question, operator, kind, value)


def check_condition(questionnaire: Questionnaire, condition: EnableWhen, where: str) -> list[str]:
    """Problems with a condition against the questionnaire: the question it names, and its answer type."""
    target = questionnaire.item(condition.question)
    if target is None:
        return [f"{where}: the condition refers to {condition.question}, which does not exist."]
    if not target.is_question:
        return [f"{where}: the condition refers to {condition.question}, which is not a question."]
    if condition.operator == "exists":
        return []
    if condition.kind not in COMPATIBLE[target.type]:
        return [f"{where}: the condition compares {condition.question} ({target.type}) with an "
                f"answer{condition.kind.capitalize()}."]
    if condition.operator in (">", "<", ">=", "<=") and target.type not in ORDERED_TYPES:
        return [f"{where}: operator {condition.operator} cannot compare {target.type} answers."]
    if isinstance(condition.answer, Coding) and target.options and not any(
            isinstance(o.value, Coding) and o.value.matches(condition.answer) for o in target.options):
        return [f"{where}: the condition expects code {condition.answer.code}, which is not an option of "
                f"{condition.question}."]
    return []


def _check_references(questionnaire: Questionnaire, problems: list[str]) -> None:
    for item in questionnaire.items():
        where = f"Item {item.link_id}"
        for condition in item.enable_when:
            found = check_condition(questionnaire, condition, where)
            problems.extend(found)
            target = questionnaire.item(condition.question)
            if not found and target is not None and target in list(item.walk()):
                problems.append(f"{where}: enableWhen cannot depend on the item itself or an item inside it.")
        if item.total_of:
            group = questionnaire.item(item.total_of)
            if group is None or not group.is_group:
                problems.append(f"{where}: the total score names {item.total_of}, which is not a group.")
    cycle = _find_cycle(questionnaire)
    if cycle:
        problems.append(f"The branching goes round in a circle: {' → '.join(cycle)}.")


def dependencies(item: Item) -> set[str]:
    """linkIds whose answers decide whether `item` is shown (its own conditions and its parents')."""
    found: set[str] = set()
    node: Item | None = item
    while node is not None:
        found.update(condition.question for condition in node.enable_when)
        node = node.parent
    return found


def _find_cycle(questionnaire: Questionnaire) -> list[str] | None:
    graph = {item.link_id: sorted(dependencies(item)) for item in questionnaire.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None
