"""Carriers, tracking numbers, shipments and the courier webhook.

The pharmacy books a dispatch with a carrier and tracking number (portal or API); the patient's order
page shows them with the carrier's tracking link; the carrier's webhook (Royal Mail / DPD style,
signed like every inbound request, see signatures.py) moves the parcel on:

    dispatched → in transit → out for delivery → delivered
                                              ↘ failed attempt → out for delivery ... | returned

Only "delivered" moves the prescription (dispatched → delivered, through the state machine); the
rest are delivery events on the shipment. A returned parcel leaves the prescription dispatched and
flagged on the pipeline board until the pharmacy books a new dispatch.

Other domains (the whole-journey timeline) use `shipment_for(prescription)`, `events_of(shipment)`
and `tracking_link(carrier, number)`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

import sqlalchemy as sa

from app.audit import services as audit
from app.database import transaction, utcnow
from app.extensions import db
from app.pharmacy.models import Shipment, ShipmentEvent
from app.prescribing import states
from app.prescribing.models import Prescription

S = states.State
DISPATCHED, IN_TRANSIT, OUT_FOR_DELIVERY = "dispatched", "in_transit", "out_for_delivery"
FAILED_ATTEMPT, DELIVERED, RETURNED = "failed_attempt", "delivered", "returned"
STATUSES = (DISPATCHED, IN_TRANSIT, OUT_FOR_DELIVERY, FAILED_ATTEMPT, DELIVERED, RETURNED)
FINAL = frozenset({DELIVERED, RETURNED})
#: Statuses a courier (or the pharmacy) may report after booking.
REPORTABLE = (IN_TRANSIT, OUT_FOR_DELIVERY, FAILED_ATTEMPT, DELIVERED, RETURNED)
LABELS = {DISPATCHED: "Dispatched", IN_TRANSIT: "In transit", OUT_FOR_DELIVERY: "Out for delivery",
          FAILED_ATTEMPT: "Delivery attempted: nobody in", DELIVERED: "Delivered",
          RETURNED: "Returned to the pharmacy"}


@dataclass(frozen=True)
class Carrier:
    key: str
    name: str
    #: The public tracking page, with {number}; None when the carrier has none.
    tracking_url: str | None
    #: What its tracking numbers look like.
    pattern: str
    example: str


def _s10_valid(number: str) -> bool:
    """UPU S10 (Royal Mail tracked and special delivery): 2 letters, 8 digits, a check digit, 2 letters."""
    match = re.fullmatch(r"[A-Z]{2}(\d{8})(\d)[A-Z]{2}", number)
    if not match:
        return False
    total = sum(int(d) * w for d, w in zip(match.group(1), (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    check = 11 - total % 11
    check = 0 if check == 10 else 5 if check == 11 else check
    return check == int(match.group(2))


CARRIERS: dict[str, Carrier] = {c.key: c for c in (
    Carrier("royal_mail", "Royal Mail Tracked 24", "https://www.royalmail.com/track-your-item#/tracking-results/{number}",
            "s10", "AB123456785GB"),
    Carrier("royal_mail_special", "Royal Mail Special Delivery",
            "https://www.royalmail.com/track-your-item#/tracking-results/{number}", "s10", "AB123456785GB"),
    Carrier("dpd", "DPD", "https://track.dpd.co.uk/parcels/{number}", r"\d{10,14}", "15501234567890"),
    Carrier("parcelforce", "Parcelforce Worldwide", "https://www.parcelforce.com/track-trace?trackNumber={number}",
            r"[A-Z]{2}\d{7,9}[A-Z]{0,2}", "PB1234567"),
    Carrier("dhl", "DHL Parcel UK", "https://track.dhlparcel.co.uk/?con={number}", r"\d{10,14}", "1234567890"),
    Carrier("sandbox", "Sandbox courier (testing)", None, r"[A-Z0-9]{6,30}", "SBX000123"),
)}


class ShippingError(ValueError):
    def __init__(self, message: str, errors: dict[str, str] | None = None, *, status: int = 400):
        super().__init__(message)
        self.errors = errors or {}
        self.status = status


def clean(carrier: str, tracking: str) -> tuple[Carrier, str]:
    """The carrier and a normalised tracking number, or ShippingError naming the field."""
    found = CARRIERS.get((carrier or "").strip())
    number = "".join((tracking or "").split()).upper()
    errors = {}
    if found is None:
        errors["carrier"] = "Choose the carrier"
    elif found.pattern == "s10":
        if not _s10_valid(number):
            errors["tracking"] = (f"A {found.name} tracking number looks like {found.example} (2 letters, 9 digits, "
                                  "GB) and its check digit must match: check it against the label")
    elif not re.fullmatch(found.pattern, number):
        errors["tracking"] = f"A {found.name} tracking number looks like {found.example}"
    if errors:
        raise ShippingError("Check the carrier and tracking number.", errors)
    return found, number


def carrier_name(key: str) -> str:
    carrier = CARRIERS.get(key)
    return carrier.name if carrier else key


def tracking_link(carrier: str, number: str) -> str | None:
    """The carrier's public tracking page for this parcel, or None."""
    found = CARRIERS.get(carrier)
    if found is None or found.tracking_url is None or not number:
        return None
    return found.tracking_url.format(number=number)


def shipment_for(prescription: Prescription) -> Shipment | None:
    """The prescription's latest shipment (a returned parcel may be followed by a new one)."""
    return db.session.scalar(sa.select(Shipment).where(Shipment.prescription_id == prescription.id)
                             .order_by(Shipment.id.desc()).limit(1))


def shipments_for(prescription: Prescription) -> list[Shipment]:
    return list(db.session.scalars(sa.select(Shipment).where(Shipment.prescription_id == prescription.id)
                                   .order_by(Shipment.id)))


def events_of(shipment: Shipment) -> list[ShipmentEvent]:
    return list(db.session.scalars(sa.select(ShipmentEvent).where(ShipmentEvent.shipment_id == shipment.id)
                                   .order_by(ShipmentEvent.occurred_at, ShipmentEvent.id)))


def by_tracking(carrier: str, number: str) -> Shipment | None:
    return db.session.scalar(sa.select(Shipment).where(Shipment.carrier == carrier,
                                                       Shipment.tracking_number == number))


def book(prescription: Prescription, carrier: Carrier, number: str, *, source: str) -> Shipment:
    """A new shipment (joins the caller's transaction; the dispatch transition is made there too)."""
    with transaction() as session:
        if by_tracking(carrier.key, number) is not None:
            raise ShippingError("This tracking number is already booked for another parcel: check it.",
                                {"tracking": "Already used for another parcel"}, status=409)
        now = utcnow()
        shipment = Shipment(prescription_id=prescription.id, carrier=carrier.key, tracking_number=number,
                            status=DISPATCHED, booked_at=now, updated_at=now)
        session.add(shipment)
        session.flush()
        session.add(ShipmentEvent(shipment_id=shipment.id, status=DISPATCHED, occurred_at=now, source=source))
    return shipment


def record_event(shipment: Shipment, status: str, *, source: str, occurred_at: dt.datetime | None = None,
                 note: str | None = None) -> Shipment:
    """A delivery event. "delivered" also moves the prescription to delivered (once)."""
    if status not in REPORTABLE:
        raise ShippingError(f"Unknown delivery status {status!r}: use one of {', '.join(REPORTABLE)}.")
    now = utcnow()
    occurred_at = occurred_at or now
    if occurred_at > now + dt.timedelta(minutes=5):
        raise ShippingError("The event's time is in the future.")
    prescription = db.session.get(Prescription, shipment.prescription_id)
    with transaction() as session:
        session.refresh(shipment)
        if shipment.status in FINAL:
            raise ShippingError(f"This parcel was already {LABELS[shipment.status].lower()}: no further events.",
                                status=409)
        session.add(ShipmentEvent(shipment_id=shipment.id, status=status, occurred_at=occurred_at, source=source,
                                  note=(note or "").strip()[:300] or None))
        latest = session.scalar(sa.select(sa.func.max(ShipmentEvent.occurred_at)).where(
            ShipmentEvent.shipment_id == shipment.id))
        # An event that arrives late (older than the newest one) is kept, but does not move the parcel back.
        if status in FINAL or latest is None or occurred_at >= latest:
            shipment.status = status
        shipment.updated_at = now
        audit.record("pharmacy.delivery_event", subject=("prescription", prescription.id),
                     patient_id=prescription.patient_id,
                     detail={"carrier": shipment.carrier, "tracking": shipment.tracking_number, "status": status,
                             "source": source})
        if status == DELIVERED and states.state_of(prescription) is S.DISPATCHED:
            states.apply(prescription, S.DELIVERED, actor_role=states.PHARMACY if source == "pharmacy"
                         else states.SYSTEM, detail={"carrier": shipment.carrier,
                                                     "tracking": shipment.tracking_number, "source": source})
    return shipment


# The courier webhook ------------------------------------------------------------------------

@dataclass(frozen=True)
class CourierEvent:
    event_id: str
    tracking_number: str
    status: str
    occurred_at: dt.datetime | None
    note: str | None


def parse_courier_event(body: bytes) -> CourierEvent:
    try:
        data = json.loads(body)
    except ValueError:
        raise ShippingError("The body is not JSON.") from None
    if not isinstance(data, dict):
        raise ShippingError("The body must be a JSON object.")
    event_id, number, status = data.get("event_id"), data.get("tracking_number"), data.get("status")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 100:
        raise ShippingError("event_id is required (a unique string of at most 100 characters).")
    if not isinstance(number, str) or not 0 < len(number) <= 40:
        raise ShippingError("tracking_number is required.")
    if status not in REPORTABLE:
        raise ShippingError(f"status must be one of {', '.join(REPORTABLE)}.")
    occurred_at = None
    raw_time = data.get("occurred_at")
    if raw_time is not None:
        try:
            occurred_at = dt.datetime.fromisoformat(str(raw_time).replace("Z", "+00:00"))
        except ValueError:
            raise ShippingError("occurred_at must be an ISO 8601 date and time.") from None
        if occurred_at.tzinfo is None:
            raise ShippingError("occurred_at must carry a time zone (e.g. 2026-01-05T10:30:00Z).")
        occurred_at = occurred_at.astimezone(dt.UTC)
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise ShippingError("note must be a string.")
    return CourierEvent(event_id, "".join(number.split()).upper(), status, occurred_at, note)
