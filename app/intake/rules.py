"""Eligibility: declarative rules over a submitted intake, kept as data next to the questionnaire.

A rules file (`rules/<name>.rules.json`) names its questionnaire's url and lists rules:

    {"id": "pregnant-or-breastfeeding",
     "outcome": "not_eligible",                       # or "needs_clinical_review"
     "when": <condition>,
     "reason": "plain words for the patient (and the clinician's queue)",
     "next_steps": "what the patient can do next",    # required for not_eligible
     "signpost": "urgent_help",                       # optional: show urgent-help numbers
     "examples": {"match": {<answers>}, "no_match": {<answers>}}}

A condition is one of:
- a comparison shaped exactly like a FHIR enableWhen, with the same meaning
  (`{"question": "pregnancy.status", "operator": "=", "answerCoding": {"code": "pregnant"}}`);
- `{"count": <linkId>, "operator": "<", "value": 2, "excluding": ["none"]}`: how many answers a
  question has (options listed in `excluding` do not count);
- `{"all": [...]}`, `{"any": [...]}`, `{"not": <condition>}`.

Comparisons reuse the enableWhen engine rather than a general rules language (JsonLogic and the
like): one set of semantics for branching and eligibility, and rules that a clinician can read
next to the questionnaire they are about. Every rule must carry examples that it matches and
does not match; loading a rules file runs them, so a rule without a working test is refused.

Evaluation: any matching not_eligible rule makes the outcome not_eligible; otherwise any
matching review rule makes it needs_clinical_review (with every matching reason); otherwise
eligible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.intake import engine
from app.intake.answers import simple_answers
from app.intake.engine import Answers
from app.intake.questionnaire import (
    OPERATORS,
    Coding,
    EnableWhen,
    Questionnaire,
    check_condition,
    read_condition,
)

ELIGIBLE = "eligible"
NEEDS_REVIEW = "needs_clinical_review"
NOT_ELIGIBLE = "not_eligible"
RULE_OUTCOMES = (NOT_ELIGIBLE, NEEDS_REVIEW)
SIGNPOSTS = ("urgent_help",)


class RulesError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Count:
    question: str
    operator: str
    value: int
    excluding: frozenset[str]


@dataclass(frozen=True)
class Compound:
    kind: str  # all, any, not
    parts: tuple[Condition, ...]


Condition = EnableWhen | Count | Compound


@dataclass(frozen=True)
class Rule:
    id: str
    outcome: str
    when: Condition
    reason: str
    next_steps: str | None
    signpost: str | None
    examples: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Finding:
    """A rule that matched, as kept with the response and shown to the clinician."""

    rule: str
    outcome: str
    reason: str
    next_steps: str | None = None
    signpost: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "outcome": self.outcome, "reason": self.reason, "next_steps": self.next_steps,
                "signpost": self.signpost}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(data["rule"], data["outcome"], data["reason"], data.get("next_steps"), data.get("signpost"))


@dataclass(frozen=True)
class Eligibility:
    outcome: str
    findings: tuple[Finding, ...]

    @property
    def reasons(self) -> list[str]:
        """The reasons behind the outcome: for not eligible, only the not-eligible ones."""
        return [f.reason for f in self.findings if f.outcome == self.outcome]

    @property
    def urgent_help(self) -> bool:
        return any(f.signpost == "urgent_help" for f in self.findings)


# Reading ------------------------------------------------------------------------------------

def parse(data: Any, questionnaire: Questionnaire) -> list[Rule]:
    """Read a rules file for `questionnaire`; raise RulesError naming every problem (examples included)."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(['A rules file is a JSON object with a "rules" list.'])
    if data.get("questionnaire") != questionnaire.url:
        problems.append(f"The rules are for {data.get('questionnaire')!r}, not for {questionnaire.url}.")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["rules"]):
        where = f"Rule {raw.get('id') if isinstance(raw, dict) and raw.get('id') else index + 1}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: a rule is a JSON object.")
            continue
        rule_id = str(raw.get("id") or "")
        if not rule_id:
            problems.append(f"{where}: needs an id.")
        elif rule_id in seen:
            problems.append(f"{where}: the id is used twice.")
        seen.add(rule_id)
        outcome = raw.get("outcome")
        if outcome not in RULE_OUTCOMES:
            problems.append(f"{where}: outcome must be one of {', '.join(RULE_OUTCOMES)}.")
        if not isinstance(raw.get("reason"), str) or not raw["reason"].strip():
            problems.append(f"{where}: needs a plain-language reason.")
        if outcome == NOT_ELIGIBLE and not (isinstance(raw.get("next_steps"), str) and raw["next_steps"].strip()):
            problems.append(f"{where}: a not_eligible rule must say what the patient can do next (next_steps).")
        if raw.get("signpost") not in (None, *SIGNPOSTS):
            problems.append(f"{where}: signpost must be one of {', '.join(SIGNPOSTS)}.")
        examples = raw.get("examples")
        if not (isinstance(examples, dict) and isinstance(examples.get("match"), dict)
                and isinstance(examples.get("no_match"), dict)):
            problems.append(f"{where}: needs examples: answers it matches (match) and answers it does not (no_match).")
            examples = {"match": {}, "no_match": {}}
        if "when" not in raw:
            problems.append(f"{where}: needs a condition (when).")
        when = _condition(raw.get("when"), questionnaire, where, problems)
        rules.append(Rule(rule_id, str(outcome), when, str(raw.get("reason", "")).strip(),
                          (raw.get("next_steps") or "").strip() or None, raw.get("signpost"), examples))
    if not problems:
        problems.extend(check_examples(rules, questionnaire))
    if problems:
        raise RulesError(problems)
    return rules


def _condition(raw: Any, questionnaire: Questionnaire, where: str, problems: list[str]) -> Condition:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a condition is a JSON object.")
        return Compound("all", ())
    for kind in ("all", "any"):
        if kind in raw:
            parts = raw[kind]
            if not isinstance(parts, list) or not parts:
                problems.append(f"{where}: {kind} needs a non-empty list of conditions.")
                return Compound(kind, ())
            return Compound(kind, tuple(_condition(p, questionnaire, where, problems) for p in parts))
    if "not" in raw:
        return Compound("not", (_condition(raw["not"], questionnaire, where, problems),))
    if "count" in raw:
        item = questionnaire.item(str(raw["count"]))
        if item is None or not item.is_question:
            problems.append(f"{where}: count names {raw['count']}, which is not a question.")
        operator, value = raw.get("operator"), raw.get("value")
        if operator not in OPERATORS or operator == "exists":
            problems.append(f"{where}: count needs an operator (=, !=, >, <, >=, <=).")
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}: count needs a whole-number value.")
        excluding = raw.get("excluding") or []
        if item is not None and any(item.option(str(code)) is None for code in excluding):
            problems.append(f"{where}: excluding lists a code that is not an option of {raw['count']}.")
        return Count(str(raw["count"]), str(operator), value if isinstance(value, int) else 0,
                     frozenset(str(c) for c in excluding))
    condition = read_condition(raw, where, problems, noun="condition")
    if condition.question:
        problems.extend(check_condition(questionnaire, condition, where))
    return condition


# Evaluating ---------------------------------------------------------------------------------

def holds(condition: Condition, answers: Answers) -> bool:
    """`answers` must be settled (see engine.settle): disabled questions count as unanswered."""
    if isinstance(condition, Compound):
        results = (holds(part, answers) for part in condition.parts)
        if condition.kind == "all":
            return all(results)
        if condition.kind == "any":
            return any(results)
        return not next(results)
    if isinstance(condition, Count):
        counted = [v for v in answers.get(condition.question, [])
                   if not (isinstance(v, Coding) and v.code in condition.excluding)
                   and not (isinstance(v, str) and v in condition.excluding)]
        n = len(counted)
        return {"=": n == condition.value, "!=": n != condition.value, ">": n > condition.value,
                "<": n < condition.value, ">=": n >= condition.value, "<=": n <= condition.value}[condition.operator]
    return engine.condition_holds(condition, answers.get(condition.question, []))


def evaluate(rules: list[Rule], answers: Answers) -> Eligibility:
    findings = tuple(Finding(r.id, r.outcome, r.reason, r.next_steps, r.signpost)
                     for r in rules if holds(r.when, answers))
    if any(f.outcome == NOT_ELIGIBLE for f in findings):
        return Eligibility(NOT_ELIGIBLE, findings)
    if findings:
        return Eligibility(NEEDS_REVIEW, findings)
    return Eligibility(ELIGIBLE, findings)


def questions_in(condition: Condition) -> set[str]:
    """The linkIds a condition reads."""
    if isinstance(condition, Compound):
        return set().union(*(questions_in(part) for part in condition.parts)) if condition.parts else set()
    return {condition.question}


def signposts(rules: list[Rule], answers: Answers) -> set[str]:
    """Signposts due on the answers so far (shown while the intake is still being filled in)."""
    return {r.signpost for r in rules if r.signpost and holds(r.when, answers)}


def check_examples(rules: list[Rule], questionnaire: Questionnaire) -> list[str]:
    """Each rule's own test: it must match its `match` answers and not its `no_match` answers."""
    problems = []
    for rule in rules:
        for key, expected in (("match", True), ("no_match", False)):
            try:
                answers = engine.settle(questionnaire, simple_answers(questionnaire, rule.examples[key]))
            except (KeyError, ValueError) as exc:
                problems.append(f"Rule {rule.id}: its {key} example is not valid: {exc}")
                continue
            if holds(rule.when, answers) is not expected:
                problems.append(f"Rule {rule.id}: it {'does not match' if expected else 'matches'} its {key} example.")
    return problems
