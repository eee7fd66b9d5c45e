"""Outcomes settings: each has a default here and can be set in the Flask config or the environment
(`VERITY_<NAME>`), in that order of precedence.

| name | default | meaning |
| --- | --- | --- |
| OUTCOMES_SCHEDULE_MONTHS | 1,3,6,12 | follow-ups, months after the first prescription (a baseline always) |
| OUTCOMES_BASELINE_INSTRUMENTS | gad-7,phq-9,verity-pain,verity-sleep | what the baseline asks (Questionnaire ids) |
| OUTCOMES_FOLLOW_UP_INSTRUMENTS | the baseline's and verity-change | what each follow-up asks |
| OUTCOMES_OVERDUE_DAYS | 14 | days after a questionnaire falls due before the care team sees it as overdue |
| OUTCOMES_IMPORT_MAX_BYTES | 1073741824 | largest health-data file accepted (1 GiB) |
| OUTCOMES_IMPORT_CHUNK_BYTES | 1048576 | bytes per upload request |
| OUTCOMES_PSEUDONYM_KEY | derived from VERITY_DATA_KEY | secret for stable cohort-export pseudonyms (hex) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flask import current_app

DEFAULTS: dict[str, Any] = {
    "OUTCOMES_SCHEDULE_MONTHS": "1,3,6,12",
    "OUTCOMES_BASELINE_INSTRUMENTS": "gad-7,phq-9,verity-pain,verity-sleep",
    "OUTCOMES_FOLLOW_UP_INSTRUMENTS": "gad-7,phq-9,verity-pain,verity-sleep,verity-change",
    "OUTCOMES_OVERDUE_DAYS": 14,
    "OUTCOMES_IMPORT_MAX_BYTES": 1024 * 1024 * 1024,
    "OUTCOMES_IMPORT_CHUNK_BYTES": 1024 * 1024,
    "OUTCOMES_PSEUDONYM_KEY": "",
}


def _get(name: str) -> Any:
    if name in current_app.config:
        return current_app.config[name]
    return os.environ.get(f"VERITY_{name}", DEFAULTS[name])


def _list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


@dataclass(frozen=True)
class Settings:
    schedule_months: tuple[int, ...]
    baseline_instruments: tuple[str, ...]
    follow_up_instruments: tuple[str, ...]
    overdue_days: int
    import_max_bytes: int
    import_chunk_bytes: int
    pseudonym_key: str

    @property
    def import_max_label(self) -> str:
        megabytes = self.import_max_bytes / 1_000_000
        return f"{megabytes / 1000:.0f} GB" if megabytes >= 1000 else f"{megabytes:.0f} MB"


def current() -> Settings:
    given = _list(_get("OUTCOMES_SCHEDULE_MONTHS"))
    months = tuple(sorted({int(m) for m in given if m.isdigit() and 0 < int(m) <= 120}))
    return Settings(
        schedule_months=months,
        baseline_instruments=tuple(_list(_get("OUTCOMES_BASELINE_INSTRUMENTS"))),
        follow_up_instruments=tuple(_list(_get("OUTCOMES_FOLLOW_UP_INSTRUMENTS"))),
        overdue_days=int(_get("OUTCOMES_OVERDUE_DAYS")),
        import_max_bytes=int(_get("OUTCOMES_IMPORT_MAX_BYTES")),
        import_chunk_bytes=int(_get("OUTCOMES_IMPORT_CHUNK_BYTES")),
        pseudonym_key=str(_get("OUTCOMES_PSEUDONYM_KEY") or ""),
    )
