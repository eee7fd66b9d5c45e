"""The server-drawn SVG charts, read back by parsing the SVG: points where the values are, severity bands
shaded, treatment changes marked at their dates, nothing the strict CSP refuses; and the demo patient's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import defusedxml.ElementTree as ET
import sqlalchemy as sa

from app.extensions import db
from app.outcomes import charts, history, scoring, services
from app.outcomes.models import OutcomeDue, OutcomeObservation, OutcomeResponse
from app.patients import services as patients

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def _scale(svg: ET.Element) -> charts.Scale:
    return charts.Scale(dt.date.fromisoformat(svg.get("data-start")), dt.date.fromisoformat(svg.get("data-end")),
                        float(svg.get("data-low")), float(svg.get("data-high")))


def test_a_chart_places_points_bands_and_markers_where_they_belong():
    points = [charts.Point(dt.date(2026, 1, 5), Decimal(14), "14"), charts.Point(dt.date(2026, 2, 5), Decimal(9), "9")]
    chart = charts.Chart("GAD-7", "points", [charts.Series("GAD-7", points)], Decimal(0), Decimal(21),
                         scoring.GAD7_BANDS, [charts.Marker(dt.date(2026, 1, 20), "1", "Dose changed", "prescription")])
    svg = _parse(charts.render(chart, element_id="c1"))
    scale = _scale(svg)
    circles = list(svg.iter(f"{SVG}circle"))
    assert [(c.get("data-date"), c.get("data-value")) for c in circles] == [("2026-01-05", "14"), ("2026-02-05", "9")]
    for circle, point in zip(circles, points, strict=True):
        assert float(circle.get("cx")) == scale.x(point.at)
        assert float(circle.get("cy")) == scale.y(point.value)
        assert circle.find(f"{SVG}title").text == point.label
    assert float(circles[0].get("cy")) < float(circles[1].get("cy"))  # higher scores sit higher
    bands = {r.get("data-band"): r for r in svg.iter(f"{SVG}rect")}
    assert list(bands) == ["minimal", "mild", "moderate", "severe"]
    # "mild" (5-9) runs from 4.5 to 9.5 on the value axis.
    mild = bands["mild"]
    assert float(mild.get("y")) == scale.y(9.5)
    assert round(float(mild.get("y")) + float(mild.get("height")), 2) == scale.y(4.5)
    (marker,) = [g for g in svg.iter(f"{SVG}g") if g.get("data-kind")]
    assert marker.get("data-date") == "2026-01-20"
    assert float(marker.find(f"{SVG}line").get("x1")) == scale.x(dt.date(2026, 1, 20))
    assert "Dose changed" in marker.find(f"{SVG}title").text
    assert not [e for e in svg.iter() if "style" in e.attrib or any(k.startswith("on") for k in e.attrib)]
    assert svg.find(f"{SVG}title").text == "GAD-7" and svg.get("role") == "img"


def test_text_in_a_chart_is_escaped():
    chart = charts.Chart("<script>alert(1)</script>", "pts", [charts.Series("s", [
        charts.Point(dt.date(2026, 1, 1), Decimal(1), "<b>x</b>")])])
    markup = str(charts.render(chart, element_id="c2"))
    assert "<script>" not in markup and "&lt;script&gt;" in markup


def test_the_demo_patients_charts_hold_the_scores_and_the_treatment_changes_at_their_dates(ctx):
    from app import demo

    demo.load()
    user = next(a for a in demo.ACCOUNTS if a.role.value == "patient")
    from app.auth import services as accounts

    patient = patients.for_user(accounts.find_by_email(user.email))
    due = services.load_demo_outcomes(patient)
    again = services.load_demo_outcomes(patient)
    assert again.id == due.id and due.status == "due" and due.instrument_url.endswith("gad-7")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutcomeDue).where(
        OutcomeDue.patient_id == patient.id, OutcomeDue.status == "due")) == 1

    observations = db.session.scalars(sa.select(OutcomeObservation).where(
        OutcomeObservation.patient_id == patient.id, OutcomeObservation.code == scoring.GAD7_TOTAL)
        .order_by(OutcomeObservation.effective_at)).all()
    assert [o.value for o in observations] == [Decimal(v) for v in services.DEMO_GAD7[:len(observations)]]
    assert len(observations) >= 5  # a baseline and monthly scores
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutcomeResponse).where(
        OutcomeResponse.patient_id == patient.id)) == len(observations) * 5 - 1  # four scales and PGIC after baseline

    changes = history.treatment_changes(patient)
    assert changes and changes[0].kind == "plan" and changes[0].label.startswith("Treatment plan started")
    views = {v.code: v for v in history.chart_views(patient, element_prefix="demo")}
    assert {scoring.GAD7_TOTAL, scoring.PHQ9_TOTAL, scoring.PAIN, scoring.SLEEP, scoring.CHANGE} <= set(views)
    svg = _parse(views[scoring.GAD7_TOTAL].svg)
    scale = _scale(svg)
    circles = list(svg.iter(f"{SVG}circle"))
    assert [c.get("data-date") for c in circles] == [o.effective_at.date().isoformat() for o in observations]
    assert [c.get("data-value") for c in circles] == [str(int(o.value)) for o in observations]
    for circle, observation in zip(circles, observations, strict=True):
        assert float(circle.get("cx")) == scale.x(observation.effective_at.date())
    markers = [g for g in svg.iter(f"{SVG}g") if g.get("data-kind")]
    assert [(m.get("data-date"), m.get("data-kind")) for m in markers] == [
        (c.at.isoformat(), c.kind) for c in changes]
    for marker, change in zip(markers, changes, strict=True):
        assert float(marker.find(f"{SVG}line").get("x1")) == scale.x(change.at)
    # The pain chart carries the daily check-ins as a second series.
    pain = _parse(views[scoring.PAIN].svg)
    assert {g.get("data-series") for g in pain.iter(f"{SVG}g") if g.get("data-series")} == {
        "Average pain, last 7 days (0-10)", "Pain today (daily check-in, 0-10)"}


def test_a_prescription_change_is_marked_on_the_day_it_was_signed(ctx, personas):
    from tests.test_prescribing_helpers import OIL, prepare, sign_new

    ready = prepare(personas)
    first = sign_new(ready)
    second = sign_new(ready, name=OIL, quantity="10", dose="0.5 ml twice a day")
    patient = patients.get(ready.patient_id)
    changes = history.treatment_changes(patient)
    kinds = [(c.kind, c.label.split(":")[0]) for c in changes]
    assert kinds == [("plan", "Treatment plan started (Chronic pain)"), ("prescription", "First prescription"),
                     ("prescription", "Prescription changed")]
    assert changes[1].at == first.signed_at.date() and changes[2].at == second.signed_at.date()
    assert "started Equilibria 10:10 Oil, 0.5 ml twice a day" in changes[2].label
    assert "stopped Verdant T22 Flower" in changes[2].label
