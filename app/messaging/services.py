"""Secure messaging: the one channel for anything clinical between a patient and the clinic, and between a
prescriber and the pharmacy about a prescription.

What other domains call:

    open_prescription_query(prescription, author, body, attachments=()) -> Thread   (the pharmacy's query)
    post(thread, author, body, attachments=()) -> Message
    start_thread(patient, author, subject, body, attachments=()) -> Thread           (a clinic thread)
    can_view_thread(user, thread) / can_post(user, thread)                          (policy-style rules)

Every message is part of the patient's record: posting is audited in the same transaction, bodies
are plain text (shown escaped, line breaks kept), and nothing is ever deleted, only hidden with a
reason. Attachments are documents of the thread's patient, stored through app.documents (the same
checks and encryption as any upload). Each new message notifies the people on the other side
through app.notifications (in the portal, and a content-free email as they chose).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import policy
from app.audit import services as audit
from app.auth import services as accounts
from app.auth.models import Role, User
from app.database import is_sqlite, transaction, utcnow
from app.documents import services as documents
from app.extensions import db
from app.messaging.models import (
    Message,
    MessageAttachment,
    MessageReceipt,
    SavedResponse,
    Thread,
    ThreadKind,
    ThreadStatus,
)
from app.notifications import services as notifications
from app.patients import services as patients
from app.patients.journey import JourneyState
from app.patients.models import Patient

MAX_BODY = 5000
MAX_SUBJECT = 120
MAX_ATTACHMENTS = 5
REASON_MAX = 500
#: The front desk: sees every clinic thread, assigns them, answers what it can.
FRONT_DESK = (Role.RECEPTION, Role.ADMIN)


class MessagingError(ValueError):
    """A refusal fit to show the person; `field` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# Who may do what (object-level rules in the style of app/policy.py) -----------------------------

def prescription_of(thread: Thread):
    from app.prescribing import services as prescribing

    return prescribing.get(thread.prescription_id) if thread.prescription_id else None


def _is_query_party(user: User, prescription) -> bool:
    """A pharmacy query: the prescriber, the patient's clinician, the pharmacists of the pharmacy it went to."""
    if prescription is None:
        return False
    if user.role is Role.PHARMACIST:
        return prescription.pharmacy_id is not None and user.pharmacy_id == prescription.pharmacy_id
    if user.role is Role.CLINICIAN:
        if prescription.prescriber_id == user.id:
            return True
        patient = patients.get(prescription.patient_id)
        return patient is not None and patient.clinician_id == user.id
    return False


def can_view_thread(user: User, thread: Thread) -> bool:
    """Clinic threads: the patient themself, the front desk, the assigned clinician and the patient's own.
    Pharmacy queries: the parties to the prescription only (never the patient, not the front desk)."""
    if thread.kind is ThreadKind.PRESCRIPTION_QUERY:
        return _is_query_party(user, prescription_of(thread))
    if user.role is Role.PATIENT:
        patient = patients.for_user(user)
        return patient is not None and patient.id == thread.patient_id
    if user.role in FRONT_DESK:
        return True
    if user.role is Role.CLINICIAN:
        if thread.assigned_to_id == user.id:
            return True
        patient = patients.get(thread.patient_id)
        return patient is not None and policy.can_view_patient(user, patient)
    return False


def can_post(user: User, thread: Thread) -> bool:
    return can_view_thread(user, thread)


def can_triage(user: User, thread: Thread) -> bool:
    """Set the status, assign, hide a message: staff who see the thread."""
    return user.is_staff and can_view_thread(user, thread)


def can_assign(user: User, thread: Thread) -> bool:
    return thread.kind is ThreadKind.CLINIC and user.role in (*FRONT_DESK, Role.CLINICIAN) \
        and can_view_thread(user, thread)


def can_start_for(user: User, patient: Patient) -> bool:
    """A clinic thread with a patient: the patient themself, the front desk, the patient's clinician."""
    if user.role is Role.PATIENT:
        return patient.user_id == user.id
    return user.role in (*FRONT_DESK, Role.CLINICIAN) and policy.can_view_patient(user, patient)


def can_query(user: User, prescription) -> bool:
    """Open a pharmacy query: a pharmacist of the pharmacy it went to, or its prescriber."""
    if prescription is None or prescription.signed_at is None:
        return False
    if user.role is Role.PHARMACIST:
        return _is_query_party(user, prescription)
    return user.role is Role.CLINICIAN and prescription.prescriber_id == user.id


# Reading ----------------------------------------------------------------------------------------

def get(thread_id: int) -> Thread | None:
    return db.session.get(Thread, thread_id)


def get_message(message_id: int) -> Message | None:
    return db.session.get(Message, message_id)


def visible_messages(thread: Thread, user: User) -> list[Message]:
    """Hidden messages leave the patient's view; staff still see them, marked."""
    return [m for m in thread.messages if user.is_staff or not m.is_hidden]


def threads_of_patient(patient: Patient) -> list[Thread]:
    return list(db.session.scalars(sa.select(Thread).where(Thread.patient_id == patient.id,
                                                           Thread.kind == ThreadKind.CLINIC)
                                   .order_by(Thread.last_message_at.desc())))


def _unread_query(user: User):
    read = sa.select(MessageReceipt.id).where(MessageReceipt.message_id == Message.id,
                                              MessageReceipt.user_id == user.id)
    query = sa.select(Message.thread_id, sa.func.count()).where(Message.author_id != user.id, ~sa.exists(read))
    if not user.is_staff:
        query = query.where(Message.hidden_at.is_(None))
    return query.group_by(Message.thread_id)


def unread_by_thread(user: User, thread_ids: Iterable[int]) -> dict[int, int]:
    ids = list(thread_ids)
    if not ids:
        return {}
    return dict(db.session.execute(_unread_query(user).where(Message.thread_id.in_(ids))).all())


def unread_for_patient(patient: Patient) -> int:
    user = patients.user_of(patient)
    ids = [t.id for t in threads_of_patient(patient)]
    return sum(unread_by_thread(user, ids).values())


@dataclass(frozen=True)
class Receipt:
    reader: str
    at: dt.datetime


def _side(role: str) -> str:
    return {"patient": "patient", "pharmacist": "pharmacy"}.get(role, "clinic")


def receipts(thread: Thread, viewer: User) -> dict[int, Receipt]:
    """For each message, who on the other side (patient, clinic, pharmacy) read it first, and when. A colleague
    reading a colleague's message is not a receipt, nor is the viewer's own reading."""
    rows = db.session.execute(
        sa.select(MessageReceipt.message_id, MessageReceipt.read_at, MessageReceipt.user_id, User.role, User.full_name)
        .join(Message, Message.id == MessageReceipt.message_id).join(User, User.id == MessageReceipt.user_id)
        .where(Message.thread_id == thread.id, MessageReceipt.user_id != viewer.id)
        .order_by(MessageReceipt.read_at, MessageReceipt.id)).all()
    by_id = {m.id: m for m in thread.messages}
    result: dict[int, Receipt] = {}
    for message_id, read_at, _reader_id, role, name in rows:
        if message_id in result or _side(role.value) == _side(by_id[message_id].author_role):
            continue
        if role is Role.PATIENT:
            reader = "the patient"
        elif viewer.role is Role.PATIENT:
            reader = "the clinic"
        else:
            reader = name
        result[message_id] = Receipt(reader, read_at)
    return result


def mark_read(thread: Thread, user: User) -> int:
    """Record that `user` has read every message of the thread they can see (the first reading is kept)."""
    unread = [m.id for m in visible_messages(thread, user) if m.author_id != user.id]
    if not unread:
        return 0
    now = utcnow()
    insert = sqlite_insert if is_sqlite() else pg_insert
    rows = [{"message_id": mid, "user_id": user.id, "read_at": now} for mid in unread]
    with transaction() as session:
        result = session.execute(insert(MessageReceipt).values(rows)
                                 .on_conflict_do_nothing(index_elements=["message_id", "user_id"]))
    return result.rowcount or 0


def record_read(thread: Thread, user: User) -> None:
    """Opening a thread is reading the patient's record: audited, whoever opens it."""
    audit.record("message.thread_read", subject=("message_thread", thread.id), patient_id=thread.patient_id,
                 detail={"kind": thread.kind.value})


# Writing ----------------------------------------------------------------------------------------

def clean_body(text: str | None) -> str:
    """Plain text as typed, with \\n line ends and no control characters other than line breaks and tabs."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return text.strip()


def check_body(text: str | None) -> str:
    body = clean_body(text)
    if not body:
        raise MessagingError("Write your message.", "body")
    if len(body) > MAX_BODY:
        raise MessagingError(f"Your message is {len(body):,} characters long. The limit is {MAX_BODY:,}: shorten it, "
                             "or send it as two messages.", "body")
    return body


def check_subject(text: str | None) -> str:
    subject = " ".join((text or "").split())
    subject = "".join(ch for ch in subject if unicodedata.category(ch) != "Cc")
    if not subject:
        raise MessagingError("Enter a subject, in a few words.", "subject")
    if len(subject) > MAX_SUBJECT:
        raise MessagingError(f"Keep the subject to {MAX_SUBJECT} characters; put the rest in the message.", "subject")
    return subject


def can_attach(user: User, patient_id: int) -> bool:
    """Attach (or upload) documents of the thread's patient: whoever may open that patient's record. A pharmacist
    may not pull documents out of it into a query."""
    patient = patients.get(patient_id)
    return patient is not None and policy.can_view_patient(user, patient)


def _attachable(patient_id: int, document_ids: Sequence[int | str], author: User) -> list[int]:
    ids = list(dict.fromkeys(document_ids))
    if not ids:
        return []
    if not can_attach(author, patient_id):
        raise MessagingError("You can attach only documents from a record you can open.", "attachments")
    if len(ids) > MAX_ATTACHMENTS:
        raise MessagingError(f"Attach at most {MAX_ATTACHMENTS} documents to one message.", "attachments")
    chosen = []
    for document_id in ids:
        document = documents.document_of_patient(document_id, patient_id)
        if document is None:
            raise MessagingError("One of the attached documents is not in this patient's documents.", "attachments")
        chosen.append(document.id)
    return chosen


def start_thread(patient: Patient, author: User, subject: str, body: str,
                 attachments: Sequence[int] = ()) -> Thread:
    """A new clinic thread with its first message (the patient's question, or the clinic's message to them)."""
    if not can_start_for(author, patient):
        raise MessagingError("You cannot start a conversation with this patient.")
    subject, body = check_subject(subject), check_body(body)
    document_ids = _attachable(patient.id, attachments, author)
    with transaction() as session:
        thread = Thread(patient_id=patient.id, kind=ThreadKind.CLINIC, subject=subject, created_by_id=author.id)
        session.add(thread)
        session.flush()
        audit.record("message.thread_started", subject=("message_thread", thread.id), patient_id=patient.id,
                     detail={"kind": thread.kind.value})
        _add_message(thread, author, body, document_ids)
    return thread


def open_prescription_query(prescription, author: User, body: str, attachments: Sequence[int] = (),
                            *, subject: str | None = None) -> Thread:
    """The pharmacy's question about a prescription (or the prescriber's to the pharmacy), as a staff-only thread."""
    if not can_query(author, prescription):
        raise MessagingError("Only the pharmacy this prescription went to, or its prescriber, can raise a query.")
    body = check_body(body)
    subject = check_subject(subject or f"Query about prescription {prescription.public_id[:8].upper()}")
    document_ids = _attachable(prescription.patient_id, attachments, author)
    with transaction() as session:
        thread = Thread(patient_id=prescription.patient_id, kind=ThreadKind.PRESCRIPTION_QUERY, subject=subject,
                        prescription_id=prescription.id, created_by_id=author.id)
        session.add(thread)
        session.flush()
        audit.record("message.thread_started", subject=("message_thread", thread.id),
                     patient_id=prescription.patient_id,
                     detail={"kind": thread.kind.value, "prescription": prescription.public_id})
        _add_message(thread, author, body, document_ids)
    return thread


def post(thread: Thread, author: User, body: str, attachments: Sequence[int] = (), *,
         status: ThreadStatus | None = None) -> Message:
    """Add a message to a thread. Staff replies leave a clinic thread waiting on the patient unless `status`
    says otherwise; a patient's message (re)opens it for the clinic."""
    if not can_post(author, thread):
        raise MessagingError("You cannot write in this conversation.")
    body = check_body(body)
    document_ids = _attachable(thread.patient_id, attachments, author)
    with transaction():
        message = _add_message(thread, author, body, document_ids)
        if status is not None and author.is_staff and status is not thread.status:
            _set_status(thread, status)
    return message


def _add_message(thread: Thread, author: User, body: str, document_ids: list[int]) -> Message:
    now = utcnow()
    session = db.session
    message = Message(thread_id=thread.id, author_id=author.id, author_role=author.role.value, body=body,
                      created_at=now)
    session.add(message)
    session.flush()
    for document_id in document_ids:
        session.add(MessageAttachment(message_id=message.id, document_id=document_id))
    session.add(MessageReceipt(message_id=message.id, user_id=author.id, read_at=now))
    thread.last_message_at = now
    if _waits_on_clinic(thread, author):
        thread.waiting_since = thread.waiting_since or now
        if thread.status is not ThreadStatus.OPEN:
            thread.status = ThreadStatus.OPEN
    else:
        thread.waiting_since = None
        if thread.kind is ThreadKind.CLINIC:
            thread.status = ThreadStatus.WAITING_ON_PATIENT
        elif thread.status is ThreadStatus.CLOSED:
            thread.status = ThreadStatus.OPEN
    session.flush()
    audit.record("message.posted", subject=("message", message.id), patient_id=thread.patient_id,
                 detail={"thread": thread.id, "kind": thread.kind.value, "chars": len(body),
                         "attachments": document_ids})
    _tell_the_other_side(thread, message, author)
    return message


def _waits_on_clinic(thread: Thread, author: User) -> bool:
    """Who now waits for an answer: a patient's message waits on the clinic; a pharmacist's on the prescriber."""
    if thread.kind is ThreadKind.CLINIC:
        return author.role is Role.PATIENT
    return author.role is Role.PHARMACIST


def _tell_the_other_side(thread: Thread, message: Message, author: User) -> None:
    link = notifications.link_to("messaging.thread", thread_id=thread.id)
    for person in _recipients(thread, author):
        notifications.notify(person, "message.new", key=f"message:{message.id}:{person.id}", link=link,
                             context={"subject": thread.subject,
                                      "author": _author_label(author, for_patient=not person.is_staff)})


def _recipients(thread: Thread, author: User) -> list[User]:
    if thread.kind is ThreadKind.CLINIC:
        if author.is_staff:
            return [patients.user_of(patients.get(thread.patient_id))]
        if thread.assigned_to_id:
            return [db.session.get(User, thread.assigned_to_id)]
        return []  # the front desk's inbox has it
    prescription = prescription_of(thread)
    if author.role is Role.PHARMACIST:
        return [db.session.get(User, prescription.prescriber_id)]
    return [u for u in accounts.staff_users()
            if u.role is Role.PHARMACIST and u.active and u.pharmacy_id == prescription.pharmacy_id]


def _author_label(author: User, *, for_patient: bool) -> str:
    if author.role is Role.PATIENT:
        return author.full_name if not for_patient else "you"
    if for_patient:
        return f"{author.full_name} at the clinic"
    return f"{author.full_name} ({author.role.label.lower()})"


def author_label(message: Message, viewer: User) -> str:
    """How a message's author is named to the viewer."""
    if message.author_id == viewer.id:
        return "You"
    author = db.session.get(User, message.author_id)
    if message.author_role == Role.PATIENT.value:
        return author.full_name
    if viewer.role is Role.PATIENT:
        return f"{author.full_name}, {Role(message.author_role).label.lower()}"
    return f"{author.full_name} ({Role(message.author_role).label.lower()})"


# Triage -----------------------------------------------------------------------------------------

def _set_status(thread: Thread, status: ThreadStatus) -> None:
    before = thread.status
    thread.status = status
    if status is ThreadStatus.CLOSED:
        thread.waiting_since = None
    audit.record("message.thread_status", subject=("message_thread", thread.id), patient_id=thread.patient_id,
                 detail={"from": before.value, "to": status.value})


def set_status(thread: Thread, status: ThreadStatus, by: User) -> Thread:
    if not can_triage(by, thread):
        raise MessagingError("You cannot change this conversation.")
    if status is not thread.status:
        with transaction():
            _set_status(thread, status)
    return thread


def clinicians() -> list[User]:
    return [u for u in accounts.staff_users() if u.role is Role.CLINICIAN and u.active]


def assign(thread: Thread, clinician_id: int | None, by: User) -> Thread:
    """Hand a clinic thread to a clinician (None: back to the team inbox). The clinician is told."""
    if not can_assign(by, thread):
        raise MessagingError("You cannot assign this conversation.")
    clinician = db.session.get(User, clinician_id) if clinician_id else None
    if clinician_id and (clinician is None or clinician.role is not Role.CLINICIAN or not clinician.active):
        raise MessagingError("Choose a clinician from the list.", "assignee")
    if (clinician.id if clinician else None) == thread.assigned_to_id:
        return thread
    with transaction():
        before = thread.assigned_to_id
        thread.assigned_to_id = clinician.id if clinician else None
        audit.record("message.thread_assigned", subject=("message_thread", thread.id), patient_id=thread.patient_id,
                     detail={"from": before, "to": thread.assigned_to_id})
        if clinician is not None and clinician.id != by.id:
            notifications.notify(clinician, "message.assigned",
                                 key=f"thread:{thread.id}:assigned:{clinician.id}:{len(thread.messages)}",
                                 link=notifications.link_to("messaging.thread", thread_id=thread.id),
                                 context={"subject": thread.subject, "by": by.full_name})
    return thread


def hide(message: Message, by: User, reason: str) -> Message:
    """Take a message out of the patient's view, with a reason. It stays in the record; staff still see it."""
    thread = message.thread
    if not can_triage(by, thread):
        raise MessagingError("You cannot hide messages in this conversation.")
    reason = " ".join((reason or "").split())[:REASON_MAX]
    if not reason:
        raise MessagingError("Say why this message should be hidden: the reason is kept in the record.", "reason")
    if message.is_hidden:
        return message
    with transaction():
        message.hidden_at, message.hidden_by_id, message.hidden_reason = utcnow(), by.id, reason
        audit.record("message.hidden", subject=("message", message.id), patient_id=thread.patient_id,
                     detail={"thread": thread.id})
    return message


# The staff inbox --------------------------------------------------------------------------------

VIEWS = {
    "unassigned": "Unassigned",
    "mine": "Assigned to me",
    "assigned": "Assigned",
    "waiting": "Waiting on patient",
    "queries": "Pharmacy queries",
    "closed": "Closed",
}


def views_for(user: User) -> list[str]:
    if user.role in FRONT_DESK:
        return ["unassigned", "assigned", "waiting", "closed"]
    if user.role is Role.CLINICIAN:
        return ["mine", "queries", "waiting", "closed"]
    if user.role is Role.PHARMACIST:
        return ["queries", "closed"]
    return []


@dataclass(frozen=True)
class InboxRow:
    thread: Thread
    patient_name: str
    journey: str
    prescription: str | None
    appointment: str | None
    assigned_to: str | None
    unread: int
    last_message: Message | None
    waiting: dt.timedelta | None


def inbox(user: User, view: str, *, now: dt.datetime | None = None, limit: int = 100) -> list[InboxRow]:
    """The threads of one view of the inbox, the longest waiting first, each with the patient's state beside it."""
    now = now or utcnow()
    query = sa.select(Thread)
    if view == "queries" or (user.role is Role.PHARMACIST and view == "closed"):
        query = query.where(Thread.kind == ThreadKind.PRESCRIPTION_QUERY)
    else:
        query = query.where(Thread.kind == ThreadKind.CLINIC)
    if view == "closed":
        query = query.where(Thread.status == ThreadStatus.CLOSED)
    elif view == "waiting":
        query = query.where(Thread.status == ThreadStatus.WAITING_ON_PATIENT)
    else:
        query = query.where(Thread.status != ThreadStatus.CLOSED)
    if view == "unassigned":
        query = query.where(Thread.assigned_to_id.is_(None))
    elif view == "assigned":
        query = query.where(Thread.assigned_to_id.is_not(None))
    elif view == "mine":
        query = query.where(Thread.assigned_to_id == user.id)
    query = query.order_by(Thread.waiting_since.is_(None), Thread.waiting_since, Thread.last_message_at.desc())
    if user.role in (Role.CLINICIAN, Role.PHARMACIST) and view != "mine":
        candidates = [t for t in db.session.scalars(query.limit(limit * 5)) if can_view_thread(user, t)][:limit]
    else:
        candidates = list(db.session.scalars(query.limit(limit)))
    unread = unread_by_thread(user, [t.id for t in candidates])
    return [_row(thread, user, unread.get(thread.id, 0), now) for thread in candidates]


def _row(thread: Thread, viewer: User, unread: int, now: dt.datetime) -> InboxRow:
    patient = patients.get(thread.patient_id)
    assigned = db.session.get(User, thread.assigned_to_id) if thread.assigned_to_id else None
    last = next((m for m in reversed(thread.messages) if not m.is_hidden), None)
    glance = at_a_glance(patient)
    return InboxRow(thread, patients.user_of(patient).full_name, glance.journey, glance.prescription,
                    glance.appointment, assigned.full_name if assigned else None, unread, last,
                    now - thread.waiting_since if thread.waiting_since else None)


@dataclass(frozen=True)
class Glance:
    journey: str
    prescription: str | None
    tracking: str | None
    appointment: str | None


def at_a_glance(patient: Patient) -> Glance:
    """Where the patient stands, so most questions are answered without opening anything else."""
    from app.prescribing import services as prescribing
    from app.prescribing import states
    from app.scheduling import services as scheduling

    live = prescribing.live_prescription(patient)
    prescription = tracking = None
    if live is not None:
        prescription = states.state_of(live).patient_label
        dispatched = [t for t in states.history(live) if t.to_state == states.State.DISPATCHED.value]
        if dispatched:
            detail = dispatched[-1].detail or {}
            tracking = f"{detail.get('carrier', '')} {detail.get('tracking', '')}".strip() or None
    upcoming = scheduling.upcoming_for_patient(patient)
    return Glance(JourneyState(patient.journey_state).label, prescription, tracking,
                  scheduling.describe(upcoming[0]) if upcoming else None)


def waiting_text(waiting: dt.timedelta | None) -> str:
    if waiting is None:
        return "Not waiting"
    minutes = int(waiting.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} days"


# Saved responses --------------------------------------------------------------------------------

def saved_responses(*, active_only: bool = True) -> list[SavedResponse]:
    query = sa.select(SavedResponse).order_by(SavedResponse.title)
    if active_only:
        query = query.where(SavedResponse.active)
    return list(db.session.scalars(query))


def get_saved_response(response_id: int) -> SavedResponse | None:
    return db.session.get(SavedResponse, response_id)


def save_response(by: User, *, title: str, body: str, active: bool = True,
                  response: SavedResponse | None = None) -> SavedResponse:
    if by.role is not Role.ADMIN:
        raise MessagingError("Only admins keep the saved responses.")
    title = " ".join((title or "").split())
    if not title or len(title) > 120:
        raise MessagingError("Give the response a short title (up to 120 characters).", "title")
    body = check_body(body)
    clash = db.session.scalar(sa.select(SavedResponse).where(sa.func.lower(SavedResponse.title) == title.lower()))
    if clash is not None and clash is not response:
        raise MessagingError("There is already a saved response with that title.", "title")
    with transaction() as session:
        if response is None:
            response = SavedResponse(title=title, body=body, active=active, updated_by_id=by.id)
            session.add(response)
        else:
            response.title, response.body, response.active = title, body, active
            response.updated_by_id, response.updated_at = by.id, utcnow()
        session.flush()
        audit.record("message.saved_response_saved", subject=("saved_response", response.id),
                     detail={"title": title, "active": active})
    return response


def fill_in(response: SavedResponse, patient: Patient) -> str:
    first_name = patients.user_of(patient).full_name.split(" ")[0]
    return response.body.replace("{first_name}", first_name)
