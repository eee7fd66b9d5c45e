"""Charts as SVG, drawn on the server: no charting service, no script, nothing the strict CSP refuses
(presentation attributes only, never a `style` attribute).

A chart is a time axis with the measure's severity bands shaded, each series as points (joined by a
line for questionnaire scores, loose dots for daily values), and vertical markers at treatment
changes. Every point and marker has a <title> (the browser's tooltip) and `data-date`/`data-value`
attributes, so tests (and anyone) can read the picture back. The page shows the same values in a
table beside it: the chart is never the only way to read them.
"""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup

from app.outcomes.scoring import Band

WIDTH, HEIGHT = 480, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 14, 26, 34
#: Band shades by level: none/minimal to severe (NHS palette, pale).
BAND_FILLS = ("#e3f2e8", "#f4f7d9", "#fff3c4", "#fde0c5", "#f9d0cf")
SERIES_COLOURS = ("#005eb8", "#7c2855", "#007f3b", "#ed8b00")
MARKER_COLOURS = {"plan": "#330072", "prescription": "#4c6272"}
TEXT = "#212b32"
GRID = "#d8dde0"


@dataclass(frozen=True)
class Point:
    at: dt.date
    value: Decimal
    #: The tooltip, e.g. "3 March 2026: 14 (moderate)".
    label: str


@dataclass
class Series:
    name: str
    points: list[Point]
    #: "line" (points joined, e.g. questionnaire scores) or "dots" (e.g. daily check-ins).
    style: str = "line"


@dataclass(frozen=True)
class Marker:
    at: dt.date
    #: A short number or letter drawn at the top; the full text is the tooltip and the key below.
    tag: str
    label: str
    #: plan or prescription.
    kind: str


@dataclass
class Chart:
    title: str
    unit_label: str
    series: list[Series]
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    bands: Sequence[Band] = ()
    markers: list[Marker] = field(default_factory=list)


@dataclass(frozen=True)
class Scale:
    """Where a date and a value land in the picture."""

    start: dt.date
    end: dt.date
    low: float
    high: float

    def x(self, day: dt.date) -> float:
        span = max((self.end - self.start).days, 1)
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (day - self.start).days / span, 2)

    def y(self, value: Decimal | float) -> float:
        span = (self.high - self.low) or 1.0
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - (float(value) - self.low) / span), 2)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def scale_for(chart: Chart, start: dt.date | None = None, end: dt.date | None = None) -> Scale:
    days = [p.at for s in chart.series for p in s.points] + [m.at for m in chart.markers]
    first = start or (min(days) if days else dt.date.today())
    last = end or (max(days) if days else first)
    if (last - first).days < 28:  # a single point or a few days: show a month around them
        pad = (28 - (last - first).days) // 2 + 1
        first, last = first - dt.timedelta(days=pad), last + dt.timedelta(days=pad)
    values = [float(p.value) for s in chart.series for p in s.points]
    low = float(chart.minimum) if chart.minimum is not None else min([0.0, *values])
    high = float(chart.maximum) if chart.maximum is not None else _nice_ceiling(max(values, default=1.0) * 1.1)
    return Scale(first, last, low, high)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = _nice_ceiling((high - low) / count) if high > low else 1.0
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + 1e-9 and len(ticks) < 12:
        ticks.append(round(value, 6))
        value += step
    return ticks


def _month_ticks(start: dt.date, end: dt.date) -> list[dt.date]:
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    every = max(1, math.ceil(months / 6))
    ticks, year, month = [], start.year, start.month
    for index in range(months + 1):
        day = dt.date(year, month, 1)
        if start <= day <= end and index % every == 0:
            ticks.append(day)
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return ticks


def _label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _sub(parent: ET.Element, tag: str, **attributes: object) -> ET.Element:
    return ET.SubElement(parent, tag, {key.rstrip("_").replace("_", "-"): str(value)
                                       for key, value in attributes.items() if value is not None})


def render(chart: Chart, *, element_id: str, start: dt.date | None = None, end: dt.date | None = None) -> Markup:
    """The chart as an inline <svg> (safe to put in a template as it is)."""
    scale = scale_for(chart, start, end)
    title_id, desc_id = f"{element_id}-title", f"{element_id}-desc"
    svg = ET.Element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {WIDTH} {HEIGHT}", "width": "100%",
        "role": "img", "aria-labelledby": f"{title_id} {desc_id}", "id": element_id, "class": "verity-chart",
        "font-family": "Frutiger W01, Arial, sans-serif", "font-size": "11", "data-start": scale.start.isoformat(),
        "data-end": scale.end.isoformat(), "data-low": _label(scale.low), "data-high": _label(scale.high),
    })
    _sub(svg, "title", id=title_id).text = chart.title
    count = sum(len(s.points) for s in chart.series)
    _sub(svg, "desc", id=desc_id).text = (
        f"{count} value{'s' if count != 1 else ''} from {scale.start:%-d %B %Y} to {scale.end:%-d %B %Y}, "
        f"{len(chart.markers)} treatment change{'s' if len(chart.markers) != 1 else ''} marked. "
        "The table beside the chart lists the same values.")
    plot_left, plot_right, plot_top, plot_bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    bands = _sub(svg, "g", class_="verity-chart__bands")
    for band in chart.bands:
        top = scale.y(min(float(band.high) + 0.5, scale.high)) if band.high < Decimal(str(scale.high)) else plot_top
        bottom = scale.y(max(float(band.low) - 0.5, scale.low)) if band.low > Decimal(str(scale.low)) else plot_bottom
        rect = _sub(bands, "rect", x=plot_left, y=top, width=plot_right - plot_left, height=round(bottom - top, 2),
                    fill=BAND_FILLS[min(band.level, len(BAND_FILLS) - 1)], data_band=band.label)
        _sub(rect, "title").text = f"{band.label}: {band.low} to {band.high}"
        _sub(bands, "text", x=plot_right - 4, y=round(top + 11, 2), text_anchor="end", fill="#4c6272",
             font_size="9").text = band.label

    axes = _sub(svg, "g", class_="verity-chart__axes", fill=TEXT)
    for value in _ticks(scale.low, scale.high):
        y = scale.y(value)
        _sub(axes, "line", x1=plot_left, x2=plot_right, y1=y, y2=y, stroke=GRID, stroke_width="1")
        _sub(axes, "text", x=plot_left - 6, y=round(y + 4, 2), text_anchor="end").text = _label(value)
    for day in _month_ticks(scale.start, scale.end):
        x = scale.x(day)
        _sub(axes, "line", x1=x, x2=x, y1=plot_bottom, y2=plot_bottom + 4, stroke=TEXT, stroke_width="1")
        _sub(axes, "text", x=x, y=plot_bottom + 16, text_anchor="middle").text = day.strftime("%b %y")
    _sub(axes, "line", x1=plot_left, x2=plot_right, y1=plot_bottom, y2=plot_bottom, stroke=TEXT, stroke_width="1")
    _sub(axes, "text", x=4, y=plot_top - 10, fill=TEXT).text = chart.unit_label

    markers = _sub(svg, "g", class_="verity-chart__markers")
    for marker in chart.markers:
        x = scale.x(marker.at)
        colour = MARKER_COLOURS.get(marker.kind, TEXT)
        group = _sub(markers, "g", data_date=marker.at.isoformat(), data_kind=marker.kind, data_tag=marker.tag)
        _sub(group, "title").text = f"{marker.at:%-d %B %Y}: {marker.label}"
        _sub(group, "line", x1=x, x2=x, y1=plot_top - 4, y2=plot_bottom, stroke=colour, stroke_width="1.5",
             stroke_dasharray="4 3")
        tag = _sub(group, "text", x=x, y=plot_top - 8, text_anchor="middle", fill=colour, font_weight="bold")
        tag.text = marker.tag

    for index, series in enumerate(chart.series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        group = _sub(svg, "g", class_="verity-chart__series", data_series=series.name)
        points = sorted(series.points, key=lambda p: p.at)
        if series.style == "line" and len(points) > 1:
            _sub(group, "polyline", fill="none", stroke=colour, stroke_width="2",
                 points=" ".join(f"{scale.x(p.at)},{scale.y(p.value)}" for p in points))
        radius = "4" if series.style == "line" else "2.5"
        for point in points:
            dot = _sub(group, "circle", cx=scale.x(point.at), cy=scale.y(point.value), r=radius,
                       fill=colour if series.style == "line" else "#ffffff", stroke=colour, stroke_width="1.5",
                       data_date=point.at.isoformat(), data_value=_label(float(point.value)))
            _sub(dot, "title").text = point.label
    return Markup(ET.tostring(svg, encoding="unicode"))  # noqa: S704 (built by ElementTree, which escapes)
