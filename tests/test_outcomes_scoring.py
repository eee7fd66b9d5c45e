"""Scoring of GAD-7 and PHQ-9 against hand-computed cases, band boundaries included, and the scoring of the
instruments Verity ships as FHIR Questionnaires (pure: no database)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.intake import answers as answer_forms
from app.intake import questionnaire as q
from app.outcomes import instruments, scoring


@pytest.mark.parametrize(("items", "total", "band"), [
    ([0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ([1, 1, 1, 1, 0, 0, 0], 4, "minimal"),
    ([1, 1, 1, 1, 1, 0, 0], 5, "mild"),
    ([3, 3, 3, 0, 0, 0, 0], 9, "mild"),
    ([2, 2, 2, 2, 2, 0, 0], 10, "moderate"),
    ([2, 2, 2, 2, 2, 2, 2], 14, "moderate"),
    ([3, 3, 3, 3, 3, 0, 0], 15, "severe"),
    ([3, 3, 3, 3, 3, 3, 3], 21, "severe"),
])
def test_gad7_total_and_band(items, total, band):
    assert scoring.gad7_total(items) == total
    assert scoring.gad7_band(total) == band


@pytest.mark.parametrize(("items", "total", "band"), [
    ([0] * 9, 0, "none-minimal"),
    ([1, 1, 1, 1, 0, 0, 0, 0, 0], 4, "none-minimal"),
    ([1, 1, 1, 1, 1, 0, 0, 0, 0], 5, "mild"),
    ([1] * 9, 9, "mild"),
    ([2, 2, 2, 2, 2, 0, 0, 0, 0], 10, "moderate"),
    ([2, 2, 2, 2, 2, 2, 2, 0, 0], 14, "moderate"),
    ([3, 3, 3, 3, 3, 0, 0, 0, 0], 15, "moderately severe"),
    ([3, 3, 3, 2, 2, 2, 2, 2, 0], 19, "moderately severe"),
    ([3, 3, 3, 3, 2, 2, 2, 2, 0], 20, "severe"),
    ([3] * 9, 27, "severe"),
])
def test_phq9_total_and_band(items, total, band):
    assert scoring.phq9_total(items) == total
    assert scoring.phq9_band(total) == band


@pytest.mark.parametrize("items", [[0] * 6, [0] * 8, [4, 0, 0, 0, 0, 0, 0], [-1, 0, 0, 0, 0, 0, 0], [True] * 7])
def test_gad7_refuses_wrong_items(items):
    with pytest.raises(ValueError):
        scoring.gad7_total(items)


def test_totals_outside_the_scale_have_no_band():
    with pytest.raises(ValueError):
        scoring.gad7_band(22)
    with pytest.raises(ValueError):
        scoring.phq9_band(28)


def _questionnaire(name: str) -> q.Questionnaire:
    path = next(p for p in instruments.BUILT_IN if p.stem == name)
    return q.parse(json.loads(path.read_text()))


def _choices(questionnaire: q.Questionnaire, scores: list[int]) -> dict:
    scored = [i for i in questionnaire.questions() if i.options and all(o.score is not None for o in i.options)]
    return {item.link_id: next(o.key for o in item.options if o.score == s) for item, s in zip(scored, scores,
                                                                                                 strict=True)}


def test_the_shipped_gad7_scores_like_the_hand_count():
    questionnaire = _questionnaire("gad-7")
    answers = answer_forms.settled_simple(questionnaire, _choices(questionnaire, [3, 2, 2, 1, 1, 0, 1]))
    found = scoring.score(questionnaire, answers)
    assert [(s.system, s.code, s.value, s.band) for s in found] == [(scoring.LOINC, "70274-6", Decimal(10), "moderate")]


def test_the_shipped_phq9_scores_9_items_and_flags_item_9():
    questionnaire = _questionnaire("phq-9")
    simple = _choices(questionnaire, [1, 1, 1, 1, 0, 0, 0, 0, 1])
    answers = answer_forms.settled_simple(questionnaire, simple)
    assert [(s.code, s.value, s.band) for s in scoring.score(questionnaire, answers)] == [
        ("44261-6", Decimal(5), "mild")]
    assert scoring.urgent_help(questionnaire, answers) is True
    calm = answer_forms.settled_simple(questionnaire, _choices(questionnaire, [1, 1, 1, 1, 0, 0, 0, 0, 0]))
    assert scoring.urgent_help(questionnaire, calm) is False


def test_an_unanswered_item_cannot_be_scored():
    questionnaire = _questionnaire("gad-7")
    simple = _choices(questionnaire, [1, 1, 1, 1, 1, 1, 1])
    simple.pop(next(iter(simple)))
    with pytest.raises(ValueError):
        scoring.score(questionnaire, answer_forms.settled_simple(questionnaire, simple))


def test_the_rating_scales_and_the_change_question_score_their_answer():
    pain = _questionnaire("verity-pain")
    assert [(s.code, s.value, s.band) for s in scoring.score(pain, answer_forms.settled_simple(
        pain, {"pain.score": 7}))] == [("pain-nrs", Decimal(7), "severe")]
    change = _questionnaire("verity-change")
    assert [(s.code, s.value) for s in scoring.score(change, answer_forms.settled_simple(
        change, {"change.overall": "pgic-2"}))] == [("pgic", Decimal(2))]


def test_an_instrument_without_a_marked_score_is_refused():
    resource = json.loads(next(p for p in instruments.BUILT_IN if p.stem == "verity-pain").read_text())
    resource["item"][0]["item"][0]["extension"] = [e for e in resource["item"][0]["item"][0]["extension"]
                                                   if e["url"] != scoring.EXT_SCORE]
    with pytest.raises(instruments.InstrumentError, match="Mark at least one item"):
        instruments.check(resource)


def test_describe_change_says_which_way_is_better():
    assert scoring.describe_change("70274-6", Decimal(14), Decimal(6)) == (
        "Your anxiety (GAD-7) went down from 14 (moderate) to 6 (mild). Lower is better.")
    assert scoring.describe_change("sleep-quality-nrs", Decimal(3), Decimal(7)).endswith("Higher is better.")
