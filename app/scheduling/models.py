"""Scheduling: clinicians' working patterns and exceptions, appointments, the time they hold, the waiting list.

Slots are not stored: they are generated from the patterns and exceptions (app/scheduling/slots.py).
What stops a double booking is stored: every live appointment holds its clinician's time, and its
patient's, as rows of `time_holds` in five-minute cells under a primary key, so two appointments that
overlap by a single cell cannot both be written, whatever the engine and however many people click.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

#: Appointment statuses (moved only by app/scheduling/states.py).
BOOKED, CHECKED_IN, IN_CALL, COMPLETED, NO_SHOW, CANCELLED = (
    "booked", "checked_in", "in_call", "completed", "no_show", "cancelled")
#: Statuses in which an appointment is still to happen (the patient's live bookings).
UPCOMING = (BOOKED, CHECKED_IN, IN_CALL)

#: The granularity of held time: slot lengths and pattern times are multiples of it.
CELL_MINUTES = 5

LEAVE, EXTRA = "leave", "extra"


class AvailabilityPattern(db.Model):
    """A clinician's weekly working pattern: one weekday, a span of wall-clock time, one kind of slot."""

    __tablename__ = "availability_patterns"
    __table_args__ = (
        sa.CheckConstraint("end_time > start_time", name="times_in_order"),
        sa.CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        sa.CheckConstraint("slot_minutes > 0", name="slot_positive"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="dates_in_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: 0 = Monday … 6 = Sunday (Python's `date.weekday()`).
    weekday: Mapped[int] = mapped_column(sa.SmallInteger)
    #: Wall-clock times in the clinic's time zone: 09:00 stays 09:00 across the clock changes.
    start_time: Mapped[dt.time] = mapped_column(sa.Time)
    end_time: Mapped[dt.time] = mapped_column(sa.Time)
    slot_minutes: Mapped[int] = mapped_column(sa.SmallInteger)
    #: A key of the configured consultation types, e.g. "initial" or "follow-up".
    consultation_type: Mapped[str] = mapped_column(sa.String(20))
    #: First and last day (inclusive, clinic dates) the pattern applies; no end means until changed.
    valid_from: Mapped[dt.date] = mapped_column(sa.Date)
    valid_to: Mapped[dt.date | None] = mapped_column(sa.Date)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AvailabilityException(db.Model):
    """Leave (no slots in the span) or an extra session (slots of one kind in the span) for one clinician."""

    __tablename__ = "availability_exceptions"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="times_in_order"),
        sa.Index("ix_availability_exceptions_span", "clinician_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: "leave" or "extra".
    kind: Mapped[str] = mapped_column(sa.String(10))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Extra sessions only: the length and kind of their slots.
    slot_minutes: Mapped[int | None] = mapped_column(sa.SmallInteger)
    consultation_type: Mapped[str | None] = mapped_column(sa.String(20))
    #: A word for the staff, e.g. "Annual leave" (never clinical).
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Appointment(db.Model):
    """One consultation between a patient and a clinician. Its status moves only through states.py;
    rescheduling moves its time but keeps its id, so its calendar UID stays the same."""

    __tablename__ = "appointments"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="times_in_order"),
        # One live appointment per clinician and start time. The time holds below also stop overlaps
        # of different lengths; this index says the simple case plainly and serves the day board.
        sa.Index("uq_appointments_live_slot", "clinician_id", "starts_at", unique=True,
                 sqlite_where=sa.text("status != 'cancelled'"), postgresql_where=sa.text("status != 'cancelled'")),
        sa.Index("ix_appointments_patient", "patient_id", "starts_at"),
        sa.Index("ix_appointments_due", "status", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    consultation_type: Mapped[str] = mapped_column(sa.String(20))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: booked → checked_in → in_call → completed | no_show; booked → cancelled (see states.py).
    status: Mapped[str] = mapped_column(sa.String(12), default=BOOKED)
    #: The iCalendar SEQUENCE: raised on every change sent to the patient, so calendars take the newest.
    sequence: Mapped[int] = mapped_column(default=0)
    booked_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the current time was set (booking or rescheduling): a reminder whose moment had already
    #: passed then is not sent.
    time_set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class TimeHold(db.Model):
    """A five-minute cell of someone's time taken by a live appointment (or by a waiting-list offer).

    The primary key is the guarantee: a clinician's cell, or a patient's, is held at most once.
    """

    __tablename__ = "time_holds"

    #: "clinician" or "patient".
    kind: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    #: The clinician's user id or the patient's id, after `kind`.
    owner_id: Mapped[int] = mapped_column(primary_key=True)
    #: Start of the cell (UTC, on a five-minute boundary).
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    appointment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("appointments.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("waitlist_offers.id"), index=True)


class AppointmentReminder(db.Model):
    """A reminder queued for one appointment at one time: inserting the row is the claim that makes it
    exactly once, however many workers look at the appointment together."""

    __tablename__ = "appointment_reminders"

    appointment_id: Mapped[int] = mapped_column(sa.ForeignKey("appointments.id"), primary_key=True)
    #: How long before the start, e.g. 1440 for the day-before reminder.
    minutes_before: Mapped[int] = mapped_column(primary_key=True)
    #: The start time it reminds of: after a reschedule the reminder is due again.
    for_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


WAITING, OFFERED, BOOKED_FROM_LIST, WITHDRAWN = "waiting", "offered", "booked", "withdrawn"
OFFER_OPEN, OFFER_ACCEPTED, OFFER_DECLINED, OFFER_EXPIRED, OFFER_WITHDRAWN = (
    "open", "accepted", "declined", "expired", "withdrawn")


class WaitlistEntry(db.Model):
    """A patient's wish to hear of an earlier time, first come first offered."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        # One place on the list per patient and kind of consultation.
        sa.Index("uq_waitlist_entries_live", "patient_id", "consultation_type", unique=True,
                 sqlite_where=sa.text("status IN ('waiting', 'offered')"),
                 postgresql_where=sa.text("status IN ('waiting', 'offered')")),
        sa.Index("ix_waitlist_entries_queue", "status", "consultation_type", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    consultation_type: Mapped[str] = mapped_column(sa.String(20))
    #: Only this clinician's times (None: any clinician).
    clinician_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: The booking the patient would like to bring forward (None: they have none yet).
    appointment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("appointments.id"))
    #: waiting → offered → waiting (declined or expired) | booked; or withdrawn.
    status: Mapped[str] = mapped_column(sa.String(12), default=WAITING)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WaitlistOffer(db.Model):
    """A freed time offered to one patient on the list until `expires_at`; it holds the time meanwhile."""

    __tablename__ = "waitlist_offers"
    __table_args__ = (
        # A time is offered to each entry at most once: the next offer goes to the next in line.
        sa.UniqueConstraint("entry_id", "clinician_id", "starts_at", name="uq_waitlist_offers_once"),
        sa.Index("ix_waitlist_offers_open", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(sa.ForeignKey("waitlist_entries.id"))
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    consultation_type: Mapped[str] = mapped_column(sa.String(20))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: open → accepted | declined | expired | withdrawn.
    status: Mapped[str] = mapped_column(sa.String(12), default=OFFER_OPEN)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
