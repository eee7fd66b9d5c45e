"""`flask --app wsgi seed-scale --patients N`: a clinic group's worth of data, for load tests and query plans.

What it makes, for N patients (all figures scale with N; at 100,000 patients):

* staff: a clinician per 1,500 patients, a receptionist per 10,000, a partner pharmacy per 20,000 with three
  pharmacists each, one admin; every clinician with a weekday availability pattern;
* patients spread over every journey state (most of them on treatment), registered over the last 12 months,
  each with a responsible clinician and a nominated pharmacy; details filled in once identity is confirmed;
* 12 months of appointments (completed, no-shows, cancellations) and, for booked patients, upcoming ones that
  hold their time like real bookings do;
* about 3 prescriptions per patient through every prescription state, each with its item and its transitions;
* monthly check-ins with their pain and sleep scores for patients on treatment;
* the audit entries all of that would have written (registration, each journey move, sign-ins, bookings, each
  prescription transition: about 30 per patient), appended to the hash chain in order, so `audit verify` passes.

Rows are written in bulk (PostgreSQL: COPY; SQLite: executemany) in one transaction, not through the
services one object at a time: the services would take hours. Every seeded account is a demo account (its
password, and the staff's TOTP secrets, follow from the published scheme below), so the server refuses to
serve this data outside demo mode, as it does the demo accounts.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

#: Every seeded account's password (one Argon2 hash, computed once, serves them all).
SEED_PASSWORD = "VerityScale-Seed1"  # noqa: S105 - published: seeded accounts are demo accounts
EMAIL_DOMAIN = "scale.example.com"
PATIENTS_PER_CLINICIAN = 1500
PATIENTS_PER_RECEPTIONIST = 10_000
PATIENTS_PER_PHARMACY = 20_000
PHARMACISTS_PER_PHARMACY = 3
BATCH = 20_000

#: Final journey states and their shares (percent).
JOURNEY_MIX = (("registered", 5), ("intake_in_progress", 4), ("intake_submitted", 4), ("identity_verified", 2),
               ("needs_clinical_review", 3), ("not_eligible", 3), ("eligible", 6), ("booked", 10), ("consulted", 5),
               ("on_treatment", 48), ("follow_up_due", 10))
_PATHS = {
    "registered": [], "intake_in_progress": ["intake_in_progress"],
    "intake_submitted": ["intake_in_progress", "intake_submitted"],
    "identity_verified": ["intake_in_progress", "intake_submitted", "identity_verified"],
}
_PATHS["needs_clinical_review"] = [*_PATHS["identity_verified"], "needs_clinical_review"]
_PATHS["not_eligible"] = [*_PATHS["identity_verified"], "not_eligible"]
_PATHS["eligible"] = [*_PATHS["identity_verified"], "eligible"]
_PATHS["booked"] = [*_PATHS["eligible"], "booked"]
_PATHS["consulted"] = [*_PATHS["booked"], "consulted"]
_PATHS["on_treatment"] = [*_PATHS["consulted"], "on_treatment"]
_PATHS["follow_up_due"] = [*_PATHS["on_treatment"], "follow_up_due"]
_SYSTEM_MOVES = {"identity_verified", "eligible", "needs_clinical_review", "not_eligible"}

#: Prescription states reached by each final state, in order (after draft).
_FLOW = ["signed", "transmitted", "received_by_pharmacy", "stock_allocated", "awaiting_original",
         "clinically_verified", "dispensed", "dispatched", "delivered"]
RX_PATHS: dict[str, list[str]] = {state: _FLOW[:i + 1] for i, state in enumerate(_FLOW)}
RX_PATHS.update({
    "draft": [], "out_of_stock": ["signed", "transmitted", "received_by_pharmacy", "out_of_stock"],
    "queried": [*_FLOW[:5], "queried"], "cancelled": ["signed", "cancelled"],
    "expired": ["signed", "transmitted", "expired"], "rejected": ["signed", "transmitted", "received_by_pharmacy",
                                                                 "rejected"],
    "superseded": ["signed", "superseded"],
})
#: The newest prescription of a patient on treatment: where it has got to (weights).
CURRENT_RX_MIX = (("delivered", 40), ("dispatched", 7), ("dispensed", 5), ("clinically_verified", 5),
                  ("awaiting_original", 7), ("stock_allocated", 6), ("received_by_pharmacy", 6), ("transmitted", 5),
                  ("signed", 4), ("out_of_stock", 3), ("queried", 3), ("draft", 4), ("rejected", 2),
                  ("cancelled", 2), ("superseded", 1))
#: Older prescriptions: mostly delivered.
PAST_RX_MIX = (("delivered", 85), ("expired", 6), ("cancelled", 4), ("superseded", 3), ("rejected", 2))
_RX_ACTOR = {"signed": "clinician", "cancelled": "clinician", "superseded": "clinician", "expired": "system"}

FIRST_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Robin", "Chris", "Pat", "Lee", "Ali",
               "Priya", "Amir", "Sofia", "Olivia", "Noah", "Amelia", "Oliver", "Isla", "George", "Ava", "Harry",
               "Mia", "Jack", "Grace", "Leo", "Freya", "Arthur", "Ella", "Muhammad", "Zara", "Tom", "Ruth", "Ben")
SURNAMES = ("Smith", "Jones", "Williams", "Brown", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Roberts",
            "Johnson", "Lewis", "Walker", "Robinson", "Wood", "Thompson", "White", "Watson", "Jackson", "Wright",
            "Green", "Harris", "Cooper", "King", "Lee", "Martin", "Clarke", "James", "Morgan", "Hughes", "Edwards",
            "Hill", "Moore", "Clark", "Harrison", "Scott", "Young", "Morris", "Hall", "Ward", "Turner", "Carter",
            "Phillips", "Mitchell", "Patel", "Adams", "Campbell", "Anderson", "Allen", "Cook", "Bailey", "Khan")
TOWNS = (("Bristol", "BS"), ("Leeds", "LS"), ("Manchester", "M"), ("Birmingham", "B"), ("London", "SE"),
         ("Cardiff", "CF"), ("Sheffield", "S"), ("Nottingham", "NG"), ("Liverpool", "L"), ("Norwich", "NR"))
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


# The published scheme: what a load test needs to sign in as seeded people ---------------------------

def patient_email(number: int) -> str:
    return f"patient{number}@{EMAIL_DOMAIN}"


def staff_email(role: str, number: int) -> str:
    return f"{role}{number}@{EMAIL_DOMAIN}"


def totp_secret(email: str) -> str:
    """A seeded staff account's TOTP secret: Base32 of the first 20 bytes of SHA-256 over a fixed label."""
    return base64.b32encode(hashlib.sha256(f"verity-seed-scale:{email}".encode()).digest()[:20]).decode()


@dataclass(frozen=True)
class Plan:
    patients: int
    clinicians: int
    receptionists: int
    pharmacies: int
    pharmacists_per_pharmacy: int = PHARMACISTS_PER_PHARMACY

    @classmethod
    def for_patients(cls, patients: int) -> Plan:
        return cls(patients=patients, clinicians=max(2, math.ceil(patients / PATIENTS_PER_CLINICIAN)),
                   receptionists=max(2, math.ceil(patients / PATIENTS_PER_RECEPTIONIST)),
                   pharmacies=max(1, math.ceil(patients / PATIENTS_PER_PHARMACY)))

    def clinician_of(self, patient_number: int) -> int:
        """The number of the clinician responsible for a patient (1-based), as the seed assigns them."""
        return (patient_number - 1) % self.clinicians + 1

    def pharmacy_of(self, patient_number: int) -> int:
        return (patient_number - 1) % self.pharmacies + 1

    def journey_state_of(self, patient_number: int) -> str:
        """The journey state the seed gives a patient: a fixed cycle of 100 following JOURNEY_MIX."""
        position = (patient_number - 1) % 100
        for state, share in JOURNEY_MIX:
            if position < share:
                return state
            position -= share
        raise AssertionError("JOURNEY_MIX does not add up to 100")


# Writing in bulk -------------------------------------------------------------------------------------

class BulkWriter:
    """Rows as tuples into one table at a time: COPY on PostgreSQL, executemany elsewhere, one transaction."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.postgres = connection.dialect.name == "postgresql"
        self.counts: dict[str, int] = {}

    def next_id(self, table: sa.Table) -> int:
        return int(self.connection.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))) + 1

    def write(self, table: sa.Table, columns: Sequence[str], rows: Iterable[tuple]) -> None:
        batch: list[tuple] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                self._flush(table, columns, batch)
                batch = []
        if batch:
            self._flush(table, columns, batch)

    def _flush(self, table: sa.Table, columns: Sequence[str], rows: list[tuple]) -> None:
        self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)
        if self.postgres:
            json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, sa.JSON)]
            raw = self.connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(
                    f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    if json_at:
                        row = list(row)
                        for i in json_at:
                            row[i] = json.dumps(row[i])
                    copy.write_row(row)
        else:
            self.connection.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])

    def fix_sequences(self, tables: Iterable[sa.Table]) -> None:
        """PostgreSQL: the explicit ids written above leave each serial's sequence behind; move it on."""
        if not self.postgres:
            return
        for table in tables:
            # Table names come from the models, never from input.
            self.connection.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                f"(SELECT coalesce(max(id), 1) FROM {table.name}))"))


# The audit chain -------------------------------------------------------------------------------------

class Chain:
    """Entries appended after the current head, hashed exactly as app.audit.services.record hashes them."""

    def __init__(self, connection: sa.Connection) -> None:
        from app.audit.models import AuditHead
        from app.audit.services import HEAD_ID

        self.connection = connection
        # The UPDATE takes the chain's lock (as record() does) and holds it to the end of the seed's transaction.
        row = connection.execute(sa.update(AuditHead.__table__).where(AuditHead.id == HEAD_ID)
                                 .values(seq=AuditHead.seq).returning(AuditHead.seq, AuditHead.hash)).one()
        self.seq, self.hash = int(row.seq), row.hash
        self.rows: list[tuple] = []

    def add(self, at: dt.datetime, actor_id: int | None, actor_role: str | None, action: str,
            subject: tuple[str, object] | None, patient_id: int | None, detail: dict[str, Any] | None,
            ip: str | None = None, user_agent: str | None = None) -> None:
        from app.audit.services import canonical_detail, entry_hash

        self.seq += 1
        subject_type, subject_id = (subject[0], str(subject[1])) if subject else (None, None)
        text = canonical_detail(detail)
        digest = entry_hash(self.hash, self.seq, at, actor_id, actor_role, action, subject_type, subject_id,
                            patient_id, ip, user_agent, text)
        self.rows.append((self.seq, at, actor_id, actor_role, action, subject_type, subject_id, patient_id, ip,
                          user_agent, text, self.hash, digest))
        self.hash = digest

    COLUMNS = ("seq", "at", "actor_id", "actor_role", "action", "subject_type", "subject_id", "patient_id", "ip",
               "user_agent", "detail", "prev_hash", "hash")

    def drain(self) -> list[tuple]:
        rows, self.rows = self.rows, []
        return rows

    def close(self) -> None:
        from app.audit.models import AuditHead
        from app.audit.services import HEAD_ID

        self.connection.execute(sa.update(AuditHead.__table__).where(AuditHead.id == HEAD_ID)
                                .values(seq=self.seq, hash=self.hash))


# Clinicians' time ---------------------------------------------------------------------------------------

#: Mornings for initial consultations, afternoons for follow-ups (as the demo availability).
SESSIONS = (("initial", dt.time(9), dt.time(13), 30), ("follow-up", dt.time(13), dt.time(17), 15))


class Diary:
    """One clinician's free slots, day by day, from a year ago to four weeks ahead."""

    def __init__(self, first: dt.date, last: dt.date, zone: ZoneInfo, types: set[str]) -> None:
        self.first = first
        self.days: list[dict[str, list[tuple[dt.datetime, dt.datetime]]]] = []
        day = first
        while day <= last:
            slots: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
            if day.weekday() < 5:
                for kind, start, end, minutes in SESSIONS:
                    if kind not in types:
                        continue
                    at = dt.datetime.combine(day, start, tzinfo=zone)
                    stop = dt.datetime.combine(day, end, tzinfo=zone)
                    free = []
                    while at + dt.timedelta(minutes=minutes) <= stop:
                        free.append((at.astimezone(dt.UTC), (at + dt.timedelta(minutes=minutes)).astimezone(dt.UTC)))
                        at += dt.timedelta(minutes=minutes)
                    free.reverse()  # pop() takes the earliest
                    slots[kind] = free
            self.days.append(slots)
            day += dt.timedelta(days=1)

    def take(self, kind: str, wanted: dt.date, rng: random.Random, *, within: int = 14
             ) -> tuple[dt.datetime, dt.datetime] | None:
        index = max(0, (wanted - self.first).days)
        for offset in range(within):
            if index + offset >= len(self.days):
                return None
            free = self.days[index + offset].get(kind)
            if free:
                # Not always the first of the day: spread bookings over the session.
                return free.pop(rng.randrange(len(free)))
        return None


# The seed -----------------------------------------------------------------------------------------

@dataclass
class Summary:
    plan: Plan
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        total = sum(self.seconds.values())
        lines = [f"Seeded {self.plan.patients:,} patients, {self.plan.clinicians} clinicians, "
                 f"{self.plan.receptionists} receptionists, {self.plan.pharmacies} pharmacies "
                 f"({self.plan.pharmacists_per_pharmacy} pharmacists each) in {total:.1f} s:"]
        lines += [f"  {name:<28} {count:>12,}" for name, count in sorted(self.counts.items())]
        lines += [f"  {phase:<28} {seconds:>10.1f} s" for phase, seconds in self.seconds.items()]
        return lines


class SeedExists(RuntimeError):
    pass


def existing_seed() -> int:
    from app.auth.models import User
    from app.extensions import db

    return int(db.session.scalar(sa.select(sa.func.count()).select_from(User)
                                 .where(User.email.like(f"%@{EMAIL_DOMAIN}"))) or 0)


def _reference_data() -> dict[str, Any]:
    """The formulary, instruments and consent texts the seeded rows point at (loaded if missing)."""
    from app.consent import services as consent
    from app.intake import services as intake
    from app.outcomes import instruments
    from app.prescribing import demo as prescribing_demo

    consent.load_defaults()
    intake.load_default_questionnaires()
    instruments.ensure_built_in()
    products = prescribing_demo.load_demo_formulary()
    return {"products": products}


def seed(patients: int, *, force: bool = False, rng_seed: int = 20240601,
         echo: Callable[[str], None] = lambda _line: None) -> Summary:
    from flask import current_app

    from app.auth import services as accounts
    from app.extensions import db
    from app.scheduling import settings

    if patients < 1:
        raise ValueError("seed at least one patient")
    already = existing_seed()
    if already and not force:
        raise SeedExists(f"This database already holds {already:,} seeded accounts (@{EMAIL_DOMAIN}): "
                         "seed a fresh database, or pass --force to add more beside them.")
    plan = Plan.for_patients(patients)
    summary = Summary(plan)
    started = time.perf_counter()
    reference = _reference_data()
    db.session.commit()
    password_hash = accounts.hash_password(SEED_PASSWORD)
    zone = settings.clinic_zone()
    types = set(settings.consultation_types())
    summary.seconds["reference data"] = time.perf_counter() - started
    # --force: patients' numbers continue after the seeded patients already there.
    offset = int(db.session.scalar(sa.text("SELECT count(*) FROM users WHERE email LIKE :like"),
                                   {"like": f"patient%@{EMAIL_DOMAIN}"}) or 0)
    from app import crypto

    encrypt_totp = lambda secret: crypto.encrypt(secret.encode(), accounts.TOTP_PURPOSE)  # noqa: E731
    with db.engine.begin() as connection:
        generator = _Generator(connection, plan, offset, password_hash, zone, types, reference,
                               random.Random(rng_seed), encrypt_totp, current_app.config, echo)
        generator.run(summary)
    summary.seconds["total"] = time.perf_counter() - started
    summary.seconds = {k: v for k, v in summary.seconds.items() if k != "total"}
    return summary


class _Generator:
    def __init__(self, connection, plan: Plan, offset: int, password_hash: str, zone: ZoneInfo, types: set[str],
                 reference: dict[str, Any], rng: random.Random, encrypt_totp, config, echo) -> None:
        self.c = connection
        self.plan = plan
        self.offset = offset
        self.password_hash = password_hash
        self.zone = zone
        self.types = types
        self.products = reference["products"]
        self.rng = rng
        self.encrypt_totp = encrypt_totp
        self.echo = echo
        self.writer = BulkWriter(connection)
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.today = self.now.astimezone(zone).date()
        self.current_rx = 0

    def _phase(self, summary: Summary, name: str, since: float) -> float:
        now = time.perf_counter()
        summary.seconds[name] = now - since
        self.echo(f"  {name}: {now - since:.1f} s")
        return now

    def run(self, summary: Summary) -> None:
        from app.audit.models import AuditEvent
        from app.auth.models import User
        from app.outcomes.models import OutcomeCheckin, OutcomeObservation
        from app.patients.models import Patient
        from app.pharmacy.models import Pharmacy
        from app.prescribing.models import Prescription, PrescriptionItem, PrescriptionTransition
        from app.scheduling.models import Appointment, AvailabilityPattern, TimeHold

        w, rng, now = self.writer, self.rng, self.now
        tick = time.perf_counter()
        self.chain = Chain(self.c)
        tables = {t.name: t for t in (User.__table__, Patient.__table__, Pharmacy.__table__,
                                       AvailabilityPattern.__table__, Appointment.__table__,
                                       Prescription.__table__, PrescriptionItem.__table__,
                                       PrescriptionTransition.__table__, OutcomeCheckin.__table__,
                                       OutcomeObservation.__table__)}
        ids = {name: w.next_id(table) for name, table in tables.items()}
        year_ago = now - dt.timedelta(days=365)

        # Pharmacies and staff.
        pharmacy_ids = []
        rows = []
        for number in range(1, self.plan.pharmacies + 1):
            pid = ids["pharmacies"]
            ids["pharmacies"] += 1
            pharmacy_ids.append(pid)
            gphc = f"{8000000 + self.offset + number:07d}"
            rows.append((pid, f"Scale Pharmacy {self.offset + number}", gphc, f"{number} Market Street, Leeds LS1 1AA",
                         True, "portal", year_ago))
        w.write(tables["pharmacies"], ("id", "name", "gphc_number", "address", "active", "connection", "created_at"),
                rows)
        staff: dict[str, list[int]] = {"clinician": [], "reception": [], "pharmacist": [], "admin": []}
        counts = {"clinician": self.plan.clinicians, "reception": self.plan.receptionists,
                  "pharmacist": self.plan.pharmacies * self.plan.pharmacists_per_pharmacy, "admin": 1}
        user_rows = []
        for role, count in counts.items():
            staff_offset = self._staff_offset(role)
            for number in range(1, count + 1):
                uid = ids["users"]
                ids["users"] += 1
                staff[role].append(uid)
                email = staff_email(role, staff_offset + number)
                name = f"{'Dr ' if role == 'clinician' else ''}{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
                pharmacy = pharmacy_ids[(number - 1) % len(pharmacy_ids)] if role == "pharmacist" else None
                user_rows.append(self._user_row(uid, email, name, role, year_ago, pharmacy,
                                                self.encrypt_totp(totp_secret(email))))
                self.chain.add(year_ago, None, None, "user.created", ("user", uid), None,
                               {"role": role, "demo": True})
        w.write(tables["users"], USER_COLUMNS, user_rows)
        pattern_rows = []
        for uid in staff["clinician"]:
            for weekday in range(5):
                for kind, start, end, minutes in SESSIONS:
                    if kind in self.types:
                        pattern_rows.append((ids["availability_patterns"], uid, weekday, start, end, minutes, kind,
                                             (year_ago - dt.timedelta(days=7)).date(), None, year_ago))
                        ids["availability_patterns"] += 1
        w.write(tables["availability_patterns"], ("id", "clinician_id", "weekday", "start_time", "end_time",
                                                  "slot_minutes", "consultation_type", "valid_from", "valid_to",
                                                  "created_at"), pattern_rows)
        diaries = [Diary((year_ago - dt.timedelta(days=1)).astimezone(self.zone).date(),
                         self.today + dt.timedelta(days=28), self.zone, self.types) for _ in staff["clinician"]]
        tick = self._phase(summary, "staff and diaries", tick)

        # Patients and everything of theirs, in chunks.
        product_rows = [(p.id, p.name, p.form, p.thc, p.cbd, p.dmd_code) for p in self.products]
        out: dict[str, list[tuple]] = {k: [] for k in ("users", "patients", "appointments", "time_holds",
                                                        "prescriptions", "prescription_items",
                                                        "prescription_transitions", "outcome_checkins",
                                                        "outcome_observations")}
        for number in range(1, self.plan.patients + 1):
            self._patient(number, ids, staff, pharmacy_ids, diaries, product_rows, out)
            if number % 5000 == 0 or number == self.plan.patients:
                self._flush(out, tables, TimeHold.__table__, AuditEvent.__table__)
                if number % 20000 == 0:
                    self.echo(f"  {number:,} patients")
        tick = self._phase(summary, "patients and their records", tick)
        self.chain.close()
        w.fix_sequences(tables.values())
        summary.counts.update(w.counts)
        self._phase(summary, "audit head and sequences", tick)

    def _staff_offset(self, role: str) -> int:
        """--force: seeded staff of this role already there (their numbers continue)."""
        from app.auth.models import User

        return int(self.c.scalar(sa.select(sa.func.count()).select_from(User.__table__).where(
            User.email.like(f"{role}%@{EMAIL_DOMAIN}"))) or 0)

    def _user_row(self, uid, email, name, role, created, pharmacy_id, totp_enc) -> tuple:
        return (uid, email, self.password_hash, name, role, True, True, 0, pharmacy_id, totp_enc,
                created if totp_enc else None, 0, created, None)

    def _flush(self, out, tables, holds, audit) -> None:
        w = self.writer
        w.write(tables["users"], USER_COLUMNS, out["users"])
        w.write(tables["patients"], PATIENT_COLUMNS, out["patients"])
        w.write(tables["appointments"], APPOINTMENT_COLUMNS, out["appointments"])
        w.write(holds, ("kind", "owner_id", "starts_at", "appointment_id", "offer_id"), out["time_holds"])
        w.write(tables["prescriptions"], PRESCRIPTION_COLUMNS, out["prescriptions"])
        w.write(tables["prescription_items"], ITEM_COLUMNS, out["prescription_items"])
        w.write(tables["prescription_transitions"], TRANSITION_COLUMNS, out["prescription_transitions"])
        w.write(tables["outcome_checkins"], CHECKIN_COLUMNS, out["outcome_checkins"])
        w.write(tables["outcome_observations"], OBSERVATION_COLUMNS, out["outcome_observations"])
        w.write(audit, Chain.COLUMNS, self.chain.drain())
        for rows in out.values():
            rows.clear()

    def _patient(self, number, ids, staff, pharmacy_ids, diaries, products, out) -> None:
        rng, now, chain = self.rng, self.now, self.chain
        plan = self.plan
        state = plan.journey_state_of(number)
        path = _PATHS[state]
        advanced = state in ("booked", "consulted", "on_treatment", "follow_up_due")
        # Early states registered recently; patients further on, earlier in the year.
        days_ago = rng.uniform(1, 45) if not advanced and state != "not_eligible" else rng.uniform(
            30 if state in ("booked", "consulted") else 90, 360)
        registered = now - dt.timedelta(days=days_ago, seconds=rng.randrange(86400))
        uid, pid = ids["users"], ids["patients"]
        ids["users"] += 1
        ids["patients"] += 1
        clinician_index = plan.clinician_of(number) - 1
        clinician = staff["clinician"][clinician_index]
        pharmacy = pharmacy_ids[plan.pharmacy_of(number) - 1]
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        out["users"].append(self._user_row(uid, patient_email(self.offset + number), f"{first} {last}", "patient",
                                           registered, None, None))
        chain.add(registered, None, None, "user.created", ("user", uid), None, {"role": "patient", "demo": True})
        chain.add(registered, None, None, "patient.registered", ("patient", pid), pid, None)
        ip = f"203.0.113.{number % 250 + 1}"

        def login(at: dt.datetime) -> None:
            chain.add(at, uid, "patient", "auth.login", ("user", uid), None, {"second_factor": None}, ip, USER_AGENT)

        # The journey, one move every day or few.
        at = registered
        previous = "registered"
        moves: list[tuple[str, dt.datetime]] = []
        span = (now - registered) * (0.25 if advanced else 0.9)
        step = span / max(1, len(path))
        for to in path:
            at = at + step * rng.uniform(0.3, 1.0)
            moves.append((to, at))
        booked_at = None
        details = state not in ("registered", "intake_in_progress", "intake_submitted")
        town, area = rng.choice(TOWNS)
        appointments: list[tuple[int, dt.datetime, dt.datetime, str, str]] = []
        diary = diaries[clinician_index]

        def appoint(kind: str, wanted: dt.datetime, status: str, booked_on: dt.datetime) -> tuple | None:
            slot = diary.take(kind, wanted.astimezone(self.zone).date(), rng)
            if slot is None:
                return None
            aid = ids["appointments"]
            ids["appointments"] += 1
            starts, ends = slot
            changed = starts if status != "booked" else booked_on
            out["appointments"].append((aid, pid, clinician, kind, starts, ends, status, 0, uid, booked_on, booked_on,
                                        changed, uid if status == "cancelled" else None))
            chain.add(booked_on, uid, "patient", "appointment.booked", ("appointment", aid), pid,
                      {"starts_at": starts.isoformat(), "clinician_id": clinician, "type": kind}, ip, USER_AGENT)
            if status in ("completed", "no_show", "cancelled"):
                chain.add(max(changed, booked_on), clinician if status != "cancelled" else uid,
                          "clinician" if status != "cancelled" else "patient", f"appointment.{status}",
                          ("appointment", aid), pid, {"from": "booked", "to": status})
            if status == "booked":
                cell = starts
                while cell < ends:
                    out["time_holds"].append(("clinician", clinician, cell, aid, None))
                    out["time_holds"].append(("patient", pid, cell, aid, None))
                    cell += dt.timedelta(minutes=5)
            appointments.append((aid, starts, ends, kind, status))
            return slot

        for to, moved in moves:
            if to == "booked":
                booked_at = moved
                if state == "booked":  # the consultation is still to come
                    wanted = now + dt.timedelta(days=rng.uniform(1, 25))
                    if appoint("initial", wanted, "booked", moved) is None:
                        appoint("follow-up", wanted, "booked", moved)
                else:
                    slot = appoint("initial", moved + dt.timedelta(days=rng.uniform(2, 10)), "completed", moved)
                    if slot is not None:
                        moved = slot[1]
            if to in ("consulted",) and appointments:
                moved = max(moved, appointments[-1][2])
            automatic = to in _SYSTEM_MOVES
            actor = (None, None) if automatic else (clinician, "clinician") if to == "consulted" else (uid, "patient")
            chain.add(moved, actor[0], actor[1], f"journey.{to}", ("patient", pid), pid,
                      {"from": previous, "to": to, "reason": None, "automatic": automatic},
                      None if automatic else ip, None if automatic else USER_AGENT)
            previous = to
            at = moved
        if state in ("eligible", "needs_clinical_review") and rng.random() < 0.2:
            appoint("initial", now - dt.timedelta(days=rng.uniform(1, 20)), "cancelled",
                    now - dt.timedelta(days=rng.uniform(21, 30)))
        changed_at = moves[-1][1] if moves else registered

        # Treatment: monthly follow-ups, prescriptions and check-ins.
        prescriptions: list[tuple[int, str]] = []
        if state in ("consulted", "on_treatment", "follow_up_due"):
            start = at
            months = max(1, int((now - start).days / 30))
            count = 1 if state == "consulted" else max(1, min(months, rng.randint(3, 7)))
            for j in range(count):
                signed_on = start + dt.timedelta(days=30 * j + rng.uniform(0, 3))
                if signed_on >= now:
                    signed_on = now - dt.timedelta(hours=rng.uniform(1, 48))
                if state == "consulted":
                    final = "draft"
                elif j == count - 1 and state == "on_treatment":
                    # The first few go through every state in turn, so even a small seed has each of them.
                    self.current_rx += 1
                    final = CURRENT_RX_MIX[self.current_rx - 1][0] if self.current_rx <= len(CURRENT_RX_MIX) \
                        else _pick(rng, CURRENT_RX_MIX)
                elif j == count - 1:
                    final = _pick(rng, (("delivered", 80), ("expired", 20)))
                else:
                    final = _pick(rng, PAST_RX_MIX)
                self._prescription(ids, out, pid, uid, clinician, pharmacy, final, signed_on, products, ip)
                prescriptions.append((ids["prescriptions"] - 1, final))
                if j and rng.random() < 0.85:
                    status = _pick(rng, (("completed", 90), ("no_show", 6), ("cancelled", 4)))
                    appoint("follow-up", signed_on - dt.timedelta(days=1), status,
                            signed_on - dt.timedelta(days=rng.uniform(7, 20)))
            if state == "on_treatment" and rng.random() < 0.3:
                appoint("follow-up", now + dt.timedelta(days=rng.uniform(1, 27)), "booked",
                        now - dt.timedelta(days=rng.uniform(1, 10)))
            for month in range(min(months, 6)):
                day = (start + dt.timedelta(days=30 * month + rng.uniform(1, 28))).date()
                if day >= self.today:
                    break
                cid = ids["outcome_checkins"]
                ids["outcome_checkins"] += 1
                pain, sleep = max(0, min(10, 7 - month + rng.randint(-2, 1))), max(0, min(10, 3 + month
                                                                                          + rng.randint(-1, 2)))
                noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
                out["outcome_checkins"].append((cid, pid, day, pain, sleep, [], None, noon, noon))
                for code, value in (("pain-today", pain), ("sleep-last-night", sleep)):
                    oid = ids["outcome_observations"]
                    ids["outcome_observations"] += 1
                    measure, label = _measure(code, value)
                    out["outcome_observations"].append((oid, pid, measure.system, code, measure.label, Decimal(value),
                                                        measure.unit, noon, "check-in", None, cid, None, label, noon))
        # Sign-ins, and the clinician reading the record now and then.
        for _ in range(2 + (3 if advanced else 0)):
            login(registered + (now - registered) * rng.random())
        if advanced:
            chain.add(changed_at, clinician, "clinician", "record.read", ("patient", pid), pid,
                      {"section": "summary"}, "198.51.100.7", USER_AGENT)
        changed_at = max([changed_at, *(a[1] for a in appointments if a[4] == "completed" and a[1] < now)]) \
            if state in ("consulted",) else changed_at
        dob = dt.date(rng.randint(1945, 2004), rng.randint(1, 12), rng.randint(1, 28))
        verified = moves[2][1] if details and len(moves) > 2 else None
        eligibility = {"eligible": "eligible", "needs_clinical_review": "needs_clinical_review",
                       "not_eligible": "not_eligible"}.get(state, "eligible" if advanced else None)
        out["patients"].append((
            pid, uid, dob, state, changed_at, clinician, pharmacy, registered,
            f"{number % 200 + 1} {last} Road" if details else None, None, town if details else None,
            f"{area}{number % 9 + 1} {number % 9 + 1}{chr(65 + number % 26)}{chr(65 + (number // 26) % 26)}"
            if details else None, f"+4477009{number % 100000:05d}" if details else None,
            _nhs_number(number) if details else None, "Harbourside Medical Practice" if details else None,
            verified, eligibility, json.dumps([]) if eligibility else None))
        del booked_at, prescriptions

    def _prescription(self, ids, out, pid, patient_uid, clinician, pharmacy, final, signed_on, products, ip) -> None:
        rng, chain = self.rng, self.chain
        rxid = ids["prescriptions"]
        ids["prescriptions"] += 1
        path = RX_PATHS[final]
        paper = "awaiting_original" in path or rng.random() < 0.5
        at = signed_on
        times = []
        for _ in path:
            times.append(at)
            at = min(self.now - dt.timedelta(minutes=5), at + dt.timedelta(hours=rng.uniform(2, 30)))
        signed_at = times[0] if path else None
        changed = times[-1] if times else signed_on
        product = products[rxid % len(products)]
        out["prescriptions"].append((
            rxid, hashlib.sha256(f"seed-rx-{rxid}-{self.offset}".encode()).hexdigest()[:32], pid, clinician, final,
            changed, signed_on, len(path), None, pharmacy if path else None, None, signed_at,
            signed_at + dt.timedelta(days=28) if signed_at else None, paper,
            signed_at if paper and signed_at else None,
            times[path.index("clinically_verified")] if paper and "clinically_verified" in path else None,
            "Seeded for load testing" if final in ("cancelled", "rejected", "expired", "superseded") else None))
        out["prescription_items"].append((ids["prescription_items"], rxid, 1, product[0], product[1], product[2],
                                          f"THC {product[3]} / CBD {product[4]}", product[5],
                                          "As directed, up to 1 g a day", Decimal("30.00"), "g",
                                          "30 (thirty) grams", 30, None))
        ids["prescription_items"] += 1
        chain.add(signed_on, clinician, "clinician", "prescription.draft_started", ("prescription", rxid), pid,
                  {"revision": 0}, "198.51.100.7", USER_AGENT)
        previous = "draft"
        for to, when in zip(path, times, strict=True):
            role = _RX_ACTOR.get(to, "pharmacy")
            actor = clinician if role == "clinician" else None
            out["prescription_transitions"].append((ids["prescription_transitions"], rxid, previous, to, when, actor,
                                                    role, {}))
            ids["prescription_transitions"] += 1
            chain.add(when, actor, role if role != "pharmacy" else "pharmacist", f"prescription.{to}",
                      ("prescription", rxid), pid, {"from": previous, "to": to})
            previous = to


def _measure(code: str, value: int):
    from app.outcomes import scoring

    measure = scoring.measure(code)
    found = scoring.band(code, value)
    return measure, found.label if found else None


def _pick(rng: random.Random, mix: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


def _nhs_number(number: int) -> str:
    """A ten-digit number passing the modulus-11 check (from the 999 test range)."""
    base = 999_000_000 + number % 1_000_000
    while True:
        digits = [int(d) for d in f"{base:09d}"]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return f"{base:09d}{check}"
        base += 1


USER_COLUMNS = ("id", "email", "password_hash", "full_name", "role", "active", "is_demo", "session_epoch",
                "pharmacy_id", "totp_secret_enc", "totp_confirmed_at", "totp_last_step", "created_at",
                "last_login_at")
PATIENT_COLUMNS = ("id", "user_id", "date_of_birth", "journey_state", "journey_changed_at", "clinician_id",
                   "pharmacy_id", "created_at", "address_line1", "address_line2", "town", "postcode", "phone",
                   "nhs_number", "gp_practice", "identity_verified_at", "eligibility_outcome", "eligibility_reasons")
APPOINTMENT_COLUMNS = ("id", "patient_id", "clinician_id", "consultation_type", "starts_at", "ends_at", "status",
                       "sequence", "booked_by", "created_at", "time_set_at", "status_changed_at", "cancelled_by")
PRESCRIPTION_COLUMNS = ("id", "public_id", "patient_id", "prescriber_id", "status", "status_changed_at", "created_at",
                        "revision", "plan_version_id", "pharmacy_id", "supersedes_id", "signed_at", "valid_until",
                        "paper_original", "paper_posted_at", "paper_received_at", "ended_reason")
ITEM_COLUMNS = ("id", "prescription_id", "line", "product_id", "product_name", "form_label", "strength", "dmd_code",
                "dose", "quantity", "unit", "quantity_text", "days_supply", "justification")
TRANSITION_COLUMNS = ("id", "prescription_id", "from_state", "to_state", "at", "actor_id", "actor_role", "detail")
CHECKIN_COLUMNS = ("id", "patient_id", "day", "pain", "sleep", "side_effects", "note", "created_at", "updated_at")
OBSERVATION_COLUMNS = ("id", "patient_id", "system", "code", "display", "value", "unit", "effective_at", "source",
                       "response_id", "checkin_id", "import_id", "band", "recorded_at")


@click.command("seed-scale", help="Generate a clinic group's worth of seeded data (demo accounts) for load tests.")
@click.option("--patients", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--force", is_flag=True, help="Seed even though seeded accounts exist (numbers continue after them).")
@click.option("--seed", "rng_seed", type=int, default=20240601, show_default=True, help="Random seed.")
@with_appcontext
def seed_scale_command(patients: int, force: bool, rng_seed: int) -> None:
    try:
        summary = seed(patients, force=force, rng_seed=rng_seed, echo=click.echo)
    except SeedExists as exc:
        raise click.ClickException(str(exc)) from exc
    for line in summary.lines():
        click.echo(line)
