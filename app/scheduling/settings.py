"""Scheduling's configuration, read from the app config with these defaults.

| config key | environment variable (see README) | default |
| --- | --- | --- |
| CLINIC_TIMEZONE | VERITY_TIMEZONE | Europe/London |
| SCHEDULING_CONSULTATION_TYPES | VERITY_CONSULTATION_TYPES | DEFAULT_TYPES below |
| SCHEDULING_PATIENT_CANCEL_HOURS | VERITY_PATIENT_CANCEL_HOURS | 24 |
| SCHEDULING_PATIENT_NOTICE_MINUTES | VERITY_PATIENT_NOTICE_MINUTES | 60 |
| SCHEDULING_HORIZON_DAYS | VERITY_BOOKING_HORIZON_DAYS | 84 |
| SCHEDULING_REMINDER_MINUTES | VERITY_REMINDER_MINUTES | 1440,60 |
| SCHEDULING_WAITLIST_OFFER_MINUTES | VERITY_WAITLIST_OFFER_MINUTES | 120 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from flask import current_app

DEFAULT_TYPES = "initial=Initial consultation:30,follow-up=Follow-up consultation:15"
TYPE_KEY = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class ConsultationType:
    key: str
    label: str
    #: The usual slot length; a pattern may set another.
    minutes: int


def parse_types(text: str) -> dict[str, ConsultationType]:
    """"key=Label:minutes,…" → {key: ConsultationType}; raises ValueError naming the bad part."""
    types: dict[str, ConsultationType] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, rest = part.partition("=")
        label, _, minutes = rest.rpartition(":")
        key = key.strip()
        if not TYPE_KEY.match(key) or not label.strip() or not minutes.strip().isdigit():
            raise ValueError(f"consultation type {part!r} is not key=Label:minutes (key: a-z, 0-9, -)")
        types[key] = ConsultationType(key, label.strip(), int(minutes))
    if not types:
        raise ValueError("no consultation types configured")
    return types


def _get(name: str, default):
    value = current_app.config.get(name)
    return default if value in (None, "") else value


def consultation_types() -> dict[str, ConsultationType]:
    value = _get("SCHEDULING_CONSULTATION_TYPES", DEFAULT_TYPES)
    if isinstance(value, dict):
        return {k: v if isinstance(v, ConsultationType) else ConsultationType(k, v[0], int(v[1]))
                for k, v in value.items()}
    return _parsed(value)


@lru_cache(maxsize=8)
def _parsed(text: str) -> dict[str, ConsultationType]:
    return parse_types(text)


def type_label(key: str) -> str:
    kind = consultation_types().get(key)
    return kind.label if kind else key


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("CLINIC_TIMEZONE") or "Europe/London")


def patient_cancel_hours() -> int:
    return int(_get("SCHEDULING_PATIENT_CANCEL_HOURS", 24))


def patient_notice_minutes() -> int:
    return int(_get("SCHEDULING_PATIENT_NOTICE_MINUTES", 60))


def horizon_days() -> int:
    return int(_get("SCHEDULING_HORIZON_DAYS", 84))


def reminder_minutes() -> tuple[int, ...]:
    value = _get("SCHEDULING_REMINDER_MINUTES", (1440, 60))
    if isinstance(value, str):
        value = [int(v) for v in value.split(",") if v.strip()]
    return tuple(sorted((int(v) for v in value), reverse=True))


def waitlist_offer_minutes() -> int:
    return int(_get("SCHEDULING_WAITLIST_OFFER_MINUTES", 120))


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def viewer_zone(name: str | None) -> ZoneInfo:
    """The zone the browser reported (a cookie set by scheduling.js), when it is a real one; else the clinic's."""
    if name and len(name) <= 64 and name in _zones():
        return ZoneInfo(name)
    return clinic_zone()
