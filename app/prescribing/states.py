"""The prescription workflow: the one state machine that moves `Prescription.status`.

    draft → signed → transmitted → received by pharmacy → stock allocated | out of stock
          → awaiting original (where the paper FP10PCD is the legal original) → clinically verified | queried
          → dispensed → dispatched (carrier + tracking number) → delivered
    ends: cancelled, expired, rejected, superseded

Each transition names who may make it, what its detail must carry, and who is told. Applying
one, in one transaction: a conditional UPDATE of the status (two racing writers cannot both move
it), a `PrescriptionTransition` row for the timeline, an audit entry `prescription.<state>`,
and the notifications. Nothing else writes `Prescription.status`.

The pharmacy (portal or API) drives its part through `apply()`:

    from app.prescribing import states
    states.apply(prescription, states.State.RECEIVED, actor_role="pharmacy")
    states.apply(prescription, "dispatched", actor_role="pharmacy",
                 detail={"carrier": "Royal Mail", "tracking": "AB123456789GB"})

`apply()` raises `TransitionError` (a message fit to show staff) for an illegal move, a role not
allowed to make it, missing detail, or a guard that fails (for example dispensing before the
paper original arrived). Signing and superseding are made by their services, not through `apply()`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.audit import context
from app.audit import services as audit
from app.database import transaction, utcnow
from app.prescribing.models import Prescription, PrescriptionTransition


class State(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    TRANSMITTED = "transmitted"
    RECEIVED = "received_by_pharmacy"
    STOCK_ALLOCATED = "stock_allocated"
    OUT_OF_STOCK = "out_of_stock"
    AWAITING_ORIGINAL = "awaiting_original"
    CLINICALLY_VERIFIED = "clinically_verified"
    QUERIED = "queried"
    DISPENSED = "dispensed"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def patient_label(self) -> str:
        return PATIENT_LABELS[self]

    @property
    def is_end(self) -> bool:
        return self in ENDS


S = State

LABELS = {
    S.DRAFT: "Draft", S.SIGNED: "Signed", S.TRANSMITTED: "Sent to pharmacy", S.RECEIVED: "Received by pharmacy",
    S.STOCK_ALLOCATED: "Stock allocated", S.OUT_OF_STOCK: "Out of stock", S.AWAITING_ORIGINAL: "Awaiting original",
    S.CLINICALLY_VERIFIED: "Clinically verified", S.QUERIED: "Queried by pharmacy", S.DISPENSED: "Dispensed",
    S.DISPATCHED: "Dispatched", S.DELIVERED: "Delivered", S.CANCELLED: "Cancelled", S.EXPIRED: "Expired",
    S.REJECTED: "Rejected by pharmacy", S.SUPERSEDED: "Superseded",
}
#: What the patient reads: plain words, nothing they need to decode.
PATIENT_LABELS = {
    S.DRAFT: "Being written", S.SIGNED: "Prescription issued", S.TRANSMITTED: "Your prescription is with the pharmacy",
    S.RECEIVED: "Your prescription is with the pharmacy", S.STOCK_ALLOCATED: "The pharmacy is preparing your medicine",
    S.OUT_OF_STOCK: "The pharmacy is out of stock: your clinician will suggest an alternative",
    S.AWAITING_ORIGINAL: "The pharmacy is waiting for the signed paper prescription",
    S.CLINICALLY_VERIFIED: "The pharmacy is preparing your medicine",
    S.QUERIED: "The pharmacy has a question for your clinician", S.DISPENSED: "Your medicine is ready to send",
    S.DISPATCHED: "Your medicine is on its way", S.DELIVERED: "Delivered", S.CANCELLED: "Cancelled",
    S.EXPIRED: "Expired (prescriptions are valid for 28 days)", S.REJECTED: "The pharmacy could not accept it",
    S.SUPERSEDED: "Replaced by a new prescription",
}

ENDS = frozenset({S.DELIVERED, S.CANCELLED, S.EXPIRED, S.REJECTED, S.SUPERSEDED})
#: Signed and not yet supplied: what can still be cancelled, expire or be superseded.
BEFORE_SUPPLY = frozenset({S.SIGNED, S.TRANSMITTED, S.RECEIVED, S.STOCK_ALLOCATED, S.OUT_OF_STOCK,
                           S.AWAITING_ORIGINAL, S.CLINICALLY_VERIFIED, S.QUERIED})
#: Held by the pharmacy: what it may reject.
AT_PHARMACY = BEFORE_SUPPLY - {S.SIGNED}
#: Issued and counting against the patient's quota.
LIVE = BEFORE_SUPPLY | {S.DISPENSED, S.DISPATCHED, S.DELIVERED}

# Who may make a transition.
CLINICIAN, RECEPTION, ADMIN, PHARMACY, SYSTEM, PATIENT = "clinician", "reception", "admin", "pharmacy", "system", \
    "patient"
#: Roles as the audit context names them, mapped to the actors above.
_ROLE_ALIASES = {"pharmacist": PHARMACY}

# Who is told: the patient (email via the notifier), the prescriber (email), the pharmacy (outbox message).
TO_PATIENT, TO_PRESCRIBER, TO_PHARMACY = "patient", "prescriber", "pharmacy"


class TransitionError(ValueError):
    """An illegal, unauthorised or incomplete transition; the message is fit to show staff."""


Guard = Callable[[Prescription], str | None]


def _original_in_hand(prescription: Prescription) -> str | None:
    if prescription.paper_original and prescription.paper_received_at is None:
        return ("The paper original (FP10PCD) is the legal prescription: record it as received and matching "
                "before going on.")
    return None


def _paper_is_original(prescription: Prescription) -> str | None:
    if not prescription.paper_original:
        return "This prescription's electronic copy is the legal original: there is no paper to wait for."
    return None


def _validity_over(prescription: Prescription) -> str | None:
    if prescription.valid_until is None or prescription.valid_until > utcnow():
        return "The prescription is still within its 28 days."
    return None


def _still_valid(prescription: Prescription) -> str | None:
    if prescription.valid_until is not None and prescription.valid_until <= utcnow():
        return "The prescription expired (28 days from signing): it can no longer be supplied."
    return None


@dataclass(frozen=True)
class Transition:
    by: frozenset[str]
    #: Detail keys the transition must carry (e.g. a reason, a carrier and tracking number).
    needs: tuple[str, ...] = ()
    #: Who is told when it happens.
    notify: tuple[str, ...] = ()
    #: Made only by a service of this domain (signing, superseding), never through `apply()`.
    internal: bool = False
    guards: tuple[Guard, ...] = field(default=())


def _table() -> dict[tuple[State, State], Transition]:
    staff_ends = frozenset({CLINICIAN})
    table: dict[tuple[State, State], Transition] = {
        (S.DRAFT, S.SIGNED): Transition(frozenset({CLINICIAN}), notify=(TO_PATIENT, TO_PHARMACY), internal=True),
        (S.DRAFT, S.CANCELLED): Transition(staff_ends),  # a draft discarded: nobody was waiting on it
        (S.SIGNED, S.TRANSMITTED): Transition(frozenset({SYSTEM, PHARMACY}), notify=(TO_PATIENT,)),
        (S.TRANSMITTED, S.RECEIVED): Transition(frozenset({PHARMACY})),
        (S.RECEIVED, S.STOCK_ALLOCATED): Transition(frozenset({PHARMACY}), guards=(_still_valid,)),
        (S.RECEIVED, S.OUT_OF_STOCK): Transition(frozenset({PHARMACY}), notify=(TO_PATIENT, TO_PRESCRIBER)),
        (S.OUT_OF_STOCK, S.STOCK_ALLOCATED): Transition(frozenset({PHARMACY}), notify=(TO_PATIENT,),
                                                        guards=(_still_valid,)),
        (S.STOCK_ALLOCATED, S.AWAITING_ORIGINAL): Transition(frozenset({PHARMACY, SYSTEM}),
                                                             guards=(_paper_is_original,)),
        (S.STOCK_ALLOCATED, S.CLINICALLY_VERIFIED): Transition(frozenset({PHARMACY}),
                                                               guards=(_original_in_hand, _still_valid)),
        (S.AWAITING_ORIGINAL, S.CLINICALLY_VERIFIED): Transition(frozenset({PHARMACY}),
                                                                 guards=(_original_in_hand, _still_valid)),
        (S.RECEIVED, S.QUERIED): Transition(frozenset({PHARMACY}), needs=("reason",), notify=(TO_PRESCRIBER,)),
        (S.STOCK_ALLOCATED, S.QUERIED): Transition(frozenset({PHARMACY}), needs=("reason",), notify=(TO_PRESCRIBER,)),
        (S.AWAITING_ORIGINAL, S.QUERIED): Transition(frozenset({PHARMACY}), needs=("reason",),
                                                     notify=(TO_PRESCRIBER,)),
        (S.QUERIED, S.CLINICALLY_VERIFIED): Transition(frozenset({PHARMACY}), guards=(_original_in_hand, _still_valid)),
        (S.QUERIED, S.AWAITING_ORIGINAL): Transition(frozenset({PHARMACY}), guards=(_paper_is_original,)),
        (S.CLINICALLY_VERIFIED, S.DISPENSED): Transition(frozenset({PHARMACY}),
                                                         guards=(_original_in_hand, _still_valid)),
        (S.DISPENSED, S.DISPATCHED): Transition(frozenset({PHARMACY}), needs=("carrier", "tracking"),
                                                notify=(TO_PATIENT,)),
        (S.DISPATCHED, S.DELIVERED): Transition(frozenset({PHARMACY, SYSTEM}), notify=(TO_PATIENT,)),
    }
    for state in BEFORE_SUPPLY:
        table[(state, S.CANCELLED)] = Transition(frozenset({CLINICIAN}), needs=("reason",),
                                                 notify=(TO_PATIENT, TO_PHARMACY))
        table[(state, S.EXPIRED)] = Transition(frozenset({SYSTEM}), notify=(TO_PATIENT, TO_PRESCRIBER, TO_PHARMACY),
                                               guards=(_validity_over,))
        table[(state, S.SUPERSEDED)] = Transition(frozenset({CLINICIAN}), notify=(TO_PATIENT, TO_PHARMACY),
                                                  internal=True)
    for state in AT_PHARMACY:
        table[(state, S.REJECTED)] = Transition(frozenset({PHARMACY}), needs=("reason",),
                                                notify=(TO_PATIENT, TO_PRESCRIBER))
    return table


TRANSITIONS: dict[tuple[State, State], Transition] = _table()


# Notifications --------------------------------------------------------------------------------

#: Called as notifier(prescription, state, audience) inside the transition's transaction. The
#: default ones (app/prescribing/notifications.py) queue a content-free email to the patient or
#: prescriber and an outbox message to the pharmacy; the messaging issue replaces them.
Notifier = Callable[[Prescription, State, str], None]
notifiers: list[Notifier] = []


def notify(prescription: Prescription, state: State, audiences: tuple[str, ...]) -> None:
    for audience in audiences:
        for notifier in notifiers:
            notifier(prescription, state, audience)


# Applying -------------------------------------------------------------------------------------

def state_of(prescription: Prescription) -> State:
    return State(prescription.status)


def actor_of(role: str | None) -> str:
    role = role or SYSTEM
    return _ROLE_ALIASES.get(role, role)


def can(prescription: Prescription, to: State | str, *, actor_role: str) -> bool:
    rule = TRANSITIONS.get((state_of(prescription), State(to)))
    return rule is not None and not rule.internal and actor_of(actor_role) in rule.by


def next_states(prescription: Prescription, *, actor_role: str) -> list[State]:
    """The moves this actor may offer on this prescription now (for buttons)."""
    actor = actor_of(actor_role)
    return [to for (frm, to), rule in TRANSITIONS.items()
            if frm == state_of(prescription) and not rule.internal and actor in rule.by]


def apply(prescription: Prescription, to_state: State | str, *, actor_role: str,
          detail: dict[str, Any] | None = None) -> Prescription:
    """Move `prescription` to `to_state` as `actor_role` ("pharmacy", "system", "clinician", ...).

    `detail` is recorded with the transition and in the audit entry; the keys a transition
    needs (see TRANSITIONS) must be present and non-empty.
    """
    return _move(prescription, State(to_state), actor_role=actor_role, detail=detail, internal=False)


def _move(prescription: Prescription, to: State, *, actor_role: str, detail: dict[str, Any] | None,
          internal: bool) -> Prescription:
    current = state_of(prescription)
    rule = TRANSITIONS.get((current, to))
    if rule is None:
        raise TransitionError(f"A prescription cannot go from “{current.label}” to “{to.label}”.")
    if rule.internal and not internal:
        raise TransitionError(f"“{to.label}” is made by its own step (signing or superseding), not directly.")
    actor = actor_of(actor_role)
    if actor not in rule.by:
        raise TransitionError(f"Your role cannot move a prescription to “{to.label}”.")
    detail = {key: value for key, value in (detail or {}).items() if value is not None}
    missing = [key for key in rule.needs if not str(detail.get(key, "")).strip()]
    if missing:
        raise TransitionError(f"“{to.label}” needs: {', '.join(missing)}.")
    for guard in rule.guards:
        refusal = guard(prescription)
        if refusal:
            raise TransitionError(refusal)
    now = utcnow()
    with transaction() as session:
        moved = session.execute(
            sa.update(Prescription).where(Prescription.id == prescription.id, Prescription.status == current.value)
            .values(status=to.value, status_changed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            session.refresh(prescription)
            raise TransitionError(f"The prescription changed meanwhile (it is now “{state_of(prescription).label}”). "
                                  "Reload to see it.")
        session.refresh(prescription, attribute_names=["status", "status_changed_at"])
        if to in (S.CANCELLED, S.REJECTED, S.EXPIRED) and detail.get("reason"):
            prescription.ended_reason = str(detail["reason"])[:2000]
        who = context.current()
        session.add(PrescriptionTransition(prescription_id=prescription.id, from_state=current.value,
                                           to_state=to.value, at=now, actor_id=who.user_id, actor_role=actor,
                                           detail=detail))
        audit.record(f"prescription.{to.value}", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id,
                     detail={"from": current.value, "to": to.value, "by": actor, **detail})
        notify(prescription, to, rule.notify)
    return prescription


def count_by_state() -> dict[str, int]:
    """How many prescriptions are in each state now (every state named, with 0 when none is), for the metrics."""
    from app.extensions import db

    counts = dict.fromkeys((state.value for state in State), 0)
    rows = db.session.execute(sa.select(Prescription.status, sa.func.count()).group_by(Prescription.status))
    counts.update({status: count for status, count in rows})
    return counts


def history(prescription: Prescription) -> list[PrescriptionTransition]:
    from app.extensions import db

    return list(db.session.scalars(sa.select(PrescriptionTransition)
                                   .where(PrescriptionTransition.prescription_id == prescription.id)
                                   .order_by(PrescriptionTransition.id)))
