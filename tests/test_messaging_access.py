"""A patient reaches their own conversations only: any other thread (another patient's, a staff-only pharmacy
query) is refused with 403 for reading, replying, attachments and polling, each refusal audited, and nothing
written."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.auth.models import User
from app.documents import services as documents
from app.extensions import db
from app.messaging import services as messaging
from app.messaging.models import Message
from app.patients import services as patients
from tests.conftest import csrf_from, sign_in_as
from tests.test_documents_files import pdf_bytes


@pytest.fixture
def threads(app, personas):
    """Bob's clinic thread (with an attachment) and a pharmacy query about Alice's prescription."""
    from tests.test_prescribing_helpers import prepare, sign_new

    with app.app_context():
        bob = personas["other_patient"]
        letter = documents.store_file(patient_id=bob.patient_id, kind="other", filename="bob.pdf",
                                      stream=io.BytesIO(pdf_bytes()), uploaded_by=bob.user_id)
        clinic = messaging.start_thread(patients.get(bob.patient_id), db.session.get(User, bob.user_id),
                                        "My results", "Private to Bob", [letter.id])
        prescription = sign_new(prepare(personas))
        query = messaging.open_prescription_query(prescription, db.session.get(User, personas["pharmacist"].user_id),
                                                  "Staff only: is the dose right?")
        return {"clinic": clinic.id, "query": query.id, "letter": letter.id}


def _last_entry(app) -> AuditEvent:
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        db.session.expunge(entry)
        return entry


def _message_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Message))


@pytest.mark.parametrize("which", ["clinic", "query"])
def test_a_patient_can_neither_read_nor_post_to_any_other_thread(app, client, personas, threads, which):
    alice = personas["patient"]
    thread_id = threads[which]
    sign_in_as(client, alice)
    token = csrf_from(client.get("/messages").get_data(as_text=True))
    before = _message_count(app)
    attempts = [
        ("GET", f"/messages/{thread_id}", {}),
        ("GET", f"/messages/{thread_id}?since=0", {"HX-Request": "true"}),
        ("POST", f"/messages/{thread_id}/reply", {}),
        ("GET", f"/messages/{thread_id}/attachments/{threads['letter']}", {}),
    ]
    for method, url, headers in attempts:
        data = {"csrf_token": token, "body": "Let me in"} if method == "POST" else None
        response = client.open(url, method=method, data=data, headers=headers)
        assert response.status_code == 403, (method, url)
        assert "You do not have access to this page" in response.get_data(as_text=True)
        entry = _last_entry(app)
        assert (entry.action, entry.actor_id, entry.subject_type, entry.subject_id) == (
            "access.denied", alice.user_id, "message_thread", str(thread_id)), url
    assert _message_count(app) == before, "nothing was written"
    listing = client.get("/messages").get_data(as_text=True)
    assert "My results" not in listing and "Staff only" not in listing


def test_staff_only_actions_are_refused_to_patients_even_on_their_own_thread(app, client, personas):
    alice = personas["patient"]
    with app.app_context():
        thread = messaging.start_thread(patients.get(alice.patient_id), db.session.get(User, alice.user_id),
                                        "Mine", "My own question")
        thread_id, message_id = thread.id, thread.messages[0].id
    sign_in_as(client, alice)
    token = csrf_from(client.get(f"/messages/{thread_id}").get_data(as_text=True))
    for url, data in ((f"/messages/{thread_id}/triage", {"status": "closed"}),
                      (f"/messages/{thread_id}/hide/{message_id}", {"reason": "I regret it"})):
        assert client.post(url, data={"csrf_token": token, **data}).status_code == 403
    with app.app_context():
        thread = messaging.get(thread_id)
        assert thread.status.value == "open" and not thread.messages[0].is_hidden
