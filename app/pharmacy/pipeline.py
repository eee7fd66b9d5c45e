"""The prescription pipeline board: every live prescription, its state, how long it has been there and
where; the ones breaching a service level flagged as stuck; the outbox's dead letters as alerts; a
daily digest of the stuck ones by email; and each prescription's timeline from the audit trail.

Service levels count from signing (what the patient waits): received by the pharmacy within
PHARMACY_SLA_RECEIVE_MINUTES, dispensed within PHARMACY_SLA_DISPENSE_WORKING_DAYS working days,
delivered within PHARMACY_SLA_DELIVER_WORKING_DAYS working days. Working days are Monday to Friday in
the clinic's time zone, less PHARMACY_HOLIDAYS.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from flask import current_app

from app.audit import services as audit
from app.auth.models import Role
from app.database import utcnow
from app.outbox import services as outbox
from app.patients import services as patients
from app.pharmacy import services as pharmacies
from app.pharmacy import settings, shipping
from app.pharmacy.models import Pharmacy
from app.prescribing import notifications, states
from app.prescribing.models import Prescription

S = states.State
#: On the board: signed and not yet at an end.
BOARD_STATES = tuple(s for s in states.LIVE if s is not S.DELIVERED)
NOT_RECEIVED = frozenset({S.SIGNED, S.TRANSMITTED})
NOT_DISPENSED = states.BEFORE_SUPPLY
NOT_DELIVERED = states.BEFORE_SUPPLY | {S.DISPENSED, S.DISPATCHED}


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("CLINIC_TIMEZONE") or "Europe/London")


def is_working_day(day: dt.date, holidays: frozenset[dt.date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(start: dt.datetime, days: int, *, holidays: frozenset[dt.date] | None = None,
                     zone: ZoneInfo | None = None) -> dt.datetime:
    """`days` working days after `start` (same local time); a start outside working days counts from the
    beginning of the next working day."""
    holidays = settings.holidays() if holidays is None else holidays
    zone = zone or _zone()
    local = start.astimezone(zone)
    if not is_working_day(local.date(), holidays):
        day = local.date()
        while not is_working_day(day, holidays):
            day += dt.timedelta(days=1)
        local = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    day, remaining = local.date(), days
    while remaining > 0:
        day += dt.timedelta(days=1)
        if is_working_day(day, holidays):
            remaining -= 1
    return dt.datetime.combine(day, local.timetz()).astimezone(dt.UTC)


@dataclass(frozen=True)
class Levels:
    receive_minutes: int
    dispense_days: int
    deliver_days: int

    @classmethod
    def configured(cls) -> Levels:
        return cls(int(settings.setting("PHARMACY_SLA_RECEIVE_MINUTES")),
                   int(settings.setting("PHARMACY_SLA_DISPENSE_WORKING_DAYS")),
                   int(settings.setting("PHARMACY_SLA_DELIVER_WORKING_DAYS")))


def breaches(prescription: Prescription, now: dt.datetime, levels: Levels,
             holidays: frozenset[dt.date] | None = None) -> list[str]:
    state = states.state_of(prescription)
    signed = prescription.signed_at
    if signed is None:
        return []
    found = []
    if state in NOT_RECEIVED and now - signed > dt.timedelta(minutes=levels.receive_minutes):
        found.append(f"not received by the pharmacy within {levels.receive_minutes} minutes")
    if state in NOT_DISPENSED and now > add_working_days(signed, levels.dispense_days, holidays=holidays):
        found.append(f"not dispensed within {levels.dispense_days} working days")
    if state in NOT_DELIVERED and now > add_working_days(signed, levels.deliver_days, holidays=holidays):
        found.append(f"not delivered within {levels.deliver_days} working days")
    return found


@dataclass
class Row:
    prescription: Prescription
    state: states.State
    pharmacy: Pharmacy | None
    patient_name: str
    #: Time in the current state.
    waited: dt.timedelta
    stuck: list[str] = field(default_factory=list)
    #: The latest parcel's status label, when dispatched.
    parcel: str | None = None


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    pharmacy_id: int | None = None
    stuck_only: bool = False


def rows(filters: Filters | None = None, *, now: dt.datetime | None = None, limit: int = 500) -> list[Row]:
    filters = filters or Filters()
    now = now or utcnow()
    levels, holidays = Levels.configured(), settings.holidays()
    from app.prescribing import services as prescribing

    wanted = [s.value for s in BOARD_STATES]
    if filters.state in wanted:
        wanted = [filters.state]
    names: dict[int, Pharmacy | None] = {}
    result = []
    for prescription in prescribing.by_status(wanted, pharmacy_id=filters.pharmacy_id or None, limit=limit):
        if prescription.pharmacy_id not in names:
            names[prescription.pharmacy_id] = pharmacies.get(prescription.pharmacy_id) \
                if prescription.pharmacy_id else None
        patient = patients.get(prescription.patient_id)
        row = Row(prescription, states.state_of(prescription), names[prescription.pharmacy_id],
                  patients.user_of(patient).full_name, now - prescription.status_changed_at,
                  breaches(prescription, now, levels, holidays))
        if row.state is S.DISPATCHED:
            shipment = shipping.shipment_for(prescription)
            if shipment is not None:
                row.parcel = shipping.LABELS.get(shipment.status, shipment.status)
                if shipment.status == shipping.RETURNED:
                    row.stuck.append("the parcel came back to the pharmacy")
        if filters.stuck_only and not row.stuck:
            continue
        result.append(row)
    return result


def stuck(now: dt.datetime | None = None) -> list[Row]:
    return rows(Filters(stuck_only=True), now=now)


@dataclass
class DeadLetter:
    message_id: int
    prescription_id: int | None
    event: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime


def dead_letters() -> list[DeadLetter]:
    """Pharmacy messages the outbox gave up on: each an alert on the board until retried."""
    found = []
    for message in outbox.dead_letters([notifications.PHARMACY_KIND]):
        payload = json.loads(message.payload)
        found.append(DeadLetter(message.id, payload.get("prescription_id"), str(payload.get("event")),
                                message.attempts, message.last_error, message.created_at))
    return found


def retry_dead_letter(message_id: int) -> None:
    message = outbox.get(message_id)
    if message is None or message.kind != notifications.PHARMACY_KIND:
        raise ValueError("No such pharmacy message.")
    outbox.retry(message)


# The timeline ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    what: str
    who: str
    detail: str = ""


def timeline(prescription: Prescription, *, limit: int = 1000) -> list[Entry]:
    """Every step of one prescription: its audit entries (transitions, pharmacy steps, delivery events,
    refusals) and each delivery attempt to the pharmacy."""
    entries: list[Entry] = []
    before = None
    seen = 0
    while seen < limit:
        page = audit.search(audit.AuditFilter(patient_id=prescription.patient_id), before_seq=before, limit=200)
        if not page:
            break
        for event in page:
            if event.subject_type == "prescription" and event.subject_id == str(prescription.id):
                entries.append(Entry(event.at, _describe(event.action), event.actor_role or "system",
                                     _detail_text(event.detail)))
        seen += len(page)
        before = page[-1].seq
    for message, attempt in _attempts(prescription):
        entries.append(Entry(attempt.started_at, f"Delivery to the pharmacy ({json.loads(message.payload)['event']}):"
                                                 f" {attempt.outcome}", "worker",
                             " ".join(x for x in (f"HTTP {attempt.http_status}" if attempt.http_status else "",
                                                  attempt.error or "", f"{attempt.duration_ms} ms") if x)))
    entries.sort(key=lambda e: e.at)
    return entries


def _attempts(prescription: Prescription):
    found = []
    for message in outbox.with_key_prefix(notifications.PHARMACY_KIND, f"prescription:{prescription.id}:"):
        found.extend((message, attempt) for attempt in outbox.attempts_of(message.id))
    return found


def _describe(action: str) -> str:
    domain, _, name = action.partition(".")
    if domain == "prescription":
        try:
            return states.State(name).label
        except ValueError:
            return name.replace("_", " ").capitalize()
    return name.replace("_", " ").capitalize()


def _detail_text(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        detail = json.loads(raw)
    except ValueError:
        return ""
    keep = ("reason", "carrier", "tracking", "status", "channel", "step", "batches", "products", "offered", "by")
    return "; ".join(f"{k}: {detail[k]}" for k in keep if detail.get(k) not in (None, "", []))


# The daily digest -----------------------------------------------------------------------------

def digest_recipients() -> list[str]:
    configured = settings.setting("PHARMACY_DIGEST_TO")
    if configured:
        return [a.strip() for a in str(configured).split(",") if a.strip()]
    from app.auth import services as accounts

    return sorted(u.email for u in accounts.staff_users() if u.role in (Role.ADMIN, Role.RECEPTION) and u.active)


def send_digest(now: dt.datetime | None = None) -> int:
    """Once a day, after PHARMACY_DIGEST_HOUR (clinic time): the stuck prescriptions, by email. The
    outbox key (one per day and address) makes a second run the same day a no-op. Returns emails queued."""
    from app import mail

    now = now or utcnow()
    local = now.astimezone(_zone())
    if local.hour < int(settings.setting("PHARMACY_DIGEST_HOUR")):
        return 0
    found = stuck(now)
    if not found:
        return 0
    lines = [{"id": r.prescription.id, "state": r.state.label, "waited": humanise(r.waited),
              "pharmacy": r.pharmacy.name if r.pharmacy else "none", "why": "; ".join(r.stuck)} for r in found]
    queued = 0
    for address in digest_recipients():
        key = f"pharmacy-digest:{local.date().isoformat()}:{address}"
        if outbox.by_key(key) is None:
            mail.queue(address, f"Prescriptions stuck in the pipeline: {len(lines)}", "pharmacy_digest", key=key,
                       rows=lines, day=local.date())
            queued += 1
    return queued


def humanise(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} days"


def _register_worker_jobs() -> None:
    from app.worker import periodic

    periodic("pharmacy.digest", 600)(send_digest)
    periodic("pharmacy.prune_inbound_events", 3600)(pharmacies.prune_inbound_events)


_register_worker_jobs()
