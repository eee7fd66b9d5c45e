"""The pharmacy domain's tables: partner pharmacies and their API keys, stock (per product and batch)
with the controlled-drug register, stock-outs, the pharmacy <-> clinic thread, shipments, and the
inbound events already seen (replay protection)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

PORTAL, API = "portal", "api"
CONNECTIONS = (PORTAL, API)


class Pharmacy(db.Model):
    """A partner pharmacy. Pharmacists belong to one and see only what is sent to it."""

    __tablename__ = "pharmacies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: General Pharmaceutical Council premises registration number (7 digits).
    gphc_number: Mapped[str] = mapped_column(sa.String(7), unique=True)
    address: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
    contact_name: Mapped[str | None] = mapped_column(sa.String(200))
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(30))
    #: "portal": its pharmacists work in Verity's pharmacy workspace; "api": its own system, through the API.
    connection: Mapped[str] = mapped_column(sa.String(10), default=PORTAL, server_default=PORTAL)
    #: Where prescriptions are pushed (api pharmacies), https in production.
    webhook_url: Mapped[str | None] = mapped_column(sa.String(500))
    #: The HMAC-SHA256 secret both directions sign with, AES-GCM encrypted with the data key.
    webhook_secret_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    #: SHA-256 of the client certificate a TLS-terminating proxy must present for this pharmacy (mTLS).
    client_cert_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    #: None for pharmacies made before this was recorded.
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=utcnow)


class PharmacyApiKey(db.Model):
    """An API key of a pharmacy's system. Only its SHA-256 is kept; at most two are active (rotation)."""

    __tablename__ = "pharmacy_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacies.id"), index=True)
    #: The public part of the key ("vpk_" + 12 hex), shown in lists and logs to say which key was used.
    prefix: Mapped[str] = mapped_column(sa.String(20), unique=True)
    #: SHA-256 (hex) of the whole key: the key is 256 random bits, so a fast hash is enough.
    secret_sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: After this the key is refused (set at issue; shortened when a newer key replaces it).
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class InboundEvent(db.Model):
    """A signed request already acted on (pharmacy API or courier webhook): the same key again is refused."""

    __tablename__ = "pharmacy_inbound_events"
    __table_args__ = (sa.UniqueConstraint("source", "event_key", name="uq_pharmacy_inbound_events_source_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "pharmacy:<id>" or "courier:<carrier>".
    source: Mapped[str] = mapped_column(sa.String(60))
    #: "key:" + the sender's Idempotency-Key, "sig:" + a digest of its signature (pharmacy), or the courier's event id.
    event_key: Mapped[str] = mapped_column(sa.String(120))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The status we answered the first time, returned with the refusal of a repeat.
    status_code: Mapped[int] = mapped_column(default=200)


class StockItem(db.Model):
    """A formulary product at a portal pharmacy; its quantities live in batches. Locked for every change."""

    __tablename__ = "pharmacy_stock_items"
    __table_args__ = (sa.UniqueConstraint("pharmacy_id", "product_id", name="uq_pharmacy_stock_items_product"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacies.id"), index=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("formulary_products.id"))
    #: Warn when the packs available fall to this or below.
    low_threshold: Mapped[int] = mapped_column(default=0)
    #: When the quantities last changed (shown to prescribers as "updated ...").
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockBatch(db.Model):
    """Packs of one batch. `allocated` packs are held for prescriptions not yet dispensed."""

    __tablename__ = "pharmacy_stock_batches"
    __table_args__ = (
        sa.UniqueConstraint("stock_item_id", "batch_number", name="uq_pharmacy_stock_batches_batch"),
        sa.CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        sa.CheckConstraint("allocated >= 0 AND allocated <= on_hand", name="allocated_within_on_hand"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stock_item_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacy_stock_items.id"), index=True)
    batch_number: Mapped[str] = mapped_column(sa.String(40))
    expires_on: Mapped[dt.date] = mapped_column(sa.Date)
    #: Whole packs physically held (what the controlled-drug register balances to).
    on_hand: Mapped[int] = mapped_column(default=0)
    #: Of those, packs held for allocated prescriptions.
    allocated: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Allocation(db.Model):
    """Packs of a batch held for one line of a prescription; dispensed or released later."""

    __tablename__ = "pharmacy_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    line: Mapped[int] = mapped_column()
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacy_stock_batches.id"), index=True)
    packs: Mapped[int] = mapped_column()
    #: held, dispensed or released.
    status: Mapped[str] = mapped_column(sa.String(10), default="held", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CdRegisterEntry(db.Model):
    """The pharmacy's controlled-drug register: one page per product, a running balance in packs.

    Supplies record the date, the patient supplied, the prescriber, the quantity and the balance;
    receipts the supplier; adjustments their reason. Entries are never changed: a correction is a new entry.
    """

    __tablename__ = "pharmacy_cd_register"

    id: Mapped[int] = mapped_column(primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacies.id"), index=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("formulary_products.id"), index=True)
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: received, supplied or adjusted.
    kind: Mapped[str] = mapped_column(sa.String(10))
    #: Packs in (receipts, positive adjustments) and out (supplies, negative adjustments).
    packs_in: Mapped[int] = mapped_column(default=0)
    packs_out: Mapped[int] = mapped_column(default=0)
    #: Packs on hand of this product after the entry.
    balance: Mapped[int] = mapped_column()
    batch_number: Mapped[str] = mapped_column(sa.String(40))
    prescription_id: Mapped[int | None] = mapped_column(sa.ForeignKey("prescriptions.id"))
    #: Supplies: the person supplied and their address, the prescriber and their address, as the law asks.
    patient_name: Mapped[str | None] = mapped_column(sa.String(200))
    patient_address: Mapped[str | None] = mapped_column(sa.String(400))
    prescriber_name: Mapped[str | None] = mapped_column(sa.String(200))
    prescriber_address: Mapped[str | None] = mapped_column(sa.String(400))
    #: Receipts: the supplier and their invoice or delivery note.
    supplier: Mapped[str | None] = mapped_column(sa.String(200))
    reference: Mapped[str | None] = mapped_column(sa.String(100))
    #: Adjustments: why (breakage, expiry destruction witnessed by ..., count correction).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    entered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class PublishedStock(db.Model):
    """Stock an API pharmacy published for a formulary product (its own system holds the truth)."""

    __tablename__ = "pharmacy_published_stock"
    __table_args__ = (sa.UniqueConstraint("pharmacy_id", "product_id", name="uq_pharmacy_published_stock_product"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacies.id"), index=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("formulary_products.id"))
    #: Packs available; None when the pharmacy reports only in or out of stock.
    packs: Mapped[int | None] = mapped_column()
    in_stock: Mapped[bool] = mapped_column()
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockOut(db.Model):
    """A pharmacy's report that it cannot supply a prescription, with what it could offer instead."""

    __tablename__ = "pharmacy_stock_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    pharmacy_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacies.id"))
    #: JSON list of the product ids it is out of.
    products: Mapped[list] = mapped_column(sa.JSON)
    #: JSON list of product ids the pharmacy can offer instead.
    offered: Mapped[list] = mapped_column(sa.JSON)
    note: Mapped[str | None] = mapped_column(sa.Text)
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: superseded, redirected, allocated (stock came in) or ended (cancelled, expired, rejected).
    resolution: Mapped[str | None] = mapped_column(sa.String(12))


class ThreadMessage(db.Model):
    """The pharmacy <-> clinic thread of a prescription: queries, answers and notes for the pharmacist."""

    __tablename__ = "pharmacy_thread_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    #: query (pharmacy asks the prescriber), answer (the clinic replies), note (the clinic tells the pharmacist).
    kind: Mapped[str] = mapped_column(sa.String(8))
    #: "pharmacy" or "clinic".
    side: Mapped[str] = mapped_column(sa.String(8))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Shipment(db.Model):
    """A parcel the pharmacy sent: the carrier, the tracking number and where it has got to."""

    __tablename__ = "pharmacy_shipments"
    __table_args__ = (sa.UniqueConstraint("carrier", "tracking_number", name="uq_pharmacy_shipments_tracking"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    #: A key of shipping.CARRIERS.
    carrier: Mapped[str] = mapped_column(sa.String(30))
    tracking_number: Mapped[str] = mapped_column(sa.String(40))
    #: dispatched, in_transit, out_for_delivery, failed_attempt, delivered or returned.
    status: Mapped[str] = mapped_column(sa.String(20), default="dispatched")
    booked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShipmentEvent(db.Model):
    __tablename__ = "pharmacy_shipment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(sa.ForeignKey("pharmacy_shipments.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(20))
    #: When it happened, as the sender says.
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: pharmacy (portal or API) or courier.
    source: Mapped[str] = mapped_column(sa.String(10))
    #: A short note from the courier ("left with neighbour at 12"), never clinical.
    note: Mapped[str | None] = mapped_column(sa.String(300))
