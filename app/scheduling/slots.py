"""Slots, generated from patterns and exceptions in the clinic's time zone. Pure time arithmetic: no database.

A pattern says "Mondays 09:00 to 13:00, 30-minute slots" in wall-clock time, so a slot at 09:00 is at
09:00 in winter and in summer: it is 09:00Z in GMT and 08:00Z in BST. Each wall-clock time is made
an instant with `zoneinfo`:

- on the night the clocks go forward (last Sunday of March, 01:00 → 02:00 in London) a wall-clock
  time inside the jump does not exist: it is skipped, and so is a slot that would overlap the one
  before it or run past the pattern's end because of the jump;
- on the night they go back (last Sunday of October, 02:00 → 01:00) a wall-clock time in the
  repeated hour happens twice: the slot is offered once, at the first occurrence (`fold=0`).

So no slot is duplicated, no two slots of a pattern overlap, and every slot keeps its wall-clock time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

UTC = dt.UTC
SLOT_ID = re.compile(r"^(\d{1,10})-(\d{8}T\d{4})Z-([a-z][a-z0-9-]{0,19})$")


@dataclass(frozen=True, order=True)
class Slot:
    starts_at: dt.datetime
    clinician_id: int
    consultation_type: str
    minutes: int

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.minutes)

    @property
    def id(self) -> str:
        """Stable and readable: "<clinician>-<UTC start>Z-<type>", e.g. "7-20261203T0900Z-initial".
        Also a valid FHIR id. A booking re-derives the slot from it, so a forged id books nothing."""
        return f"{self.clinician_id}-{self.starts_at.astimezone(UTC):%Y%m%dT%H%M}Z-{self.consultation_type}"

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


@dataclass(frozen=True)
class SlotRef:
    """What a slot id claims: checked against the generated slots before anything is written."""

    clinician_id: int
    starts_at: dt.datetime
    consultation_type: str


def parse_slot_id(text: str | None) -> SlotRef:
    match = SLOT_ID.match((text or "").strip())
    if not match:
        raise ValueError("not a slot id")
    clinician, stamp, kind = match.groups()
    starts_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M").replace(tzinfo=UTC)  # ValueError on 20261341…
    return SlotRef(int(clinician), starts_at, kind)


class PatternLike(Protocol):
    clinician_id: int
    weekday: int
    start_time: dt.time
    end_time: dt.time
    slot_minutes: int
    consultation_type: str
    valid_from: dt.date
    valid_to: dt.date | None


class ExceptionLike(Protocol):
    clinician_id: int
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    slot_minutes: int | None
    consultation_type: str | None


def wall_clock_starts(day: dt.date, start: dt.time, end: dt.time, minutes: int,
                      zone: ZoneInfo) -> Iterator[dt.datetime]:
    """UTC instants of the slots from `start` to `end` (wall clock, in `zone`) on `day`."""
    step = dt.timedelta(minutes=minutes)
    wall = dt.datetime.combine(day, start)
    end_wall = dt.datetime.combine(day, end)
    previous_end: dt.datetime | None = None
    while wall + step <= end_wall:
        instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first of a repeated hour
        exists = instant.astimezone(zone).replace(tzinfo=None) == wall
        finish = instant + step
        fits = finish.astimezone(zone).replace(tzinfo=None) <= end_wall
        if exists and fits and (previous_end is None or instant >= previous_end):
            yield instant
            previous_end = finish
        wall += step


def applies_on(pattern: PatternLike, day: dt.date) -> bool:
    return (pattern.weekday == day.weekday() and pattern.valid_from <= day
            and (pattern.valid_to is None or day <= pattern.valid_to))


def local_span(exception: ExceptionLike, zone: ZoneInfo) -> tuple[dt.date, dt.time, dt.time]:
    """An extra session as the clinic sees it: its day and wall-clock start and end."""
    start = exception.starts_at.astimezone(zone)
    end = exception.ends_at.astimezone(zone)
    return start.date(), start.time().replace(tzinfo=None), end.time().replace(tzinfo=None)


def generate(patterns: Iterable[PatternLike], exceptions: Iterable[ExceptionLike], zone: ZoneInfo,
             first_day: dt.date, last_day: dt.date) -> list[Slot]:
    """Every slot on clinic dates first_day..last_day (inclusive), leave taken out, sorted by time."""
    exceptions = list(exceptions)
    leave = [(e.clinician_id, e.starts_at, e.ends_at) for e in exceptions if e.kind == "leave"]
    found: set[Slot] = set()
    patterns = list(patterns)
    day = first_day
    while day <= last_day:
        for p in patterns:
            if applies_on(p, day):
                found.update(Slot(s, p.clinician_id, p.consultation_type, p.slot_minutes)
                             for s in wall_clock_starts(day, p.start_time, p.end_time, p.slot_minutes, zone))
        day += dt.timedelta(days=1)
    for e in exceptions:
        if e.kind != "extra" or not e.slot_minutes or not e.consultation_type:
            continue
        day, start, end = local_span(e, zone)
        if first_day <= day <= last_day and end > start:
            found.update(Slot(s, e.clinician_id, e.consultation_type, e.slot_minutes)
                         for s in wall_clock_starts(day, start, end, e.slot_minutes, zone))
    return sorted(slot for slot in found
                  if not any(c == slot.clinician_id and slot.overlaps(s, e) for c, s, e in leave))


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants of a clinic day's start and the next day's start (23, 24 or 25 hours apart)."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone).astimezone(UTC)
    return start, end


def monday_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def times_overlap(a_start: dt.time, a_end: dt.time, b_start: dt.time, b_end: dt.time) -> bool:
    return a_start < b_end and b_start < a_end


def dates_overlap(a_from: dt.date, a_to: dt.date | None, b_from: dt.date, b_to: dt.date | None) -> bool:
    return (a_to is None or b_from <= a_to) and (b_to is None or a_from <= b_to)


def patterns_conflict(a: PatternLike, b: PatternLike) -> bool:
    return (a.clinician_id == b.clinician_id and a.weekday == b.weekday
            and dates_overlap(a.valid_from, a.valid_to, b.valid_from, b.valid_to)
            and times_overlap(a.start_time, a.end_time, b.start_time, b.end_time))
