"""Notifications: one notice per event per person, in the portal in plain words, and by email or SMS only as
"there is something new" with a link; preferences; the list, the badge, and the migrated domain notices."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa

from app.auth.models import User
from app.extensions import db
from app.notifications import events, sms
from app.notifications import services as notifications
from app.notifications.models import Notification
from app.outbox.models import OutboxMessage
from app.patients import details
from app.patients import services as patients
from tests.conftest import audit_actions, csrf_from, sign_in_as

#: What the context of an event may hold that must never leave Verity.
CLINICAL = {
    "subject": "Verdant T22 Flower makes my chronic pain worse",
    "author": "Dr Priya Shah about your cannabis dose",
    "kind": "Letter from a rheumatologist about fibromyalgia",
    "note": "Please send the MRI report (lumbar disc prolapse)",
    "reason": "Dizziness and BP 150/95 after 0.1 g THC 22% flower",
    "carrier": "Royal Mail (cannabis oil 10:10)",
    "tracking": "THC22CBD05",
    "reference": "VERDANT-T22",
    "by": "Dr Shah re: Equilibria 10:10 Oil",
    "ahead": "24 hours",
    "channel": "email",
    "attempts": 12,
    "what": "Seizures reported after Verdant T22 Flower",
}
#: Logistics the appointment emails may carry (the calendar invitation carries them anyway).
LOGISTICS = {"when": "Monday 7 December 2026 at 09:30", "zone": "UK time", "clinician": "Dr Priya Shah",
             "until": "Friday 4 December 2026 at 17:00", "book_link": "http://localhost/appointments/book"}
CLINICAL_TERMS = ("Verdant", "T22", "Seizure", "chronic pain", "cannabis", "rheumatolog", "fibromyalgia", "MRI",
                  "lumbar", "Dizziness", "150/95", "0.1 g", "THC", "CBD", "10:10", "Equilibria", "Oil", "dose")


def _user(persona) -> User:
    return db.session.get(User, persona.user_id)


def _emails() -> list[OutboxMessage]:
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "email")
                                   .order_by(OutboxMessage.id)))


def _payload(message: OutboxMessage) -> dict:
    return json.loads(message.payload)


def _with_mobile(persona) -> None:
    details.update(patients.get(persona.patient_id), "booking",
                   {"address_line1": "14 Orchard Lane", "town": "Bristol", "postcode": "BS1 5TR",
                    "phone": "07700 900123"})


def test_a_notice_is_in_the_portal_in_plain_words_and_the_email_says_only_that_there_is_something_new(ctx, world):
    alice = world.patient("alice")
    notice = notifications.notify(alice.user_id, "prescription.dispatched", key="t:dispatched:1", link="/timeline",
                                  context={"carrier": "Royal Mail", "tracking": "AB123456785GB"})
    assert notice.title == "Your medicine is on its way"
    assert "Royal Mail" in notice.body and "AB123456785GB" in notice.body
    assert notice.read_at is None and notice.link == "/timeline"
    [email] = _emails()[1:]  # after the welcome email
    payload = _payload(email)
    assert email.idempotency_key == "t:dispatched:1" and notice.email_message_id == email.id
    assert payload["to"] == alice.email
    assert payload["subject"] == "There is an update in your Verity account"
    for part in (payload["text"], payload["html"]):
        assert "http://localhost/timeline" in part
        assert "Royal Mail" not in part and "AB123456785GB" not in part and "medicine" not in part


def test_the_same_key_twice_is_one_notice_and_one_email(ctx, world):
    alice = world.patient("alice")
    first = notifications.notify(alice.user_id, "prescription.issued", key="t:issued", link="/timeline")
    again = notifications.notify(alice.user_id, "prescription.issued", key="t:issued", link="/timeline")
    assert first.id == again.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 1
    assert [m.idempotency_key for m in _emails()].count("t:issued") == 1


def test_a_key_used_for_one_person_cannot_notify_another(ctx, world):
    alice, bob = world.patient("alice"), world.patient("bob")
    notifications.notify(alice.user_id, "prescription.issued", key="t:shared", link="/timeline")
    with pytest.raises(ValueError, match="another person"):
        notifications.notify(bob.user_id, "prescription.issued", key="t:shared", link="/timeline")


def test_unknown_events_and_links_outside_verity_are_refused(ctx, world):
    alice = world.patient("alice")
    with pytest.raises(ValueError, match="unknown notification event"):
        notifications.notify(alice.user_id, "prescription.teleported", key="t:1", link="/timeline")
    for link in ("https://evil.example.com/timeline", "//evil.example.com/x", "javascript:alert(1)", "timeline"):
        with pytest.raises(ValueError):
            notifications.notify(alice.user_id, "prescription.issued", key="t:2", link=link)
    # An absolute link under BASE_URL is kept as a path.
    notice = notifications.notify(alice.user_id, "prescription.issued", key="t:3",
                                  link="http://localhost/timeline?x=1")
    assert notice.link == "/timeline?x=1"


@pytest.mark.parametrize("event", sorted(name for name, spec in events.EVENTS.items() if spec.outgoing))
def test_no_email_or_sms_of_any_event_carries_its_clinical_context(ctx, world, event, caplog):
    from app.auth.models import Role

    for_staff = events.CATEGORIES[events.EVENTS[event].category][1] == "staff"
    person = world.staff(Role.CLINICIAN) if for_staff else world.patient("alice")
    user = _user(person)
    if not for_staff:
        _with_mobile(person)
    notifications.save_preferences(user, [(c, ch) for c, _ in events.categories_for(user.is_staff)
                                          for ch in ("email", "sms")])
    # Alembic's fileConfig (run by the migrations that made the test database) disables existing loggers.
    logging.getLogger("app.notifications.sms").disabled = False
    caplog.set_level(logging.INFO, logger="app.notifications.sms")
    notice = notifications.notify(user, event, key=f"leak:{event}", link="/timeline",
                                  context={**CLINICAL, **LOGISTICS})
    email = _payload(db.session.get(OutboxMessage, notice.email_message_id))
    outgoing = [email["subject"], email["text"], email["html"]]
    if not for_staff:
        outgoing.append(_payload(db.session.get(OutboxMessage, notice.sms_message_id))["text"])
    for part in outgoing:
        for term in CLINICAL_TERMS:
            assert term.lower() not in part.lower(), f"{term!r} left Verity in {event}"
    assert "http://localhost/" in email["text"], "the email links into Verity"
    spec = events.EVENTS[event]
    if "{{" in spec.title + spec.body:
        assert any(str(value) in notice.title + notice.body for value in {**CLINICAL, **LOGISTICS}.values()), \
            "the portal copy is made from the same context"
    if for_staff:
        assert notice.sms_message_id is None, "staff accounts have no mobile number"
        return
    assert "http://localhost/timeline" in outgoing[-1]
    # The SMS goes through the log-only adapter: the number masked, no text in the log.
    from app.worker import run_cycle

    run_cycle()
    logged = [r for r in caplog.records if r.name == "app.notifications.sms"]
    assert logged and all("900123" not in str(r.__dict__) for r in logged)
    assert logged[-1].to == sms.mask("+447700900123") == "•••••••••123"
    assert sms.adapter().sent[-1] == ("•••••••••123", outgoing[-1])


def test_the_portal_copy_may_say_what_it_is_about(ctx, world):
    alice = world.patient("alice")
    notice = notifications.notify(alice.user_id, "prescription.cancelled", key="t:cancelled", link="/timeline",
                                  context={"reason": "Replaced after your call with Dr Shah"})
    assert notice.title == "Your prescription was cancelled" and "Dr Shah" in notice.body
    assert notice.safety_critical


def test_email_off_keeps_the_portal_notice_and_sends_no_email(ctx, world):
    alice = world.patient("alice")
    notifications.save_preferences(_user(alice), [("appointments", "email")])  # prescriptions: email off
    notice = notifications.notify(alice.user_id, "prescription.issued", key="t:off", link="/timeline")
    assert notice.id and notice.email_message_id is None and notice.sms_message_id is None
    assert "notification.preferences_changed" in audit_actions(ctx)


def test_safety_critical_notices_are_emailed_whatever_the_person_chose(ctx, world):
    alice = world.patient("alice")
    notifications.save_preferences(_user(alice), [])  # everything off
    critical = notifications.notify(alice.user_id, "prescription.expired", key="t:expired", link="/timeline")
    flagged = notifications.notify(alice.user_id, "prescription.issued", key="t:flagged", link="/timeline",
                                   safety_critical=True)
    ordinary = notifications.notify(alice.user_id, "prescription.issued", key="t:ordinary", link="/timeline")
    assert critical.email_message_id and flagged.email_message_id
    assert ordinary.email_message_id is None


def test_sms_needs_the_choice_and_a_mobile_number(ctx, world):
    alice, bob = world.patient("alice"), world.patient("bob")
    _with_mobile(alice)
    for persona in (alice, bob):
        notifications.save_preferences(_user(persona), [("prescriptions", "sms")])
    with_number = notifications.notify(alice.user_id, "prescription.issued", key="t:sms:a", link="/timeline")
    without = notifications.notify(bob.user_id, "prescription.issued", key="t:sms:b", link="/timeline")
    message = db.session.get(OutboxMessage, with_number.sms_message_id)
    assert message.kind == "sms" and message.idempotency_key == "t:sms:a:sms"
    assert _payload(message)["to"] == "+447700900123"
    assert without.sms_message_id is None
    default = notifications.notify(alice.user_id, "booking.reminder", key="t:sms:c", link="/timeline",
                                   context={**LOGISTICS, "ahead": "1 hour"})
    assert default.sms_message_id is None, "SMS is off by default"


def test_staff_alert_events_stay_in_the_portal(ctx, world):
    from app.auth.models import Role

    reception = world.staff(Role.RECEPTION)
    notice = notifications.notify(reception.user_id, "staff.delivery_failed", key="t:staff", link="/staff/messages",
                                  context={"channel": "email", "attempts": 12})
    assert notice.title == "An email could not be delivered" and notice.email_message_id is None


# The pages ------------------------------------------------------------------------------------

def test_the_badge_counts_unread_and_opening_a_notice_marks_it_read_and_follows_its_link(app, client, world):
    alice = world.patient("alice")
    with app.app_context():
        first = notifications.notify(alice.user_id, "prescription.issued", key="p:1", link="/timeline").id
        notifications.notify(alice.user_id, "prescription.with_pharmacy", key="p:2", link="/timeline")
    sign_in_as(client, alice)
    badge = client.get("/notifications/badge").get_data(as_text=True)
    assert '<strong class="nhsuk-tag nhsuk-tag--yellow" id="unread-count">2' in badge
    page = client.get("/notifications").get_data(as_text=True)
    assert "Your prescription has been issued" in page and "Your prescription is with the pharmacy" in page
    assert "You have 2 unread." in page
    opened = client.get(f"/notifications/{first}/open")
    assert opened.status_code == 302 and opened.headers["Location"] == "/timeline"
    assert 'id="unread-count">1' in client.get("/notifications/badge").get_data(as_text=True)
    token = csrf_from(page)
    done = client.post("/notifications/read", data={"csrf_token": token, "all": "1"})
    assert done.status_code == 302
    assert "unread-count" not in client.get("/notifications/badge").get_data(as_text=True)


def test_a_notice_of_someone_else_is_refused_and_the_refusal_audited(app, client, world):
    alice, bob = world.patient("alice"), world.patient("bob")
    with app.app_context():
        notice = notifications.notify(alice.user_id, "prescription.issued", key="p:alice", link="/timeline").id
    sign_in_as(client, bob)
    assert client.get(f"/notifications/{notice}/open").status_code == 403
    assert audit_actions(app)[-1] == "access.denied"
    with app.app_context():
        assert notifications.get(notice).read_at is None


def test_a_notice_body_with_markup_is_shown_as_text(app, client, world):
    alice = world.patient("alice")
    with app.app_context():
        notifications.notify(alice.user_id, "message.new", key="p:xss", link="/messages",
                             context={"subject": "<script>alert(1)</script>", "author": "<b>you</b>"})
    sign_in_as(client, alice)
    page = client.get("/notifications").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_staff_preferences_name_the_urgent_patient_reports_that_always_come_by_email(app, client, world):
    from app.auth.models import Role

    clinician = world.staff(Role.CLINICIAN)
    sign_in_as(client, clinician)
    page = client.get("/notifications/preferences").get_data(as_text=True)
    assert "A patient report that needs you urgently" in page
    assert 'id="work-email"' in page and 'id="appointments-email"' not in page
    assert "Text messages are for patients only." in page


def test_preferences_page_saves_choices_and_names_what_always_comes_by_email(app, client, world):
    alice = world.patient("alice")
    sign_in_as(client, alice)
    page = client.get("/notifications/preferences").get_data(as_text=True)
    assert "Your prescription was cancelled" in page, "safety-critical notices are listed"
    assert 'id="prescriptions-sms"' in page and "disabled" in page, "no mobile number yet: SMS cannot be chosen"
    saved = client.post("/notifications/preferences", data={"csrf_token": csrf_from(page),
                                                             "on": ["appointments:email", "messages:email",
                                                                    "nonsense:pigeon"]})
    assert saved.status_code == 302
    with app.app_context():
        prefs = notifications.preferences_of(db.session.get(User, alice.user_id))
        assert prefs.on("appointments", "email") and prefs.on("messages", "email")
        assert not prefs.on("prescriptions", "email") and not prefs.on("account", "email")


# The domains' notices -------------------------------------------------------------------------

def test_a_document_request_names_the_document_in_the_portal_only(ctx, personas):
    from app.documents import services as documents

    patient = personas["patient"]
    request = documents.request_document(patient_id=patient.patient_id, kind="specialist_letter",
                                         note="The rheumatology letter from 2023", requested_by=personas[
                                             "clinician"].user_id)
    notice = db.session.scalar(sa.select(Notification).where(Notification.key == f"document-request:{request.id}"))
    assert notice.title == "The clinic has asked you for a document" and "rheumatology" in notice.body
    payload = _payload(db.session.get(OutboxMessage, notice.email_message_id))
    assert "rheumatology" not in json.dumps(payload) and "Letter from a specialist" not in json.dumps(payload)
    assert "http://localhost/documents" in payload["text"]


def test_identity_decisions_reach_the_patient(app, world):
    from app.auth.models import Role
    from app.identity import services as identity
    from tests.test_identity import intake_done, submit_check

    alice = world.patient("alice")
    reception = world.staff(Role.RECEPTION)
    intake_done(app, alice)
    first = submit_check(app, alice)
    with app.app_context():
        identity.staff_decision(identity.get(first), _user(reception), approved=False, reason_code="photo_unclear")
        rejected = db.session.scalar(sa.select(Notification).where(Notification.key == f"identity:{first}:rejected"))
        assert rejected.title == "We could not confirm your identity" and "good light" in rejected.body
        email = _payload(db.session.get(OutboxMessage, rejected.email_message_id))
        assert email["subject"] == "Your identity check needs your attention" and "good light" not in email["text"]
    second = submit_check(app, alice, seed=7)
    with app.app_context():
        identity.staff_decision(identity.get(second), _user(reception), approved=True)
        approved = db.session.scalar(sa.select(Notification).where(Notification.key == f"identity:{second}:approved"))
        assert approved.title == "Your identity is confirmed" and approved.link == "/identity"
