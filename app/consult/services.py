"""The consultation's services: who may join which call and when, the waiting room, admit and end,
presence for the boards, the join tokens, and consultation notes with revisions.

The signaling server calls `admit_connection`, `admit`, `enter`, `left` and `end` from a worker thread
with an app context (signaling/bridge.py), so the database holds the one truth about who is waiting,
whichever process holds the connection: the boards, served by any web process, read it from here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app, url_for

from app.audit import services as audit
from app.auth.models import Role, User
from app.consult import settings
from app.consult.models import (
    ADMIT,
    CLINICIAN,
    DRAFT,
    END,
    ENTER,
    FINAL,
    GUEST,
    IN_CALL,
    JOIN,
    LEAVE,
    LEFT,
    PATIENT,
    RECONNECT,
    WAIT,
    WAITING,
    CallEvent,
    CallPresence,
    CallSession,
    ConsultationNote,
    JoinTokenUse,
    NoteRevision,
)
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import onboarding
from app.patients import services as patients
from app.patients.models import Patient
from app.scheduling import services as scheduling
from app.scheduling import states
from app.scheduling.models import BOOKED, CHECKED_IN, Appointment
from app.scheduling.models import COMPLETED as APPOINTMENT_COMPLETED
from app.scheduling.models import IN_CALL as APPOINTMENT_IN_CALL
from signaling import tokens

#: Appointment statuses in which the call can be joined.
LIVE = (BOOKED, CHECKED_IN, APPOINTMENT_IN_CALL)
ROOM = re.compile(r"^appointment-(\d{1,12})$")
NOTE_MAX = 50_000
REASON_MAX = 500
GUEST_ROLES = {"interpreter": "Interpreter", "carer": "Carer"}


class ConsultError(Exception):
    """A refusal with a message fit to show the person."""


class Refused(ConsultError):
    """A connection the signaling server must not admit."""


# Who, where, when ----------------------------------------------------------------------------------

def room_of(appointment_id: int) -> str:
    return f"appointment-{appointment_id}"


def appointment_of_room(room: str) -> int | None:
    match = ROOM.match(room or "")
    return int(match.group(1)) if match else None


def seat_of(user: User, appointment: Appointment) -> str | None:
    """The seat this signed-in user may take in this appointment's call: only its patient and its clinician."""
    if user.role is Role.PATIENT:
        patient = patients.for_user(user)
        return PATIENT if patient is not None and patient.id == appointment.patient_id else None
    if user.role is Role.CLINICIAN and appointment.clinician_id == user.id:
        return CLINICIAN
    return None


def window(appointment: Appointment, config: Mapping[str, Any] | None = None) -> tuple[dt.datetime, dt.datetime]:
    """When the call can be joined: from when check-in opens until the booked end plus the overrun."""
    overrun = int(settings.get(config or current_app.config, "CONSULT_OVERRUN_MINUTES"))
    return appointment.starts_at - states.CHECK_IN_OPENS, appointment.ends_at + dt.timedelta(minutes=overrun)


def join_problem(appointment: Appointment, now: dt.datetime | None = None) -> str | None:
    """Why the call cannot be joined now, in words for the person; None when it can."""
    now = now or utcnow()
    if appointment.status == APPOINTMENT_COMPLETED:
        return "This consultation has ended."
    if appointment.status not in LIVE:
        return f"This appointment is “{states.LABELS[appointment.status].lower()}”, so its call cannot be joined."
    opens, closes = window(appointment)
    if now < opens:
        minutes = int(states.CHECK_IN_OPENS.total_seconds() // 60)
        return f"The waiting room opens {minutes} minutes before the appointment starts."
    if now > closes:
        return "The time of this consultation has passed."
    session = session_of(appointment)
    if session is not None and session.ended_at is not None:
        return "This consultation has ended."
    return None


def session_of(appointment: Appointment) -> CallSession | None:
    return db.session.scalar(sa.select(CallSession).where(CallSession.appointment_id == appointment.id))


def _session_for(appointment: Appointment) -> CallSession:
    session = session_of(appointment)
    if session is None:
        session = CallSession(appointment_id=appointment.id, patient_id=appointment.patient_id,
                              clinician_id=appointment.clinician_id)
        db.session.add(session)
        db.session.flush()
    return session


def _presence(session: CallSession, seat: str) -> CallPresence | None:
    return db.session.get(CallPresence, (session.id, seat))


def _event(session: CallSession, kind: str, seat: str, user_id: int | None) -> None:
    db.session.add(CallEvent(session_id=session.id, kind=kind, seat=seat, user_id=user_id, at=utcnow()))


def _audit(action: str, appointment: Appointment, **detail: Any) -> None:
    audit.record(action, subject=("appointment", appointment.id), patient_id=appointment.patient_id, detail=detail)


# Join tokens ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JoinTicket:
    token: str
    expires_at: float
    seat: str
    ice_servers: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "expires_at": self.expires_at, "seat": self.seat,
                "ice_servers": self.ice_servers}


def _mint(appointment: Appointment, *, user_id: int, seat: str, key: str | None = None) -> JoinTicket:
    config = current_app.config
    now = utcnow()
    _, closes = window(appointment)
    expires = min(now.timestamp() + int(settings.get(config, "CONSULT_JOIN_TOKEN_SECONDS")), closes.timestamp())
    token = tokens.mint(config["SECRET_KEY"], room=room_of(appointment.id), user_id=user_id, role=seat,
                        expires_at=expires, nonce=secrets.token_hex(16), key=key)
    return JoinTicket(token, expires, seat, settings.ice_servers(config, str(user_id or f"guest{appointment.id}")))


def issue_join(appointment: Appointment, user: User) -> JoinTicket:
    """A single-use join token for this user's seat, valid a short while and never past the call's window."""
    seat = seat_of(user, appointment)
    if seat is None:
        raise ConsultError("Only the appointment's patient and clinician can join its call.")
    problem = join_problem(appointment)
    if problem:
        raise ConsultError(problem)
    return _mint(appointment, user_id=user.id, seat=seat)


def issue_precall(user: User) -> JoinTicket:
    """A token for the pre-call check's echo peer (no appointment: anyone signed in may test their kit)."""
    config = current_app.config
    expires = utcnow().timestamp() + int(settings.get(config, "CONSULT_JOIN_TOKEN_SECONDS"))
    token = tokens.mint(config["SECRET_KEY"], room=precall_room(user.id), user_id=user.id, role="precall",
                        expires_at=expires)
    return JoinTicket(token, expires, "precall", settings.ice_servers(config, str(user.id)))


def precall_room(user_id: int) -> str:
    return f"precall-{user_id}"


def _use_nonce(nonce: str | None, expires_at: float) -> None:
    """Spend a token's nonce; a second use is a replay."""
    if not nonce or not re.fullmatch(r"[0-9a-f]{32}", nonce):
        raise Refused("join token is not valid")
    now = utcnow()
    db.session.execute(sa.delete(JoinTokenUse).where(JoinTokenUse.expires_at < now - dt.timedelta(hours=1)))
    exists = db.session.get(JoinTokenUse, nonce)
    if exists is not None:
        raise Refused("join token has already been used")
    db.session.add(JoinTokenUse(nonce=nonce, expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC)))
    db.session.flush()


# Connections (called by the signaling server) ---------------------------------------------------------

@dataclass(frozen=True)
class Admission:
    appointment_id: int
    seat: str
    #: waiting or in_call.
    state: str
    #: The name the other side sees.
    name: str
    #: An older connection of the same seat, which the server should now close.
    replaced_sid: str | None
    reconnect: bool


def admit_connection(grant: tokens.JoinGrant, sid: str) -> Admission:
    """Check a connecting client against the appointment and take its seat (waiting, or straight into a
    call already under way). Raises Refused with the reason."""
    appointment_id = appointment_of_room(grant.room)
    appointment = scheduling.get(appointment_id) if appointment_id else None
    if appointment is None:
        raise Refused("no such consultation")
    seat, user = grant.role, None
    with transaction():
        if seat == GUEST:
            session = session_of(appointment)
            if session is None or not session.guest_key or not secrets.compare_digest(session.guest_key,
                                                                                       grant.key or ""):
                raise Refused("this invitation has been withdrawn")
            name = f"{session.guest_name} ({GUEST_ROLES.get(session.guest_role or '', 'Guest').lower()})"
        else:
            user = db.session.get(User, grant.user_id)
            if user is None or not user.active or seat_of(user, appointment) != seat:
                raise Refused("you are not a participant of this consultation")
            name = user.full_name
        problem = join_problem(appointment)
        if problem:
            raise Refused(problem)
        _use_nonce(grant.nonce, grant.expires_at)
        session = _session_for(appointment)
        presence = _presence(session, seat)
        replaced = presence.sid if presence is not None and presence.state != LEFT else None
        reconnect = presence is not None and session.admitted_at is not None
        state = IN_CALL if seat == CLINICIAN or session.admitted_at is not None else WAITING
        now = utcnow()
        if presence is None:
            presence = CallPresence(session_id=session.id, seat=seat)
            db.session.add(presence)
        keep_since = presence.state == state and replaced is not None  # a reload while waiting keeps its place
        presence.user_id, presence.sid, presence.state = (user.id if user else None), sid, state
        if not keep_since:
            presence.since = now
        _event(session, JOIN, seat, presence.user_id)
        _event(session, RECONNECT if reconnect else (WAIT if state == WAITING else ENTER), seat, presence.user_id)
        _audit("consult.joined", appointment, seat=seat, state=state, reconnect=reconnect)
        if seat == PATIENT and appointment.status == BOOKED:
            # Joining after the booked end cannot check in; the call still goes ahead.
            with contextlib.suppress(states.StateError):
                scheduling.mark(appointment, CHECKED_IN, by=user)
    return Admission(appointment.id, seat, state, name, replaced, reconnect)


def admit(appointment_id: int, user_id: int) -> None:
    """The clinician lets the waiting patient (and guest) in: the appointment is now in call."""
    appointment = scheduling.get(appointment_id)
    user = db.session.get(User, user_id)
    if appointment is None or user is None or seat_of(user, appointment) != CLINICIAN:
        raise ConsultError("Only the appointment's clinician can admit people.")
    with transaction():
        session = _session_for(appointment)
        if session.ended_at is not None:
            raise ConsultError("This consultation has ended.")
        if appointment.status in (BOOKED, CHECKED_IN):
            try:
                scheduling.mark(appointment, APPOINTMENT_IN_CALL, by=user)
            except states.StateError as exc:
                raise ConsultError(str(exc)) from exc
        if session.admitted_at is None:
            session.admitted_at = utcnow()
        _event(session, ADMIT, CLINICIAN, user.id)
        _audit("consult.admitted", appointment)


def enter(appointment_id: int, seat: str, sid: str) -> bool:
    """A waiting seat whose call has been admitted steps in. False if it was not admitted (or was replaced)."""
    appointment = scheduling.get(appointment_id)
    if appointment is None:
        return False
    with transaction():
        session = session_of(appointment)
        if session is None or session.admitted_at is None or session.ended_at is not None:
            return False
        presence = _presence(session, seat)
        if presence is None or presence.sid != sid:
            return False
        if presence.state != IN_CALL:
            presence.state, presence.since = IN_CALL, utcnow()
            _event(session, ENTER, seat, presence.user_id)
    return True


def left(appointment_id: int, seat: str, sid: str) -> bool:
    """A connection closed. Only the connection that holds the seat frees it (a reload's new one may already)."""
    appointment = scheduling.get(appointment_id)
    if appointment is None:
        return False
    with transaction():
        session = session_of(appointment)
        presence = _presence(session, seat) if session else None
        if presence is None or presence.sid != sid or presence.state == LEFT:
            return False
        presence.state, presence.since, presence.sid = LEFT, utcnow(), None
        _event(session, LEAVE, seat, presence.user_id)
        _audit("consult.left", appointment, seat=seat)
    return True


def end(appointment_id: int, user_id: int) -> None:
    """The clinician ends the call: the appointment is completed and the patient's journey moves on."""
    appointment = scheduling.get(appointment_id)
    user = db.session.get(User, user_id)
    if appointment is None or user is None or seat_of(user, appointment) != CLINICIAN:
        raise ConsultError("Only the appointment's clinician can end the call.")
    with transaction():
        session = _session_for(appointment)
        if session.ended_at is not None:
            return
        if appointment.status != APPOINTMENT_IN_CALL:
            raise ConsultError("Admit the patient before ending the call, or mark the appointment as not "
                               "attended from the appointments board.")
        scheduling.mark(appointment, APPOINTMENT_COMPLETED, by=user)
        now = utcnow()
        session.ended_at, session.ended_by = now, user.id
        for presence in db.session.scalars(sa.select(CallPresence).where(CallPresence.session_id == session.id)):
            presence.state, presence.since, presence.sid = LEFT, now, None
        _event(session, END, CLINICIAN, user.id)
        _audit("consult.ended", appointment)
        onboarding.consulted(patients.get(appointment.patient_id))


def lobby_state(appointment_id: int) -> list[dict[str, Any]]:
    """Who holds which seat now, for a page that connects after the others (hello's answer)."""
    appointment = scheduling.get(appointment_id)
    session = session_of(appointment) if appointment else None
    if session is None:
        return []
    rows = db.session.scalars(sa.select(CallPresence).where(CallPresence.session_id == session.id))
    return [{"seat": p.seat, "state": p.state, "since": p.since.isoformat(), "sid": p.sid,
             "name": session.guest_name if p.seat == GUEST else None} for p in rows]


def events_of(appointment: Appointment) -> list[CallEvent]:
    session = session_of(appointment)
    if session is None:
        return []
    return list(db.session.scalars(sa.select(CallEvent).where(CallEvent.session_id == session.id)
                                   .order_by(CallEvent.at, CallEvent.id)))


# Guests ------------------------------------------------------------------------------------------------

def invite_guest(appointment: Appointment, by: User, *, name: str, role: str) -> str:
    """Invite one interpreter or carer; returns the key for their link. A new invitation revokes the old."""
    name = " ".join((name or "").split())[:100]
    if seat_of(by, appointment) != CLINICIAN:
        raise ConsultError("Only the appointment's clinician can invite a guest.")
    if not name:
        raise ConsultError("Enter the guest's name.")
    if role not in GUEST_ROLES:
        raise ConsultError("Choose interpreter or carer.")
    problem = join_problem(appointment)
    if problem:
        raise ConsultError(problem)
    key = secrets.token_hex(16)
    with transaction():
        session = _session_for(appointment)
        session.guest_name, session.guest_role, session.guest_key = name, role, key
        session.guest_invited_at = utcnow()
        _audit("consult.guest_invited", appointment, role=role)
    return key


def guest_link_token(appointment: Appointment, key: str) -> str:
    """The signed part of a guest's link (the link itself carries no personal data)."""
    return tokens.sign_value(current_app.config["SECRET_KEY"], {"a": appointment.id, "k": key})


def guest_from_link(value: str) -> tuple[Appointment, str] | None:
    data = tokens.read_value(current_app.config["SECRET_KEY"], value)
    if not isinstance(data, dict) or not isinstance(data.get("a"), int) or not isinstance(data.get("k"), str):
        return None
    appointment = scheduling.get(data["a"])
    session = session_of(appointment) if appointment else None
    if session is None or not session.guest_key or not secrets.compare_digest(session.guest_key, data["k"]):
        return None
    return appointment, data["k"]


def issue_guest_join(appointment: Appointment, key: str) -> JoinTicket:
    problem = join_problem(appointment)
    if problem:
        raise ConsultError(problem)
    return _mint(appointment, user_id=0, seat=GUEST, key=key)


# Waiting board ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WaitingRow:
    appointment: Appointment
    patient_name: str
    clinician_name: str
    #: The patient's seat: waiting, in_call, left, or None (not joined).
    state: str | None
    since: dt.datetime | None

    @property
    def minutes(self) -> int:
        return int((utcnow() - self.since).total_seconds() // 60) if self.since else 0


def presence_of(appointment: Appointment, seat: str = PATIENT) -> CallPresence | None:
    session = session_of(appointment)
    return _presence(session, seat) if session else None


def waiting_board(viewer: User, day: dt.date) -> list[WaitingRow]:
    """Today's live appointments of this clinician (or every clinician, for the front desk) with where
    each patient is: not here yet, waiting (since when), in the call, or gone."""
    clinicians = [viewer] if viewer.role is Role.CLINICIAN else scheduling.clinicians()
    rows = []
    for clinician in clinicians:
        for row in scheduling.board(clinician.id, day, day):
            appointment = row.appointment
            if appointment.status not in LIVE:
                continue
            presence = presence_of(appointment)
            rows.append(WaitingRow(appointment, row.name, clinician.full_name,
                                   presence.state if presence else None, presence.since if presence else None))
    order = {WAITING: 0, IN_CALL: 1}
    return sorted(rows, key=lambda r: (order.get(r.state or "", 2), r.appointment.starts_at))


# Links for other pages ----------------------------------------------------------------------------

@dataclass(frozen=True)
class JoinLink:
    url: str
    label: str
    #: False: shown with the reason, not as a button.
    open: bool
    reason: str | None = None


def join_link(appointment: Appointment, user: User) -> JoinLink | None:
    """What the appointment page shows about the call for this user (None: nothing to show)."""
    seat = seat_of(user, appointment)
    if seat is None or appointment.status not in LIVE:
        return None
    problem = join_problem(appointment)
    url = url_for("consult.call", appointment_id=appointment.id)
    label = "Open the video consultation" if seat == CLINICIAN else "Join the video consultation"
    return JoinLink(url, label, problem is None, problem)


# Consultation notes ---------------------------------------------------------------------------------

def can_write_note(user: User, appointment: Appointment) -> bool:
    return seat_of(user, appointment) == CLINICIAN


def can_read_notes(user: User, patient: Patient) -> bool:
    """Clinical notes: the patient's own clinician and admins (as for the intake answers), and a clinician
    who held one of the patient's consultations (see can_read_note)."""
    if user.role is Role.ADMIN:
        return True
    return user.role is Role.CLINICIAN and patient.clinician_id == user.id


def note_of(appointment: Appointment) -> ConsultationNote | None:
    return db.session.scalar(sa.select(ConsultationNote).where(ConsultationNote.appointment_id == appointment.id))


def revisions_of(note: ConsultationNote) -> list[NoteRevision]:
    return list(db.session.scalars(sa.select(NoteRevision).where(NoteRevision.note_id == note.id)
                                   .order_by(NoteRevision.number)))


def current_revision(note: ConsultationNote) -> NoteRevision | None:
    return db.session.scalar(sa.select(NoteRevision).where(NoteRevision.note_id == note.id)
                             .order_by(NoteRevision.number.desc()).limit(1))


def notes_of(patient: Patient) -> list[tuple[ConsultationNote, list[NoteRevision]]]:
    notes = db.session.scalars(sa.select(ConsultationNote).where(ConsultationNote.patient_id == patient.id)
                               .order_by(ConsultationNote.created_at.desc()))
    return [(note, revisions_of(note)) for note in notes]


def _clean_text(text: str | None) -> str:
    text = (text or "").replace("\r\n", "\n")
    if len(text) > NOTE_MAX:
        raise ConsultError(f"A note can be at most {NOTE_MAX:,} characters.")
    return text


def save_draft(appointment: Appointment, by: User, text: str | None) -> NoteRevision:
    """Autosave: create the note's first revision, or update its draft in place while it is a draft."""
    if not can_write_note(by, appointment):
        raise ConsultError("Only the appointment's clinician can write its note.")
    text = _clean_text(text)
    with transaction() as session:
        note = note_of(appointment)
        if note is None:
            note = ConsultationNote(patient_id=appointment.patient_id, appointment_id=appointment.id,
                                    author_id=by.id)
            session.add(note)
            session.flush()
            revision = NoteRevision(note_id=note.id, number=1, text=text, status=DRAFT, author_id=by.id)
            session.add(revision)
            session.flush()
            _audit("consult.note_started", appointment, note_id=note.id)
            return revision
        revision = current_revision(note)
        # Conditional on the draft state, so a save that races the signature changes nothing.
        changed = session.execute(
            sa.update(NoteRevision).where(NoteRevision.id == revision.id, NoteRevision.status == DRAFT)
            .values(text=text, saved_at=utcnow()).execution_options(synchronize_session=False)).rowcount
        if not changed:
            raise ConsultError("This note has been signed. To change it, make an amendment with a reason.")
    db.session.refresh(revision)
    return revision


def finalise(appointment: Appointment, by: User, text: str | None = None) -> NoteRevision:
    """Sign the draft (saving `text` first when given). From now on the revision never changes."""
    if text is not None:
        save_draft(appointment, by, text)
    if not can_write_note(by, appointment):
        raise ConsultError("Only the appointment's clinician can sign its note.")
    note = note_of(appointment)
    revision = current_revision(note) if note else None
    if revision is None or not revision.text.strip():
        raise ConsultError("Write the note before signing it.")
    with transaction() as session:
        now = utcnow()
        changed = session.execute(
            sa.update(NoteRevision).where(NoteRevision.id == revision.id, NoteRevision.status == DRAFT)
            .values(status=FINAL, signed_by=by.id, signed_at=now, saved_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not changed:
            raise ConsultError("This note has already been signed.")
        _audit("consult.note_signed", appointment, note_id=note.id, revision=revision.number)
    db.session.refresh(revision)
    return revision


def amend(appointment: Appointment, by: User, text: str | None, reason: str | None, *,
          based_on: int | None) -> NoteRevision:
    """Change a signed note: a new final revision with who, when and why; the old one stays as it was."""
    if not can_write_note(by, appointment):
        raise ConsultError("Only the appointment's clinician can amend its note.")
    text = _clean_text(text)
    reason = " ".join((reason or "").split())
    if not reason:
        raise ConsultError("Say why you are amending the signed note.")
    if len(reason) > REASON_MAX:
        raise ConsultError(f"The reason can be at most {REASON_MAX} characters.")
    if not text.strip():
        raise ConsultError("An amended note cannot be empty.")
    note = note_of(appointment)
    current = current_revision(note) if note else None
    if current is None or current.status != FINAL:
        raise ConsultError("Only a signed note is amended; a draft is simply edited.")
    if based_on is not None and based_on != current.number:
        raise ConsultError("The note was amended by someone else while you were editing. Reload it to see the "
                           "latest version.")
    with transaction() as session:
        now = utcnow()
        revision = NoteRevision(note_id=note.id, number=current.number + 1, text=text, status=FINAL,
                                author_id=by.id, created_at=now, saved_at=now, reason=reason, signed_by=by.id,
                                signed_at=now)
        session.add(revision)
        try:
            session.flush()
        except sa.exc.IntegrityError as exc:
            raise ConsultError("The note was amended by someone else a moment ago. Reload it to see the latest "
                               "version.") from exc
        _audit("consult.note_amended", appointment, note_id=note.id, revision=revision.number)
    return revision


# The side panel's summary -------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    patient: Patient
    name: str
    #: (question, answer lines) from the intake: conditions, medicines, allergies.
    facts: list[tuple[str, list[str]]]
    scores: list[Any]
    plan: Any | None
    intake_status: str
    last_note: NoteRevision | None


SUMMARY_QUESTIONS = ("condition.main", "condition.diagnosed", "medication.list", "medication.allergies",
                     "medication.allergy_details", "psychiatric.history")


def summary(patient: Patient, appointment: Appointment) -> Summary:
    from app.intake import services as intake

    facts: list[tuple[str, list[str]]] = []
    scores: list[Any] = []
    try:
        found = intake.open_intake(patient) if intake.response_for(patient) is not None else None
    except intake.IntakeError:
        found = None
    if found is not None:
        rows = {row.item.link_id: row for step in intake.answers_by_step(found, include_computed=False)
                for row in step.rows}
        facts = [(rows[key].item.text, rows[key].text) for key in SUMMARY_QUESTIONS if key in rows and rows[key].text]
        scores = intake.scores(found)
    earlier = [revs[-1] for note, revs in notes_of(patient) if note.appointment_id != appointment.id and revs]
    return Summary(patient, patients.user_of(patient).full_name, facts, scores, _treatment_plan(patient),
                   intake.status_text(patient), earlier[0] if earlier else None)


def _treatment_plan(patient: Patient) -> Any | None:
    """The current treatment plan version, from the prescribing domain when it offers one."""
    try:
        from app.prescribing import services as prescribing
    except ImportError:
        return None
    current = getattr(prescribing, "current_plan", None)
    if current is None:
        try:
            from app.prescribing import plans
        except ImportError:
            return None
        current = plans.current
    return current(patient)
