"""The shipped questionnaire (valid FHIR, exact PHQ-9 and GAD-7) and its eligibility rules, each with its test."""

from __future__ import annotations

import copy
import json

import pytest

from app.intake import engine, fhir, rules, services
from app.intake.answers import settled_simple
from app.intake.questionnaire import parse

RESOURCE = json.loads((services.QUESTIONNAIRE_DIR / "verity-intake.json").read_text())
RULES = json.loads(services.rules_path_for(services.QUESTIONNAIRE_DIR / "verity-intake.json").read_text())
QUESTIONNAIRE = parse(RESOURCE)
RULESET = rules.parse(RULES, QUESTIONNAIRE)
LOINC = "http://loinc.org"
FREQUENCY = [("LA6568-5", "Not at all", 0), ("LA6569-3", "Several days", 1),
             ("LA6570-1", "More than half the days", 2), ("LA6571-9", "Nearly every day", 3)]


def test_every_shipped_questionnaire_is_valid_fhir_and_runs():
    files = sorted(services.QUESTIONNAIRE_DIR.glob("*.json"))
    assert files
    for path in files:
        resource = json.loads(path.read_text())
        assert fhir.questionnaire_problems(resource) == [], path.name
        questionnaire, ruleset = services.check(resource, json.loads(services.rules_path_for(path).read_text()))
        assert questionnaire.steps and ruleset


def test_fhir_validation_names_what_is_wrong():
    broken = copy.deepcopy(RESOURCE)
    broken["item"][0]["item"][0]["enableWhen"] = [
        {"question": "x", "operator": "=", "answerBoolean": True, "answerInteger": 1}]
    broken["item"][1]["bogus"] = 1
    problems = fhir.questionnaire_problems(broken)
    assert any("item[0].item[0].enableWhen[0]" in p for p in problems)
    assert any("item[1].bogus" in p for p in problems)


def _group(link_id):
    return QUESTIONNAIRE.item(link_id)


@pytest.mark.parametrize(("group", "panel", "items", "total"), [
    ("phq9", "44249-1", [
        ("44250-9", "Little interest or pleasure in doing things"),
        ("44255-8", "Feeling down, depressed, or hopeless"),
        ("44259-0", "Trouble falling or staying asleep, or sleeping too much"),
        ("44254-1", "Feeling tired or having little energy"),
        ("44251-7", "Poor appetite or overeating"),
        ("44258-2", "Feeling bad about yourself — or that you are a failure or have let yourself or your family down"),
        ("44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television"),
        ("44253-3", "Moving or speaking so slowly that other people could have noticed? Or the opposite — being so "
                    "fidgety or restless that you have been moving around a lot more than usual"),
        ("44260-8", "Thoughts that you would be better off dead or of hurting yourself in some way")], "44261-6"),
    ("gad7", "69737-5", [
        ("69725-0", "Feeling nervous, anxious or on edge"),
        ("68509-9", "Not being able to stop or control worrying"),
        ("69733-4", "Worrying too much about different things"),
        ("69734-2", "Trouble relaxing"),
        ("69735-9", "Being so restless that it is hard to sit still"),
        ("69689-8", "Becoming easily annoyed or irritable"),
        ("69736-7", "Feeling afraid as if something awful might happen")], "70274-6"),
])
def test_phq9_and_gad7_are_the_standard_instruments(group, panel, items, total):
    found = _group(group)
    assert [c.code for c in found.codes] == [panel]
    questions = [i for i in found.children if i.type == "choice" and i.options[0].score is not None]
    assert [(q.codes[0].code, q.text) for q in questions] == items
    for question in questions:
        assert question.required
        assert [(o.value.system, o.value.code, o.value.display, o.score) for o in question.options] == [
            (LOINC, code, display, score) for code, display, score in FREQUENCY]
    assert found.enable_when == (QUESTIONNAIRE.item("psychosis").enable_when[0],)
    assert found.enable_when[0].question == "psychiatric.history" and found.enable_when[0].answer is True
    totals = [i for i in found.children if i.total_of == group]
    assert [t.codes[0].code for t in totals] == [total]


def _phq9(scores):
    codes = [code for code, _, _ in FREQUENCY]
    items = [i for i in _group("phq9").children if i.options and i.options[0].score is not None]
    return {i.link_id: codes[s] for i, s in zip(items, scores, strict=True)}


def test_the_phq9_total_is_the_sum_of_its_answers():
    answers = settled_simple(QUESTIONNAIRE, {"psychiatric.history": True, **_phq9([3, 2, 1, 0, 3, 2, 1, 0, 1])})
    assert answers["phq9.44261-6"] == [13]
    assert "phq9.69722-7" in engine.enabled_ids(QUESTIONNAIRE, answers)  # problems checked: difficulty asked
    none = settled_simple(QUESTIONNAIRE, {"psychiatric.history": True, **_phq9([0] * 9)})
    assert "phq9.69722-7" not in engine.enabled_ids(QUESTIONNAIRE, none)


def test_without_a_mental_health_history_the_screens_are_skipped():
    answers = {"psychiatric.history": False, **_phq9([3] * 9)}
    settled = settled_simple(QUESTIONNAIRE, answers)
    assert settled == {"psychiatric.history": [False]}
    enabled = engine.enabled_ids(QUESTIONNAIRE, settled)
    assert not {"psychosis", "phq9", "gad7"} & enabled


def test_the_demo_answers_are_complete_and_eligible():
    answers = settled_simple(QUESTIONNAIRE, services.DEMO_ANSWERS)
    from app.intake.answers import missing

    assert missing(QUESTIONNAIRE, answers) == []
    assert rules.evaluate(RULESET, answers).outcome == rules.ELIGIBLE


# One test per rule, from the rules file -------------------------------------------------------

@pytest.mark.parametrize("rule", RULESET, ids=[r.id for r in RULESET])
def test_rule_matches_its_example_and_not_its_counter_example(rule):
    match = settled_simple(QUESTIONNAIRE, rule.examples["match"])
    no_match = settled_simple(QUESTIONNAIRE, rule.examples["no_match"])
    assert rules.holds(rule.when, match)
    assert not rules.holds(rule.when, no_match)


@pytest.mark.parametrize("rule", RULESET, ids=[r.id for r in RULESET])
def test_rule_decides_the_outcome_of_an_otherwise_eligible_intake(rule):
    answers = settled_simple(QUESTIONNAIRE, {**services.DEMO_ANSWERS, **rule.examples["match"]})
    result = rules.evaluate(RULESET, answers)
    assert result.outcome == rule.outcome
    assert rule.reason in result.reasons
    if rule.outcome == rules.NOT_ELIGIBLE:
        assert rule.next_steps
    assert result.urgent_help is (rule.signpost == "urgent_help")


def test_not_eligible_wins_over_review_and_review_lists_every_reason():
    answers = settled_simple(QUESTIONNAIRE, {**services.DEMO_ANSWERS, "pregnancy.status": "pregnant",
                                             "substances.other_drugs": True, "work.drives_for_work": True})
    result = rules.evaluate(RULESET, answers)
    assert result.outcome == rules.NOT_ELIGIBLE
    assert [f.rule for f in result.findings if f.outcome == rules.NOT_ELIGIBLE] == ["pregnant-or-breastfeeding"]
    review = settled_simple(QUESTIONNAIRE, {**services.DEMO_ANSWERS, "substances.other_drugs": True,
                                            "work.drives_for_work": True})
    result = rules.evaluate(RULESET, review)
    assert result.outcome == rules.NEEDS_REVIEW
    assert {f.rule for f in result.findings} == {"other-drug-use", "drives-for-work"}
    assert len(result.reasons) == 2


def test_a_free_text_treatment_counts_towards_the_two():
    answers = settled_simple(QUESTIONNAIRE, {**services.DEMO_ANSWERS,
                                             "treatments.licensed": ["opioid", "Lidocaine plasters"]})
    assert rules.evaluate(RULESET, answers).outcome == rules.ELIGIBLE
    only_none = settled_simple(QUESTIONNAIRE, {**services.DEMO_ANSWERS, "treatments.licensed": ["none"]})
    assert rules.evaluate(RULESET, only_none).outcome == rules.NOT_ELIGIBLE


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r: r["rules"][0].pop("examples"), "needs examples"),
    (lambda r: r["rules"][1]["examples"].update(match={"condition.diagnosed": "gp"}), "does not match its match"),
    (lambda r: r["rules"][1]["when"].update(question="nowhere"), "nowhere, which does not exist"),
    (lambda r: r["rules"][2].update(outcome="maybe"), "outcome must be one of"),
    (lambda r: r["rules"][2].pop("next_steps"), "what the patient can do next"),
    (lambda r: r["rules"][3].update(id=r["rules"][4]["id"]), "used twice"),
    (lambda r: r.update(questionnaire="urn:other"), "not for"),
])
def test_broken_rules_files_are_refused_with_a_reason(change, problem):
    broken = copy.deepcopy(RULES)
    change(broken)
    with pytest.raises(rules.RulesError) as refused:
        rules.parse(broken, QUESTIONNAIRE)
    assert any(problem in p for p in refused.value.problems), refused.value.problems


def test_codings_in_rules_must_be_options_of_the_question():
    broken = copy.deepcopy(RULES)
    broken["rules"][1]["when"]["answerCoding"] = {"code": "perhaps"}
    with pytest.raises(rules.RulesError, match="perhaps"):
        rules.parse(broken, QUESTIONNAIRE)
