"""Consultation: one call per appointment, who is connected to it, what happened when, and the notes.

No media is stored anywhere: the call is browser to browser (DTLS-SRTP), and these tables hold only
times, seats and the clinician's written note.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

#: The seats of a call: the appointment's patient, its clinician, and one guest the clinician invited.
PATIENT, CLINICIAN, GUEST = "patient", "clinician", "guest"
SEATS = (PATIENT, CLINICIAN, GUEST)

#: Presence states of a seat.
WAITING, IN_CALL, LEFT = "waiting", "in_call", "left"

#: Call events, kept for the audit and the waiting board.
JOIN, WAIT, ADMIT, ENTER, LEAVE, RECONNECT, END = "join", "wait", "admit", "enter", "leave", "reconnect", "end"

#: Note revision states.
DRAFT, FINAL = "draft", "final"


class CallSession(db.Model):
    """The video call of one appointment, made when someone first joins."""

    __tablename__ = "call_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(sa.ForeignKey("appointments.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the clinician first let the patient in; set once, a later admit (after a reload) keeps it.
    admitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: The invited interpreter or carer, by name as the clinician typed it (no account needed).
    guest_name: Mapped[str | None] = mapped_column(sa.String(100))
    #: "interpreter" or "carer".
    guest_role: Mapped[str | None] = mapped_column(sa.String(20))
    #: Random key inside the guest's link: a new invitation replaces it, which revokes the old link.
    guest_key: Mapped[str | None] = mapped_column(sa.String(32))
    guest_invited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CallPresence(db.Model):
    """Who holds each seat of a call now. Written by the signaling server (in whatever process holds the
    connection) so the waiting board, served by any web process, reads one truth."""

    __tablename__ = "call_presence"

    session_id: Mapped[int] = mapped_column(sa.ForeignKey("call_sessions.id"), primary_key=True)
    #: patient, clinician or guest.
    seat: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    #: The signed-in user in the seat (None for a guest, who has no account).
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: The Socket.IO connection holding the seat: a newer connection of the same person replaces it.
    sid: Mapped[str | None] = mapped_column(sa.String(64))
    #: waiting, in_call or left.
    state: Mapped[str] = mapped_column(sa.String(10))
    #: When the seat entered its current state ("waiting for 4 minutes").
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallEvent(db.Model):
    """One moment of a call (join, wait, admit, enter, leave, reconnect, end), for the audit and the board."""

    __tablename__ = "call_events"
    __table_args__ = (sa.Index("ix_call_events_session", "session_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("call_sessions.id"))
    kind: Mapped[str] = mapped_column(sa.String(12))
    seat: Mapped[str] = mapped_column(sa.String(10))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class JoinTokenUse(db.Model):
    """A join token's nonce, written when the token is used: the primary key makes each token single-use,
    across every signaling process, so a captured token cannot be replayed."""

    __tablename__ = "join_token_uses"

    nonce: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    #: After this the token is refused anyway, so the row can go.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class ConsultationNote(db.Model):
    """The clinician's note of one appointment. Its text lives in revisions; the current one is the latest."""

    __tablename__ = "consultation_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    appointment_id: Mapped[int] = mapped_column(sa.ForeignKey("appointments.id"), unique=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoteRevision(db.Model):
    """One version of a note. A draft is updated in place by autosave while it is a draft; once final
    (signed) it never changes again, and any later change is a new final revision with a reason."""

    __tablename__ = "note_revisions"
    __table_args__ = (
        sa.UniqueConstraint("note_id", "number", name="uq_note_revisions_number"),
        sa.CheckConstraint("status IN ('draft', 'final')", name="status_known"),
        sa.CheckConstraint("number = 1 OR reason IS NOT NULL", name="amendments_have_a_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(sa.ForeignKey("consultation_notes.id"))
    #: 1 for the first version, then 2, 3… for each amendment.
    number: Mapped[int] = mapped_column()
    text: Mapped[str] = mapped_column(sa.Text)
    #: draft or final.
    status: Mapped[str] = mapped_column(sa.String(10), default=DRAFT)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Last autosave of a draft; for a final revision, when it was made final.
    saved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Why an amendment was made (required from the second revision on).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    #: Who signed it final, and when (None while a draft).
    signed_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SignedNoteChanged(RuntimeError):
    """A signed (final) note revision was about to be changed or deleted: a bug, never a user's doing."""


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _signed_revisions_never_change(session: sa.orm.Session, _context, _instances) -> None:
    """Services change a draft only with a conditional UPDATE and add amendments as new rows; this stops
    any other path (a stray script, a bug) from altering what was signed."""
    for obj in list(session.dirty) + list(session.deleted):
        if not isinstance(obj, NoteRevision):
            continue
        history = sa.inspect(obj).attrs.status.history
        was = (history.deleted or history.unchanged or [obj.status])[0]
        changed = obj in session.deleted or any(attr.history.has_changes() for attr in sa.inspect(obj).attrs)
        if was == FINAL and changed:
            raise SignedNoteChanged(f"note revision {obj.id} is signed and cannot change")
