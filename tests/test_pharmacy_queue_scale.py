"""The pharmacist's queue at scale: the page costs the same number of SQL statements whatever the number of
prescriptions on it, and it is paged (the htmx poll keeps the page being looked at)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import sqlalchemy as sa

from app.auth.models import Role, User
from app.extensions import db
from app.patients.models import Patient
from app.prescribing.models import Prescription, PrescriptionItem
from tests.conftest import sign_in_as
from tests.test_pharmacy_helpers import FLOWER, ready, sign_new, stock

# Queue states the copies cycle through, so every column of the page has rows.
STATES = ("signed", "transmitted", "received_by_pharmacy", "stock_allocated", "queried", "dispensed", "dispatched")


def _first(app, personas) -> int:
    with app.app_context():
        r = ready(personas)
        stock(r.pharmacy_id, {FLOWER: 10}, r.products)
        return sign_new(r).id


def _copies(app, prescription_id: int, count: int, *, start: int, base: dt.datetime | None = None) -> None:
    """`count` more prescriptions in the same pharmacy's queue, each for a patient of its own (test data,
    written directly: signing hundreds through the service would only slow the test down)."""
    columns = [c.key for c in sa.inspect(Prescription).column_attrs if c.key not in ("id", "public_id", "patient_id")]
    item_columns = [c.key for c in sa.inspect(PrescriptionItem).column_attrs if c.key not in ("id", "prescription_id")]
    with app.app_context():
        original = db.session.get(Prescription, prescription_id)
        model = db.session.get(Patient, original.patient_id)
        base = base or original.status_changed_at
        for n in range(start, start + count):
            user = User(email=f"queue{n}@example.test", password_hash="-", full_name=f"Queue Patient {n:03d}",
                        role=Role.PATIENT)
            db.session.add(user)
            db.session.flush()
            patient = Patient(user_id=user.id, date_of_birth=model.date_of_birth, pharmacy_id=model.pharmacy_id,
                              clinician_id=model.clinician_id)
            db.session.add(patient)
            db.session.flush()
            # Core inserts: the signed-record guard (rightly) refuses items added to a signed prescription.
            values = {k: getattr(original, k) for k in columns}
            values.update(public_id=uuid.uuid4().hex, patient_id=patient.id, status=STATES[n % len(STATES)],
                          status_changed_at=base - dt.timedelta(minutes=n + 1))
            copy_id = db.session.execute(sa.insert(Prescription).values(**values)
                                         .returning(Prescription.id)).scalar_one()
            for item in original.items:
                db.session.execute(sa.insert(PrescriptionItem).values(
                    prescription_id=copy_id, **{k: getattr(item, k) for k in item_columns}))
        db.session.commit()


def _statements(app, client, path: str, **headers) -> tuple[int, str]:
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = client.get(path, headers=headers)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert page.status_code == 200
    return len(seen), page.get_data(as_text=True)


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="nhsuk-table__row" data-prescription="([0-9a-f]+)"', html)


def test_the_queue_costs_the_same_statements_for_5_and_40_prescriptions(app, personas):
    first = _first(app, personas)
    _copies(app, first, 4, start=1)
    client = app.test_client()
    sign_in_as(client, personas["pharmacist"])
    client.get("/pharmacy")  # anything done once per session (not per page) is out of the way
    few, html = _statements(app, client, "/pharmacy")
    assert len(_rows(html)) == 5 and "Queue Patient 004" in html and "Alice Example" in html
    _copies(app, first, 35, start=5)
    many, html = _statements(app, client, "/pharmacy")
    assert len(_rows(html)) == 40 and "Queue Patient 039" in html
    polled, fragment = _statements(app, client, "/pharmacy", **{"HX-Request": "true"})
    assert len(_rows(fragment)) == 40
    assert many == few, f"{few} statements for 5 rows, {many} for 40"
    assert polled <= many


def test_the_queue_is_paged_newest_first_and_the_poll_keeps_the_page(app, personas):
    first = _first(app, personas)
    _copies(app, first, 59, start=1)  # 60 in all, the signed one newest
    client = app.test_client()
    sign_in_as(client, personas["pharmacist"])
    html = client.get("/pharmacy").get_data(as_text=True)
    rows = _rows(html)
    assert len(rows) == 50 and "Alice Example" in html  # the freshest work is on the first page
    assert 'href="/pharmacy?page=2"' in html and "Previous" not in html
    assert 'hx-get="/pharmacy"' in html or 'hx-get="/pharmacy?page=1"' in html
    second = client.get("/pharmacy?page=2").get_data(as_text=True)
    assert len(_rows(second)) == 10 and not set(_rows(second)) & set(rows)
    assert 'hx-get="/pharmacy?page=2"' in second and 'href="/pharmacy?page=1"' in second
    polled = client.get("/pharmacy?page=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in polled and set(_rows(polled)) == set(_rows(second))
    assert 'hx-get="/pharmacy?page=2"' in polled
    # Counts per column are the whole queue's, not the page's.
    assert "(60)" not in html and sum(int(n) for n in re.findall(r'<span class="nhsuk-body-s">\((\d+)\)', html)) == 60
    # A page past the end shows the last page; nonsense is the first page.
    assert set(_rows(client.get("/pharmacy?page=9").get_data(as_text=True))) == set(_rows(second))
    assert len(_rows(client.get("/pharmacy?page=x").get_data(as_text=True))) == 50
