"""The audit trail: hash chain, append-only in the database, tamper detection, the admin view."""

from __future__ import annotations

import itertools
import re
import threading

import pytest
import sqlalchemy as sa

from app.audit import context
from app.audit import services as audit
from app.audit.models import AuditEvent
from app.extensions import db
from tests.conftest import sign_in_as


def _entries(n: int) -> None:
    for i in range(n):
        audit.record("test.event", subject=("thing", i), detail={"i": i, "note": "é"})


def test_entries_chain_and_verify(ctx):
    _entries(5)
    rows = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert audit.verify_chain() == audit.VerifyResult(True, 5)


def test_entry_records_who_and_from_where(ctx):
    token = context.bind(context.Actor(user_id=42, role="clinician", ip="203.0.113.9", user_agent="UA/1"))
    try:
        event = audit.record("record.read", subject=("patient", 7), patient_id=7, detail={"section": "notes"})
    finally:
        context.reset(token)
    stored = db.session.get(AuditEvent, event.seq)
    assert (stored.actor_id, stored.actor_role) == (42, "clinician")
    assert (stored.ip, stored.user_agent) == ("203.0.113.9", "UA/1")
    assert (stored.subject_type, stored.subject_id, stored.patient_id) == ("patient", "7", 7)
    assert stored.at.tzinfo is not None


def test_database_refuses_update(ctx):
    _entries(2)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(sa.text("UPDATE audit_events SET action = 'forged' WHERE seq = 1"))
        db.session.commit()
    db.session.rollback()
    assert db.session.get(AuditEvent, 1).action == "test.event"


def test_database_refuses_delete(ctx):
    _entries(2)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(sa.text("DELETE FROM audit_events WHERE seq = 2"))
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 2


def _behind_the_databases_back(statement: str) -> None:
    """Change rows the way an attacker with the database owner's access would: triggers off."""
    db.session.rollback()  # end the test's own read snapshot (and release its table locks)
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            conn.execute(sa.text(statement))
            for name in ("audit_events_no_update", "audit_events_no_delete", "audit_events_no_truncate"):
                conn.execute(sa.text(f"ALTER TABLE audit_events ENABLE ALWAYS TRIGGER {name}"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))
            conn.execute(sa.text(statement))


def test_tampered_entry_is_named(ctx):
    _entries(6)
    _behind_the_databases_back("UPDATE audit_events SET detail = 'altered' WHERE seq = 4")
    result = audit.verify_chain()
    assert not result.ok
    assert result.bad_seq == 4
    assert result.checked == 3
    assert "content" in result.reason


def test_rehashed_entry_breaks_the_next_link(ctx):
    """An attacker who also recomputes the edited entry's hash is caught at the next entry."""
    _entries(4)
    row = db.session.get(AuditEvent, 2)
    forged_hash = audit.entry_hash(row.prev_hash, row.seq, row.at, row.actor_id, row.actor_role, "forged",
                                   row.subject_type, row.subject_id, row.patient_id, row.ip, row.user_agent,
                                   row.detail)
    _behind_the_databases_back(
        f"UPDATE audit_events SET action = 'forged', hash = '{forged_hash}' WHERE seq = 2")  # noqa: S608 (a hex digest)
    result = audit.verify_chain()
    assert (result.ok, result.bad_seq) == (False, 3)


def test_removed_entry_is_named(ctx):
    _entries(5)
    _behind_the_databases_back("DELETE FROM audit_events WHERE seq = 3")
    result = audit.verify_chain()
    assert (result.ok, result.bad_seq) == (False, 3)
    assert "missing" in result.reason


def test_removed_tail_is_caught_by_the_head(ctx):
    _entries(5)
    _behind_the_databases_back("DELETE FROM audit_events WHERE seq >= 4")
    result = audit.verify_chain()
    assert not result.ok
    assert result.checked == 3


def test_cli_verify_exit_codes(app):
    runner = app.test_cli_runner()
    with app.app_context():
        _entries(3)
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0
    assert "3 entries checked" in ok.output
    with app.app_context():
        _behind_the_databases_back("UPDATE audit_events SET ip = '198.51.100.1' WHERE seq = 2")
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert "entry 2" in broken.output


def test_concurrent_writers_never_fork_the_chain(app):
    """Appends from many threads at once (real connections) still form one unbroken chain."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                for i in range(10):
                    audit.record("test.concurrent", detail={"writer": n, "i": i})
                db.session.remove()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with app.app_context():
        assert audit.verify_chain() == audit.VerifyResult(True, 80)


def _rows(html: str, action: str) -> int:
    return html.count(f"Action </span>{action}</td>")


def test_admin_audit_view_filters_and_pages(app, client, personas):
    with app.app_context():
        for i in range(60):
            audit.record("test.paging", patient_id=personas["patient"].patient_id, detail={"i": i})
    sign_in_as(client, personas["admin"])
    page = client.get("/admin/audit?action=test.paging").get_data(as_text=True)
    assert _rows(page, "test.paging") == 50
    assert "Show older entries" in page
    # htmx asks for the next page: a fragment of rows, not a whole page
    oldest_shown = min(int(s) for s in re.findall(r"# </span>(\d+)</td>", page))
    more = client.get(f"/admin/audit?action=test.paging&before={oldest_shown}", headers={"HX-Request": "true"})
    fragment = more.get_data(as_text=True)
    assert "<html" not in fragment
    assert _rows(fragment, "test.paging") == 10
    by_patient = client.get(f"/admin/audit?patient={personas['other_patient'].patient_id}").get_data(as_text=True)
    assert _rows(by_patient, "test.paging") == 0
    assert _rows(by_patient, "patient.registered") == 1
    with app.app_context():
        audit.record("test.by_admin", actor=context.Actor(user_id=personas["admin"].user_id, role="admin"))
    by_person = client.get(f"/admin/audit?person={personas['admin'].email}").get_data(as_text=True)
    assert _rows(by_person, "test.by_admin") == 1
    assert _rows(by_person, "test.paging") == 0
    bad = client.get("/admin/audit?date_from=not-a-date")
    assert bad.status_code == 400
