"""Health-data import: memory and time of importing a 100 MB Apple Health export.xml.

A realistic export.xml of 100,000,000 bytes is written on the fly, a record at a time (three years of
step counts from an iPhone and a Watch, sleep stages, resting and ordinary heart rate, active energy,
each record with the attributes the Health app writes). It goes through the real path on a fresh
SQLite database made by the migrations: `imports.stage_file` (the upload: 1 MiB chunks, each encrypted
on its way to disk, as the chunked upload endpoint does) and then `imports.run_queued()`, the worker's
job (decrypt as a stream, parse with defusedxml's SAX parser, one running total per day, all the days'
Observations written in one transaction at the end).

Memory is this process's peak resident set (VmHWM in /proc/self/status), reset to the current resident
set just before each phase (`echo 5 > /proc/self/clear_refs`); the figure is the peak minus that
baseline. Target: a few MiB, whatever the file's size: nothing holds the file.

    .venv/bin/python -m bench.outcomes           # 100 MB
    .venv/bin/python -m bench.outcomes --quick   # 20 MB
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import Row

FULL_BYTES = 100_000_000
QUICK_BYTES = 20_000_000
TARGET_MIB = 30.0
MIB = 1024
HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate value CDATA #REQUIRED>
<!ELEMENT Me EMPTY>
<!ATTLIST Me HKCharacteristicTypeIdentifierDateOfBirth CDATA #REQUIRED>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record type CDATA #REQUIRED unit CDATA #IMPLIED value CDATA #IMPLIED sourceName CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED device CDATA #IMPLIED creationDate CDATA #IMPLIED startDate CDATA #REQUIRED
  endDate CDATA #REQUIRED>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry key CDATA #REQUIRED value CDATA #REQUIRED>
]>
<HealthData locale="en_GB">
 <ExportDate value="{now}"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1986-04-12"/>
"""
DEVICE = ("&lt;&lt;HKDevice: 0x2836a1f40&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, "
          "hardware:Watch6,2, software:10.3&gt;")


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S +0000")


def _records(first_day: dt.date, rng: random.Random):
    """Records in the order the Health app writes them (by type, then time), day after day, forever."""
    day = first_day
    while True:
        base = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        for minute in range(420, 1380, 12):
            start = base + dt.timedelta(minutes=minute)
            for source in ("Alex's iPhone", "Alex's Apple Watch"):
                yield (f' <Record type="HKQuantityTypeIdentifierStepCount" sourceName="{source}" '
                       f'sourceVersion="17.3" device="{DEVICE}" unit="count" creationDate="{_stamp(start)}" '
                       f'startDate="{_stamp(start)}" endDate="{_stamp(start + dt.timedelta(minutes=10))}" '
                       f'value="{rng.randint(20, 180)}"/>\n')
            yield (f' <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alex\'s Apple Watch" '
                   f'sourceVersion="10.3" device="{DEVICE}" unit="count/min" creationDate="{_stamp(start)}" '
                   f'startDate="{_stamp(start)}" endDate="{_stamp(start)}" value="{rng.randint(55, 110)}">\n'
                   f'  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n </Record>\n')
            yield (f' <Record type="HKQuantityTypeIdentifierActiveEnergyBurned" sourceName="Alex\'s Apple Watch" '
                   f'unit="kcal" creationDate="{_stamp(start)}" startDate="{_stamp(start)}" '
                   f'endDate="{_stamp(start + dt.timedelta(minutes=10))}" value="{rng.uniform(1, 9):.3f}"/>\n')
        night = base - dt.timedelta(hours=1)
        for stage in ("Core", "Deep", "Core", "REM", "Core"):
            end = night + dt.timedelta(minutes=rng.randint(60, 110))
            yield (f' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alex\'s Apple Watch" '
                   f'creationDate="{_stamp(end)}" startDate="{_stamp(night)}" endDate="{_stamp(end)}" '
                   f'value="HKCategoryValueSleepAnalysisAsleep{stage}"/>\n')
            night = end
        noon = base + dt.timedelta(hours=12)
        yield (f' <Record type="HKQuantityTypeIdentifierRestingHeartRate" sourceName="Alex\'s Apple Watch" '
               f'unit="count/min" creationDate="{_stamp(noon)}" startDate="{_stamp(noon)}" endDate="{_stamp(noon)}" '
               f'value="{rng.randint(52, 66)}"/>\n')
        day += dt.timedelta(days=1)


def write_export(path: Path, size: int, *, today: dt.date) -> int:
    """An export.xml of exactly `size` bytes (padded with an XML comment), written as it is generated.
    Returns the number of days it covers."""
    rng = random.Random(7)
    closing = "</HealthData>\n"
    days = set()
    first_day = today - dt.timedelta(days=3 * 365)
    with open(path, "w", encoding="utf-8") as out:
        written = out.write(HEADER.format(now=_stamp(dt.datetime.now(dt.UTC))))
        for record in _records(first_day, rng):
            if written + len(record) + len(closing) + 16 > size:
                break
            if 'RestingHeartRate' in record:
                days.add(record.split('startDate="', 1)[1][:10])
            written += out.write(record)
        padding = size - written - len(closing)
        written += out.write(f"<!--{' ' * (padding - 8)}-->\n")
        out.write(closing)
    if path.stat().st_size != size:
        raise RuntimeError(f"the export is {path.stat().st_size} bytes, not {size}")
    return len(days)


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _kib("VmHWM")


@dataclass(frozen=True)
class ImportResult:
    file_bytes: int
    days: int
    upload_seconds: float
    upload_growth_mib: float
    import_seconds: float
    import_growth_mib: float
    megabytes_per_second: float
    observations: int
    status: str


@dataclass(frozen=True)
class OutcomesReport:
    results: list[ImportResult]

    def rows(self) -> list[Row]:
        rows = []
        for r in self.results:
            size = f"{r.file_bytes / 1_000_000:.0f} MB"
            rows.append(Row("outcomes", f"Apple Health import {size}: worker memory growth", "sqlite",
                            r.import_growth_mib, "MiB", errors="0" if r.status == "done" else r.status,
                            note=f"target < {TARGET_MIB:.0f} MiB; {r.import_seconds:.1f} s "
                                 f"({r.megabytes_per_second:.1f} MB/s), {r.days} days, {r.observations} observations"))
            rows.append(Row("outcomes", f"Apple Health upload {size} (1 MiB chunks, encrypted): memory growth",
                            "sqlite", r.upload_growth_mib, "MiB", note=f"{r.upload_seconds:.1f} s"))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"results": [asdict(r) for r in self.results]}


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> OutcomesReport:
    from flask_migrate import upgrade

    from app import create_app
    from app.audit import context
    from app.extensions import db
    from app.outcomes import imports
    from app.patients import services as patients

    size = QUICK_BYTES if quick else FULL_BYTES
    with tempfile.TemporaryDirectory(prefix="verity-bench-outcomes-") as tmp:
        folder = Path(tmp)
        today = dt.date.today()
        export = folder / "export.xml"
        log(f"outcomes: writing a {size / 1_000_000:.0f} MB Apple Health export.xml")
        days = write_export(export, size, today=today)
        app = create_app({"ENV": "test", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
                          "INSTANCE_DIR": str(folder), "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024,
                          "ARGON2_PARALLELISM": 1})
        with app.app_context():
            upgrade(revision="heads")
            patient = patients.register(email="bench.patient@example.com", password=secrets.token_urlsafe(16),
                                        full_name="Bench Patient", date_of_birth=dt.date(1986, 4, 12))
            user = patients.user_of(patient)
            token = context.bind(context.Actor(user_id=user.id, role="patient"))
            try:
                baseline = _reset_peak()
                started = time.monotonic()
                with open(export, "rb") as source:
                    row = imports.stage_file(patient, by=user, filename="export.xml", stream=source, size=size)
                upload_seconds = time.monotonic() - started
                upload_growth = (_kib("VmHWM") - baseline) / MIB
                log(f"outcomes: uploaded in {upload_seconds:.1f} s, peak grew {upload_growth:.1f} MiB")
                db.session.expunge_all()
                baseline = _reset_peak()
                started = time.monotonic()
                imports.run_queued()
                import_seconds = time.monotonic() - started
                import_growth = (_kib("VmHWM") - baseline) / MIB
                row = imports.get(row.id)
                observations = sum((row.summary or {}).get("observations", {}).values())
                log(f"outcomes: imported ({row.status}) in {import_seconds:.1f} s, peak grew {import_growth:.1f} MiB, "
                    f"{observations} observations")
                if row.status != "done":
                    raise RuntimeError(f"the import ended {row.status}: {row.message}")
            finally:
                context.reset(token)
            db.session.remove()
            db.engine.dispose()
    return OutcomesReport([ImportResult(size, days, round(upload_seconds, 2), round(upload_growth, 1),
                                        round(import_seconds, 2), round(import_growth, 1),
                                        round(size / 1_000_000 / import_seconds, 1), observations, row.status)])


if __name__ == "__main__":  # python -m bench.outcomes [--quick]: this area alone
    import sys

    from bench.__main__ import format_table

    report = run(quick="--quick" in sys.argv)
    print(format_table(report.rows()))
