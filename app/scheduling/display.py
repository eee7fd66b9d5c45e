"""Times as people read them: in the viewer's zone on pages, in the clinic's zone in emails."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def local(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone)


def clock(instant: dt.datetime, zone: ZoneInfo) -> str:
    """09:00"""
    return f"{local(instant, zone):%H:%M}"


def day(value: dt.datetime | dt.date, zone: ZoneInfo | None = None) -> str:
    """Thursday 3 December 2026"""
    d = local(value, zone).date() if isinstance(value, dt.datetime) and zone else value
    return f"{d:%A} {d.day} {d:%B %Y}"


def short_day(value: dt.date) -> str:
    """Thu 3 Dec"""
    return f"{value:%a} {value.day} {value:%b}"


def when(instant: dt.datetime, zone: ZoneInfo, *, year: bool = True) -> str:
    """Thursday 3 December 2026 at 09:00"""
    moment = local(instant, zone)
    return f"{moment:%A} {moment.day} {moment:%B}{moment.strftime(' %Y') if year else ''} at {moment:%H:%M}"


def zone_label(zone: ZoneInfo) -> str:
    return "UK time" if zone.key == "Europe/London" else zone.key.replace("_", " ")


def duration(minutes: int) -> str:
    """24 hours, 2 hours, 1 hour, 90 minutes, 3 days"""
    if minutes % 1440 == 0 and minutes > 1440:
        return f"{minutes // 1440} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"
