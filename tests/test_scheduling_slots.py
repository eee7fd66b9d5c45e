"""Slots keep their wall-clock times across the clock changes, and none is lost or duplicated.

In London the clocks go forward at 01:00 GMT on the last Sunday of March (28 March 2027) and back at
02:00 BST on the last Sunday of October (31 October 2027).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from app.scheduling import availability
from app.scheduling.slots import Slot, day_bounds, generate, parse_slot_id, wall_clock_starts
from tests.test_scheduling import weekly

LONDON = ZoneInfo("Europe/London")
SPRING = dt.date(2027, 3, 28)
AUTUMN = dt.date(2027, 10, 31)


@dataclass
class Pattern:
    clinician_id: int
    weekday: int
    start_time: dt.time
    end_time: dt.time
    slot_minutes: int
    consultation_type: str
    valid_from: dt.date
    valid_to: dt.date | None


@dataclass
class Exception_:
    clinician_id: int
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    slot_minutes: int | None = None
    consultation_type: str | None = None


def every_day(start: str, end: str, minutes: int, first: dt.date, last: dt.date) -> list[Pattern]:
    return [Pattern(1, d, dt.time.fromisoformat(start), dt.time.fromisoformat(end), minutes, "initial", first, last)
            for d in range(7)]


def local_times(slots: list[Slot], day: dt.date) -> list[str]:
    return [f"{s.starts_at.astimezone(LONDON):%H:%M}" for s in slots if s.starts_at.astimezone(LONDON).date() == day]


@pytest.mark.parametrize("change", [SPRING, AUTUMN])
def test_a_day_pattern_spanning_the_clock_change_keeps_its_wall_clock_times(change):
    first, last = change - dt.timedelta(days=3), change + dt.timedelta(days=3)
    slots = generate(every_day("09:00", "12:00", 30, first, last), [], LONDON, first, last)
    expected = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    day = first
    while day <= last:
        assert local_times(slots, day) == expected, f"{day}"
        day += dt.timedelta(days=1)
    assert len(slots) == 7 * 6, "none lost, none duplicated"
    before = next(s for s in slots if s.starts_at.astimezone(LONDON).date() == change - dt.timedelta(days=1))
    after = next(s for s in slots if s.starts_at.astimezone(LONDON).date() == change + dt.timedelta(days=1))
    # 09:00 local is a different UTC instant either side of the change.
    assert {before.starts_at.hour, after.starts_at.hour} == {8, 9}


def test_the_night_the_clocks_go_forward_skips_only_the_hour_that_does_not_exist():
    slots = generate(every_day("00:00", "04:00", 30, SPRING, SPRING), [], LONDON, SPRING, SPRING)
    assert local_times(slots, SPRING) == ["00:00", "00:30", "02:00", "02:30", "03:00", "03:30"]
    assert all(a.ends_at <= b.starts_at for a, b in itertools.pairwise(slots)), "no overlap"
    assert slots[1].ends_at == slots[2].starts_at, "00:30 GMT runs straight into 02:00 BST"


def test_the_night_the_clocks_go_back_offers_the_repeated_hour_once():
    slots = generate(every_day("00:00", "04:00", 30, AUTUMN, AUTUMN), [], LONDON, AUTUMN, AUTUMN)
    times = local_times(slots, AUTUMN)
    assert times == ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    assert Counter(s.starts_at for s in slots).most_common(1)[0][1] == 1, "no instant twice"
    one_am = next(s for s in slots if f"{s.starts_at.astimezone(LONDON):%H:%M}" == "01:00")
    assert one_am.starts_at.astimezone(LONDON).utcoffset() == dt.timedelta(hours=1), "the first 01:00 (BST)"
    assert all(a.ends_at <= b.starts_at for a, b in itertools.pairwise(slots))


def test_a_slot_that_would_overlap_the_next_because_of_the_jump_is_not_offered():
    starts = list(wall_clock_starts(SPRING, dt.time(0, 0), dt.time(4, 0), 45, LONDON))
    local = [f"{s.astimezone(LONDON):%H:%M}" for s in starts]
    # 00:45 GMT lasts until 02:30 BST, so 02:15 BST would overlap it and is skipped.
    assert local == ["00:00", "00:45", "03:00"]
    assert all(b - a >= dt.timedelta(minutes=45) for a, b in itertools.pairwise(starts))


def test_a_day_is_23_or_25_hours_long_on_the_change_days():
    assert day_bounds(SPRING, LONDON)[1] - day_bounds(SPRING, LONDON)[0] == dt.timedelta(hours=23)
    assert day_bounds(AUTUMN, LONDON)[1] - day_bounds(AUTUMN, LONDON)[0] == dt.timedelta(hours=25)


def test_leave_removes_the_slots_it_covers_and_extra_sessions_add_slots():
    day = dt.date(2027, 3, 29)  # the Monday after the spring change
    leave = Exception_(1, "leave", dt.datetime(2027, 3, 29, 9, 30, tzinfo=LONDON).astimezone(dt.UTC),
                       dt.datetime(2027, 3, 29, 10, 30, tzinfo=LONDON).astimezone(dt.UTC))
    extra = Exception_(1, "extra", dt.datetime(2027, 3, 29, 17, 0, tzinfo=LONDON).astimezone(dt.UTC),
                       dt.datetime(2027, 3, 29, 18, 0, tzinfo=LONDON).astimezone(dt.UTC), 20, "follow-up")
    slots = generate(every_day("09:00", "12:00", 30, day, day), [leave, extra], LONDON, day, day)
    assert local_times(slots, day) == ["09:00", "10:30", "11:00", "11:30", "17:00", "17:20", "17:40"]
    assert {s.consultation_type for s in slots if s.starts_at.astimezone(LONDON).hour == 17} == {"follow-up"}


def test_slot_ids_round_trip_and_refuse_anything_else():
    slot = Slot(dt.datetime(2027, 3, 29, 8, 0, tzinfo=dt.UTC), 12, "follow-up", 15)
    ref = parse_slot_id(slot.id)
    assert (ref.clinician_id, ref.starts_at, ref.consultation_type) == (12, slot.starts_at, "follow-up")
    for bad in ("", "12-20270329T0800Z", "12-20270329T0800-initial", "x-20270329T0800Z-initial",
                "12-20271329T0800Z-initial", "12-20270329T0800Z-INITIAL", "12-20270329T0800Z-initial\n7"):
        with pytest.raises(ValueError):
            parse_slot_id(bad)


def test_stored_patterns_across_both_changes_give_the_same_local_times(ctx, personas):
    """The same through the database (times stored as wall clock, slots compared in UTC) on both engines."""
    weekly(personas["clinician"], personas["reception"], weekday=6, start="09:00", end="11:00", minutes=30,
           valid_from=dt.date(2027, 3, 1), valid_to=dt.date(2027, 11, 30))
    clinician = personas["clinician"].user_id
    sundays = [SPRING - dt.timedelta(days=7), SPRING, SPRING + dt.timedelta(days=7),
               AUTUMN - dt.timedelta(days=7), AUTUMN, AUTUMN + dt.timedelta(days=7)]
    for sunday in sundays:
        slots = availability.all_slots([clinician], sunday, sunday)
        assert local_times(slots, sunday) == ["09:00", "09:30", "10:00", "10:30"], f"{sunday}"
    everything = availability.all_slots([clinician], dt.date(2027, 3, 1), dt.date(2027, 11, 30))
    sundays_between = sum(1 for d in range((dt.date(2027, 11, 30) - dt.date(2027, 3, 1)).days + 1)
                          if (dt.date(2027, 3, 1) + dt.timedelta(days=d)).weekday() == 6)
    assert len(everything) == len(set(everything)) == sundays_between * 4
