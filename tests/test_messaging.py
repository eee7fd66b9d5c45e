"""Secure messaging: a patient's question reaches the front desk's inbox with the patient's state beside it,
replies come back with read receipts, bad input gets a clear answer and loses nothing, nothing is ever
deleted, and pharmacy queries stay between the prescription's parties."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.auth.models import User
from app.documents import services as documents
from app.extensions import db
from app.messaging import services as messaging
from app.messaging.models import Message, Thread, ThreadStatus
from app.notifications.models import Notification
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from tests.conftest import audit_actions, csrf_from, sign_in_as
from tests.test_documents_files import pdf_bytes


def _token(client, url: str = "/messages/new") -> str:
    return csrf_from(client.get(url).get_data(as_text=True))


def _ask(client, subject: str = "Where is my medication?", body: str = "It has been a week.", **extra):
    return client.post("/messages/new", data={"csrf_token": _token(client), "subject": subject, "body": body,
                                              **extra}, content_type="multipart/form-data")


def _thread_id(response) -> int:
    return int(re.search(r"/messages/(\d+)", response.headers["Location"]).group(1))


def _reply(client, thread_id: int, body: str, **extra):
    token = _token(client, f"/messages/{thread_id}")
    return client.post(f"/messages/{thread_id}/reply", data={"csrf_token": token, "body": body, **extra},
                       content_type="multipart/form-data")


def _messages(app, thread_id: int) -> list[Message]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Message).where(Message.thread_id == thread_id).order_by(Message.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def test_a_question_reaches_the_team_inbox_and_the_answer_comes_back_with_receipts(app, personas):
    patient, reception = app.test_client(), app.test_client()
    sign_in_as(patient, personas["patient"])
    sign_in_as(reception, personas["reception"])
    asked = _ask(patient)
    assert asked.status_code == 302
    thread_id = _thread_id(asked)

    inbox = reception.get("/staff/messages").get_data(as_text=True)
    row = inbox[inbox.index(f'data-thread="{thread_id}"'):]
    assert "Alice Example: Where is my medication?" in row and "It has been a week." in row
    assert "Account created" in row, "the patient's journey stage beside the thread"
    assert "Unassigned" in row

    page = reception.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert 'id="patient-glance"' in page and "None live" in page
    answered = _reply(reception, thread_id, "Hello Alice,\nit left the pharmacy today.")
    assert answered.status_code == 302
    with app.app_context():
        thread = messaging.get(thread_id)
        assert thread.status is ThreadStatus.WAITING_ON_PATIENT and thread.waiting_since is None
        notice = db.session.scalar(sa.select(Notification).where(Notification.user_id == personas["patient"].user_id,
                                                                  Notification.event == "message.new"))
        assert notice.title == "New message: Where is my medication?" and notice.link == f"/messages/{thread_id}"
        email = json.loads(db.session.get(OutboxMessage, notice.email_message_id).payload)
        assert email["subject"] == "You have a new message in your Verity account"
        assert "pharmacy" not in email["text"] and "Where is my medication" not in email["text"]

    # The patient has one unread message; reading it is a receipt the clinic sees.
    listing = patient.get("/messages").get_data(as_text=True)
    assert "1 new" in listing
    read = patient.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert "Hello Alice,<br>it left the pharmacy today." in read
    assert "Read by the clinic" in read, "the patient sees the clinic read their question"
    assert "1 new" not in patient.get("/messages").get_data(as_text=True)
    staff_view = reception.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert "Read by the patient" in staff_view
    assert "message.posted" in audit_actions(app) and "message.thread_read" in audit_actions(app)


def test_markup_in_a_message_is_shown_as_text_never_run(app, client, personas):
    sign_in_as(client, personas["patient"])
    thread_id = _thread_id(_ask(client, subject="<img src=x onerror=alert(1)>",
                                body="<script>alert('x')</script>\n<b>bold</b>"))
    page = client.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert "<script>alert('x')</script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;<br>&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_message_over_5000_characters_is_refused_with_its_length_and_kept_in_the_form(app, client, personas):
    sign_in_as(client, personas["patient"])
    long_text = "Where is it? " * 400  # 5,200 characters
    refused = _ask(client, body=long_text)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "Your message is 5,199 characters long. The limit is 5,000" in page
    assert long_text.strip()[:200] in page, "what the patient wrote is still there"
    assert 'value="Where is my medication?"' in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Thread)) == 0
    empty = _ask(client, body="   \n  ")
    assert empty.status_code == 400 and "Write your message." in empty.get_data(as_text=True)


def test_an_attachment_is_stored_by_the_documents_domain_and_only_the_parties_open_it(app, personas):
    patient = app.test_client()
    sign_in_as(patient, personas["patient"])
    sent = _ask(patient, file=(io.BytesIO(pdf_bytes()), "letter.pdf"))
    assert sent.status_code == 302
    thread_id = _thread_id(sent)
    with app.app_context():
        [document] = documents.documents_of(personas["patient"].patient_id)
        assert document.kind.value == "other" and document.original_filename == "letter.pdf"
        document_id = document.id
    url = f"/messages/{thread_id}/attachments/{document_id}"
    assert url in patient.get(f"/messages/{thread_id}").get_data(as_text=True)
    opened = patient.get(url)
    assert opened.status_code == 200 and opened.data.startswith(b"%PDF")
    assert opened.headers["Content-Disposition"].startswith("attachment;")
    for who, status in (("reception", 200), ("clinician", 200), ("other_patient", 403), ("pharmacist", 403)):
        client = app.test_client()
        sign_in_as(client, personas[who])
        assert client.get(url).status_code == status, who


def test_an_attachment_that_fails_the_checks_is_refused_and_the_message_kept(app, client, personas):
    sign_in_as(client, personas["patient"])
    refused = _ask(client, body="Here is the letter.", file=(io.BytesIO(b"MZ\x90\x00 not a document"), "letter.exe"))
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'id="file-error"' in page and "Here is the letter." in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Thread)) == 0
        assert documents.documents_of(personas["patient"].patient_id) == []


def test_another_patients_document_cannot_be_attached(app, client, personas):
    with app.app_context():
        theirs = documents.store_file(patient_id=personas["other_patient"].patient_id, kind="other",
                                      filename="bob.pdf", stream=io.BytesIO(pdf_bytes()),
                                      uploaded_by=personas["other_patient"].user_id).id
    sign_in_as(client, personas["patient"])
    refused = _ask(client, documents=str(theirs))
    assert refused.status_code == 400
    assert "not in this patient&#39;s documents" in refused.get_data(as_text=True)


def test_a_hidden_message_leaves_the_patients_view_but_stays_in_the_record(app, personas):
    patient, reception = app.test_client(), app.test_client()
    sign_in_as(patient, personas["patient"])
    sign_in_as(reception, personas["reception"])
    thread_id = _thread_id(_ask(patient, body="My card number is 4111 1111 1111 1111"))
    [message] = _messages(app, thread_id)
    token = _token(reception, f"/messages/{thread_id}")
    refused = reception.post(f"/messages/{thread_id}/hide/{message.id}", data={"csrf_token": token, "reason": " "})
    assert refused.status_code == 400 and "Say why this message should be hidden" in refused.get_data(as_text=True)
    hidden = reception.post(f"/messages/{thread_id}/hide/{message.id}",
                            data={"csrf_token": token, "reason": "Card number sent by mistake"})
    assert hidden.status_code == 302
    assert "4111" not in patient.get(f"/messages/{thread_id}").get_data(as_text=True)
    staff_view = reception.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert "Hidden from the patient" in staff_view and "Card number sent by mistake" in staff_view
    [kept] = _messages(app, thread_id)
    assert kept.body.startswith("My card number") and kept.hidden_reason == "Card number sent by mistake"
    assert "message.hidden" in audit_actions(app)


def test_the_inbox_puts_the_longest_wait_first_and_assignment_hands_it_to_a_clinician(app, personas):
    with app.app_context():
        older = messaging.start_thread(patients.get(personas["patient"].patient_id),
                                       db.session.get(User, personas["patient"].user_id), "First", "Older question")
        newer = messaging.start_thread(patients.get(personas["other_patient"].patient_id),
                                       db.session.get(User, personas["other_patient"].user_id), "Second", "Newer")
        with db.session.begin():
            older.waiting_since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
        older_id, newer_id = older.id, newer.id
    reception, clinician = app.test_client(), app.test_client()
    sign_in_as(reception, personas["reception"])
    sign_in_as(clinician, personas["clinician"])
    inbox = reception.get("/staff/messages").get_data(as_text=True)
    assert inbox.index(f'data-thread="{older_id}"') < inbox.index(f'data-thread="{newer_id}"')
    assert "5 h" in inbox

    token = _token(reception, f"/messages/{older_id}")
    moved = reception.post(f"/messages/{older_id}/triage",
                           data={"csrf_token": token, "assignee": str(personas["clinician"].user_id),
                                 "status": "open"})
    assert moved.status_code == 302
    assert f'data-thread="{older_id}"' not in reception.get("/staff/messages").get_data(as_text=True)
    assert f'data-thread="{older_id}"' in reception.get("/staff/messages?view=assigned").get_data(as_text=True)
    mine = clinician.get("/staff/messages?view=mine").get_data(as_text=True)
    assert f'data-thread="{older_id}"' in mine and f'data-thread="{newer_id}"' not in mine
    with app.app_context():
        told = db.session.scalar(sa.select(Notification).where(Notification.event == "message.assigned"))
        assert told.user_id == personas["clinician"].user_id
    # The other clinician's patient's thread: not theirs to open.
    assert clinician.get(f"/messages/{newer_id}").status_code == 403


def test_closing_and_the_patient_writing_again_reopens_it(app, personas):
    patient, reception = app.test_client(), app.test_client()
    sign_in_as(patient, personas["patient"])
    sign_in_as(reception, personas["reception"])
    thread_id = _thread_id(_ask(patient))
    assert _reply(reception, thread_id, "It arrives tomorrow.", after="closed").status_code == 302
    with app.app_context():
        assert messaging.get(thread_id).status is ThreadStatus.CLOSED
    assert _reply(patient, thread_id, "It did not arrive.").status_code == 302
    with app.app_context():
        thread = messaging.get(thread_id)
        assert thread.status is ThreadStatus.OPEN and thread.waiting_since is not None


def test_a_saved_response_fills_the_reply_with_the_patients_first_name(app, personas):
    admin, reception, patient = app.test_client(), app.test_client(), app.test_client()
    sign_in_as(admin, personas["admin"])
    sign_in_as(reception, personas["reception"])
    sign_in_as(patient, personas["patient"])
    token = _token(admin, "/admin/saved-responses/new")
    made = admin.post("/admin/saved-responses/new", data={"csrf_token": token, "title": "Dispatched",
                                                          "body": "Hello {first_name}, your parcel is on its way.",
                                                          "active": "y"})
    assert made.status_code == 302
    duplicate = admin.post("/admin/saved-responses/new", data={"csrf_token": token, "title": "dispatched",
                                                               "body": "x", "active": "y"})
    assert duplicate.status_code == 400 and "already a saved response" in duplicate.get_data(as_text=True)
    thread_id = _thread_id(_ask(patient))
    with app.app_context():
        saved_id = messaging.saved_responses()[0].id
    page = reception.get(f"/messages/{thread_id}?response={saved_id}").get_data(as_text=True)
    assert ">Hello Alice, your parcel is on its way.</textarea>" in page
    assert "Start from a saved response" not in patient.get(f"/messages/{thread_id}").get_data(as_text=True)


# Pharmacy queries --------------------------------------------------------------------------------

@pytest.fixture
def query(app, personas):
    """A pharmacist's query about a signed prescription of the patient (through the service the pharmacy calls)."""
    from tests.test_prescribing_helpers import prepare, sign_new

    with app.app_context():
        prescription = sign_new(prepare(personas))
        pharmacist = db.session.get(User, personas["pharmacist"].user_id)
        thread = messaging.open_prescription_query(prescription, pharmacist,
                                                   "We hold the 10 g pack only: may we supply 3 x 10 g?")
        return thread.id, prescription.id


def test_a_pharmacy_query_reaches_the_prescriber_and_the_answer_the_pharmacy(app, personas, query):
    thread_id, _ = query
    with app.app_context():
        told = db.session.scalar(sa.select(Notification).where(Notification.event == "message.new"))
        assert told.user_id == personas["clinician"].user_id
    clinician = app.test_client()
    sign_in_as(clinician, personas["clinician"])
    queries = clinician.get("/staff/messages?view=queries").get_data(as_text=True)
    assert f'data-thread="{thread_id}"' in queries
    assert _reply(clinician, thread_id, "Yes, 3 x 10 g is fine.").status_code == 302
    with app.app_context():
        answered = db.session.scalars(sa.select(Notification.user_id).where(
            Notification.event == "message.new", Notification.key.like(f"message:%:{personas['pharmacist'].user_id}")))
        assert list(answered) == [personas["pharmacist"].user_id]
    pharmacist = app.test_client()
    sign_in_as(pharmacist, personas["pharmacist"])
    assert "Yes, 3 x 10 g is fine." in pharmacist.get(f"/messages/{thread_id}").get_data(as_text=True)


def test_a_query_can_be_raised_only_by_the_prescriptions_pharmacy_or_prescriber(app, personas, query):
    _, prescription_id = query
    with app.app_context():
        from app.prescribing import services as prescribing

        prescription = prescribing.get(prescription_id)
        for outsider in ("other_pharmacist", "other_clinician", "reception"):
            with pytest.raises(messaging.MessagingError):
                messaging.open_prescription_query(prescription, db.session.get(User, personas[outsider].user_id), "?")
    pharmacist = app.test_client()
    sign_in_as(pharmacist, personas["pharmacist"])
    token = _token(pharmacist, f"/prescriptions/{prescription_id}/query")
    sent = pharmacist.post(f"/prescriptions/{prescription_id}/query", data={"csrf_token": token,
                                                                          "body": "Is the dose right?"})
    assert sent.status_code == 302


def test_nobody_outside_a_pharmacy_query_reads_it_and_each_refusal_is_audited(app, personas, query):
    thread_id, _ = query
    for who in ("patient", "other_patient", "reception", "admin", "other_pharmacist", "other_clinician"):
        client = app.test_client()
        sign_in_as(client, personas[who])
        assert client.get(f"/messages/{thread_id}").status_code == 403, who
        with app.app_context():
            entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
            assert (entry.action, entry.actor_id, entry.subject_type, entry.subject_id) == (
                "access.denied", personas[who].user_id, "message_thread", str(thread_id)), who


def test_a_pharmacist_cannot_pull_the_patients_documents_into_a_query(app, personas, query):
    thread_id, _ = query
    with app.app_context():
        letter = documents.store_file(patient_id=personas["patient"].patient_id, kind="specialist_letter",
                                      filename="letter.pdf", stream=io.BytesIO(pdf_bytes()),
                                      uploaded_by=personas["patient"].user_id).id
    before = len(_messages(app, thread_id))
    pharmacist = app.test_client()
    sign_in_as(pharmacist, personas["pharmacist"])
    page = pharmacist.get(f"/messages/{thread_id}").get_data(as_text=True)
    assert 'name="documents"' not in page and 'name="file"' not in page
    refused = _reply(pharmacist, thread_id, "See the letter", documents=str(letter))
    assert refused.status_code == 400 and "record you can open" in refused.get_data(as_text=True)
    assert len(_messages(app, thread_id)) == before
    assert pharmacist.get(f"/messages/{thread_id}/attachments/{letter}").status_code == 404
