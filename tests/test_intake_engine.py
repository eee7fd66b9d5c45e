"""The branching engine (FHIR enableWhen) on its own: pure functions, no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.intake import engine
from app.intake.questionnaire import Coding, EnableWhen, QuestionnaireError, parse

SYSTEM = "urn:test"


def cond(operator: str, kind: str, answer) -> EnableWhen:
    return EnableWhen("q", operator, kind, answer)


@pytest.mark.parametrize(("condition", "answers", "expected"), [
    (cond("exists", "boolean", True), [1], True),
    (cond("exists", "boolean", True), [], False),
    (cond("exists", "boolean", False), [], True),
    (cond("exists", "boolean", False), ["x"], False),
    (cond("=", "boolean", True), [True], True),
    (cond("=", "boolean", True), [False], False),
    (cond("!=", "boolean", True), [False], True),
    (cond("=", "integer", 3), [Decimal("3.0")], True),
    (cond("=", "decimal", Decimal("2.5")), [Decimal("2.50")], True),
    (cond(">", "integer", 7), [8], True),
    (cond(">", "integer", 7), [7], False),
    (cond(">=", "integer", 7), [7], True),
    (cond("<", "decimal", Decimal("0.5")), [0], True),
    (cond("<=", "integer", 2), [3], False),
    (cond("=", "coding", Coding(SYSTEM, "a")), [Coding(SYSTEM, "a", "A")], True),
    (cond("=", "coding", Coding(None, "a")), [Coding(SYSTEM, "a")], True),  # no system given: code decides
    (cond("=", "coding", Coding("urn:other", "a")), [Coding(SYSTEM, "a")], False),
    (cond("!=", "coding", Coding(SYSTEM, "a")), [Coding(SYSTEM, "b")], True),
    (cond("!=", "coding", Coding(SYSTEM, "a")), [Coding(SYSTEM, "b"), Coding(SYSTEM, "a")], False),
    (cond("=", "coding", Coding(SYSTEM, "a")), [Coding(SYSTEM, "b"), Coding(SYSTEM, "a")], True),
    (cond(">", "coding", Coding(SYSTEM, "a")), [Coding(SYSTEM, "b")], False),  # codings have no order
    (cond("=", "string", "yes"), ["yes"], True),
    (cond(">", "string", "b"), ["c"], True),
    (cond("=", "date", "2019-03"), ["2019-03"], True),
    (cond(">", "date", "2019-03-01"), ["2019-04"], True),
    (cond(">", "date", "2019-03-01"), ["2019-03"], False),  # decided only at day precision: unknown
    (cond("<", "date", "2020"), ["2019-12-31"], True),
    (cond("=", "date", "2019"), ["2019-03"], False),
    # With no answer, every operator except exists is false (FHIR R5 made this explicit).
    (cond("=", "boolean", True), [], False),
    (cond("!=", "boolean", True), [], False),
    (cond(">", "integer", 0), [], False),
])
def test_condition_semantics(condition, answers, expected):
    assert engine.condition_holds(condition, answers) is expected


def questionnaire(*items, extra=None):
    return parse({"resourceType": "Questionnaire", "url": "urn:q", "version": "1", "status": "active",
                  "item": [{"linkId": "page", "type": "group", "text": "Page", "item": list(items)}, *(extra or [])]})


def boolean(link_id, **more):
    return {"linkId": link_id, "type": "boolean", "text": link_id, **more}


def yes(question):
    return [{"question": question, "operator": "=", "answerBoolean": True}]


def test_enable_behavior_all_and_any():
    q = questionnaire(boolean("a"), boolean("b"),
                      boolean("both", enableWhen=yes("a") + yes("b"), enableBehavior="all"),
                      boolean("either", enableWhen=yes("a") + yes("b"), enableBehavior="any"))
    only_a = engine.enabled_ids(q, {"a": [True], "b": [False]})
    assert "either" in only_a and "both" not in only_a
    assert {"both", "either"} <= engine.enabled_ids(q, {"a": [True], "b": [True]})
    assert not {"both", "either"} & engine.enabled_ids(q, {"a": [False], "b": [False]})


def test_a_disabled_question_counts_as_unanswered_down_the_chain():
    q = questionnaire(boolean("a"), boolean("b", enableWhen=yes("a")), boolean("c", enableWhen=yes("b")))
    answers = {"a": [True], "b": [True], "c": [False]}
    assert {"b", "c"} <= engine.enabled_ids(q, answers)
    answers["a"] = [False]
    assert engine.prune(q, answers) == {"a": [False]}


def test_items_inside_a_disabled_group_are_disabled():
    q = questionnaire(boolean("gate"), extra=[
        {"linkId": "more", "type": "group", "text": "More", "enableWhen": yes("gate"),
         "item": [boolean("inner"), {"linkId": "sub", "type": "group", "text": "Sub", "item": [boolean("deep")]}]}])
    assert engine.prune(q, {"gate": [False], "inner": [True], "deep": [True]}) == {"gate": [False]}
    assert engine.prune(q, {"gate": [True], "inner": [True], "deep": [True]}) == {
        "gate": [True], "inner": [True], "deep": [True]}


def scored_questionnaire():
    option = [{"valueCoding": {"system": SYSTEM, "code": f"s{n}"},
               "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": n}]}
              for n in range(4)]
    return questionnaire(boolean("gate"), extra=[
        {"linkId": "scale", "type": "group", "text": "Scale", "enableWhen": yes("gate"), "item": [
            {"linkId": "s1", "type": "choice", "text": "One", "answerOption": option},
            {"linkId": "s2", "type": "choice", "text": "Two", "answerOption": option},
            {"linkId": "total", "type": "integer", "text": "Total", "readOnly": True,
             "extension": [{"url": "https://verity.example/fhir/StructureDefinition/total-score",
                            "valueString": "scale"}]}]}])


def test_settle_works_out_totals_only_when_every_scored_question_is_answered():
    q = scored_questionnaire()
    partial = engine.settle(q, {"gate": [True], "s1": [Coding(SYSTEM, "s3")]})
    assert "total" not in partial
    full = engine.settle(q, {"gate": [True], "s1": [Coding(SYSTEM, "s3")], "s2": [Coding(SYSTEM, "s2")],
                             "total": [99]})
    assert full["total"] == [5]  # a total typed in is ignored: it is always worked out


def test_settle_removes_totals_with_their_group():
    q = scored_questionnaire()
    answers = {"gate": [False], "s1": [Coding(SYSTEM, "s3")], "s2": [Coding(SYSTEM, "s2")], "total": [5]}
    assert engine.settle(q, answers) == {"gate": [False]}


@pytest.mark.parametrize(("item", "problem"), [
    ({"linkId": "x", "type": "quantity", "text": "X"}, "type quantity is not supported"),
    ({"linkId": "x y", "type": "boolean", "text": "X"}, "a linkId must be"),
    ({"linkId": "x", "type": "boolean", "text": "X", "enableWhen": yes("nowhere")}, "does not exist"),
    ({"linkId": "x", "type": "boolean", "text": "X",
      "enableWhen": [{"question": "a", "operator": "=", "answerInteger": 1}]}, "compares a (boolean)"),
    ({"linkId": "x", "type": "boolean", "text": "X",
      "enableWhen": [{"question": "a", "operator": ">", "answerBoolean": True}]}, "cannot compare boolean"),
    ({"linkId": "x", "type": "boolean", "text": "X", "enableWhen": yes("a") + yes("a")}, "enableBehavior"),
    ({"linkId": "x", "type": "choice", "text": "X"}, "needs answerOption"),
    ({"linkId": "x", "type": "integer", "text": "X", "repeats": True}, "repeats is supported on choice"),
    ({"linkId": "a", "type": "boolean", "text": "dup"}, "used more than once"),
    ({"linkId": "action", "type": "boolean", "text": "X"}, "reserved"),
    ({"linkId": "when", "type": "date", "text": "X"}, None),
])
def test_unsupported_questionnaires_are_refused_with_a_reason(item, problem):
    if problem is None:  # the control case: a well-formed item loads
        assert questionnaire(boolean("a"), item).item(item["linkId"]).type == item["type"]
        return
    with pytest.raises(QuestionnaireError) as refused:
        questionnaire(boolean("a"), item)
    assert any(problem in p for p in refused.value.problems), refused.value.problems


def test_linkids_must_give_distinct_css_safe_element_ids():
    with pytest.raises(QuestionnaireError, match="differ only in"):
        questionnaire(boolean("a.x"), boolean("a-x"))
    with pytest.raises(QuestionnaireError, match="must not follow each other"):
        questionnaire(boolean("a.-x"))
    assert questionnaire(boolean("phq9.44250-9")).item("phq9.44250-9").html_id == "q-phq9-44250-9"


def test_a_linkid_that_clashes_with_another_questions_fields_is_refused():
    with pytest.raises(QuestionnaireError, match="clashes"):
        questionnaire({"linkId": "when", "type": "date", "text": "When"},
                      {"linkId": "when.day", "type": "string", "text": "Day"})


def test_a_branching_cycle_is_refused():
    with pytest.raises(QuestionnaireError, match="circle"):
        questionnaire(boolean("a", enableWhen=yes("b")), boolean("b", enableWhen=yes("a")))


def test_top_level_items_must_be_groups():
    with pytest.raises(QuestionnaireError, match="top-level"):
        parse({"resourceType": "Questionnaire", "url": "urn:q", "version": "1", "status": "active",
               "item": [boolean("a")]})


# Properties --------------------------------------------------------------------------------

CHAIN = questionnaire(
    boolean("a"), boolean("b", enableWhen=yes("a")),
    {"linkId": "n", "type": "integer", "text": "n"},
    boolean("c", enableWhen=[{"question": "n", "operator": ">", "answerInteger": 3}, *yes("b")],
            enableBehavior="any"),
    boolean("d", enableWhen=[{"question": "c", "operator": "exists", "answerBoolean": False}]),
    boolean("e", enableWhen=[{"question": "d", "operator": "!=", "answerBoolean": True}]))

answer_sets = st.fixed_dictionaries({}, optional={
    "a": st.lists(st.booleans(), min_size=1, max_size=1), "b": st.lists(st.booleans(), min_size=1, max_size=1),
    "n": st.lists(st.integers(-5, 10), min_size=1, max_size=1), "c": st.lists(st.booleans(), min_size=1, max_size=1),
    "d": st.lists(st.booleans(), min_size=1, max_size=1), "e": st.lists(st.booleans(), min_size=1, max_size=1),
    "stray": st.lists(st.booleans(), min_size=1, max_size=1)})


@settings(max_examples=300, deadline=None)
@given(answer_sets)
def test_settled_answers_are_stable_and_only_of_enabled_questions(answers):
    settled = engine.settle(CHAIN, answers)
    assert engine.settle(CHAIN, settled) == settled  # saving again changes nothing
    enabled = engine.enabled_ids(CHAIN, settled)
    assert set(settled) <= enabled  # nothing disabled (or unknown) is kept
    assert all(settled[k] == answers[k] for k in settled)  # and nothing kept is altered


@settings(max_examples=200, deadline=None)
@given(answer_sets)
def test_removing_disabled_answers_never_changes_what_is_enabled(answers):
    assert engine.enabled_ids(CHAIN, answers) == engine.enabled_ids(CHAIN, engine.prune(CHAIN, answers))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=3), st.integers(-20, 20))
def test_not_equal_is_the_negation_of_equal_when_answered(values, expected):
    equal = engine.condition_holds(cond("=", "integer", expected), values)
    assert engine.condition_holds(cond("!=", "integer", expected), values) is (not equal)
