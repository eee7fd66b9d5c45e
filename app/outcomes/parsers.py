"""Reading health-data files into daily values, streaming, with a clear message naming the line at the
first problem. Pure: no database. Memory stays flat: nothing is kept but one running total per day.

CSV (the template is `TEMPLATE`): a header row naming the columns, then one row per day.

| column | meaning | accepted |
| --- | --- | --- |
| date | the day | 2026-03-14 or 14/03/2026, not in the future, from 2000 on |
| steps | steps that day | a whole number, 0 to 100,000 |
| sleep_hours | hours asleep the night before | 0 to 24, e.g. 7.5 |
| resting_heart_rate | resting heart rate | 25 to 250 beats a minute |

Any column but `date` may be left out, or left empty on a row; a row needs at least one value. Each
date may appear once. At most `MAX_CSV_ROWS` rows.

Apple Health (export.xml from "Export All Health Data", unzipped): `<Record>` elements of step count,
sleep analysis and resting heart rate, read with defusedxml's SAX parser, which refuses entity
declarations and external references (XML bombs). Steps are summed per day and source, and a day's
value is its largest source (an iPhone and a Watch count the same steps); sleep is the time asleep
(not "in bed") ending that day, also per source; resting heart rate is the day's mean.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import BinaryIO
from xml.sax import SAXParseException
from xml.sax.expatreader import ExpatLocator
from xml.sax.handler import ContentHandler

import defusedxml
import defusedxml.sax

from app.outcomes.scoring import RESTING_HEART_RATE, SLEEP_HOURS, STEPS

MAX_CSV_ROWS = 20_000
EARLIEST = dt.date(2000, 1, 1)
COLUMNS = {"date": None, "steps": STEPS, "sleep_hours": SLEEP_HOURS, "resting_heart_rate": RESTING_HEART_RATE}
RANGES = {STEPS: (Decimal(0), Decimal(100_000)), SLEEP_HOURS: (Decimal(0), Decimal(24)),
          RESTING_HEART_RATE: (Decimal(25), Decimal(250))}
NAMES = {STEPS: "steps", SLEEP_HOURS: "hours of sleep", RESTING_HEART_RATE: "resting heart rate"}
TEMPLATE = ("date,steps,sleep_hours,resting_heart_rate\n"
            "2026-03-01,8421,7.5,58\n"
            "2026-03-02,10250,6.75,60\n"
            "2026-03-03,,8,\n")
READ_BYTES = 256 * 1024
MAX_LINE_BYTES = 4096

APPLE_STEPS = "HKQuantityTypeIdentifierStepCount"
APPLE_SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
APPLE_RESTING_HR = "HKQuantityTypeIdentifierRestingHeartRate"
#: Sleep analysis values that mean asleep (iOS 16 and later split it by stage; older: "Asleep").
ASLEEP = frozenset({"HKCategoryValueSleepAnalysisAsleep", "HKCategoryValueSleepAnalysisAsleepUnspecified",
                    "HKCategoryValueSleepAnalysisAsleepCore", "HKCategoryValueSleepAnalysisAsleepDeep",
                    "HKCategoryValueSleepAnalysisAsleepREM"})


class ParseProblem(ValueError):
    """What is wrong with the file, for the person who sent it; `line` when one line is at fault."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"Line {line:,}: {message}" if line else message)
        self.line = line


@dataclass
class Daily:
    """Per measure code, per day, one value."""

    values: dict[str, dict[dt.date, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    #: Lines (CSV rows or XML records) read.
    lines: int = 0

    @property
    def days(self) -> int:
        return len({day for per_day in self.values.values() for day in per_day})

    def counts(self) -> dict[str, int]:
        return {code: len(per_day) for code, per_day in self.values.items() if per_day}


def _date(text: str, line: int, today: dt.date) -> dt.date:
    text = text.strip()
    try:
        if "/" in text:
            day, month, year = (int(p) for p in text.split("/"))
            value = dt.date(year, month, day)
        else:
            value = dt.date.fromisoformat(text)
    except ValueError:
        raise ParseProblem(f'"{text[:40]}" is not a date. Write dates like 2026-03-14 or 14/03/2026.', line) from None
    if value > today:
        raise ParseProblem(f"{value:%-d %B %Y} is in the future.", line)
    if value < EARLIEST:
        raise ParseProblem(f"{value:%-d %B %Y} is before 2000: check the date.", line)
    return value


def _number(text: str, code: str, line: int) -> Decimal:
    low, high = RANGES[code]
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ParseProblem(f'the {NAMES[code]} "{text.strip()[:40]}" is not a number.', line) from None
    if not value.is_finite() or not low <= value <= high:
        raise ParseProblem(f"the {NAMES[code]} {text.strip()[:40]} is outside {low:,} to {high:,}.", line)
    if code == STEPS and value != value.to_integral_value():
        raise ParseProblem(f"steps are a whole number, not {text.strip()[:40]}.", line)
    return value


def parse_csv(lines: Iterable[str], *, today: dt.date, progress: Callable[[int], None] | None = None) -> Daily:
    """Read the CSV's rows (text lines, the header first). Raise ParseProblem at the first bad line."""
    reader = csv.reader(lines)
    daily = Daily()
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ParseProblem(f"the header row cannot be read ({exc}).", 1) from None
    if not header or not any(cell.strip() for cell in header):
        raise ParseProblem("The file is empty: it needs a header row (date,steps,sleep_hours,resting_heart_rate) "
                           "and a row per day. Download the template to see how.")
    names = [cell.strip().lower().lstrip("\ufeff") for cell in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ParseProblem(f'the column "{unknown[0][:40]}" is not one Verity reads. The columns are date, steps, '
                           "sleep_hours and resting_heart_rate: download the template to see how.", 1)
    if "date" not in names:
        raise ParseProblem("the header row has no date column. The columns are date, steps, sleep_hours and "
                           "resting_heart_rate.", 1)
    if len(set(names)) != len(names):
        raise ParseProblem("a column is named twice in the header row.", 1)
    if len(names) == 1:
        raise ParseProblem("the header row names no values: add steps, sleep_hours or resting_heart_rate.", 1)
    seen: dict[dt.date, int] = {}
    rows = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ParseProblem(f"this line cannot be read as CSV ({exc}).", reader.line_num) from None
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        rows += 1
        if rows > MAX_CSV_ROWS:
            raise ParseProblem(f"the file has more than {MAX_CSV_ROWS:,} rows. Send at most {MAX_CSV_ROWS:,} days "
                               "at a time (split it by year).", line)
        if len(row) != len(names):
            raise ParseProblem(f"this row has {len(row)} values but the header names {len(names)} columns.", line)
        cells = dict(zip(names, row, strict=True))
        day = _date(cells["date"], line, today)
        if day in seen:
            raise ParseProblem(f"{day:%-d %B %Y} is already on line {seen[day]:,}: each day may appear once.", line)
        seen[day] = line
        found = False
        for name, code in COLUMNS.items():
            if code is None or not cells.get(name, "").strip():
                continue
            daily.values[code][day] = _number(cells[name], code, line)
            found = True
        if not found:
            raise ParseProblem(f"the row for {day:%-d %B %Y} has no values.", line)
        daily.lines = rows
        if progress is not None and rows % 1000 == 0:
            progress(rows)
    if rows == 0:
        raise ParseProblem("The file has a header row but no days under it.")
    return daily


def text_lines(stream: BinaryIO) -> Iterator[str]:
    """A byte stream as lines of UTF-8 text (a BOM is dropped), decoded a line at a time so a line that is
    not UTF-8, or one too long to be a row, is named."""
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ParseProblem(f"this line is longer than {MAX_LINE_BYTES:,} characters: it is not a row of days.",
                               number)
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseProblem("this line is not UTF-8 text. Save the file as \"CSV UTF-8\".", number) from None


# Apple Health ----------------------------------------------------------------------------------

APPLE_DATE = "%Y-%m-%d %H:%M:%S %z"


class _HealthHandler(ContentHandler):
    def __init__(self, today: dt.date):
        super().__init__()
        self.today = today
        self.root_seen = False
        self.records = 0
        self.steps: dict[tuple[dt.date, str], Decimal] = defaultdict(Decimal)
        self.sleep: dict[tuple[dt.date, str], Decimal] = defaultdict(Decimal)
        self.heart: dict[dt.date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])

    def line(self) -> int:
        return self._locator.getLineNumber() if self._locator else 0

    def startElement(self, name, attrs):
        if not self.root_seen:
            if name != "HealthData":
                raise ParseProblem(f"this is not an Apple Health export: it starts with <{name[:40]}>, not "
                                   "<HealthData>. Upload the export.xml from the apple_health_export folder.",
                                   self.line())
            self.root_seen = True
            return
        if name != "Record":
            return
        self.records += 1
        kind = attrs.get("type")
        if kind not in (APPLE_STEPS, APPLE_SLEEP, APPLE_RESTING_HR):
            return
        line = self.line()
        source = attrs.get("sourceName", "")[:100]
        start = self._when(attrs.get("startDate"), line)
        end = self._when(attrs.get("endDate"), line)
        if end < start:
            raise ParseProblem("the record ends before it starts.", line)
        if kind == APPLE_STEPS:
            self.steps[(start.date(), source)] += _number(attrs.get("value", ""), STEPS, line)
        elif kind == APPLE_RESTING_HR:
            totals = self.heart[start.date()]
            totals[0] += _number(attrs.get("value", ""), RESTING_HEART_RATE, line)
            totals[1] += 1
        elif attrs.get("value") in ASLEEP:
            hours = Decimal((end - start).total_seconds()) / 3600
            if hours > 24:
                raise ParseProblem("a sleep record lasts more than 24 hours.", line)
            self.sleep[(end.date(), source)] += hours

    def _when(self, text: str | None, line: int) -> dt.datetime:
        try:
            value = dt.datetime.strptime(text or "", APPLE_DATE)
        except ValueError:
            raise ParseProblem(f'the date "{(text or "")[:40]}" is not one Apple Health writes '
                               "(like 2026-03-14 07:30:00 +0000).", line) from None
        if value.date() > self.today + dt.timedelta(days=1):
            raise ParseProblem(f"{value.date():%-d %B %Y} is in the future.", line)
        if value.date() < EARLIEST:
            raise ParseProblem(f"{value.date():%-d %B %Y} is before 2000: check the export.", line)
        return value

    def daily(self) -> Daily:
        found = Daily(lines=self.records)
        for (day, _source), steps in self.steps.items():
            found.values[STEPS][day] = max(found.values[STEPS].get(day, Decimal(0)), steps)
        for (day, _source), hours in self.sleep.items():
            rounded = min(hours, Decimal(24)).quantize(Decimal("0.01"))
            found.values[SLEEP_HOURS][day] = max(found.values[SLEEP_HOURS].get(day, Decimal(0)), rounded)
        for day, (total, count) in self.heart.items():
            found.values[RESTING_HEART_RATE][day] = (total / count).quantize(Decimal("0.1"))
        return found


def parse_apple_health(stream: BinaryIO, *, today: dt.date,
                       progress: Callable[[int], None] | None = None) -> Daily:
    """Read an Apple Health export.xml as it streams in; `progress(bytes read)` is called as it goes."""
    handler = _HealthHandler(today)
    parser = defusedxml.sax.make_parser()
    parser.setContentHandler(handler)
    handler.setDocumentLocator(ExpatLocator(parser))  # feed() alone never sets it
    read = 0
    try:
        while piece := stream.read(READ_BYTES):
            parser.feed(piece)
            read += len(piece)
            if progress is not None:
                progress(read)
        parser.close()
    except SAXParseException as exc:
        raise ParseProblem(f"the file is not well-formed XML ({exc.getMessage()}). Export it again from the "
                           "Health app.", exc.getLineNumber()) from None
    except defusedxml.DefusedXmlException:
        raise ParseProblem("the file declares XML entities or external references, which Verity refuses (they can "
                           "be used to attack a server). Upload the export.xml exactly as the Health app wrote it.",
                           handler.line() or None) from None
    if not handler.root_seen:
        raise ParseProblem("The file is empty: upload the export.xml from the apple_health_export folder.")
    daily = handler.daily()
    if not daily.counts():
        raise ParseProblem("The export has no steps, sleep or resting heart rate records: nothing to import.")
    return daily
