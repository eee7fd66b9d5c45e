"""Identity checks: the patient submits, staff or a provider decide, the patient sees the outcome.

A check goes submitted → approved | rejected, once: deciding is a conditional UPDATE on the
status, so two reviewers (or a reviewer and a webhook) can never both decide it. A rejected
patient tries again with a new check. Approval tells the patient journey
(`onboarding.identity_verified`), which applies the intake's eligibility outcome.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import IO, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, url_for

from app import crypto
from app.audit import services as audit
from app.auth.models import User
from app.database import transaction, utcnow
from app.documents import services as documents
from app.extensions import db
from app.identity import providers
from app.identity.models import CheckStatus, DocumentType, IdentityCheck, WebhookEvent
from app.identity.mrz import Mrz, MrzError, parse_td3
from app.outbox import services as outbox
from app.outbox.models import DEAD, DELIVERED, OutboxMessage
from app.patients import onboarding
from app.patients.checklist import Step, StepStatus
from app.patients.models import Patient

MRZ_PURPOSE = "identity.mrz"
START_CHECK = "identity.start_check"
#: The kind of document each photo is stored as in the documents domain.
PHOTO_KINDS = {"document": "id_document", "selfie": "selfie"}
#: Passports last 10 years (older UK ones up to 10 years 9 months), photocard licences 10.
LONGEST_VALIDITY = dt.timedelta(days=11 * 366)


class IdentityError(ValueError):
    """A refusal fit to show the person; `field` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class AlreadyDecided(IdentityError):
    """Someone (or the provider) decided this check first."""


@dataclass(frozen=True)
class RejectionReason:
    label: str
    #: What the patient reads; None when the reviewer writes it.
    patient_text: str | None


REJECTION_REASONS: dict[str, RejectionReason] = {
    "photo_unclear": RejectionReason(
        "Photo unclear",
        "We could not read your document in the photo. Take it again flat on a table, in good light, with all "
        "4 corners showing and no glare."),
    "document_expired": RejectionReason(
        "Document expired",
        "Your document has expired. Use a passport or photocard driving licence that is still in date."),
    "name_mismatch": RejectionReason(
        "Name does not match",
        "The name on your document is not the name on your account. If your name has changed, contact the "
        "clinic so we can update your account."),
    "selfie_mismatch": RejectionReason(
        "Selfie does not match",
        "We could not match your selfie to the photo on your document. Take a new selfie facing the camera, "
        "in good light, without a hat or sunglasses."),
    "other": RejectionReason("Another reason (write it below)", None),
}


def rejection_text(code: str, note: str | None) -> str:
    """The sentence the patient reads: the common reason's words, then the reviewer's note."""
    if code not in REJECTION_REASONS:
        raise IdentityError("Choose a reason for the patient.", "reason")
    note = (note or "").strip()
    base = REJECTION_REASONS[code].patient_text
    if base is None and not note:
        raise IdentityError("Write the reason the patient will read.", "note")
    text = f"{base} {note}" if base and note else (base or note)
    return text[:600]


# Reading ------------------------------------------------------------------------------------

def get(check_id: int) -> IdentityCheck | None:
    return db.session.get(IdentityCheck, check_id)


def latest_for(patient: Patient) -> IdentityCheck | None:
    return db.session.scalar(sa.select(IdentityCheck).where(IdentityCheck.patient_id == patient.id)
                             .order_by(IdentityCheck.submitted_at.desc(), IdentityCheck.id.desc()).limit(1))


@dataclass(frozen=True)
class QueueEntry:
    check: IdentityCheck
    patient_name: str
    waiting: dt.timedelta

    @property
    def waiting_text(self) -> str:
        return describe_wait(self.waiting)


def describe_wait(waiting: dt.timedelta) -> str:
    """How long the patient has been waiting, at a glance: "3 days", "1 day 2 h", "5 hours"."""
    days, hours = waiting.days, waiting.seconds // 3600
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if days < 3 and hours else "")
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return "under an hour"


def _waiting(provider_is_staff: bool, *, clinician_id: int | None, now: dt.datetime | None) -> list[QueueEntry]:
    now = now or utcnow()
    query = (
        sa.select(IdentityCheck, User.full_name)
        .join(Patient, Patient.id == IdentityCheck.patient_id)
        .join(User, User.id == Patient.user_id)
        .where(IdentityCheck.status == CheckStatus.SUBMITTED)
        .where((IdentityCheck.provider == providers.STAFF) if provider_is_staff
               else (IdentityCheck.provider != providers.STAFF))
        .order_by(IdentityCheck.submitted_at, IdentityCheck.id)
    )
    if clinician_id is not None:
        query = query.where(Patient.clinician_id == clinician_id)
    return [QueueEntry(check, name, now - check.submitted_at) for check, name in db.session.execute(query)]


def review_queue(*, clinician_id: int | None = None, now: dt.datetime | None = None) -> list[QueueEntry]:
    """Checks waiting for a staff decision, oldest first (a clinician sees only their patients')."""
    return _waiting(True, clinician_id=clinician_id, now=now)


def with_provider(*, clinician_id: int | None = None, now: dt.datetime | None = None) -> list[QueueEntry]:
    """Checks an external provider has not answered yet, oldest first: staff see those waits too."""
    return _waiting(False, clinician_id=clinician_id, now=now)


def mrz_of(check: IdentityCheck) -> Mrz | None:
    """The MRZ the patient typed, read again (it passed every check when it was stored)."""
    if check.mrz_enc is None:
        return None
    text = crypto.decrypt(check.mrz_enc, MRZ_PURPOSE).decode()
    return parse_td3(text, today=check.submitted_at.date())


def photos_of(check: IdentityCheck) -> dict[str, Any]:
    """The check's two documents, for the reviewer's page (it links to the documents viewer)."""
    return {"document": documents.get(check.document_id), "selfie": documents.get(check.selfie_document_id)}


def delivery_problem(check: IdentityCheck) -> str | None:
    """Why a check has not reached its provider yet (the outbox's last error), said for staff."""
    message = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == _start_key(check)))
    if message is None or message.status == DELIVERED or not message.last_error:
        return None
    if message.status == DEAD:
        return (f"{message.last_error}. Verity stopped trying after {message.attempts} attempts: ask an admin to "
                "check the identity provider settings.")
    return f"{message.last_error}. Verity keeps trying."


# Submitting ---------------------------------------------------------------------------------

def check_details(patient: Patient, document_type: DocumentType, expiry: dt.date, mrz_text: str | None, *,
                  today: dt.date | None = None) -> Mrz | None:
    """Refuse an expired document, and MRZ lines that cannot belong to this patient's passport."""
    today = today or dt.date.today()
    if expiry < today:
        raise IdentityError(f"Your {document_type.label.lower()} expired on {_long_date(expiry)}. "
                            "Use a document that is still in date.", "expiry")
    if expiry > today + LONGEST_VALIDITY:
        raise IdentityError("That expiry date is more than 10 years away. Check it against your document.", "expiry")
    if not (mrz_text and mrz_text.strip()):
        return None
    if document_type is not DocumentType.PASSPORT:
        raise IdentityError("Only passports have these 2 lines. Leave this empty for a driving licence.", "mrz")
    try:
        mrz = parse_td3(mrz_text, today=today)
    except MrzError as exc:
        raise IdentityError(str(exc), "mrz") from None
    if mrz.birth_date != patient.date_of_birth:
        raise IdentityError(
            f"The date of birth in the passport lines ({_long_date(mrz.birth_date)}) is not the date of birth on "
            f"your account ({_long_date(patient.date_of_birth)}). Check the lines; if your account is wrong, "
            "contact the clinic.", "mrz")
    if mrz.expiry_date != expiry:
        raise IdentityError(
            f"The expiry date in the passport lines ({_long_date(mrz.expiry_date)}) is not the expiry date you "
            f"entered ({_long_date(expiry)}). Check both against your passport.", "mrz")
    return mrz


def store_photo(patient: Patient, which: str, *, filename: str, stream: IO[bytes], uploaded_by: int | None) -> int:
    """Keep one photo in the documents domain (checked, cleaned of metadata, encrypted); returns its id."""
    try:
        document = documents.store_file(patient_id=patient.id, kind=PHOTO_KINDS[which], filename=filename,
                                        stream=stream, uploaded_by=uploaded_by)
    except documents.DocumentRejected as exc:
        raise IdentityError(str(exc), which) from None
    return document.id


def usable_photo(patient: Patient, which: str, document_id: object) -> int | None:
    """A photo stored earlier (a previous try at the form) that may go with this check: the
    patient's own, of the right kind, not removed."""
    document = documents.document_of_patient(document_id if isinstance(document_id, int | str) else None,
                                             patient.id, kinds=[PHOTO_KINDS[which]])
    return document.id if document is not None else None


def submit(patient: Patient, *, document_type: DocumentType, document_id: int, selfie_document_id: int,
           expiry: dt.date, mrz_text: str | None = None, today: dt.date | None = None) -> IdentityCheck:
    """Make a check and hand it to the configured provider (now, or through the outbox)."""
    mrz = check_details(patient, document_type, expiry, mrz_text, today=today)
    for which, document in (("document", document_id), ("selfie", selfie_document_id)):
        if usable_photo(patient, which, document) is None:
            raise IdentityError("Take the photo again: we could not find the one you sent.", which)
    latest = latest_for(patient)
    if patient.identity_verified_at is not None or (latest and latest.status is CheckStatus.APPROVED):
        raise IdentityError("Your identity is already confirmed: there is nothing more to do here.")
    if latest is not None and latest.status is CheckStatus.SUBMITTED:
        raise IdentityError("Your identity check is already with the clinic. We will let you know the result.")
    provider = providers.configured()
    try:
        with transaction() as session:
            check = IdentityCheck(
                patient_id=patient.id, document_type=document_type, document_id=document_id,
                selfie_document_id=selfie_document_id, document_expiry=expiry, provider=provider.name,
                mrz_enc=crypto.encrypt(mrz.text.encode(), MRZ_PURPOSE) if mrz else None,
                status=CheckStatus.SUBMITTED)
            session.add(check)
            session.flush()
            audit.record("identity.submitted", subject=("identity_check", check.id), patient_id=patient.id,
                         detail={"document_type": document_type.value, "provider": provider.name,
                                 "mrz": mrz is not None})
            if provider.remote:
                outbox.enqueue(START_CHECK, _start_key(check), {"check_id": check.id})
            else:
                check.provider_reference = provider.start_check(check, idempotency_key=_start_key(check))
    except sa.exc.IntegrityError:
        # Another tab submitted at the same moment: the open-check index kept it to one.
        raise IdentityError("Your identity check is already with the clinic. We will let you know the result.") \
            from None
    return check


def _start_key(check: IdentityCheck) -> str:
    return f"identity-check:{check.id}"


@outbox.handler(START_CHECK)
def _start_check(message: OutboxMessage, payload: dict[str, Any]) -> None:
    """Hand a check to a remote provider; any failure raises and the outbox retries with backoff."""
    check = get(payload["check_id"])
    if check is None or check.status is not CheckStatus.SUBMITTED or check.provider_reference:
        return  # decided meanwhile, or an earlier delivery got this far
    provider = providers.by_name(check.provider)
    reference = provider.start_check(check, idempotency_key=message.idempotency_key)
    with transaction():
        check.provider_reference = reference
        audit.record("identity.sent_to_provider", subject=("identity_check", check.id), patient_id=check.patient_id,
                     detail={"provider": check.provider, "reference": reference})


# Deciding -----------------------------------------------------------------------------------

def approve(check: IdentityCheck, *, reviewer: User | None = None, event_id: str | None = None) -> IdentityCheck:
    return _decide(check, CheckStatus.APPROVED, reviewer=reviewer, reason=None, event_id=event_id)


def reject(check: IdentityCheck, reason: str, *, reviewer: User | None = None,
           event_id: str | None = None) -> IdentityCheck:
    if not reason.strip():
        raise IdentityError("Give the patient a reason.", "reason")
    return _decide(check, CheckStatus.REJECTED, reviewer=reviewer, reason=reason.strip()[:600], event_id=event_id)


def staff_decision(check: IdentityCheck, reviewer: User, *, approved: bool, reason_code: str | None = None,
                   note: str | None = None) -> IdentityCheck:
    """A reviewer's decision from the queue. Checks sent to a provider are the provider's to decide."""
    if check.provider != providers.STAFF:
        raise IdentityError("This check is with the identity provider: its result will arrive by itself.")
    if approved:
        return approve(check, reviewer=reviewer)
    return reject(check, rejection_text(reason_code or "", note), reviewer=reviewer)


def _decide(check: IdentityCheck, status: CheckStatus, *, reviewer: User | None, reason: str | None,
            event_id: str | None) -> IdentityCheck:
    now = utcnow()
    with transaction() as session:
        # The WHERE on status is the guard: a second decision updates no row (on PostgreSQL it waits
        # for the first to commit, then sees the new status), so the check is decided exactly once.
        updated = session.execute(
            sa.update(IdentityCheck)
            .where(IdentityCheck.id == check.id, IdentityCheck.status == CheckStatus.SUBMITTED)
            .values(status=status, reviewer_id=reviewer.id if reviewer else None, reviewed_at=now,
                    rejection_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if updated == 1:
            session.refresh(check)
            audit.record(f"identity.{status.value}", subject=("identity_check", check.id),
                         patient_id=check.patient_id,
                         detail={"by": "staff" if reviewer else check.provider, "reason": reason,
                                 "event_id": event_id})
            if status is CheckStatus.APPROVED:
                onboarding.identity_verified(check.patient)
            _tell_patient(check, status, reason)
    if updated != 1:
        session.refresh(check)
        raise AlreadyDecided(already_decided_message(check))
    return check


def _tell_patient(check: IdentityCheck, status: CheckStatus, reason: str | None) -> None:
    """The decision reaches the patient through app.notifications (the reason in the portal only)."""
    from app.notifications import services as notifications

    notifications.notify(check.patient, f"identity.{status.value}", key=f"identity:{check.id}:{status.value}",
                         link=notifications.link_to("identity.status"), context={"reason": reason or ""})


def already_decided_message(check: IdentityCheck) -> str:
    outcome = "approved" if check.status is CheckStatus.APPROVED else "rejected"
    who = check.reviewer.full_name if check.reviewer else "the identity provider"
    when = f", {clinic_time(check.reviewed_at)}" if check.reviewed_at else ""
    return f"This check was already reviewed by {who}: {outcome}{when}. Nothing was changed."


# Webhooks -----------------------------------------------------------------------------------

def receive_webhook(provider_name: str, *, timestamp: str | None, signature: str | None, body: bytes,
                    now: float | None = None) -> IdentityCheck:
    """Act on a provider's signed result, or raise WebhookRefused (which is audited)."""
    check: IdentityCheck | None = None
    try:
        provider = providers.configured()
        if provider_name != provider.name or not provider.remote:
            raise providers.WebhookRefused(404, "no such identity provider here")
        providers.verify(providers.setting("IDENTITY_WEBHOOK_SECRET"), timestamp=timestamp, signature=signature,
                         body=body, now=time.time() if now is None else now)
        result = providers.parse_result(body)
        if _seen(provider_name, result.event_id):
            raise providers.WebhookRefused(409, "event already received")
        check = db.session.scalar(sa.select(IdentityCheck).where(
            IdentityCheck.provider == provider_name, IdentityCheck.provider_reference == result.reference))
        if check is None:
            raise providers.WebhookRefused(404, "unknown reference")
        try:
            with transaction() as session:
                session.add(WebhookEvent(provider=provider_name, event_id=result.event_id, check_id=check.id))
                session.flush()
                if result.approved:
                    approve(check, event_id=result.event_id)
                else:
                    reject(check, result.reason or "", event_id=result.event_id)
        except AlreadyDecided:
            raise providers.WebhookRefused(409, "check already decided") from None
        except sa.exc.IntegrityError:  # the same event delivered twice at the same moment
            raise providers.WebhookRefused(409, "event already received") from None
        return check
    except providers.WebhookRefused as refused:
        audit.record("identity.webhook_refused",
                     subject=("identity_check", check.id) if check is not None else None,
                     patient_id=check.patient_id if check is not None else None,
                     detail={"provider": provider_name[:40], "status": refused.status, "reason": refused.reason})
        raise


def _seen(provider_name: str, event_id: str) -> bool:
    return db.session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent).where(
        WebhookEvent.provider == provider_name, WebhookEvent.event_id == event_id)) > 0


# The patient's checklist --------------------------------------------------------------------

def checklist_steps(patient: Patient) -> list[Step]:
    title = "Confirm your identity"
    check = latest_for(patient)
    if patient.identity_verified_at is not None or (check and check.status is CheckStatus.APPROVED):
        return [Step("identity", title, StepStatus.DONE, "Your identity is confirmed.", order=40)]
    if check is None:
        return [Step("identity", title, StepStatus.TODO,
                     "Take a photo of your passport or driving licence, and a selfie. It takes about 5 minutes.",
                     url=url_for("identity.start"), action="Confirm your identity", order=40)]
    if check.status is CheckStatus.SUBMITTED:
        return [Step("identity", title, StepStatus.WAITING,
                     "We are checking your identity, usually within one working day.",
                     url=url_for("identity.status"), order=40)]
    return [Step("identity", title, StepStatus.ACTION,
                 f"We could not confirm your identity: {check.rejection_reason}",
                 url=url_for("identity.status"), action="Try again", order=40)]


def clinic_time(moment: dt.datetime) -> str:
    """A timestamp in the clinic's time zone, as people read it: "24 November 2026 at 08:52"."""
    local = moment.astimezone(ZoneInfo(current_app.config["CLINIC_TIMEZONE"]))
    return f"{local.day} {local:%B %Y} at {local:%H:%M}"


def _long_date(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"
