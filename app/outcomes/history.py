"""Scores over time beside the treatment: what the charts show, for the clinician and for the patient.

Treatment changes come from prescribing's services: each treatment-plan version, and each signed
prescription whose products or doses differ from the one before (the first prescription included).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.outcomes import charts, scoring
from app.outcomes.models import OutcomeObservation
from app.patients.models import Patient

#: Prescriptions that never reached the patient change nothing on the charts.
NOT_SUPPLIED = frozenset({"draft", "cancelled", "rejected", "superseded", "expired"})
SOURCES = {"questionnaire": "Questionnaire", "check-in": "Daily check-in", "import": "Imported"}


@dataclass(frozen=True)
class Change:
    at: dt.date
    kind: str
    label: str


def treatment_changes(patient: Patient) -> list[Change]:
    """Plan versions and product/dose changes, oldest first."""
    from app.prescribing import plans
    from app.prescribing import services as prescribing

    changes: list[Change] = []
    previous = None
    for version, differences, _author in reversed(plans.history(patient)):
        if previous is None:
            label = f"Treatment plan started ({version.indication})"
        else:
            label = f"Treatment plan version {version.version}: " + ", ".join(
                plans.FIELD_LABELS[key].lower() for key in differences) + " changed"
        changes.append(Change(version.created_at.date(), "plan", label))
        previous = version
    supplied = sorted((p for p in prescribing.prescriptions_for_patient(patient)
                       if p.signed_at is not None and p.status not in NOT_SUPPLIED), key=lambda p: p.signed_at)
    before: dict[str, str] = {}
    for prescription in supplied:
        now = {item.product_name: item.dose for item in prescription.items}
        if not before:
            label = "First prescription: " + "; ".join(f"{name}, {dose}" for name, dose in now.items())
        elif now != before:
            parts = [f"started {name}, {dose}" for name, dose in now.items() if name not in before]
            parts += [f"{name} dose now {dose}" for name, dose in now.items()
                      if name in before and before[name] != dose]
            parts += [f"stopped {name}" for name in before if name not in now]
            label = "Prescription changed: " + "; ".join(parts)
        else:
            continue
        changes.append(Change(prescription.signed_at.date(), "prescription", label))
        before = now
    return sorted(changes, key=lambda c: (c.at, c.kind))


def observations_of(patient: Patient, codes: list[str] | None = None) -> list[OutcomeObservation]:
    query = sa.select(OutcomeObservation).where(OutcomeObservation.patient_id == patient.id) \
        .order_by(OutcomeObservation.effective_at, OutcomeObservation.id)
    if codes:
        query = query.where(OutcomeObservation.code.in_(codes))
    return list(db.session.scalars(query))


@dataclass
class Row:
    at: dt.date
    value: Decimal
    band: str | None
    source: str
    series: str


@dataclass
class ChartView:
    code: str
    title: str
    svg: str
    rows: list[Row]
    #: For the patient: one sentence about how it moved since the first value.
    summary: str | None
    latest: Row | None
    unit_label: str
    markers: list[charts.Marker] = field(default_factory=list)


def _point(observation: OutcomeObservation, unit_label: str) -> charts.Point:
    value = scoring.number(observation.value)
    band = f" ({observation.band})" if observation.band else ""
    day = observation.effective_at.date()
    return charts.Point(day, observation.value, f"{day:%-d %B %Y}: {value} {unit_label}{band}".strip())


def chart_views(patient: Patient, *, element_prefix: str, questionnaires_only: bool = False,
                today: dt.date | None = None) -> list[ChartView]:
    """One chart per measure the patient has values for, with the treatment changes marked."""
    today = today or dt.date.today()
    by_code: dict[str, list[OutcomeObservation]] = defaultdict(list)
    displays: dict[str, str] = {}
    for observation in observations_of(patient):
        by_code[observation.code].append(observation)
        displays.setdefault(observation.code, observation.display)
    changes = treatment_changes(patient)
    markers = [charts.Marker(c.at, str(index), c.label, c.kind) for index, c in enumerate(changes, start=1)]
    present = set(by_code)
    # A daily check-in value shares its questionnaire score's chart; it has its own only without one.
    ordered = [code for code in scoring.MEASURES if code in present
               and (code not in scoring.COMPANIONS or scoring.COMPANIONS[code] not in present)]
    ordered += sorted(present - set(scoring.MEASURES))
    views = []
    for code in ordered:
        measure = scoring.measure(code)
        if questionnaires_only and measure is not None and not measure.questionnaire:
            continue
        title = measure.plain if measure else displays[code]
        unit_label = measure.unit_label if measure else "points"
        series_list = [charts.Series(measure.label if measure else displays[code],
                                     [_point(o, unit_label) for o in by_code[code]],
                                     "line" if (measure is None or measure.questionnaire) else "dots")]
        rows = [Row(o.effective_at.date(), o.value, o.band, SOURCES.get(o.source, o.source), series_list[0].name)
                for o in by_code[code]]
        companion = next((c for c, main in scoring.COMPANIONS.items() if main == code and c in by_code), None)
        if companion and not questionnaires_only:
            extra = scoring.measure(companion)
            series_list.append(charts.Series(extra.label, [_point(o, unit_label) for o in by_code[companion]], "dots"))
            rows += [Row(o.effective_at.date(), o.value, o.band, SOURCES.get(o.source, o.source), extra.label)
                     for o in by_code[companion]]
        chart = charts.Chart(title=f"{title} over time", unit_label=unit_label, series=series_list,
                             minimum=measure.minimum if measure else None, maximum=measure.maximum if measure else None,
                             bands=measure.bands if measure else (), markers=markers)
        first_day = min([p.at for s in series_list for p in s.points] + [m.at for m in markers])
        svg = charts.render(chart, element_id=f"{element_prefix}-{code}", start=min(first_day, today), end=today)
        main_points = by_code[code]
        summary = scoring.describe_change(code, main_points[0].value, main_points[-1].value) \
            if len(main_points) > 1 else None
        rows.sort(key=lambda r: (r.at, r.series))
        latest = next((r for r in reversed(rows) if r.series == series_list[0].name), None)
        views.append(ChartView(code, title, svg, rows, summary, latest, unit_label, markers))
    return views
