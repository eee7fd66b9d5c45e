"""Scores and what they mean: the measures Verity charts, their severity bands, and the scoring of a
completed questionnaire. Pure functions: no database, no request.

GAD-7 (Spitzer et al. 2006): seven items scored 0-3, total 0-21; bands 0-4 minimal, 5-9 mild,
10-14 moderate, 15-21 severe. PHQ-9 (Kroenke et al. 2001): nine items 0-3, total 0-27; bands 0-4
none-minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-27 severe. Item 9 (thoughts of
self-harm) above "not at all" calls for urgent-help signposting whatever the total.

An instrument marks the items that are scores with Verity's `outcome-score` extension; each becomes
an Observation coded like the item (LOINC where LOINC has a code). A score item is either a read-only
total (the sum of the option scores of a group, worked out by the intake engine), a number the
patient types (the 0-10 scales), or a single choice whose option carries a score (the 7-point change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.intake import engine
from app.intake.questionnaire import Coding, Item, Questionnaire

LOINC = "http://loinc.org"
VERITY_CODES = "https://verity.example/fhir/CodeSystem/outcomes"
EXT_SCORE = "https://verity.example/fhir/StructureDefinition/outcome-score"

GAD7_TOTAL = "70274-6"
PHQ9_TOTAL = "44261-6"
PHQ9_ITEM9 = "44260-8"
PAIN = "pain-nrs"
SLEEP = "sleep-quality-nrs"
CHANGE = "pgic"
PAIN_TODAY = "pain-today"
SLEEP_LAST_NIGHT = "sleep-last-night"
STEPS = "55423-8"
SLEEP_HOURS = "93832-4"
RESTING_HEART_RATE = "40443-4"


@dataclass(frozen=True)
class Band:
    low: Decimal
    high: Decimal
    label: str
    #: 0 (none) to 4 (most severe): picks the band's shade on a chart.
    level: int


@dataclass(frozen=True)
class Measure:
    system: str
    code: str
    #: As clinicians read it ("GAD-7 total score").
    label: str
    #: As the patient reads it ("Anxiety").
    plain: str
    unit: str
    #: The unit as people read it ("points", "steps").
    unit_label: str
    minimum: Decimal | None
    maximum: Decimal | None
    bands: tuple[Band, ...] = ()
    #: True when a lower value is better, False when higher is, None when neither.
    lower_is_better: bool | None = True
    #: Questionnaire scores (shown in the summary and on their own charts) as opposed to device data.
    questionnaire: bool = True


def _bands(*spec: tuple[int, int, str]) -> tuple[Band, ...]:
    return tuple(Band(Decimal(low), Decimal(high), label, level) for level, (low, high, label) in enumerate(spec))


GAD7_BANDS = _bands((0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe"))
PHQ9_BANDS = _bands((0, 4, "none-minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 19, "moderately severe"),
                    (20, 27, "severe"))
#: The usual reading of a 0-10 pain rating (e.g. Serlin et al. 1995's cut points).
PAIN_BANDS = _bands((0, 0, "no pain"), (1, 3, "mild"), (4, 6, "moderate"), (7, 10, "severe"))

_D = Decimal
MEASURES: dict[str, Measure] = {m.code: m for m in (
    Measure(LOINC, GAD7_TOTAL, "GAD-7 total score", "Anxiety (GAD-7)", "{score}", "points", _D(0), _D(21),
            GAD7_BANDS),
    Measure(LOINC, PHQ9_TOTAL, "PHQ-9 total score", "Low mood (PHQ-9)", "{score}", "points", _D(0), _D(27),
            PHQ9_BANDS),
    Measure(VERITY_CODES, PAIN, "Average pain, last 7 days (0-10)", "Pain", "{score}", "out of 10", _D(0), _D(10),
            PAIN_BANDS),
    Measure(VERITY_CODES, SLEEP, "Sleep quality, last 7 days (0-10)", "Sleep quality", "{score}", "out of 10",
            _D(0), _D(10), (), lower_is_better=False),
    Measure(VERITY_CODES, CHANGE, "Global impression of change (1-7)", "Overall change", "{score}",
            "(1 very much better, 7 very much worse)", _D(1), _D(7), (), lower_is_better=True),
    Measure(VERITY_CODES, PAIN_TODAY, "Pain today (daily check-in, 0-10)", "Pain today", "{score}", "out of 10",
            _D(0), _D(10), PAIN_BANDS, questionnaire=False),
    Measure(VERITY_CODES, SLEEP_LAST_NIGHT, "Sleep last night (daily check-in, 0-10)", "Sleep last night",
            "{score}", "out of 10", _D(0), _D(10), (), lower_is_better=False, questionnaire=False),
    Measure(LOINC, STEPS, "Steps in 24 hours", "Steps a day", "/d", "steps", _D(0), None, (), lower_is_better=False,
            questionnaire=False),
    Measure(LOINC, SLEEP_HOURS, "Sleep duration", "Hours of sleep", "h", "hours", _D(0), _D(24), (),
            lower_is_better=None, questionnaire=False),
    Measure(LOINC, RESTING_HEART_RATE, "Resting heart rate", "Resting heart rate", "/min", "beats a minute", None,
            None, (), lower_is_better=None, questionnaire=False),
)}
#: Where each daily check-in answer is charted: the same chart as the questionnaire score it echoes.
COMPANIONS = {PAIN_TODAY: PAIN, SLEEP_LAST_NIGHT: SLEEP}


def measure(code: str) -> Measure | None:
    return MEASURES.get(code)


def band(code: str, value: Decimal | int) -> Band | None:
    """The severity band a value falls in (None when the measure has no bands or the value fits none)."""
    known = MEASURES.get(code)
    if known is None:
        return None
    number = Decimal(value)
    return next((b for b in known.bands if b.low <= number <= b.high), None)


def _check_items(scores: Sequence[int], count: int, name: str) -> None:
    if len(scores) != count:
        raise ValueError(f"{name} has {count} items, not {len(scores)}")
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 3:
            raise ValueError(f"{name} items are scored 0 to 3, not {score!r}")


def gad7_total(item_scores: Sequence[int]) -> int:
    """The GAD-7 total from its seven item scores (0-3 each)."""
    _check_items(item_scores, 7, "GAD-7")
    return sum(item_scores)


def phq9_total(item_scores: Sequence[int]) -> int:
    """The PHQ-9 total from its nine item scores (0-3 each; the difficulty question is not scored)."""
    _check_items(item_scores, 9, "PHQ-9")
    return sum(item_scores)


def gad7_band(total: int) -> str:
    found = band(GAD7_TOTAL, total)
    if found is None:
        raise ValueError(f"a GAD-7 total is 0 to 21, not {total}")
    return found.label


def phq9_band(total: int) -> str:
    found = band(PHQ9_TOTAL, total)
    if found is None:
        raise ValueError(f"a PHQ-9 total is 0 to 27, not {total}")
    return found.label


# Scoring a questionnaire ----------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    link_id: str
    system: str
    code: str
    display: str
    value: Decimal
    band: str | None


def score_items(questionnaire: Questionnaire) -> list[Item]:
    """The items of an instrument that are scores (marked with the outcome-score extension)."""
    marked = {link_id for link_id in _marked(questionnaire.resource.get("item") or [])}
    return [item for item in questionnaire.items() if item.link_id in marked]


def _marked(raw_items: list[dict]) -> list[str]:
    found = []
    for raw in raw_items:
        if any(e.get("url") == EXT_SCORE and e.get("valueBoolean") for e in raw.get("extension") or []):
            found.append(str(raw.get("linkId")))
        found.extend(_marked(raw.get("item") or []))
    return found


def check_instrument(questionnaire: Questionnaire) -> list[str]:
    """What stops an instrument from being scored: no score item, a score item without a code, or one
    that is not a total, a number, or a single scored choice."""
    problems = []
    items = score_items(questionnaire)
    if not items:
        problems.append("Mark at least one item as a score (extension "
                        f"{EXT_SCORE} with valueBoolean true): Verity charts each score.")
    for item in items:
        where = f"Score item {item.link_id}"
        if not item.codes or not item.codes[0].code:
            problems.append(f"{where} needs a code (LOINC where there is one): it becomes the Observation's code.")
        if item.total_of:
            continue
        if item.type in ("integer", "decimal"):
            continue
        if item.type == "choice" and not item.repeats and item.options and all(o.score is not None
                                                                                for o in item.options):
            continue
        problems.append(f"{where} must be a read-only total, a number, or a single choice whose options all "
                        "carry a score (ordinalValue).")
    return problems


def score(questionnaire: Questionnaire, answers: engine.Answers) -> list[Score]:
    """Every score of a completed questionnaire. Raises ValueError when a score cannot be worked out
    (an unanswered scored question): the caller only scores complete answers."""
    found = []
    for item in score_items(questionnaire):
        coding = item.codes[0]
        if item.total_of:
            value = engine.total_score(questionnaire, answers, item.total_of)
        else:
            value = _answer_value(item, answers.get(item.link_id) or [])
        if value is None:
            raise ValueError(f"{item.link_id} cannot be scored: a question it depends on is unanswered")
        chosen = band(coding.code, value)
        found.append(Score(item.link_id, coding.system or VERITY_CODES, coding.code,
                           coding.display or item.text, Decimal(value), chosen.label if chosen else None))
    return found


def _answer_value(item: Item, values: list) -> Decimal | None:
    if not values:
        return None
    value = values[0]
    if isinstance(value, Coding):
        option = next((o for o in item.options if isinstance(o.value, Coding) and o.value.matches(value)), None)
        return option.score if option is not None else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    return None


def urgent_help(questionnaire: Questionnaire, answers: engine.Answers) -> bool:
    """PHQ-9 item 9 (LOINC 44260-8) answered above "not at all": show urgent-help numbers."""
    for item in questionnaire.questions():
        if any(c.code == PHQ9_ITEM9 for c in item.codes):
            value = _answer_value(item, answers.get(item.link_id) or [])
            if value is not None and value > 0:
                return True
    return False


# Plain language -------------------------------------------------------------------------------

def number(value: Decimal | int | float) -> str:
    """A value as people write it: 7, 7.5, 10,240."""
    decimal = Decimal(str(value))
    if decimal == decimal.to_integral_value():
        return f"{int(decimal):,}"
    return f"{decimal.quantize(Decimal('0.1')).normalize():,f}"


def describe_change(code: str, first: Decimal, last: Decimal) -> str:
    """One sentence for the patient about how a measure moved, e.g. "Your anxiety score went down from
    14 (moderate) to 6 (mild). Lower is better."""
    known = MEASURES.get(code)
    name = known.plain[0].lower() + known.plain[1:] if known else "score"
    first_band, last_band = band(code, first), band(code, last)
    start = number(first) + (f" ({first_band.label})" if first_band else "")
    end = number(last) + (f" ({last_band.label})" if last_band else "")
    if last == first:
        sentence = f"Your {name} is the same as at the start: {end}."
    else:
        direction = "down" if last < first else "up"
        sentence = f"Your {name} went {direction} from {start} to {end}."
    if known is not None and known.lower_is_better is True:
        sentence += " Lower is better."
    elif known is not None and known.lower_is_better is False:
        sentence += " Higher is better."
    return sentence
