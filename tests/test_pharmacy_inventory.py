"""Stock at a portal pharmacy: whole packs per batch, allocation first-expiry-first and never below zero,
dispensing into the controlled-drug register whose balance is the stock on hand."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from app.auth.models import User
from app.extensions import db
from app.pharmacy import inventory, workflow
from app.pharmacy import services as pharmacies
from app.pharmacy.models import CdRegisterEntry, StockBatch
from app.prescribing import services as prescribing
from tests.test_pharmacy_helpers import FLOWER, acting_as, ready, sign_new, stock


def _pharmacy(r):
    return pharmacies.get(r.pharmacy_id)


def _receive(r, **values):
    base = {"product_id": r.products[FLOWER], "batch_number": "VT-1", "packs": "5", "supplier": "Wholesale Ltd",
            "expires_on": dt.date.today() + dt.timedelta(days=200)}
    return inventory.receive_goods(_pharmacy(r), **{**base, **values})


@pytest.mark.parametrize("packs, message", [("-2", "cannot be negative"), ("2.5", "whole packs"),
                                            ("two", "whole number"), ("0", "how many packs"), ("1e3", "whole number")])
def test_goods_in_refuses_negative_fractional_and_nonsense_quantities(ctx, personas, packs, message):
    r = ready(personas)
    with pytest.raises(inventory.InventoryError) as refused:
        _receive(r, packs=packs)
    assert message in refused.value.errors["packs"]
    assert inventory.level(r.pharmacy_id, r.products[FLOWER]).on_hand == 0


def test_goods_in_refuses_an_expired_batch_and_a_batch_with_another_expiry(ctx, personas):
    r = ready(personas)
    with pytest.raises(inventory.InventoryError) as expired:
        _receive(r, expires_on=dt.date.today())
    assert "expired" in expired.value.errors["expires_on"]
    _receive(r)
    with pytest.raises(inventory.InventoryError) as other:
        _receive(r, expires_on=dt.date.today() + dt.timedelta(days=90))
    assert "another expiry" in str(other.value)


def test_goods_in_writes_the_register_with_the_supplier_and_running_balance(ctx, personas):
    r = ready(personas)
    _receive(r, packs="5")
    _receive(r, packs="3")
    _receive(r, batch_number="VT-2", packs="2", expires_on=dt.date.today() + dt.timedelta(days=400))
    entries = inventory.register(r.pharmacy_id, r.products[FLOWER])
    assert [(e.kind, e.packs_in, e.balance, e.supplier) for e in reversed(entries)] == [
        ("received", 5, 5, "Wholesale Ltd"), ("received", 3, 8, "Wholesale Ltd"), ("received", 2, 10, "Wholesale Ltd")]


def test_allocation_holds_the_batch_that_expires_first_and_skips_expired_ones(ctx, personas):
    r = ready(personas)
    pharmacy = _pharmacy(r)
    _receive(r, batch_number="LATE", packs="5", expires_on=dt.date.today() + dt.timedelta(days=300))
    _receive(r, batch_number="SOON", packs="2", expires_on=dt.date.today() + dt.timedelta(days=30))
    _receive(r, batch_number="OLD", packs="4", expires_on=dt.date.today() + dt.timedelta(days=10))
    with db.session.begin_nested():
        db.session.execute(sa.update(StockBatch).where(StockBatch.batch_number == "OLD")
                           .values(expires_on=dt.date.today() - dt.timedelta(days=1)))
    db.session.commit()
    prescription = sign_new(r, quantity="30")  # 3 packs of 10 g
    workflow.allocate(prescription, pharmacy)
    held = {(b.batch_number, a.packs) for a, b in inventory.allocations_of(prescription)}
    assert held == {("SOON", 2), ("LATE", 1)}
    level = inventory.level(r.pharmacy_id, r.products[FLOWER])
    assert (level.on_hand, level.allocated, level.available) == (11, 3, 4)  # the expired 4 are not available


def test_allocating_more_than_available_is_refused_naming_the_shortage_and_changes_nothing(ctx, personas):
    r = ready(personas)
    _receive(r, packs="2")
    prescription = sign_new(r, quantity="30")
    with pytest.raises(workflow.WorkflowError) as refused:
        workflow.allocate(prescription, _pharmacy(r))
    assert refused.value.status == 409
    assert "Verdant T22 Flower needs 3 packs, 2 available" in str(refused.value)
    db.session.refresh(prescription)
    assert prescription.status == "signed"  # the whole step is one transaction: nothing moved
    assert inventory.level(r.pharmacy_id, r.products[FLOWER]).allocated == 0
    assert inventory.allocations_of(prescription) == []


def test_dispensing_writes_the_register_entry_and_the_balance_is_the_stock(ctx, personas):
    r = ready(personas)
    pharmacy = _pharmacy(r)
    _receive(r, packs="7")
    prescription = sign_new(r, quantity="20")
    pharmacist = db.session.get(User, personas["pharmacist"].user_id)
    with acting_as(pharmacist.id, "pharmacist"):
        workflow.allocate(prescription, pharmacy, user=pharmacist)
        prescribing.record_original_received(prescription, matches=True)
        workflow.verify(prescription, pharmacy)
        workflow.dispense(prescription, pharmacy, user=pharmacist)
    assert prescription.status == "dispensed"
    entry = db.session.scalar(sa.select(CdRegisterEntry).where(CdRegisterEntry.kind == "supplied"))
    assert (entry.packs_out, entry.balance, entry.prescription_id) == (2, 5, prescription.id)
    assert entry.patient_name == "Alice Example" and "14 Orchard Lane" in entry.patient_address
    assert entry.prescriber_name == "Clinician Person" and entry.prescriber_address
    assert entry.entered_by_id == pharmacist.id
    level = inventory.level(r.pharmacy_id, r.products[FLOWER])
    assert (level.on_hand, level.allocated) == (5, 0)
    assert inventory.register_balance(r.pharmacy_id, r.products[FLOWER]) == level.on_hand


def test_an_adjustment_needs_a_reason_and_cannot_take_held_packs(ctx, personas):
    r = ready(personas)
    pharmacy = _pharmacy(r)
    batch = _receive(r, packs="3")
    prescription = sign_new(r, quantity="20")
    workflow.allocate(prescription, pharmacy)
    with pytest.raises(inventory.InventoryError) as no_reason:
        inventory.adjust(pharmacy, batch_id=batch.id, change="-1", reason="")
    assert "reason" in no_reason.value.errors
    with pytest.raises(inventory.InventoryError) as too_much:
        inventory.adjust(pharmacy, batch_id=batch.id, change="-2", reason="Two broken pots")
    assert "cannot go below 2" in str(too_much.value)
    inventory.adjust(pharmacy, batch_id=batch.id, change="-1", reason="One pot broken in the safe")
    last = inventory.register(r.pharmacy_id, r.products[FLOWER])[0]
    assert (last.kind, last.packs_out, last.balance, last.reason) == ("adjusted", 1, 2, "One pot broken in the safe")


def test_the_database_itself_refuses_negative_stock(ctx, personas):
    r = ready(personas)
    batch = _receive(r, packs="1")
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.update(StockBatch).where(StockBatch.id == batch.id).values(on_hand=-1))
        db.session.flush()
    db.session.rollback()
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.update(StockBatch).where(StockBatch.id == batch.id).values(allocated=2))
        db.session.flush()
    db.session.rollback()


def test_a_cancelled_prescription_gives_its_held_stock_back(ctx, personas):
    r = ready(personas)
    _receive(r, packs="4")
    prescription = sign_new(r, quantity="30")
    workflow.allocate(prescription, _pharmacy(r))
    assert inventory.level(r.pharmacy_id, r.products[FLOWER]).available == 1
    doctor = db.session.get(User, r.clinician_id)
    with acting_as(doctor.id, "clinician"):
        prescribing.cancel(prescription, doctor, "Patient asked to pause treatment")
    level = inventory.level(r.pharmacy_id, r.products[FLOWER])
    assert (level.available, level.allocated) == (4, 0)
    assert {a.status for a, _b in inventory.allocations_of(prescription)} == {"released"}


def test_concurrent_allocations_never_oversell_and_the_register_balances(app, personas):
    """Twelve pharmacists allocate twelve prescriptions of one pack at once against five packs: exactly five
    get stock, the rest are told it is short; then dispensing leaves a register balance equal to the stock."""
    with app.app_context():
        r = ready(personas, quota_g="1000")
        stock(r.pharmacy_id, {FLOWER: 5}, r.products)
        ids = [sign_new(r, quantity="10", days="10").id for _ in range(12)]
    barrier = threading.Barrier(len(ids), timeout=60)
    outcomes: dict[int, str] = {}

    def allocate(prescription_id: int) -> None:
        with app.app_context():
            prescription = prescribing.get(prescription_id)
            pharmacy = pharmacies.get(prescription.pharmacy_id)
            barrier.wait()
            try:
                workflow.allocate(prescription, pharmacy)
                outcomes[prescription_id] = "allocated"
            except workflow.WorkflowError as exc:
                outcomes[prescription_id] = "short" if "available" in str(exc) else f"other: {exc}"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=allocate, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes.values()) == ["allocated"] * 5 + ["short"] * 7, outcomes
    with app.app_context():
        level = inventory.level(r.pharmacy_id, r.products[FLOWER])
        assert (level.on_hand, level.allocated, level.available) == (5, 5, 0)
        pharmacy = pharmacies.get(r.pharmacy_id)
        for prescription_id in [i for i, outcome in outcomes.items() if outcome == "allocated"]:
            prescription = prescribing.get(prescription_id)
            prescribing.record_original_received(prescription, matches=True)
            workflow.verify(prescription, pharmacy)
            workflow.dispense(prescription, pharmacy)
        level = inventory.level(r.pharmacy_id, r.products[FLOWER])
        assert (level.on_hand, level.allocated) == (0, 0)
        assert inventory.register_balance(r.pharmacy_id, r.products[FLOWER]) == 0
        supplied = db.session.scalars(sa.select(CdRegisterEntry).where(CdRegisterEntry.kind == "supplied")
                                      .order_by(CdRegisterEntry.id)).all()
        assert [e.balance for e in supplied] == [4, 3, 2, 1, 0]
        assert db.session.scalar(sa.select(sa.func.min(StockBatch.on_hand))) >= 0
