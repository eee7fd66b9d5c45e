from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import UTCDateTime, utcnow
from app.extensions import db


class QuestionnaireVersion(db.Model):
    """One loaded version of a FHIR Questionnaire, with the eligibility rules that go with it.

    Versions are never changed once loaded: a patient's response stays tied to the version they
    started, and a new version (same url, new version) is what new intakes start on.
    """

    __tablename__ = "intake_questionnaires"
    __table_args__ = (sa.UniqueConstraint("url", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The Questionnaire's canonical url: the same for every version of one form.
    url: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(64))
    #: FHIR publication status (draft, active, retired): new intakes start on the newest active version.
    status: Mapped[str] = mapped_column(sa.String(20))
    title: Mapped[str] = mapped_column(sa.String(200))
    #: The Questionnaire resource (JSON), valid for fhir.resources and the intake engine.
    resource: Mapped[str] = mapped_column(sa.Text)
    #: The eligibility rules file (JSON) for this version; see app/intake/rules.py.
    rules: Mapped[str] = mapped_column(sa.Text)
    #: SHA-256 of resource and rules: loading the same url+version again is a no-op only when it matches.
    digest: Mapped[str] = mapped_column(sa.String(64))
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The admin who uploaded it (None when loaded from the command line).
    loaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class IntakeResponse(db.Model):
    """A patient's answers to one questionnaire version, stored as a FHIR QuestionnaireResponse."""

    __tablename__ = "intake_responses"
    __table_args__ = (sa.UniqueConstraint("patient_id", "questionnaire_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    questionnaire_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_questionnaires.id"))
    #: FHIR QuestionnaireResponse.status: in-progress while the patient answers, completed once sent.
    status: Mapped[str] = mapped_column(sa.String(20), default="in-progress", index=True)
    #: The QuestionnaireResponse resource (JSON). Answers of disabled questions are never kept in it.
    resource: Mapped[str] = mapped_column(sa.Text)
    #: The step (1-based, over all the questionnaire's top-level groups) to resume at.
    current_step: Mapped[int] = mapped_column(default=1)
    #: The eligibility rules' outcome at submission: eligible, needs_clinical_review or not_eligible.
    outcome: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    #: JSON list of the rules that matched at submission (rule id, outcome, reason, next steps).
    findings: Mapped[str | None] = mapped_column(sa.Text)
    #: The answers call for urgent-help signposting (e.g. thoughts of self-harm on the PHQ-9).
    urgent_help: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    questionnaire: Mapped[QuestionnaireVersion] = relationship()


class IntakeDecision(db.Model):
    """A clinician's decision on an intake (a review, or an override of the rules), with the reason.

    Decisions are appended, never edited: the latest is the one in force, the rest are history.
    """

    __tablename__ = "intake_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_responses.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: Journey states before and after (e.g. needs_clinical_review -> eligible).
    from_state: Mapped[str] = mapped_column(sa.String(40))
    to_state: Mapped[str] = mapped_column(sa.String(40))
    reason: Mapped[str] = mapped_column(sa.Text)
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
