"""Branching: which items of a questionnaire are enabled by the answers so far (FHIR enableWhen).

Pure functions over `Answers` (linkId -> list of answer values); no database, no request.

The semantics are FHIR's (R4, with the clarifications R5 made explicit):
- `exists` with answerBoolean true holds when the question has an answer, false when it has none.
- Every other operator is false when the question has no answer.
- `=` holds when at least one answer equals the expected value; `!=` when none does.
- `>`, `<`, `>=`, `<=` hold when at least one answer compares so; they apply to numbers, dates and
  strings. Integers and decimals compare with each other; codings match on code (and system,
  when both give one); dates of different precision compare only where the shorter decides.
- An item is enabled when its parent is enabled and its conditions hold (all of them, or any,
  by `enableBehavior`). A question that is disabled counts as unanswered, so conditions chain.

`settle()` is what every save runs: it removes the answers of disabled items, works out the
read-only totals (e.g. the PHQ-9 score) and removes anything that the totals disabled in turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from app.intake.questionnaire import Coding, EnableWhen, Item, Questionnaire, Value

Answers = dict[str, list[Value]]


def _is_number(value: Value) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _date_parts(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split("-"))


def compare_dates(left: str, right: str) -> int | None:
    """-1, 0 or 1; None when the two differ only in precision (e.g. 2019 and 2019-03)."""
    a, b = _date_parts(left), _date_parts(right)
    common = min(len(a), len(b))
    if a[:common] != b[:common]:
        return -1 if a[:common] < b[:common] else 1
    return 0 if len(a) == len(b) else None


def _equal(answer: Value, condition: EnableWhen) -> bool:
    expected = condition.answer
    if condition.kind == "boolean":
        return isinstance(answer, bool) and answer is expected
    if condition.kind == "coding":
        return isinstance(answer, Coding) and isinstance(expected, Coding) and answer.matches(expected)
    if condition.kind in ("integer", "decimal"):
        return _is_number(answer) and Decimal(answer) == Decimal(expected)  # type: ignore[arg-type]
    if condition.kind == "date":
        return isinstance(answer, str) and isinstance(expected, str) and compare_dates(answer, expected) == 0
    return isinstance(answer, str) and answer == expected


def _ordered(answer: Value, condition: EnableWhen) -> bool:
    expected = condition.answer
    if condition.kind in ("integer", "decimal"):
        if not _is_number(answer):
            return False
        order = (Decimal(answer) > Decimal(expected)) - (Decimal(answer) < Decimal(expected))  # type: ignore[arg-type]
    elif condition.kind == "date":
        if not (isinstance(answer, str) and isinstance(expected, str)):
            return False
        found = compare_dates(answer, expected)
        if found is None:
            return False
        order = found
    elif condition.kind == "string":
        if not isinstance(answer, str) or not isinstance(expected, str):
            return False
        order = (answer > expected) - (answer < expected)
    else:
        return False  # booleans and codings have no order
    return {">": order > 0, "<": order < 0, ">=": order >= 0, "<=": order <= 0}[condition.operator]


def condition_holds(condition: EnableWhen, answers: Iterable[Value]) -> bool:
    """One enableWhen against the (enabled) answers of the question it names."""
    values = list(answers)
    if condition.operator == "exists":
        return bool(values) is bool(condition.answer)
    if not values:
        return False
    if condition.operator == "=":
        return any(_equal(v, condition) for v in values)
    if condition.operator == "!=":
        return not any(_equal(v, condition) for v in values)
    return any(_ordered(v, condition) for v in values)


class Evaluation:
    """Enabled-ness of every item for one set of answers, worked out lazily and remembered."""

    def __init__(self, questionnaire: Questionnaire, answers: Answers):
        self.questionnaire = questionnaire
        self.answers = answers
        self._enabled: dict[str, bool] = {}
        self._visiting: set[str] = set()

    def enabled(self, item: Item) -> bool:
        known = self._enabled.get(item.link_id)
        if known is not None:
            return known
        if item.link_id in self._visiting:  # parse() refuses cycles; this keeps a bad input finite
            raise ValueError(f"enableWhen cycle through {item.link_id}")
        self._visiting.add(item.link_id)
        try:
            if item.parent is not None and not self.enabled(item.parent):
                result = False
            elif not item.enable_when:
                result = True
            else:
                results = (condition_holds(c, self.effective(c.question)) for c in item.enable_when)
                result = all(results) if item.enable_behavior == "all" else any(results)
        finally:
            self._visiting.discard(item.link_id)
        self._enabled[item.link_id] = result
        return result

    def effective(self, link_id: str) -> list[Value]:
        """The answers to a question as the branching sees them: none while it is disabled."""
        item = self.questionnaire.item(link_id)
        if item is None or not self.enabled(item):
            return []
        return list(self.answers.get(link_id, []))


def enabled_ids(questionnaire: Questionnaire, answers: Answers) -> set[str]:
    evaluation = Evaluation(questionnaire, answers)
    return {item.link_id for item in questionnaire.items() if evaluation.enabled(item)}


def prune(questionnaire: Questionnaire, answers: Answers) -> Answers:
    """Only the non-empty answers of enabled questions, in questionnaire order."""
    evaluation = Evaluation(questionnaire, answers)
    return {item.link_id: list(answers[item.link_id]) for item in questionnaire.questions()
            if answers.get(item.link_id) and evaluation.enabled(item)}


def total_score(questionnaire: Questionnaire, answers: Answers, group_link_id: str) -> Decimal | None:
    """The sum of the option scores in a group; None unless every scored question in it is answered."""
    group = questionnaire.item(group_link_id)
    if group is None:
        return None
    total = Decimal(0)
    for item in group.walk():
        scored = [o for o in item.options if o.score is not None]
        if not item.is_question or not scored:
            continue
        chosen = [o for o in scored for value in answers.get(item.link_id, []) if _same_option(o.value, value)]
        if not chosen:
            return None
        total += sum((o.score for o in chosen if o.score is not None), Decimal(0))
    return total


def _same_option(option_value: Value, answer: Value) -> bool:
    if isinstance(option_value, Coding) and isinstance(answer, Coding):
        return option_value.matches(answer)
    return option_value == answer and type(option_value) is type(answer)


def settle(questionnaire: Questionnaire, answers: Answers) -> Answers:
    """The answers as stored: disabled items removed, totals worked out, nothing stale left."""
    computed = {item.link_id for item in questionnaire.items() if item.total_of}
    settled = prune(questionnaire, {k: v for k, v in answers.items() if k not in computed})
    for item in questionnaire.items():
        if item.total_of:
            total = total_score(questionnaire, settled, item.total_of)
            if total is not None:
                settled[item.link_id] = [int(total) if item.type == "integer" else total]
    return prune(questionnaire, settled)
