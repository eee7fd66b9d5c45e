"""`flask --app wsgi seed-scale --patients N`: a clinic group's worth of data, for load tests and query plans.

What it makes, for N patients (all figures scale with N; at 100,000 patients):

* staff: a clinician per 1,500 patients, a receptionist per 10,000, a partner pharmacy per 20,000 with three
  pharmacists each (and its data-sharing consent text), one admin; every clinician a specialist prescriber with a
  weekday availability pattern;
* patients spread over every journey state (most of them on treatment), registered over the last 12 months,
  each with a responsible clinician and a nominated pharmacy; details filled in once identity is confirmed;
* their health questions: answers to the loaded intake questionnaire, step by step, sent (a FHIR
  QuestionnaireResponse with the eligibility rules' findings) once the journey is past "intake submitted", and
  where the rules asked for a review, a clinician's decision with its reason (about a quarter of those treated);
* the consents (terms, privacy, video, sharing with the nominated pharmacy) accepted before the identity check;
* 12 months of appointments (completed, no-shows, cancellations) and, for booked patients, upcoming ones that
  hold their time like real bookings do;
* for everyone consulted, a treatment plan for their condition (a new version at each three-monthly review) and
  an MDT approval recorded by a second clinician before the first prescription;
* about 3 prescriptions per patient through every prescription state, each with its item and its transitions,
  signed under the plan version then in force and within its doses and quota (what signing checks);
* monthly check-ins with their pain and sleep scores for patients on treatment;
* the audit entries all of that would have written (registration, each journey move, intake steps, consents,
  plan versions, MDT decisions, sign-ins, bookings, each prescription transition: about 50 per patient),
  appended to the hash chain in order, so `audit verify` passes.

Not made: identity checks (each points at two stored photos in the documents domain) and consultation notes.

Rows are written in bulk (PostgreSQL: COPY; SQLite: the driver's executemany) in one transaction, not through the
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
#: Where the clinic's staff work from.
CLINIC_IP = "198.51.100.7"


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
        self.types: dict[str, dict[str, int]] = {}

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
            # Binary COPY, typed by the columns' own types: nothing to escape here or to parse on the server.
            types = self._column_types(table)
            raw = self.connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(
                    f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([types[name] for name in columns])
                for row in rows:
                    copy.write_row(row)
        else:
            # The column types' own bind processors (what table.insert() would apply), then the driver's
            # executemany: SQLAlchemy's per-row parameter handling cost more than the insert itself.
            dialect = self.connection.dialect
            processors = [(i, process) for i, name in enumerate(columns)
                          if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]
            if processors:
                converted = []
                for row in rows:
                    values = list(row)
                    for i, process in processors:
                        values[i] = process(values[i])
                    converted.append(values)
                rows = converted
            # Table and column names come from the models, never from input.
            self.connection.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
                [tuple(row) for row in rows])

    def _column_types(self, table: sa.Table) -> dict[str, int]:
        """PostgreSQL: the type (OID) of each column of a table, as the migrations made it."""
        found = self.types.get(table.name)
        if found is None:
            found = {name: int(oid) for name, oid in self.connection.execute(sa.text(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 "
                "AND NOT attisdropped"), {"table": table.name})}
            self.types[table.name] = found
        return found

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

    #: Most details repeat ({"from": "signed", "to": "transmitted"}, ...): their canonical text is kept, this many.
    KEPT_DETAILS = 50_000

    def __init__(self, connection: sa.Connection) -> None:
        from app.audit.models import AuditHead
        from app.audit.services import HEAD_ID, canonical_detail, entry_hash

        self.connection = connection
        self.canonical_detail, self.entry_hash = canonical_detail, entry_hash
        self.texts: dict[tuple, str] = {}
        # The UPDATE takes the chain's lock (as record() does) and holds it to the end of the seed's transaction.
        row = connection.execute(sa.update(AuditHead.__table__).where(AuditHead.id == HEAD_ID)
                                 .values(seq=AuditHead.seq).returning(AuditHead.seq, AuditHead.hash)).one()
        self.seq, self.hash = int(row.seq), row.hash
        self.rows: list[tuple] = []

    def add(self, at: dt.datetime, actor_id: int | None, actor_role: str | None, action: str,
            subject: tuple[str, object] | None, patient_id: int | None, detail: dict[str, Any] | None,
            ip: str | None = None, user_agent: str | None = None) -> None:
        self.seq += 1
        subject_type, subject_id = (subject[0], str(subject[1])) if subject else (None, None)
        text = self._text(detail)
        digest = self.entry_hash(self.hash, self.seq, at, actor_id, actor_role, action, subject_type, subject_id,
                                 patient_id, ip, user_agent, text)
        self.rows.append((self.seq, at, actor_id, actor_role, action, subject_type, subject_id, patient_id, ip,
                          user_agent, text, self.hash, digest))
        self.hash = digest

    def _text(self, detail: dict[str, Any] | None) -> str:
        """canonical_detail(detail), looked up for a detail seen before (keyed with the values' types too, since
        True == 1 but they are written differently)."""
        if not detail:
            return self.canonical_detail(detail)
        try:
            key = tuple(sorted((name, type(value), value) for name, value in detail.items()))
            text = self.texts.get(key)
        except TypeError:  # a list or a dict inside: not kept
            return self.canonical_detail(detail)
        if text is None:
            text = self.canonical_detail(detail)
            if len(self.texts) < self.KEPT_DETAILS:
                self.texts[key] = text
        return text

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


# Health answers ---------------------------------------------------------------------------------------
# Drawn against the questionnaire the app has loaded, settled and judged by the intake's own engine and
# eligibility rules: a pool of answer sets per outcome is made once, then each patient takes one.

#: Conditions people come with: (weight, SNOMED CT code, indication for the plan, licensed treatments they
#: typically tried, other treatments, "pain" or "calm": which products a plan allows).
CONDITIONS: dict[str, tuple[int, str, str, tuple[str, ...], tuple[str, ...], str]] = {
    "chronic-pain": (36, "82423001", "Chronic pain", ("opioid", "nsaid", "neuropathic", "antidepressant"),
                     ("physiotherapy", "pain-clinic", "complementary"), "pain"),
    "neuropathic-pain": (10, "247398009", "Neuropathic pain", ("neuropathic", "opioid", "antidepressant", "nsaid"),
                         ("physiotherapy", "pain-clinic"), "pain"),
    "fibromyalgia": (8, "203082005", "Fibromyalgia", ("antidepressant", "neuropathic", "opioid", "nsaid"),
                     ("physiotherapy", "talking-therapy", "pain-clinic"), "pain"),
    "multiple-sclerosis": (4, "24700007", "Spasticity in multiple sclerosis", ("muscle-relaxant", "neuropathic",
                                                                              "opioid"), ("physiotherapy",), "pain"),
    "migraine": (5, "37796009", "Migraine", ("migraine-medicine", "nsaid", "antidepressant", "neuropathic"),
                 ("complementary",), "pain"),
    "endometriosis": (4, "129103003", "Endometriosis", ("nsaid", "opioid", "neuropathic"),
                      ("physiotherapy", "pain-clinic"), "pain"),
    "ibd": (3, "24526004", "Inflammatory bowel disease", ("ibd-medicine", "opioid", "antiemetic"), (), "pain"),
    "cancer-symptoms": (1, "422587007", "Chemotherapy-induced nausea and vomiting", ("antiemetic", "opioid"), (),
                        "pain"),
    "anxiety": (13, "21897009", "Generalised anxiety disorder", ("antidepressant", "anxiety-medicine",
                                                                "sleeping-tablet"), ("talking-therapy",), "calm"),
    "ptsd": (6, "47505003", "Post-traumatic stress disorder", ("antidepressant", "anxiety-medicine",
                                                              "sleeping-tablet"), ("talking-therapy",), "calm"),
    "insomnia": (7, "193462001", "Insomnia", ("sleeping-tablet", "antidepressant", "anxiety-medicine"),
                 ("talking-therapy",), "calm"),
    "adhd": (3, "406506008", "Attention deficit hyperactivity disorder", ("adhd-medicine", "antidepressant"),
             ("talking-therapy",), "calm"),
}
IMPACT = {
    "pain": ("Constant pain most days. I sleep badly and have had to cut my hours at work.",
             "The pain is worst in the evenings and stops me walking more than ten minutes.",
             "I have flare-ups every few weeks that keep me in bed for days.",
             "Pain wakes me several times a night and I am exhausted during the day."),
    "calm": ("I worry most of the day and struggle to leave the house.",
             "I sleep three or four hours a night and it affects my work and my family.",
             "Panic attacks several times a week; I have stopped driving because of them.",
             "I find it hard to concentrate and have had time off work because of it."),
}
TRIED = ("They helped a little at first but stopped working after a few months.",
         "The side effects (drowsiness and nausea) were too much to carry on.",
         "No real improvement at the highest dose my GP would prescribe.",
         "Some relief, but not enough to get back to normal life.")
MEDICATION = ("Sertraline 50 mg once a day.", "Paracetamol 1 g when needed.", "Omeprazole 20 mg in the morning.",
              "Levothyroxine 100 micrograms daily.", "Amlodipine 5 mg once a day.")
JOBS = ("Teacher", "Nurse", "Software developer", "Retail assistant", "Accountant", "Warehouse operative",
        "Graphic designer", "Retired", "Student", "Chef", "Care worker", "Not working at the moment")
#: Review triggers a clinician then looks at, and the answers that set each off.
REVIEW_TRIGGERS: tuple[dict[str, Any], ...] = (
    {"work.drives": True, "work.drives_for_work": True},
    {"work.safety_critical": True},
    {"substances.cannabis": "daily", "substances.cannabis_grams": 10},
    {"substances.cannabis": "weekly", "substances.cannabis_grams": 14},
    {"substances.other_drugs": True, "substances.other_drugs_details": "Cocaine occasionally at weekends"},
    {"substances.dependence": True},
    {"substances.alcohol_units": 42},
    {"pregnancy.status": "planning"},
    {"psychiatric.history": True, "psychosis.family": "yes"},
    {"psychiatric.history": True, "psychosis.experiences": True},
    {"psychiatric.history": True, "phq9": "severe"},
    {"psychiatric.history": True, "gad7": "severe"},
)
NOT_ELIGIBLE_TRIGGERS: tuple[dict[str, Any], ...] = (
    {"treatments.licensed": "one"}, {"treatments.licensed": ["none"]},
    {"condition.diagnosed": "no"}, {"pregnancy.status": "pregnant"}, {"pregnancy.status": "breastfeeding"},
)
PHQ9 = ("phq9.44250-9", "phq9.44255-8", "phq9.44259-0", "phq9.44254-1", "phq9.44251-7", "phq9.44258-2",
        "phq9.44252-5", "phq9.44253-3", "phq9.44260-8")
GAD7 = ("gad7.69725-0", "gad7.68509-9", "gad7.69733-4", "gad7.69734-2", "gad7.69735-9", "gad7.69689-8",
        "gad7.69736-7")
#: LOINC answer codes of the PHQ-9 and GAD-7 options, by score.
SCORE_CODES = ("LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9")
DIFFICULTY = ("LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3")
#: How many answer sets of each outcome the patients share.
PROFILES = {"eligible": 12, "needs_clinical_review": 12, "not_eligible": 6}
#: A clinician's reasons when deciding a review.
DECISION_REASONS = {
    "eligible": ("Discussed by phone: the risk is understood and manageable; start low and review at 4 weeks.",
                 "Reviewed with the GP summary: no contraindication found. Safe to proceed to consultation.",
                 "Patient will not drive while titrating and has agreed a safety plan."),
    "not_eligible": ("The risk outweighs the expected benefit at present; advised to see the GP first.",
                     "Active substance misuse: referred to local support services, can reapply in 6 months."),
}


@dataclass
class IntakeProfile:
    """One patient's answers, as the intake service stores them once sent, and what the rules made of them."""

    outcome: str
    condition: str
    answers: dict
    #: The QuestionnaireResponse's `item` list, as JSON text.
    items: str
    #: The numbers of the steps these answers go through.
    steps: list[int]
    findings: str
    rules: list[str]
    reasons: list[str]
    urgent_help: bool
    partials: dict[int, tuple[str, int]] = field(default_factory=dict)


def _json_default(value: Any) -> Any:
    """As the intake service writes decimals in a stored response."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_json_default)


class IntakeProfiles:
    """Pools of realistic answer sets for the loaded questionnaire, each judged by the intake's rules."""

    def __init__(self, version, rng: random.Random) -> None:
        from app.intake import services as intake

        self.version_id = version.id
        found = intake.definition(version)
        self.questionnaire, self.rules = found.questionnaire, found.rules
        self.reference = f"{version.url}|{version.version}"
        self.pools: dict[str, list[IntakeProfile]] = {}
        conditions = list(CONDITIONS)
        weights = [CONDITIONS[c][0] for c in conditions]
        for outcome, size in PROFILES.items():
            pool: list[IntakeProfile] = []
            for _ in range(size * 20):
                if len(pool) == size:
                    break
                profile = self._profile(outcome, rng.choices(conditions, weights)[0], rng)
                if profile is not None:
                    pool.append(profile)
            if not pool:
                raise SeedRefused(f"Could not draw health answers with the outcome {outcome} for the loaded "
                                  f"questionnaire {version.url} (version {version.version}): its questions differ "
                                  "from the clinic's default intake too much.")
            self.pools[outcome] = pool

    def pick(self, outcome: str, rng: random.Random) -> IntakeProfile:
        return rng.choice(self.pools[outcome])

    def _simple(self, outcome: str, condition: str, rng: random.Random) -> dict[str, Any]:
        _, _, _, licensed, other, kind = CONDITIONS[condition]
        tried = rng.sample(licensed, min(len(licensed), rng.choice((2, 2, 3))))
        answers: dict[str, Any] = {
            "condition.main": [condition], "condition.diagnosed": rng.choice(("specialist", "specialist", "gp")),
            "condition.diagnosis_date": f"{rng.randint(2008, 2023)}-{rng.randint(1, 12):02d}",
            "condition.impact": rng.choice(IMPACT[kind]),
            "treatments.licensed": tried, "treatments.outcome": rng.choice(TRIED),
            "medication.current": rng.random() < 0.6, "medication.list": rng.choice(MEDICATION),
            "medication.allergies": rng.random() < 0.15, "medication.allergy_details": "Penicillin (rash)",
            "substances.alcohol_units": rng.choice((0, 0, 2, 4, 6, 10, 14, 20)),
            "substances.tobacco": rng.choice(("never", "never", "former", "current")),
            "substances.cannabis": rng.choice(("never", "never", "past", "past", "monthly")),
            "substances.cannabis_grams": rng.choice((1, 2, 3.5)), "substances.other_drugs": False,
            "substances.dependence": False, "psychiatric.history": rng.random() < 0.3,
            "psychiatric.details": "Depression in my twenties, treated by my GP with medication and counselling.",
            "psychosis.diagnosed": False, "psychosis.experiences": False, "psychosis.cannabis_reaction": False,
            "psychosis.family": rng.choice(("no", "no", "unknown")),
            "pregnancy.status": "none", "work.drives": rng.random() < 0.6, "work.drives_for_work": False,
            "work.job": rng.choice(JOBS), "work.safety_critical": False,
        }
        if other and rng.random() < 0.7:
            answers["treatments.other"] = rng.sample(other, rng.randint(1, len(other)))
        scores = {"phq9": [rng.choice((0, 0, 1, 1, 2)) for _ in PHQ9], "gad7": [rng.choice((0, 1, 1, 2)) for _ in GAD7]}
        scores["phq9"][-1] = 0  # thoughts of self-harm: "not at all"
        if outcome == "needs_clinical_review":
            for key, value in rng.choice(REVIEW_TRIGGERS).items():
                if key in scores:  # severe: 20+ on the PHQ-9, 15+ on the GAD-7
                    scores[key] = [rng.choice((2, 3, 3)) for _ in scores[key]]
                    if key == "phq9":
                        scores[key][-1] = rng.choice((0, 1))
                else:
                    answers[key] = value
        elif outcome == "not_eligible":
            for key, value in rng.choice(NOT_ELIGIBLE_TRIGGERS).items():
                answers[key] = tried[:1] if value == "one" else value
        for codes, name in ((PHQ9, "phq9"), (GAD7, "gad7")):
            answers.update({code: SCORE_CODES[score] for code, score in zip(codes, scores[name], strict=True)})
        answers["phq9.69722-7"] = answers["gad7.69722-7"] = rng.choice(DIFFICULTY)
        return answers

    def _profile(self, outcome: str, condition: str, rng: random.Random) -> IntakeProfile | None:
        from app.intake import answers as answer_forms
        from app.intake import engine, fhir
        from app.intake import rules as intake_rules

        # Another version of the questionnaire may lack some questions or options: those answers are left out,
        # and an answer set missing a required answer is not used.
        simple = {}
        for link_id, value in self._simple(outcome, condition, rng).items():
            item = self.questionnaire.item(link_id)
            if item is None or not item.is_question:
                continue
            if item.type == "choice":
                value = [v for v in value if item.option(str(v))] if isinstance(value, list) else value
                if not value or (not isinstance(value, list) and item.option(str(value)) is None):
                    continue
            simple[link_id] = value
        answers = answer_forms.settled_simple(self.questionnaire, simple)
        judged = intake_rules.evaluate(self.rules, answers)
        if judged.outcome != outcome or answer_forms.missing(self.questionnaire, answers):
            return None
        items = answer_forms.response_items(self.questionnaire, answers)
        # The service checks every response it builds; here each answer set is checked once.
        problems = fhir.response_problems(json.loads(self.resource(1, 1, dt.datetime.now(dt.UTC), "completed",
                                                                   _dump(items))))
        if problems:
            raise RuntimeError(f"seeded intake answers make an invalid QuestionnaireResponse: {problems}")
        evaluation = engine.Evaluation(self.questionnaire, answers)
        return IntakeProfile(
            outcome=outcome, condition=condition, answers=answers, items=_dump(items),
            steps=[n for n, step in enumerate(self.questionnaire.steps, 1) if evaluation.enabled(step)],
            findings=_dump([f.as_json() for f in judged.findings]), rules=[f.rule for f in judged.findings],
            reasons=judged.reasons, urgent_help=judged.urgent_help)

    def partial(self, profile: IntakeProfile, done: int) -> tuple[str, int]:
        """The items of the first `done` steps of a profile (an intake still in progress), and the step to resume at."""
        found = profile.partials.get(done)
        if found is None:
            from app.intake import answers as answer_forms
            from app.intake import engine

            kept = set(profile.steps[:done])
            answers = engine.settle(self.questionnaire, {
                link_id: values for link_id, values in profile.answers.items()
                if self.questionnaire.step_of(self.questionnaire.item(link_id)) in kept})
            found = (_dump(answer_forms.response_items(self.questionnaire, answers)), profile.steps[done])
            profile.partials[done] = found
        return found

    def resource(self, response_id: int, patient_id: int, authored: dt.datetime, status: str, items: str) -> str:
        """A stored QuestionnaireResponse, as the intake service builds it (items already JSON)."""
        head = _dump({"resourceType": "QuestionnaireResponse", "id": str(response_id), "questionnaire": self.reference,
                      "status": status, "subject": {"reference": f"Patient/{patient_id}"},
                      "author": {"reference": f"Patient/{patient_id}"},
                      "authored": authored.isoformat(timespec="seconds")})
        return f'{head[:-1]}, "item": {items}}}' if items != "[]" else head


# Treatment plans ------------------------------------------------------------------------------------

#: A plan's daily dose range by product form (in the form's unit), and its maximum per 30 days by unit.
PLAN_DOSES = {"dried_flower": ("0.1", "1"), "granules": ("0.1", "1"), "oil": ("0.5", "2"), "capsule": ("1", "3"),
              "pastille": ("1", "3")}
PLAN_QUOTAS = {"g": "30", "ml": "60", "capsule": "90", "pastille": "90"}
#: Plans are reviewed about every three months.
PLAN_REVIEW_DAYS = 91
#: A month's supply of each form: (quantity, dose), each within the plan's highest dose and quota.
RX_DAYS = 30
RX_LINES = {
    "dried_flower": ((30, "Vaporise 0.1 g up to 10 times a day"), (20, "Vaporise 0.1 g up to 6 times a day"),
                     (15, "Vaporise 0.1 g up to 5 times a day")),
    "granules": ((30, "Vaporise 0.1 g up to 10 times a day"), (20, "Vaporise 0.1 g up to 6 times a day")),
    "oil": ((30, "0.5 ml under the tongue twice a day"), (60, "1 ml under the tongue twice a day")),
    "capsule": ((60, "1 capsule twice a day"), (90, "1 capsule three times a day")),
    "pastille": ((60, "1 pastille twice a day"),),
}
GOALS = {
    "pain": ("Reduce average pain from 7/10 to 4/10; sleep through the night at least 4 nights a week.",
             "Walk for 30 minutes without stopping; return to full-time work within six months.",
             "Fewer bad days: no more than two days a month in bed with pain; cut down codeine."),
    "calm": ("GAD-7 below 10 within three months; at least 6 hours of sleep most nights.",
             "Leave the house every day without a panic attack; return to work part-time.",
             "Fall asleep within 30 minutes on most nights; stop zopiclone."),
}
REVIEW_REASONS = ("Three-month review: good response and no troublesome side effects; continue.",
                  "Review after the follow-up consultation: partial response, continue and reassess.",
                  "Scheduled review: stable on the current dose; plan renewed for three months.")
MDT_NOTE = "Meets the criteria for a trial of a cannabis-based medicine; review at 3 months."


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


class SeedRefused(RuntimeError):
    """The seed cannot go ahead on this database; the message says why."""


class SeedExists(SeedRefused):
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
    version = intake.current_version()
    if version is None:
        raise SeedRefused("No active intake questionnaire is loaded: run `flask intake load` first.")
    consents = {}
    for kind in consent.BASE_KINDS:
        document = consent.current(kind)
        consents[kind] = (document.id, document.version)
    title, _, body = (consent.TEXTS / "pharmacy_sharing.txt").read_text().partition("\n\n")
    return {"products": products, "intake_version": version, "consents": consents, "sharing_text": (title, body)}


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
        self.consents = reference["consents"]
        self.sharing_text = reference["sharing_text"]
        self.rng = rng
        self.intake_version = reference["intake_version"]
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
        from app.consent.models import ConsentDocument, ConsentRecord
        from app.intake.models import IntakeDecision, IntakeResponse
        from app.outcomes.models import OutcomeCheckin, OutcomeObservation
        from app.patients.models import Patient
        from app.pharmacy.models import Pharmacy
        from app.prescribing.models import (
            MdtReview,
            Prescriber,
            Prescription,
            PrescriptionItem,
            PrescriptionTransition,
            TreatmentPlan,
            TreatmentPlanVersion,
        )
        from app.scheduling.models import Appointment, AvailabilityPattern, TimeHold

        w, rng, now = self.writer, self.rng, self.now
        tick = time.perf_counter()
        self.chain = Chain(self.c)
        tables = {t.name: t for t in (User.__table__, Patient.__table__, Pharmacy.__table__,
                                       AvailabilityPattern.__table__, Appointment.__table__,
                                       Prescription.__table__, PrescriptionItem.__table__,
                                       PrescriptionTransition.__table__, OutcomeCheckin.__table__,
                                       OutcomeObservation.__table__, ConsentDocument.__table__,
                                       ConsentRecord.__table__, IntakeResponse.__table__, IntakeDecision.__table__,
                                       TreatmentPlan.__table__, TreatmentPlanVersion.__table__, MdtReview.__table__)}
        ids = {name: w.next_id(table) for name, table in tables.items()}
        year_ago = now - dt.timedelta(days=365)
        # Drawn with a generator of its own, so the answer pools do not shift the rest of the seed.
        self.intake = IntakeProfiles(self.intake_version, random.Random(rng.random()))
        tick = self._phase(summary, "intake answer sets", tick)

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
        # Each partner pharmacy's data-sharing consent text, as adding a partner publishes it.
        title, body = self.sharing_text
        #: Pharmacy id -> (its sharing consent's id, version).
        self.sharing: dict[int, tuple[int, int]] = {}
        documents = []
        for pid, name, *_ in rows:
            did = ids["consent_documents"]
            ids["consent_documents"] += 1
            documents.append((did, "pharmacy_sharing", pid, 1, title.format(pharmacy=name).strip(),
                              body.format(pharmacy=name).strip(), year_ago))
            self.sharing[pid] = (did, 1)
            self.chain.add(year_ago, None, None, "consent.published", ("consent_document", did), None,
                           {"kind": "pharmacy_sharing", "version": 1, "pharmacy_id": pid})
        w.write(tables["consent_documents"], ("id", "kind", "pharmacy_id", "version", "title", "body", "published_at"),
                documents)
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
        # Every clinician a specialist prescriber (GMC Specialist Register), as initiating treatment needs.
        prescriber_rows = []
        first_clinician = self._staff_offset("clinician") - len(staff["clinician"])
        for number, uid in enumerate(staff["clinician"], first_clinician + 1):
            prescriber_rows.append((uid, f"{6000000 + number:07d}", True, f"{500000 + number % 500000:06d}", year_ago))
            self.chain.add(year_ago, None, None, "prescriber.updated", ("user", uid), None, {"specialist": True})
        w.write(Prescriber.__table__, ("user_id", "gmc_number", "specialist", "cd_prescriber_code", "updated_at"),
                prescriber_rows)
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
        product_rows = self._product_facts()
        out: dict[str, list[tuple]] = {k: [] for k in ("users", "patients", "appointments", "time_holds",
                                                        "prescriptions", "prescription_items",
                                                        "prescription_transitions", "outcome_checkins",
                                                        "outcome_observations", "consent_records",
                                                        "intake_responses", "intake_decisions", "treatment_plans",
                                                        "treatment_plan_versions", "mdt_reviews")}
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
        w.write(tables["consent_records"], CONSENT_COLUMNS, out["consent_records"])
        w.write(tables["intake_responses"], RESPONSE_COLUMNS, out["intake_responses"])
        w.write(tables["intake_decisions"], DECISION_COLUMNS, out["intake_decisions"])
        w.write(tables["treatment_plans"], ("id", "patient_id", "created_at"), out["treatment_plans"])
        w.write(tables["treatment_plan_versions"], PLAN_VERSION_COLUMNS, out["treatment_plan_versions"])
        w.write(tables["mdt_reviews"], MDT_COLUMNS, out["mdt_reviews"])
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
        path = list(_PATHS[state])
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

        # The health questions, and where the rules sent them to a clinician who then decided.
        profile, decided = self._intake_plan(state, path)
        decision_at = path.index("needs_clinical_review") + 1 if decided else None
        response_id = None
        if profile is not None:
            response_id = ids["intake_responses"]
            ids["intake_responses"] += 1

        def saved(step_number: int, at: dt.datetime) -> None:  # "Save and continue" on one step
            chain.add(at, uid, "patient", "intake.saved", ("intake_response", response_id), pid,
                      {"step": step_number, "complete": True, "errors": 0}, ip, USER_AGENT)

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

        for index, (to, moved) in enumerate(moves):
            detail: dict[str, Any] = {}
            if to == "intake_in_progress":  # the first step saved starts the intake
                saved(profile.steps[0], moved)
            elif to == "intake_submitted":
                started = moves[index - 1][1]
                for k, step_number in enumerate(profile.steps[1:], 1):
                    saved(step_number, started + (moved - started) * (k / len(profile.steps)))
                chain.add(moved, uid, "patient", "intake.submitted", ("intake_response", response_id), pid,
                          {"outcome": profile.outcome, "rules": profile.rules}, ip, USER_AGENT)
                detail = {"outcome": profile.outcome}
            elif to == "identity_verified":  # consents are given before the identity check
                before = moves[index - 1][1]
                self._consents(out, ids, pid, uid, pharmacy, before + (moved - before) * rng.uniform(0.1, 0.6), ip)
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
            if index == decision_at:  # a clinician's decision on the review, with its reason
                reason = rng.choice(DECISION_REASONS[to])
                out["intake_decisions"].append((ids["intake_decisions"], response_id, pid, clinician, previous, to,
                                                reason, moved))
                ids["intake_decisions"] += 1
                chain.add(moved, clinician, "clinician", f"journey.{to}", ("patient", pid), pid,
                          {"from": previous, "to": to, "reason": reason, "automatic": False}, CLINIC_IP, USER_AGENT)
                previous, at = to, moved
                continue
            automatic = to in _SYSTEM_MOVES
            if automatic and to != "identity_verified":
                detail = {"reasons": profile.reasons}
            actor = (None, None) if automatic else (clinician, "clinician") if to == "consulted" else (uid, "patient")
            chain.add(moved, actor[0], actor[1], f"journey.{to}", ("patient", pid), pid,
                      {"from": previous, "to": to, "reason": None, "automatic": automatic, **detail},
                      None if automatic else ip, None if automatic else USER_AGENT)
            previous = to
            at = moved
        if profile is not None:
            self._response(out, pid, response_id, profile, moves, saved)
        if state in ("eligible", "needs_clinical_review") and rng.random() < 0.2:
            appoint("initial", now - dt.timedelta(days=rng.uniform(1, 20)), "cancelled",
                    now - dt.timedelta(days=rng.uniform(21, 30)))
        changed_at = moves[-1][1] if moves else registered

        # Treatment: monthly follow-ups, prescriptions and check-ins.
        prescriptions: list[tuple[int, str]] = []
        if state in ("consulted", "on_treatment", "follow_up_due"):
            start = at
            months = max(1, int((now - start).days / 30))
            colleague = staff["clinician"][(clinician_index + 1) % len(staff["clinician"])]
            care = _CarePlan(self, ids, out, pid, clinician, colleague, profile, products, start)
            # A month's supply at a time, more than 30 days apart: the plan's quota holds over any 30 days.
            count = 1 if state == "consulted" else max(1, min(months, rng.randint(3, 7),
                                                              (now - care.first_signing).days // 31 + 1))
            for j in range(count):
                signed_on = care.first_signing + dt.timedelta(days=31 * j, hours=rng.uniform(0, 12))
                if signed_on >= now:
                    signed_on = now - dt.timedelta(minutes=rng.uniform(5, 60))
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
                version = care.in_force(signed_on) if final != "draft" else None
                self._prescription(ids, out, pid, clinician, pharmacy, final, signed_on, care.line(j), version)
                prescriptions.append((ids["prescriptions"] - 1, final))
                if j and rng.random() < 0.85:
                    status = _pick(rng, (("completed", 90), ("no_show", 6), ("cancelled", 4)))
                    appoint("follow-up", signed_on - dt.timedelta(days=1), status,
                            signed_on - dt.timedelta(days=rng.uniform(7, 20)))
            if state == "on_treatment" and rng.random() < 0.3:
                appoint("follow-up", now + dt.timedelta(days=rng.uniform(1, 27)), "booked",
                        now - dt.timedelta(days=rng.uniform(1, 10)))
            if state == "on_treatment":  # reviewed in time; a follow-up due is what an overdue review looks like
                care.in_force(now)
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
                      {"section": "summary"}, CLINIC_IP, USER_AGENT)
        changed_at = max([changed_at, *(a[1] for a in appointments if a[4] == "completed" and a[1] < now)]) \
            if state in ("consulted",) else changed_at
        dob = dt.date(rng.randint(1945, 2004), rng.randint(1, 12), rng.randint(1, 28))
        verified = moves[2][1] if details and len(moves) > 2 else None
        # The rules' outcome is kept from the moment the intake is sent (a clinician's decision moves the journey).
        eligibility = profile.outcome if "intake_submitted" in path else None
        out["patients"].append((
            pid, uid, dob, state, changed_at, clinician, pharmacy, registered,
            f"{number % 200 + 1} {last} Road" if details else None, None, town if details else None,
            f"{area}{number % 9 + 1} {number % 9 + 1}{chr(65 + number % 26)}{chr(65 + (number // 26) % 26)}"
            if details else None, f"+4477009{number % 100000:05d}" if details else None,
            _nhs_number(number) if details else None, "Harbourside Medical Practice" if details else None,
            verified, eligibility, json.dumps(profile.reasons) if eligibility else None))
        del booked_at, prescriptions

    def _intake_plan(self, state: str, path: list[str]) -> tuple[IntakeProfile | None, str | None]:
        """The patient's answers (None before they start), and the outcome a clinician decided on a review, if
        their intake had one: then the review goes into `path` before the decision."""
        rng = self.rng
        if state == "registered":
            return None, None
        if state == "intake_in_progress":
            return self.intake.pick(_pick(rng, (("eligible", 80), ("needs_clinical_review", 20))), rng), None
        if state == "intake_submitted":
            outcome = _pick(rng, (("eligible", 70), ("needs_clinical_review", 20), ("not_eligible", 10)))
            return self.intake.pick(outcome, rng), None
        if state in ("identity_verified", "needs_clinical_review"):
            return self.intake.pick("eligible" if state == "identity_verified" else state, rng), None
        decided = "not_eligible" if state == "not_eligible" else "eligible"
        if rng.random() < (0.4 if decided == "not_eligible" else 0.25):
            path.insert(path.index(decided), "needs_clinical_review")
            return self.intake.pick("needs_clinical_review", rng), decided
        return self.intake.pick(decided, rng), None

    def _response(self, out, pid: int, response_id: int, profile: IntakeProfile, moves, saved) -> None:
        """The stored QuestionnaireResponse: sent, or (intake in progress) the first steps saved so far."""
        rng, now = self.rng, self.now
        started = moves[0][1]
        sent = next((moved for to, moved in moves if to == "intake_submitted"), None)
        if sent is not None:
            resource = self.intake.resource(response_id, pid, sent, "completed", profile.items)
            out["intake_responses"].append((
                response_id, pid, self.intake.version_id, "completed", resource,
                len(self.intake.questionnaire.steps) + 1, profile.outcome, profile.findings, profile.urgent_help,
                started, sent, sent))
            return
        done = rng.randint(1, len(profile.steps) - 1)
        items, resume = self.intake.partial(profile, done)
        last = started + (now - started) * rng.uniform(0.2, 0.9)
        for k, step_number in enumerate(profile.steps[1:done], 1):
            saved(step_number, started + (last - started) * (k / max(1, done - 1)))
        out["intake_responses"].append((
            response_id, pid, self.intake.version_id, "in-progress",
            self.intake.resource(response_id, pid, last, "in-progress", items), resume, None, None, False, started,
            last, None))

    def _consents(self, out, ids, pid: int, uid: int, pharmacy: int, at: dt.datetime, ip: str) -> None:
        """The patient accepts the current terms, privacy notice, video consent and their pharmacy's sharing consent."""
        documents = [*((kind, *found) for kind, found in self.consents.items()),
                     ("pharmacy_sharing", *self.sharing[pharmacy])]
        for kind, document_id, version in documents:
            out["consent_records"].append((ids["consent_records"], pid, document_id, "accepted", at, ip, USER_AGENT))
            ids["consent_records"] += 1
            self.chain.add(at, uid, "patient", "consent.accepted", ("consent_document", document_id), pid,
                           {"kind": kind, "version": version}, ip, USER_AGENT)

    def _product_facts(self) -> dict[str, list[tuple[dict[str, Any], ...]]]:
        """Products as a prescription line copies them, and which two a plan of each kind allows."""
        from app.prescribing import formulary
        from app.prescribing.quantities import in_words_and_figures

        facts = []
        for product in self.products:
            if not product.active or product.form not in PLAN_DOSES:
                continue
            unit = formulary.unit_of(product)
            facts.append({"id": product.id, "name": product.name, "form": product.form, "cbd": product.cbd,
                          "thc": product.thc, "form_label": formulary.form_of(product).label,
                          "strength": formulary.strength(product), "dmd_code": product.dmd_code, "unit": unit,
                          "lines": [(Decimal(quantity), in_words_and_figures(Decimal(quantity), unit), dose)
                                    for quantity, dose in RX_LINES[product.form]]})
        if not facts:
            raise SeedRefused("The formulary has no active product a seeded treatment plan could allow.")

        def first(forms: tuple[str, ...], key) -> dict[str, Any]:
            found = sorted((f for f in facts if f["form"] in forms), key=key)
            return found[0] if found else facts[0]

        flower = first(("dried_flower", "granules"), lambda f: -f["thc"])
        balanced = first(("oil",), lambda f: abs(f["thc"] - f["cbd"]))
        cbd_oil = first(("oil",), lambda f: -f["cbd"])
        capsule = first(("capsule", "pastille"), lambda f: f["thc"])
        kinds = {"pain": (flower, balanced), "calm": (cbd_oil, capsule)}
        return {kind: tuple({f["id"]: f for f in pair}.values()) for kind, pair in kinds.items()}

    def _prescription(self, ids, out, pid, clinician, pharmacy, final, signed_on, line, plan_version) -> None:
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
        product, quantity, quantity_text, dose = line
        out["prescriptions"].append((
            rxid, hashlib.sha256(f"seed-rx-{rxid}-{self.offset}".encode()).hexdigest()[:32], pid, clinician, final,
            changed, signed_on, len(path), plan_version[0] if plan_version else None, pharmacy if path else None, None,
            signed_at,
            signed_at + dt.timedelta(days=28) if signed_at else None, paper,
            signed_at if paper and signed_at else None,
            times[path.index("clinically_verified")] if paper and "clinically_verified" in path else None,
            "Seeded for load testing" if final in ("cancelled", "rejected", "expired", "superseded") else None))
        out["prescription_items"].append((ids["prescription_items"], rxid, 1, product["id"], product["name"],
                                          product["form_label"], product["strength"], product["dmd_code"], dose,
                                          quantity, product["unit"], quantity_text, RX_DAYS, None))
        ids["prescription_items"] += 1
        chain.add(signed_on, clinician, "clinician", "prescription.draft_started", ("prescription", rxid), pid,
                  {"revision": 0}, CLINIC_IP, USER_AGENT)
        previous = "draft"
        for to, when in zip(path, times, strict=True):
            role = _RX_ACTOR.get(to, "pharmacy")
            actor = clinician if role == "clinician" else None
            out["prescription_transitions"].append((ids["prescription_transitions"], rxid, previous, to, when, actor,
                                                    role, {}))
            ids["prescription_transitions"] += 1
            chain.add(when, actor, role if role != "pharmacy" else "pharmacist", f"prescription.{to}",
                      ("prescription", rxid), pid, {"from": previous, "to": to, "plan_version": plan_version[1]}
                      if to == "signed" else {"from": previous, "to": to})
            previous = to


class _CarePlan:
    """One patient's treatment plan as their clinician keeps it: the first version written after the consultation,
    an MDT approval recorded by a second clinician before the first prescription, a new version at each review."""

    def __init__(self, generator: _Generator, ids, out, pid: int, author: int, colleague: int,
                 profile: IntakeProfile, products, consulted: dt.datetime) -> None:
        from app.prescribing.plans import FIELD_LABELS

        self.g, self.ids, self.out, self.pid, self.author = generator, ids, out, pid, author
        rng, now, chain = generator.rng, generator.now, generator.chain
        _, snomed, indication, _, _, kind = CONDITIONS[profile.condition]
        allowed = products[kind]
        self.kind = kind
        self.lines = [(p, *rng.choice(p["lines"])) for p in allowed]
        self.content = {
            "snomed_code": snomed, "indication": indication,
            "products": [{"product_id": p["id"], "dose_min": PLAN_DOSES[p["form"]][0],
                          "dose_max": PLAN_DOSES[p["form"]][1]} for p in sorted(allowed, key=lambda p: p["id"])],
            "quotas": {unit: PLAN_QUOTAS[unit] for unit in sorted({p["unit"] for p in allowed})},
            "goals": rng.choice(GOALS[kind])}
        self.plan_id = ids["treatment_plans"]
        ids["treatment_plans"] += 1
        room = max(now - consulted, dt.timedelta(minutes=1))
        written = consulted + min(room * 0.2, dt.timedelta(hours=rng.uniform(1, 6)))
        out["treatment_plans"].append((self.plan_id, pid, written))
        #: (id, version, created, review date) of each version so far.
        self.versions: list[tuple[int, int, dt.datetime, dt.date]] = []
        #: The latest time a version was asked for (a prescription signed under it).
        self.used = consulted
        self._version(written, "Initial plan after the first consultation", sorted(FIELD_LABELS))

        referred = written + min(room * 0.05, dt.timedelta(minutes=rng.uniform(5, 60)))
        decided = referred + min((now - referred) * 0.5, dt.timedelta(days=rng.uniform(1, 3)))
        #: The first prescription is signed once the MDT has approved treatment.
        self.first_signing = decided + min((now - decided) * 0.6, dt.timedelta(hours=rng.uniform(2, 96)))
        tried = [value.display.split(",")[0].lower() for value in profile.answers.get("treatments.licensed", [])
                 if getattr(value, "display", None)]
        summary = f"{indication}. Tried {', '.join(tried) or 'licensed treatments'} without adequate relief."
        review_id = ids["mdt_reviews"]
        ids["mdt_reviews"] += 1
        out["mdt_reviews"].append((review_id, pid, summary, author, referred, "approved", MDT_NOTE, colleague,
                                   decided.date(), decided))
        chain.add(referred, author, "clinician", "mdt.referred", ("mdt_review", review_id), pid, None, CLINIC_IP,
                  USER_AGENT)
        chain.add(decided, colleague, "clinician", "mdt.approved", ("mdt_review", review_id), pid,
                  {"decided_on": decided.date().isoformat()}, CLINIC_IP, USER_AGENT)

    def _version(self, created: dt.datetime, reason: str, changed: list[str]) -> None:
        version_id = self.ids["treatment_plan_versions"]
        self.ids["treatment_plan_versions"] += 1
        number = len(self.versions) + 1
        review = created.date() + dt.timedelta(days=PLAN_REVIEW_DAYS)
        content = self.content
        self.out["treatment_plan_versions"].append((
            version_id, self.plan_id, number, self.author, created, reason, content["snomed_code"],
            content["indication"], content["products"], content["quotas"], review, content["goals"]))
        self.g.chain.add(created, self.author, "clinician", "treatment_plan.version_created",
                         ("treatment_plan", self.plan_id), self.pid, {"version": number, "changed": changed},
                         CLINIC_IP, USER_AGENT)
        self.versions.append((version_id, number, created, review))

    def in_force(self, when: dt.datetime) -> tuple[int, int]:
        """(id, version) of the version a prescription signed at `when` is written under: the plan is reviewed
        (a new version) whenever its review date has passed, as signing requires."""
        rng = self.g.rng
        while self.versions[-1][3] < when.date():
            # Reviewed shortly before, and after anything signed under the version before it.
            created = min(when, max(self.versions[-1][2] + dt.timedelta(days=1), self.used + dt.timedelta(minutes=1),
                                    when - dt.timedelta(hours=rng.uniform(2, 48))))
            changed = ["review_date"]
            if rng.random() < 0.3:
                self.content = {**self.content, "goals": rng.choice(
                    [g for g in GOALS[self.kind] if g != self.content["goals"]])}
                changed = ["goals", "review_date"]
            self._version(created, rng.choice(REVIEW_REASONS), changed)
        self.used = max(self.used, when)
        return self.versions[-1][:2]

    def line(self, number: int) -> tuple[dict[str, Any], Decimal, str, str]:
        """The item of the patient's `number`th prescription: its plan's products in turn, a month's supply each."""
        return self.lines[number % len(self.lines)]


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
CONSENT_COLUMNS = ("id", "patient_id", "document_id", "decision", "at", "ip", "user_agent")
RESPONSE_COLUMNS = ("id", "patient_id", "questionnaire_id", "status", "resource", "current_step", "outcome", "findings",
                    "urgent_help", "created_at", "updated_at", "submitted_at")
DECISION_COLUMNS = ("id", "response_id", "patient_id", "clinician_id", "from_state", "to_state", "reason", "decided_at")
PLAN_VERSION_COLUMNS = ("id", "plan_id", "version", "author_id", "created_at", "reason", "snomed_code", "indication",
                        "products", "quotas", "review_date", "goals")
MDT_COLUMNS = ("id", "patient_id", "case_summary", "referred_by_id", "referred_at", "decision", "decision_note",
               "decided_by_id", "decided_on", "recorded_at")


@click.command("seed-scale", help="Generate a clinic group's worth of seeded data (demo accounts) for load tests.")
@click.option("--patients", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--force", is_flag=True, help="Seed even though seeded accounts exist (numbers continue after them).")
@click.option("--seed", "rng_seed", type=int, default=20240601, show_default=True, help="Random seed.")
@with_appcontext
def seed_scale_command(patients: int, force: bool, rng_seed: int) -> None:
    try:
        summary = seed(patients, force=force, rng_seed=rng_seed, echo=click.echo)
    except SeedRefused as exc:
        raise click.ClickException(str(exc)) from exc
    for line in summary.lines():
        click.echo(line)
