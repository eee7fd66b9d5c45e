"""Outcomes' tables: the instruments (FHIR Questionnaires), the schedule of what is due, the answers,
the scores and measurements (rendered as FHIR Observations), daily check-ins, adverse events, and
health-data imports run by the worker."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class OutcomeInstrument(db.Model):
    """One version of a questionnaire the clinic asks over time (GAD-7, PHQ-9, Verity's 0-10 scales, or a
    licensed instrument a clinic loads). Versions are kept: old answers name the version they answered."""

    __tablename__ = "outcome_instruments"
    __table_args__ = (sa.UniqueConstraint("url", "version", name="uq_outcome_instruments_url_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(300), index=True)
    version: Mapped[str] = mapped_column(sa.String(40))
    #: The Questionnaire's id (e.g. "gad-7"): the short name the schedule settings use.
    key: Mapped[str] = mapped_column(sa.String(64), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    #: The FHIR Questionnaire (JSON), as loaded.
    resource: Mapped[str] = mapped_column(sa.Text)
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    loaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class OutcomeDue(db.Model):
    """A questionnaire a patient is asked to answer at one time point of their schedule."""

    __tablename__ = "outcome_due"
    __table_args__ = (sa.UniqueConstraint("patient_id", "instrument_url", "timepoint",
                                          name="uq_outcome_due_patient_instrument_timepoint"),
                      sa.Index("ix_outcome_due_status_due_on", "status", "due_on"))

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    instrument_url: Mapped[str] = mapped_column(sa.String(300))
    #: "baseline", or "m<months>" after the first prescription (e.g. "m3"), or "extra" when staff ask.
    timepoint: Mapped[str] = mapped_column(sa.String(20))
    due_on: Mapped[dt.date] = mapped_column(sa.Date)
    #: due, completed, missed (the next time point came first) or cancelled.
    status: Mapped[str] = mapped_column(sa.String(12), default="due")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutcomeResponse(db.Model):
    """A patient's answers to one instrument: a FHIR QuestionnaireResponse, in progress until complete.
    Scores are worked out only when it is complete."""

    __tablename__ = "outcome_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(sa.ForeignKey("outcome_instruments.id"))
    due_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outcome_due.id"), index=True)
    #: in-progress or completed (FHIR QuestionnaireResponse.status).
    status: Mapped[str] = mapped_column(sa.String(12), default="in-progress")
    #: The QuestionnaireResponse (JSON).
    resource: Mapped[str] = mapped_column(sa.Text)
    #: Who typed the answers (the patient, or a clinician on their behalf).
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: True when an answer calls for urgent help (PHQ-9 item 9 above "not at all").
    urgent: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutcomeCheckin(db.Model):
    """The patient's quick daily check-in (one per day; a second one that day replaces the first)."""

    __tablename__ = "outcome_checkins"
    __table_args__ = (sa.UniqueConstraint("patient_id", "day", name="uq_outcome_checkins_patient_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    day: Mapped[dt.date] = mapped_column(sa.Date)
    #: Pain today, 0-10.
    pain: Mapped[int | None] = mapped_column()
    #: Last night's sleep quality, 0-10.
    sleep: Mapped[int | None] = mapped_column()
    #: JSON list of side-effect codes ticked (see services.SIDE_EFFECTS).
    side_effects: Mapped[list] = mapped_column(sa.JSON, default=list)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutcomeImport(db.Model):
    """A health-data file (CSV or Apple Health export.xml): uploaded in chunks (kept encrypted), then
    imported by the worker all or nothing, with its progress."""

    __tablename__ = "outcome_imports"

    #: 32 hex characters: unguessable, also names the encrypted part file.
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(sa.String(200))
    #: csv or apple-health, known once the first bytes arrive.
    format: Mapped[str | None] = mapped_column(sa.String(20))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    received_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Bytes of the encrypted part file (records are larger than the plaintext they hold).
    part_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: uploading, queued, running, done, failed.
    status: Mapped[str] = mapped_column(sa.String(12), default="uploading", index=True)
    #: Plaintext bytes the worker has read so far (the progress bar).
    progress_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Why it failed, in words for the patient (naming the line), or None.
    message: Mapped[str | None] = mapped_column(sa.Text)
    error_line: Mapped[int | None] = mapped_column()
    #: JSON: what was imported, e.g. {"days": 120, "observations": {"55423-8": 120}}.
    summary: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: A running import whose worker stopped is taken up again after this time.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutcomeObservation(db.Model):
    """One score or measurement, rendered as a FHIR Observation: a questionnaire score (linked to its
    response), a check-in value, or a day's value from an import."""

    __tablename__ = "outcome_observations"
    __table_args__ = (sa.Index("ix_outcome_observations_patient_code_at", "patient_id", "code", "effective_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"))
    #: Code system: http://loinc.org where LOINC has a code, else Verity's own (scoring.VERITY_CODES).
    system: Mapped[str] = mapped_column(sa.String(200))
    code: Mapped[str] = mapped_column(sa.String(64))
    #: What the code means, as people read it (kept for instruments a clinic loads).
    display: Mapped[str] = mapped_column(sa.String(200))
    value: Mapped[Decimal] = mapped_column(sa.Numeric(12, 3))
    #: UCUM unit, e.g. "{score}", "/d" (steps a day), "h", "/min".
    unit: Mapped[str] = mapped_column(sa.String(20))
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: questionnaire, check-in or import.
    source: Mapped[str] = mapped_column(sa.String(20))
    response_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outcome_responses.id"), index=True)
    checkin_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outcome_checkins.id"), index=True)
    import_id: Mapped[str | None] = mapped_column(sa.ForeignKey("outcome_imports.id"), index=True)
    #: The severity band when the measure has bands (e.g. "moderate").
    band: Mapped[str | None] = mapped_column(sa.String(40))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutcomeAdverseEvent(db.Model):
    """A side effect or adverse event reported by the patient or a clinician. Serious ones alert the
    prescriber at once and can be exported in the fields of the MHRA Yellow Card."""

    __tablename__ = "outcome_adverse_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    reported_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: patient or clinician.
    reporter_role: Mapped[str] = mapped_column(sa.String(20))
    description: Mapped[str] = mapped_column(sa.Text)
    started_on: Mapped[dt.date] = mapped_column(sa.Date)
    ended_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: mild, moderate or severe.
    severity: Mapped[str] = mapped_column(sa.String(12))
    serious: Mapped[bool] = mapped_column(default=False)
    #: JSON list of the Yellow Card's seriousness criteria that apply (see adverse.SERIOUS_CRITERIA).
    criteria: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: The suspected product (formulary id and the name at the time), when one is named.
    product_id: Mapped[int | None] = mapped_column(sa.ForeignKey("formulary_products.id"))
    product_name: Mapped[str | None] = mapped_column(sa.String(200))
    dose: Mapped[str | None] = mapped_column(sa.String(300))
    #: recovered, recovering, continuing, recovered with lasting effects, fatal, unknown.
    outcome: Mapped[str] = mapped_column(sa.String(30), default="unknown")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the prescriber was alerted (serious events only).
    alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class OutcomePlanSchedule(db.Model):
    """A clinician's schedule for one patient's treatment plan, replacing the clinic's default."""

    __tablename__ = "outcome_plan_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), unique=True)
    #: JSON list of months after the first prescription, e.g. [1, 2, 3, 6, 12].
    months: Mapped[list] = mapped_column(sa.JSON)
    #: JSON list of instrument keys asked at each follow-up.
    instruments: Mapped[list] = mapped_column(sa.JSON)
    updated_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
