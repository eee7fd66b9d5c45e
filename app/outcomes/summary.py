"""The clinic's summary: how mean GAD-7, PHQ-9, pain and sleep scores changed from baseline, by condition
and by product, with the number of patients behind each figure.

A patient counts at a time point when they answered both the baseline and that time point's
questionnaire; their change is (score at the time point) - (baseline score). "Latest" uses each
patient's most recent follow-up. A patient on two products counts under both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from app.auth.models import Role, User
from app.extensions import db
from app.outcomes import exports, schedule, scoring
from app.outcomes.models import OutcomeDue, OutcomeObservation, OutcomeResponse
from app.patients.models import Patient

MEASURES = (scoring.GAD7_TOTAL, scoring.PHQ9_TOTAL, scoring.PAIN, scoring.SLEEP)
LATEST = "latest"


@dataclass(frozen=True)
class Cell:
    patients: int
    baseline: Decimal
    then: Decimal

    @property
    def change(self) -> Decimal:
        return self.then - self.baseline


@dataclass
class MeasureRow:
    code: str
    label: str
    lower_is_better: bool | None
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Group:
    kind: str
    name: str
    patients: int
    rows: list[MeasureRow]


@dataclass
class Summary:
    timepoints: list[str]
    by_condition: list[Group]
    by_product: list[Group]
    patients: int

    def label(self, timepoint: str) -> str:
        return "Latest" if timepoint == LATEST else schedule.timepoint_label(timepoint)


def _scores(patient_ids: list[int]) -> dict[int, dict[str, dict[str, tuple]]]:
    """patient -> code -> timepoint -> (value, when), from completed scheduled questionnaires."""
    rows = db.session.execute(
        sa.select(OutcomeObservation.patient_id, OutcomeObservation.code, OutcomeObservation.value,
                  OutcomeObservation.effective_at, OutcomeDue.timepoint)
        .join(OutcomeResponse, OutcomeResponse.id == OutcomeObservation.response_id)
        .join(OutcomeDue, OutcomeDue.id == OutcomeResponse.due_id)
        .where(OutcomeObservation.code.in_(MEASURES), OutcomeObservation.patient_id.in_(patient_ids))
        .order_by(OutcomeObservation.effective_at)).all()
    found: dict[int, dict[str, dict[str, tuple]]] = defaultdict(lambda: defaultdict(dict))
    for patient_id, code, value, at, timepoint in rows:
        if timepoint == schedule.EXTRA:
            continue
        found[patient_id][code][timepoint] = (Decimal(value), at)
    return found


def _order(timepoint: str) -> int:
    return -1 if timepoint == schedule.BASELINE else int(timepoint.removeprefix("m"))


def clinic_summary(*, user: User) -> Summary:
    query = sa.select(Patient).where(Patient.id.in_(sa.select(OutcomeResponse.patient_id).distinct()))
    if user.role is Role.CLINICIAN:
        query = query.where(Patient.clinician_id == user.id)
    patients = list(db.session.scalars(query.order_by(Patient.id)))
    scores = _scores([p.id for p in patients])
    contexts = {p.id: exports.context_of(p) for p in patients}
    timepoints = [*sorted({tp for per_code in scores.values() for per_tp in per_code.values() for tp in per_tp
                           if tp != schedule.BASELINE}, key=_order), LATEST]

    def group(kind: str, name: str, members: list[int]) -> Group:
        rows = []
        for code in MEASURES:
            measure = scoring.measure(code)
            row = MeasureRow(code, measure.plain, measure.lower_is_better)
            for timepoint in timepoints:
                pairs = []
                for patient_id in members:
                    per_tp = scores.get(patient_id, {}).get(code, {})
                    if schedule.BASELINE not in per_tp:
                        continue
                    follow = {tp: v for tp, v in per_tp.items() if tp != schedule.BASELINE}
                    if timepoint == LATEST:
                        if not follow:
                            continue
                        then = max(follow.values(), key=lambda v: v[1])[0]
                    elif timepoint in follow:
                        then = follow[timepoint][0]
                    else:
                        continue
                    pairs.append((per_tp[schedule.BASELINE][0], then))
                if pairs:
                    count = Decimal(len(pairs))
                    row.cells[timepoint] = Cell(len(pairs), (sum(p[0] for p in pairs) / count).quantize(Decimal("0.1")),
                                                (sum(p[1] for p in pairs) / count).quantize(Decimal("0.1")))
            rows.append(row)
        return Group(kind, name, len(members), rows)

    by_condition: dict[str, list[int]] = defaultdict(list)
    by_product: dict[str, list[int]] = defaultdict(list)
    for patient in patients:
        context = contexts[patient.id]
        by_condition[context.condition].append(patient.id)
        for _product_id, name in context.products or [(0, "No product recorded")]:
            by_product[name].append(patient.id)
    return Summary(timepoints,
                   [group("condition", name, ids) for name, ids in sorted(by_condition.items())],
                   [group("product", name, ids) for name, ids in sorted(by_product.items())],
                   len(patients))
