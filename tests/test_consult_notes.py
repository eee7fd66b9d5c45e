"""Consultation notes: autosaved drafts, signing, and amendments as new immutable revisions."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.consult import services
from app.consult.models import NoteRevision, SignedNoteChanged
from app.extensions import db
from app.scheduling import services as scheduling
from tests.conftest import audit_actions, csrf_from, sign_in_as
from tests.test_consult import book_soon, user


@pytest.fixture
def soon(app, personas) -> int:
    return book_soon(app, personas)


def clinician_client(app, personas, who="clinician"):
    client = app.test_client()
    sign_in_as(client, personas[who])
    token = csrf_from(client.get("/dashboard").get_data(as_text=True))
    return client, {"X-CSRFToken": token, "HX-Request": "true"}


def test_autosave_updates_one_draft_revision_in_place(app, personas, soon):
    with app.app_context():
        appointment = scheduling.get(soon)
        first = services.save_draft(appointment, user(personas["clinician"]), "Pain 7/10")
        again = services.save_draft(appointment, user(personas["clinician"]), "Pain 7/10, sleeps badly")
        assert first.id == again.id and again.number == 1 and again.status == "draft"
        assert [r.text for r in services.revisions_of(services.note_of(appointment))] == ["Pain 7/10, sleeps badly"]


def test_signing_freezes_the_revision_and_later_changes_are_amendments_with_a_reason(app, personas, soon):
    with app.app_context():
        appointment = scheduling.get(soon)
        clinician = user(personas["clinician"])
        services.save_draft(appointment, clinician, "Pain 7/10")
        signed = services.finalise(appointment, clinician, "Pain 7/10. Plan: start low dose.")
        assert (signed.status, signed.signed_by, signed.number) == ("final", clinician.id, 1)
        with pytest.raises(services.ConsultError, match="signed"):
            services.save_draft(appointment, clinician, "overwrite")
        with pytest.raises(services.ConsultError, match="why"):
            services.amend(appointment, clinician, "Pain 6/10", "  ", based_on=1)
        amended = services.amend(appointment, clinician, "Pain 6/10. Plan: start low dose.", "Patient corrected score",
                                 based_on=1)
        with pytest.raises(services.ConsultError, match="someone else"):
            services.amend(appointment, clinician, "x", "stale page", based_on=1)
        revisions = services.revisions_of(services.note_of(appointment))
    assert [(r.number, r.status, r.reason) for r in revisions] == [
        (1, "final", None), (2, "final", "Patient corrected score")]
    assert revisions[0].text == "Pain 7/10. Plan: start low dose."
    assert amended.signed_at is not None
    actions = audit_actions(app)
    assert {"consult.note_started", "consult.note_signed", "consult.note_amended"} <= set(actions)


def test_a_signed_revision_cannot_be_changed_by_any_path(app, personas, soon):
    with app.app_context():
        appointment = scheduling.get(soon)
        services.finalise(appointment, user(personas["clinician"]), "Signed text")
        revision = db.session.scalars(sa.select(NoteRevision)).one()
        revision.text = "tampered"
        with pytest.raises(SignedNoteChanged):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.scalars(sa.select(NoteRevision)).one())
        with pytest.raises(SignedNoteChanged):
            db.session.flush()
        db.session.rollback()
        assert db.session.scalars(sa.select(NoteRevision.text)).one() == "Signed text"


def test_an_empty_note_cannot_be_signed(app, personas, soon):
    with app.app_context(), pytest.raises(services.ConsultError, match="Write the note"):
        services.finalise(scheduling.get(soon), user(personas["clinician"]), "   ")


def test_side_panel_note_autosaves_signs_and_amends_over_htmx(app, personas, soon):
    client, headers = clinician_client(app, personas)
    saved = client.post(f"/consult/{soon}/note", data={"text": "Discussed sleep."}, headers=headers)
    assert saved.status_code == 200 and "Draft saved at" in saved.get_data(as_text=True)
    signed = client.post(f"/consult/{soon}/note/sign", data={"text": "Discussed sleep and pain."}, headers=headers)
    html = signed.get_data(as_text=True)
    assert signed.status_code == 200 and "Note signed." in html and "Revision 1, signed" in html
    late = client.post(f"/consult/{soon}/note", data={"text": "sneaky"}, headers=headers)
    assert late.status_code == 409 and "amendment" in late.get_data(as_text=True)
    no_reason = client.post(f"/consult/{soon}/note/amend", data={"text": "More", "reason": "", "based_on": "1"},
                            headers=headers)
    assert no_reason.status_code == 400 and "Say why" in no_reason.get_data(as_text=True)
    amended = client.post(f"/consult/{soon}/note/amend",
                          data={"text": "Discussed sleep and pain. GP letter to follow.", "reason": "Added GP letter",
                                "based_on": "1"}, headers=headers)
    assert amended.status_code == 200 and "Revision 2, signed" in amended.get_data(as_text=True)
    record = client.get(f"/consult/patients/{personas['patient'].patient_id}/notes").get_data(as_text=True)
    assert "Revision 2 (current)" in record and "Reason for amendment: Added GP letter" in record
    assert "Revision 1" in record and "Discussed sleep and pain.</p>" in record


def test_note_endpoints_refuse_other_clinicians_and_empty_posts(app, personas, soon):
    other, headers = clinician_client(app, personas, "other_clinician")
    assert other.post(f"/consult/{soon}/note", data={"text": "x"}, headers=headers).status_code == 403
    assert other.get(f"/consult/patients/{personas['patient'].patient_id}/notes").status_code == 403
    mine, headers = clinician_client(app, personas)
    assert mine.post(f"/consult/{soon}/note", headers=headers).status_code == 400
    with app.app_context():
        assert services.note_of(scheduling.get(soon)) is None


def test_side_panel_fragments_show_the_patient_and_are_audited_reads(app, personas, soon):
    client, headers = clinician_client(app, personas)
    summary = client.get(f"/consult/{soon}/panel/summary", headers=headers).get_data(as_text=True)
    assert "Alice Example" in summary and "No treatment plan yet." in summary
    documents = client.get(f"/consult/{soon}/panel/documents", headers=headers)
    assert documents.status_code == 200 and "No documents." in documents.get_data(as_text=True)
    intake = client.get(f"/consult/{soon}/panel/intake", headers=headers).get_data(as_text=True)
    assert "has not answered the health questions" in intake
    with app.app_context():
        from app.audit.models import AuditEvent

        reads = sa.select(AuditEvent).where(AuditEvent.action == "record.read")
        sections = [e.detail for e in db.session.scalars(reads)]
    assert any("consultation summary" in s for s in sections) and any('"documents"' in s for s in sections)
