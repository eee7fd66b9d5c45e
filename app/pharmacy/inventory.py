"""Stock at portal pharmacies, in whole packs per product and batch, and the controlled-drug register.

Allocation holds packs for a prescription (first expiry first out, never an expired batch) and
dispensing takes them off the shelf, writing the register entry whose balance is the packs then on
hand. Every change locks the product's `StockItem` row first (`SELECT ... FOR UPDATE` on PostgreSQL;
SQLite's write transactions are serialised already), and the database refuses a negative quantity
or more held than on hand (CHECK constraints), so racing allocations cannot oversell.

API pharmacies keep their own stock: they publish levels through the API (`publish`), and
`live_stock` answers the prescriber's formulary from whichever source the pharmacy has.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import User
from app.database import is_sqlite, transaction, utcnow
from app.extensions import db
from app.pharmacy.models import (
    Allocation,
    CdRegisterEntry,
    Pharmacy,
    PublishedStock,
    StockBatch,
    StockItem,
)
from app.prescribing import formulary
from app.prescribing.models import Prescription, Product

HELD, DISPENSED, RELEASED = "held", "dispensed", "released"
MAX_PACKS = 100_000
_BATCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./-]{0,39}$")


class InventoryError(ValueError):
    """A refusal fit to show the pharmacist; `errors` maps form fields to messages."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


class NotEnoughStock(InventoryError):
    def __init__(self, shortages: list[tuple[Product, int, int]]):
        self.shortages = shortages
        super().__init__("Not enough stock: " + "; ".join(
            f"{product.name} needs {needed} pack{'s' * (needed != 1)}, {available} available"
            for product, needed, available in shortages) + ". Report it out of stock, or book goods in first.")


def parse_packs(raw: Any, *, field: str = "packs", allow_negative: bool = False) -> int:
    """A whole number of packs from a form or JSON; fractions, words and (unless allowed) negatives refused."""
    if isinstance(raw, bool):
        raise InventoryError("Enter a whole number of packs.", {field: "Enter a whole number of packs"})
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw if raw is not None else "").strip().replace(",", "")
        if not re.fullmatch(r"[+-]?\d{1,7}", text):
            message = ("Stock is counted in whole packs: enter a whole number, like 4"
                       if re.fullmatch(r"[+-]?\d*\.\d+", text) else "Enter a whole number of packs, like 4")
            raise InventoryError(message, {field: message})
        value = int(text)
    if value < 0 and not allow_negative:
        message = "The number of packs cannot be negative"
        raise InventoryError(message + ".", {field: message})
    if abs(value) > MAX_PACKS:
        raise InventoryError(f"At most {MAX_PACKS:,} packs at a time.", {field: f"At most {MAX_PACKS:,} packs"})
    return value


def packs_for(quantity: Decimal, product: Product) -> int:
    """Packs a prescribed quantity takes: part of a pack opens a whole one."""
    return max(1, math.ceil(Decimal(quantity) / Decimal(product.pack_size)))


# Reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    product: Product
    item: StockItem | None
    batches: list[StockBatch]
    on_hand: int
    allocated: int

    @property
    def available(self) -> int:
        """Packs that can still be allocated: held ones and expired batches excluded."""
        today = dt.date.today()
        return sum(b.on_hand - b.allocated for b in self.batches if b.expires_on > today)

    @property
    def low(self) -> bool:
        return self.item is not None and self.available <= self.item.low_threshold


def _items(pharmacy_id: int) -> dict[int, StockItem]:
    return {i.product_id: i for i in db.session.scalars(sa.select(StockItem).where(
        StockItem.pharmacy_id == pharmacy_id))}


def _batches(item_ids: list[int]) -> dict[int, list[StockBatch]]:
    found: dict[int, list[StockBatch]] = defaultdict(list)
    if item_ids:
        for batch in db.session.scalars(sa.select(StockBatch).where(StockBatch.stock_item_id.in_(item_ids))
                                        .order_by(StockBatch.expires_on, StockBatch.id)):
            found[batch.stock_item_id].append(batch)
    return found


def levels(pharmacy: Pharmacy, *, include_all_products: bool = True) -> list[Level]:
    """Every formulary product with the pharmacy's batches of it (products never stocked show zero)."""
    items = _items(pharmacy.id)
    batches = _batches([i.id for i in items.values()])
    products = formulary.products(include_withdrawn=False) if include_all_products else \
        [formulary.get(pid) for pid in items]
    result = []
    for product in products:
        item = items.get(product.id)
        mine = batches.get(item.id, []) if item else []
        result.append(Level(product, item, mine, sum(b.on_hand for b in mine), sum(b.allocated for b in mine)))
    return result


def level(pharmacy_id: int, product_id: int) -> Level:
    product = formulary.get(product_id)
    item = db.session.scalar(sa.select(StockItem).where(StockItem.pharmacy_id == pharmacy_id,
                                                        StockItem.product_id == product_id))
    mine = _batches([item.id]).get(item.id, []) if item else []
    return Level(product, item, mine, sum(b.on_hand for b in mine), sum(b.allocated for b in mine))


def allocations_of(prescription: Prescription, *, status: str | None = None) -> list[tuple[Allocation, StockBatch]]:
    query = sa.select(Allocation, StockBatch).join(StockBatch, StockBatch.id == Allocation.batch_id) \
        .where(Allocation.prescription_id == prescription.id).order_by(Allocation.line, Allocation.id)
    if status:
        query = query.where(Allocation.status == status)
    return [tuple(row) for row in db.session.execute(query).all()]


def register(pharmacy_id: int, product_id: int, *, limit: int = 500) -> list[CdRegisterEntry]:
    return list(db.session.scalars(sa.select(CdRegisterEntry).where(
        CdRegisterEntry.pharmacy_id == pharmacy_id, CdRegisterEntry.product_id == product_id)
        .order_by(CdRegisterEntry.id.desc()).limit(limit)))


def register_balance(pharmacy_id: int, product_id: int) -> int:
    """The balance of the register's newest entry for the product (0 when it has none)."""
    value = db.session.scalar(sa.select(CdRegisterEntry.balance).where(
        CdRegisterEntry.pharmacy_id == pharmacy_id, CdRegisterEntry.product_id == product_id)
        .order_by(CdRegisterEntry.id.desc()).limit(1))
    return int(value or 0)


# Writing ------------------------------------------------------------------------------------

def _lock(session, pharmacy_id: int, product_id: int, *, create: bool = False) -> StockItem | None:
    """The product's stock row, locked until the transaction ends (PostgreSQL; SQLite holds the write lock)."""
    query = sa.select(StockItem).where(StockItem.pharmacy_id == pharmacy_id, StockItem.product_id == product_id) \
        .execution_options(populate_existing=True)
    if not is_sqlite():
        query = query.with_for_update()
    item = session.scalar(query)
    if item is None and create:
        item = StockItem(pharmacy_id=pharmacy_id, product_id=product_id)
        try:
            with session.begin_nested():
                session.add(item)
                session.flush()
        except sa.exc.IntegrityError:  # made by a concurrent first goods-in: take theirs, locked
            item = session.scalar(query)
    return item


def _fresh_batches(session, item: StockItem, *, usable_on: dt.date | None = None) -> list[StockBatch]:
    """The item's batches read again under its lock, first expiry first."""
    query = sa.select(StockBatch).where(StockBatch.stock_item_id == item.id) \
        .order_by(StockBatch.expires_on, StockBatch.id).execution_options(populate_existing=True)
    if usable_on is not None:
        query = query.where(StockBatch.expires_on > usable_on)
    return list(session.scalars(query))


def _on_hand(session, item: StockItem) -> int:
    return int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(StockBatch.on_hand), 0)).where(
        StockBatch.stock_item_id == item.id)) or 0)


def _check_batch(batch_number: str, expires_on: dt.date | None) -> dict[str, str]:
    errors = {}
    if not _BATCH.match(batch_number or ""):
        errors["batch_number"] = "Enter the batch number as printed (letters, digits, . / -)"
    if expires_on is None:
        errors["expires_on"] = "Enter the expiry date"
    elif expires_on <= dt.date.today():
        errors["expires_on"] = "This batch has expired: do not book it in as stock"
    return errors


def receive_goods(pharmacy: Pharmacy, *, product_id: int, batch_number: str, expires_on: dt.date | None,
                  packs: Any, supplier: str, reference: str = "", user: User | None = None) -> StockBatch:
    """Goods in: packs of a batch arrive from a supplier; the register records the receipt."""
    errors = _check_batch(batch_number.strip(), expires_on)
    product = formulary.get(product_id) if product_id else None
    if product is None:
        errors["product_id"] = "Choose the product"
    try:
        count = parse_packs(packs)
        if count == 0:
            errors["packs"] = "Enter how many packs arrived"
    except InventoryError as exc:
        errors.update(exc.errors)
        count = 0
    supplier = " ".join((supplier or "").split())
    if not supplier or len(supplier) > 200:
        errors["supplier"] = "Enter the supplier (the register records who supplied it)"
    if errors:
        raise InventoryError("Check the delivery's details.", errors)
    batch_number = batch_number.strip().upper()
    with transaction() as session:
        item = _lock(session, pharmacy.id, product.id, create=True)
        batch = session.scalar(sa.select(StockBatch).where(StockBatch.stock_item_id == item.id,
                                                           StockBatch.batch_number == batch_number))
        if batch is None:
            batch = StockBatch(stock_item_id=item.id, batch_number=batch_number, expires_on=expires_on, on_hand=0,
                               allocated=0)
            session.add(batch)
        elif batch.expires_on != expires_on:
            raise InventoryError("This batch is already in stock with another expiry date: check the label.",
                                 {"expires_on": f"Batch {batch_number} expires {batch.expires_on:%-d %B %Y}"})
        batch.on_hand += count
        item.updated_at = utcnow()
        session.flush()
        entry = CdRegisterEntry(pharmacy_id=pharmacy.id, product_id=product.id, kind="received", packs_in=count,
                                balance=_on_hand(session, item), batch_number=batch_number, supplier=supplier,
                                reference=(reference or "").strip()[:100] or None,
                                entered_by_id=user.id if user else None)
        session.add(entry)
        audit.record("pharmacy.goods_in", subject=("pharmacy", pharmacy.id),
                     detail={"product_id": product.id, "batch": batch_number, "packs": count,
                             "balance": entry.balance})
    return batch


def adjust(pharmacy: Pharmacy, *, batch_id: int, change: Any, reason: str, user: User | None = None) -> StockBatch:
    """A correction (breakage, witnessed destruction, count correction), with its reason, in the register."""
    reason = " ".join((reason or "").split())
    errors: dict[str, str] = {}
    try:
        delta = parse_packs(change, field="change", allow_negative=True)
        if delta == 0:
            errors["change"] = "Enter the change in packs, like -1 or 2"
    except InventoryError as exc:
        errors.update(exc.errors)
        delta = 0
    if len(reason) < 5:
        errors["reason"] = "Say why (the register keeps the reason)"
    batch = db.session.get(StockBatch, batch_id)
    item = db.session.get(StockItem, batch.stock_item_id) if batch else None
    if item is None or item.pharmacy_id != pharmacy.id:
        errors["batch_id"] = "Choose one of this pharmacy's batches"
    if errors:
        raise InventoryError("Check the adjustment.", errors)
    with transaction() as session:
        item = _lock(session, pharmacy.id, item.product_id)
        session.refresh(batch)
        if batch.on_hand + delta < batch.allocated:
            held = f" ({batch.allocated} held for prescriptions)" if batch.allocated else ""
            message = (f"Batch {batch.batch_number} has {batch.on_hand} packs{held}: it cannot go below "
                       f"{batch.allocated}")
            raise InventoryError(message + ".", {"change": message})
        batch.on_hand += delta
        item.updated_at = utcnow()
        session.flush()
        entry = CdRegisterEntry(pharmacy_id=pharmacy.id, product_id=item.product_id, kind="adjusted",
                                packs_in=max(delta, 0), packs_out=max(-delta, 0), balance=_on_hand(session, item),
                                batch_number=batch.batch_number, reason=reason[:2000],
                                entered_by_id=user.id if user else None)
        session.add(entry)
        audit.record("pharmacy.stock_adjusted", subject=("pharmacy", pharmacy.id),
                     detail={"product_id": item.product_id, "batch": batch.batch_number, "change": delta,
                             "balance": entry.balance})
    return batch


def set_threshold(pharmacy: Pharmacy, product_id: int, threshold: Any) -> StockItem:
    value = parse_packs(threshold, field="threshold")
    if formulary.get(product_id) is None:
        raise InventoryError("Choose a product.", {"product_id": "Choose a product"})
    with transaction() as session:
        item = _lock(session, pharmacy.id, product_id, create=True)
        item.low_threshold = value
        audit.record("pharmacy.threshold_set", subject=("pharmacy", pharmacy.id),
                     detail={"product_id": product_id, "threshold": value})
    return item


def allocate(prescription: Prescription, pharmacy: Pharmacy) -> list[Allocation]:
    """Hold packs for every line, or none (NotEnoughStock names each shortage). Joins the caller's transaction."""
    needs: dict[int, list[tuple[int, int]]] = defaultdict(list)  # product -> [(line, packs)]
    for item in prescription.items:
        product = formulary.get(item.product_id)
        needs[product.id].append((item.line, packs_for(item.quantity, product)))
    today = dt.date.today()
    made: list[Allocation] = []
    shortages: list[tuple[Product, int, int]] = []
    with transaction() as session:
        if allocations_of(prescription, status=HELD):
            raise InventoryError("Stock is already allocated to this prescription.")
        for product_id in sorted(needs):  # one lock order for everyone: no deadlocks between allocators
            product = formulary.get(product_id)
            item = _lock(session, pharmacy.id, product_id)
            batches = [] if item is None else _fresh_batches(session, item, usable_on=today)
            wanted = sum(packs for _, packs in needs[product_id])
            available = sum(b.on_hand - b.allocated for b in batches)
            if available < wanted:
                shortages.append((product, wanted, available))
                continue
            for line, packs in needs[product_id]:
                for batch in batches:
                    free = batch.on_hand - batch.allocated
                    if packs == 0:
                        break
                    if free <= 0:
                        continue
                    take = min(free, packs)
                    batch.allocated += take
                    packs -= take
                    allocation = Allocation(prescription_id=prescription.id, line=line, batch_id=batch.id,
                                            packs=take, status=HELD)
                    session.add(allocation)
                    made.append(allocation)
            item.updated_at = utcnow()
        if shortages:
            raise NotEnoughStock(shortages)
        session.flush()
    return made


def release(prescription: Prescription) -> int:
    """Put back what was held for a prescription that will not be dispensed. Returns packs released."""
    held = allocations_of(prescription, status=HELD)
    if not held:
        return 0
    released = 0
    with transaction() as session:
        items = _lock_items_of(session, held)
        for allocation, batch in allocations_of(prescription, status=HELD):
            session.refresh(batch)
            batch.allocated -= allocation.packs
            allocation.status, allocation.settled_at = RELEASED, utcnow()
            released += allocation.packs
        for item in items.values():
            item.updated_at = utcnow()
    return released


def _lock_items_of(session, held: list[tuple[Allocation, StockBatch]]) -> dict[int, StockItem]:
    """Lock the stock rows behind some allocations, in the one lock order."""
    items: dict[int, StockItem] = {}
    for _allocation, batch in held:
        items.setdefault(batch.stock_item_id, session.get(StockItem, batch.stock_item_id))
    for item_id in sorted(items):
        items[item_id] = _lock(session, items[item_id].pharmacy_id, items[item_id].product_id)
    return items


def dispense(prescription: Prescription, pharmacy: Pharmacy, *, user: User | None = None) -> list[CdRegisterEntry]:
    """Take the held packs off the shelf and write the register: date, patient, prescriber, quantity, balance.

    Joins the caller's transaction (the dispensing transition is made in the same one)."""
    from app.patients import services as patients
    from app.prescribing import config as prescribing_config

    held = allocations_of(prescription, status=HELD)
    if not held:
        raise InventoryError("Allocate stock before dispensing: nothing is held for this prescription.")
    patient = patients.get(prescription.patient_id)
    person = patients.user_of(patient)
    prescriber = db.session.get(User, prescription.prescriber_id)
    address = ", ".join(x for x in (patient.address_line1, patient.address_line2, patient.town, patient.postcode) if x)
    entries = []
    with transaction() as session:
        items = _lock_items_of(session, held)
        for allocation, batch in allocations_of(prescription, status=HELD):
            session.refresh(batch)
            batch.on_hand -= allocation.packs
            batch.allocated -= allocation.packs
            allocation.status, allocation.settled_at = DISPENSED, utcnow()
            item = items[batch.stock_item_id]
            item.updated_at = utcnow()
            session.flush()
            entry = CdRegisterEntry(
                pharmacy_id=pharmacy.id, product_id=item.product_id, kind="supplied", packs_out=allocation.packs,
                balance=_on_hand(session, item), batch_number=batch.batch_number, prescription_id=prescription.id,
                patient_name=person.full_name, patient_address=address[:400] or None,
                prescriber_name=prescriber.full_name if prescriber else None,
                prescriber_address=prescribing_config.clinic_address()[:400],
                entered_by_id=user.id if user else None)
            session.add(entry)
            entries.append(entry)
        session.flush()
    return entries


# API pharmacies' published stock and the prescriber's live view -----------------------------

def publish(pharmacy: Pharmacy, levels_in: list[dict[str, Any]], *, now: dt.datetime | None = None) -> int:
    """Record the levels an API pharmacy reports: [{"product_id", "packs" | None, "in_stock"}]. All or none."""
    now = now or utcnow()
    cleaned: dict[int, tuple[int | None, bool]] = {}
    for index, entry in enumerate(levels_in):
        product_id = entry.get("product_id")
        if isinstance(product_id, bool) or not isinstance(product_id, int) or not 0 < product_id < 2**31 \
                or formulary.get(product_id) is None:
            raise InventoryError(f"levels[{index}]: unknown formulary product {product_id!r}")
        packs = entry.get("packs")
        if packs is not None:
            packs = parse_packs(packs, field=f"levels[{index}].packs")
        in_stock = entry.get("in_stock")
        if in_stock is None:
            in_stock = bool(packs)
        if not isinstance(in_stock, bool):
            raise InventoryError(f"levels[{index}]: in_stock must be true or false")
        if packs == 0 and in_stock:
            raise InventoryError(f"levels[{index}]: zero packs cannot be in stock")
        cleaned[product_id] = (packs, in_stock)
    with transaction() as session:
        existing = {row.product_id: row for row in session.scalars(sa.select(PublishedStock).where(
            PublishedStock.pharmacy_id == pharmacy.id, PublishedStock.product_id.in_(list(cleaned))))}
        for product_id, (packs, in_stock) in cleaned.items():
            row = existing.get(product_id)
            if row is None:
                row = PublishedStock(pharmacy_id=pharmacy.id, product_id=product_id)
                session.add(row)
            row.packs, row.in_stock, row.reported_at = packs, in_stock, now
        audit.record("pharmacy.stock_published", subject=("pharmacy", pharmacy.id), detail={"products": len(cleaned)})
    return len(cleaned)


def live_stock(pharmacy_id: int, product_ids: list[int]) -> dict[int, formulary.StockLevel | None]:
    """Stock at a pharmacy, for the prescriber's formulary: the portal's inventory, or what an API
    pharmacy last published (with when). None where the pharmacy has said nothing about a product."""
    pharmacy = db.session.get(Pharmacy, pharmacy_id)
    if pharmacy is None or not product_ids:
        return {}
    if pharmacy.connection == "api":
        rows = db.session.scalars(sa.select(PublishedStock).where(PublishedStock.pharmacy_id == pharmacy_id,
                                                                   PublishedStock.product_id.in_(product_ids)))
        return {r.product_id: formulary.StockLevel(r.packs, r.in_stock, r.reported_at) for r in rows}
    items = {i.product_id: i for i in db.session.scalars(sa.select(StockItem).where(
        StockItem.pharmacy_id == pharmacy_id, StockItem.product_id.in_(product_ids)))}
    batches = _batches([i.id for i in items.values()])
    today = dt.date.today()
    result: dict[int, formulary.StockLevel | None] = {}
    for product_id, item in items.items():
        available = sum(b.on_hand - b.allocated for b in batches.get(item.id, []) if b.expires_on > today)
        result[product_id] = formulary.StockLevel(available, available > 0, item.updated_at)
    return result


def available_packs(pharmacy_id: int, product_id: int) -> int | None:
    """Packs available now (None when unknown, e.g. an API pharmacy reporting only in/out)."""
    known = live_stock(pharmacy_id, [product_id]).get(product_id)
    if known is None:
        return None
    if known.packs is None:
        return None if known.in_stock else 0
    return known.packs


formulary.provide_stock(live_stock)


# Demo ---------------------------------------------------------------------------------------

DEMO_BATCHES = {
    # product name: [(batch, months to expiry, packs)]
    "Verdant T22 Flower": [("VT22-2407A", 8, 12), ("VT22-2411C", 14, 20)],
    "Verdant T18 Flower": [("VT18-2409B", 10, 15)],
    "Equilibria 10:10 Oil": [("EQ1010-118", 12, 10)],
    "Serenis CBD 50 Oil": [("SER50-0332", 9, 6)],
    "Caplio 5:5 Capsules": [("CAP55-7781", 18, 8)],
}
DEMO_SUPPLIER = "Northfield Wholesale (demo)"


def load_demo_inventory() -> int:
    """Stock for the demo pharmacy (a portal pharmacy) of the demo formulary: a few batches with expiry.
    Idempotent: a batch already booked in is left alone. Returns the batches booked in this time."""
    from app.demo import DEMO_PHARMACY
    from app.pharmacy import services as pharmacies
    from app.prescribing.demo import load_demo_formulary

    pharmacy = pharmacies.by_gphc(DEMO_PHARMACY["gphc_number"])
    if pharmacy is None:
        return 0
    if pharmacy.connection != "portal":
        with transaction():
            pharmacy.connection = "portal"
    products = {p.name: p for p in load_demo_formulary()}
    booked = 0
    today = dt.date.today()
    for name, batches in DEMO_BATCHES.items():
        product = products.get(name)
        if product is None:
            continue
        existing = {b.batch_number for b in level(pharmacy.id, product.id).batches}
        for number, months, packs in batches:
            if number in existing:
                continue
            receive_goods(pharmacy, product_id=product.id, batch_number=number,
                          expires_on=today + dt.timedelta(days=30 * months), packs=packs, supplier=DEMO_SUPPLIER,
                          reference="DEMO-OPENING")
            booked += 1
        set_threshold(pharmacy, product.id, 3)
    return booked
