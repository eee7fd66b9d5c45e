"""Reading health-data files: the CSV's documented columns and its bad lines, Apple Health's export.xml
streamed, and XML that must be refused (entity bombs, external entities, malformed). Pure: no database."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest

from app.outcomes import parsers
from app.outcomes.scoring import RESTING_HEART_RATE, SLEEP_HOURS, STEPS

TODAY = dt.date(2026, 3, 20)


def read_csv(text: str) -> parsers.Daily:
    return parsers.parse_csv(parsers.text_lines(io.BytesIO(text.encode())), today=TODAY)


def test_the_template_reads_as_documented():
    daily = read_csv(parsers.TEMPLATE)
    assert daily.values[STEPS] == {dt.date(2026, 3, 1): Decimal(8421), dt.date(2026, 3, 2): Decimal(10250)}
    assert daily.values[SLEEP_HOURS][dt.date(2026, 3, 3)] == Decimal(8)
    assert daily.values[RESTING_HEART_RATE] == {dt.date(2026, 3, 1): Decimal(58), dt.date(2026, 3, 2): Decimal(60)}
    assert daily.days == 3


def test_columns_in_any_order_with_a_bom_and_uk_dates():
    daily = read_csv("\ufeffSteps,Date\n1200,14/03/2026\n")
    assert daily.values[STEPS] == {dt.date(2026, 3, 14): Decimal(1200)}


@pytest.mark.parametrize(("text", "line", "words"), [
    ("day,steps\n2026-03-01,100\n", 1, 'the column "day" is not one Verity reads'),
    ("steps\n100\n", 1, "no date column"),
    ("date,steps\n2026-03-01,100\n2026-02-30,100\n", 3, '"2026-02-30" is not a date'),
    ("date,steps\n2026-03-01,100\n2026-04-01,100\n", 3, "is in the future"),
    ("date,steps\n1999-12-31,100\n", 2, "before 2000"),
    ("date,steps\n2026-03-01,lots\n", 2, 'the steps "lots" is not a number'),
    ("date,steps\n2026-03-01,100001\n", 2, "outside 0 to 100,000"),
    ("date,sleep_hours\n2026-03-01,25\n", 2, "outside 0 to 24"),
    ("date,resting_heart_rate\n2026-03-01,12\n", 2, "outside 25 to 250"),
    ("date,steps\n2026-03-01,100\n2026-03-01,200\n", 3, "already on line 2"),
    ("date,steps\n2026-03-01,100,5\n", 2, "has 3 values but the header names 2"),
    ("date,steps\n2026-03-01,\n", 2, "has no values"),
    ("date,steps\n2026-03-01,12.5\n", 2, "whole number"),
])
def test_a_bad_line_is_named(text, line, words):
    with pytest.raises(parsers.ParseProblem) as caught:
        read_csv(text)
    assert caught.value.line == line
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"Line {line}:")


def test_a_million_rows_are_refused_early_naming_the_line():
    read = []

    def rows(day_of):
        yield "date,steps\n"
        for number in range(1_000_000):
            read.append(number)
            yield f"{day_of(number).isoformat()},10\n"

    # A million rows cannot all be different days since 2000: the first repeat stops the reading.
    with pytest.raises(parsers.ParseProblem) as caught:
        parsers.parse_csv(rows(lambda n: dt.date(2000, 1, 1) + dt.timedelta(days=n % 9000)), today=TODAY)
    assert caught.value.line == 9002 and "already on line 2" in str(caught.value)
    assert len(read) < 9010
    # And past the row limit, whatever the rows hold, the line past it is named.
    read.clear()
    original, parsers.MAX_CSV_ROWS = parsers.MAX_CSV_ROWS, 500
    try:
        with pytest.raises(parsers.ParseProblem) as caught:
            parsers.parse_csv(rows(lambda n: dt.date(2000, 1, 1) + dt.timedelta(days=n)), today=TODAY)
    finally:
        parsers.MAX_CSV_ROWS = original
    assert caught.value.line == 502 and "more than 500 rows" in str(caught.value)
    assert len(read) == 501


def test_a_line_too_long_to_be_a_row_is_refused():
    with pytest.raises(parsers.ParseProblem, match="Line 2: this line is longer"):
        list(parsers.text_lines(io.BytesIO(b"date,steps\n" + b"9" * 100_000)))


def test_text_that_is_not_utf8_is_named_by_line():
    with pytest.raises(parsers.ParseProblem, match="Line 3: this line is not UTF-8"):
        list(parsers.text_lines(io.BytesIO(b"date,steps\n2026-03-01,1\n2026-03-02,\xff\xfe\n")))


def test_an_empty_file_or_a_header_alone_is_refused():
    with pytest.raises(parsers.ParseProblem, match="The file is empty"):
        read_csv("")
    with pytest.raises(parsers.ParseProblem, match="no days under it"):
        read_csv("date,steps\n")


HEALTH = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
]>
<HealthData locale="en_GB">
 <ExportDate value="2026-03-19 20:00:00 +0000"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1986-04-12"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alex's iPhone" unit="count" startDate="2026-03-18 08:00:00 +0000" endDate="2026-03-18 08:10:00 +0000" value="1000"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alex's iPhone" unit="count" startDate="2026-03-18 12:00:00 +0000" endDate="2026-03-18 12:10:00 +0000" value="2500">
  <MetadataEntry key="HKWasUserEntered" value="0"/>
 </Record>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alex's Watch" unit="count" startDate="2026-03-18 08:00:00 +0000" endDate="2026-03-18 08:10:00 +0000" value="3000"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alex's Watch" startDate="2026-03-17 23:00:00 +0000" endDate="2026-03-18 03:00:00 +0000" value="HKCategoryValueSleepAnalysisAsleepCore"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alex's Watch" startDate="2026-03-18 03:00:00 +0000" endDate="2026-03-18 06:30:00 +0000" value="HKCategoryValueSleepAnalysisAsleepDeep"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alex's Watch" startDate="2026-03-17 22:30:00 +0000" endDate="2026-03-18 07:00:00 +0000" value="HKCategoryValueSleepAnalysisInBed"/>
 <Record type="HKQuantityTypeIdentifierRestingHeartRate" sourceName="Alex's Watch" unit="count/min" startDate="2026-03-18 09:00:00 +0000" endDate="2026-03-18 09:00:00 +0000" value="58"/>
 <Record type="HKQuantityTypeIdentifierRestingHeartRate" sourceName="Alex's Watch" unit="count/min" startDate="2026-03-18 21:00:00 +0000" endDate="2026-03-18 21:00:00 +0000" value="61"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alex's Watch" unit="count/min" startDate="2026-03-18 09:00:00 +0000" endDate="2026-03-18 09:00:00 +0000" value="90"/>
</HealthData>
"""  # noqa: E501 (records as the Health app writes them, one per line: the tests name their lines)


def read_health(text: str | bytes) -> parsers.Daily:
    data = text.encode() if isinstance(text, str) else text
    return parsers.parse_apple_health(io.BytesIO(data), today=TODAY)


def test_an_apple_health_export_becomes_daily_values():
    daily = read_health(HEALTH)
    day = dt.date(2026, 3, 18)
    # The phone counted 3,500 steps that day, the watch 3,000: the day is its largest source, not the sum.
    assert daily.values[STEPS] == {day: Decimal(3500)}
    assert daily.values[SLEEP_HOURS] == {day: Decimal("7.50")}  # asleep, not "in bed"
    assert daily.values[RESTING_HEART_RATE] == {day: Decimal("59.5")}
    assert daily.lines == 9


def test_an_xml_entity_bomb_is_refused_before_it_expands():
    bomb = ('<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            '<HealthData locale="en">&c;</HealthData>')
    with pytest.raises(parsers.ParseProblem, match="declares XML entities"):
        read_health(bomb)


def test_an_external_entity_is_refused():
    xxe = ('<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<HealthData locale="en">&x;</HealthData>')
    with pytest.raises(parsers.ParseProblem, match="declares XML entities"):
        read_health(xxe)


def test_malformed_xml_names_its_line():
    broken = HEALTH.replace('value="2500">', 'value="2500"')
    with pytest.raises(parsers.ParseProblem) as caught:
        read_health(broken)
    assert caught.value.line is not None and caught.value.line >= 11
    assert "not well-formed XML" in str(caught.value)


def test_a_record_with_a_bad_date_or_value_names_its_line():
    bad = HEALTH.replace('startDate="2026-03-18 12:00:00 +0000"', 'startDate="18/03/2026"')
    with pytest.raises(parsers.ParseProblem) as caught:
        read_health(bad)
    assert caught.value.line == 10
    assert "is not one Apple Health writes" in str(caught.value)
    with pytest.raises(parsers.ParseProblem, match="Line 13: the steps \"many\" is not a number"):
        read_health(HEALTH.replace('value="3000"', 'value="many"'))


def test_a_file_that_is_not_an_export_is_refused():
    with pytest.raises(parsers.ParseProblem, match="not an Apple Health export"):
        read_health('<?xml version="1.0"?><html><body/></html>')
    with pytest.raises(parsers.ParseProblem, match="no steps, sleep or resting heart rate"):
        read_health('<HealthData locale="en"><ExportDate value="2026-03-19 20:00:00 +0000"/></HealthData>')
