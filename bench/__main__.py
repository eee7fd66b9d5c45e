"""Run every benchmark, print one table, write the raw results to bench/results/latest.json.

    .venv/bin/python -m bench            # full run, a few minutes (what `make bench` does)
    .venv/bin/python -m bench --quick    # 3 s loads, 20,000 audit entries: a fast check
    .venv/bin/python -m bench --only audit

An area that fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from bench import audit_chain, booking, consult, load, outcomes, pharmacy, prescribing, serving, upload_memory
from bench.common import RESULTS_DIR, Row, machine


class Report(Protocol):
    def rows(self) -> list[Row]: ...

    def to_json(self) -> dict[str, Any]: ...


AREAS: dict[str, Callable[..., Report]] = {
    "serving": serving.run,
    "audit": audit_chain.run,
    "documents": upload_memory.run,
    "booking": booking.run,
    "prescribing": prescribing.run,
    "consult": consult.run,
    "pharmacy": pharmacy.run,
    "outcomes": outcomes.run,
    "load": load.run,
}

COLUMNS = ("Area", "Target", "Layout / engine", "Throughput", "p50 ms", "p95 ms", "p99 ms", "Non-2xx/err", "Note")
RIGHT_ALIGNED = {"Throughput", "p50 ms", "p95 ms", "p99 ms"}


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"
    return f"{text} {unit}".rstrip()


def _cells(row: Row) -> tuple[str, ...]:
    return (row.area, row.target, row.layout, _number(row.throughput, row.unit), _number(row.p50_ms),
            _number(row.p95_ms), _number(row.p99_ms), row.errors, row.note)


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table, each column as wide as its widest cell."""
    body = [_cells(row) for row in rows]
    widths = [max(len(cells[i]) for cells in (COLUMNS, *body)) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        parts = [cell.rjust(width) if name in RIGHT_ALIGNED else cell.ljust(width)
                 for name, cell, width in zip(COLUMNS, cells, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(COLUMNS), rule, *(line(cells) for cells in body)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs for a fast check (figures are rougher)")
    parser.add_argument("--only", choices=sorted(AREAS), action="append", help="run only this area (repeatable)")
    args = parser.parse_args(argv)

    host = machine()
    print(f"Machine: {host.describe()}", flush=True)

    def log(message: str) -> None:
        print(f"  .. {message}", flush=True)

    rows: list[Row] = []
    raw: dict[str, Any] = {"machine": asdict(host), "quick": args.quick, "areas": {}, "failures": {}}
    started = time.monotonic()
    for name, run in AREAS.items():
        if args.only and name not in args.only:
            continue
        try:
            report = run(quick=args.quick, log=log)
        except Exception as exc:  # one broken area must not hide the others' figures
            traceback.print_exc()
            raw["failures"][name] = f"{type(exc).__name__}: {exc}"
            rows.append(Row(name, "FAILED", "-", None, "", note=f"{type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        raw["areas"][name] = report.to_json()
        rows.extend(report.rows())
    raw["elapsed_s"] = round(time.monotonic() - started, 1)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / "latest.json"
    output.write_text(json.dumps(raw, indent=2) + "\n")

    print()
    print(f"Machine: {host.describe()}{'  [--quick]' if args.quick else ''}")
    print(format_table(rows))
    print(f"\nRaw results: {output.relative_to(RESULTS_DIR.parent.parent)} ({raw['elapsed_s']} s)")
    return 1 if raw["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
