"""Notification emails over a real SMTP server: an outage delays them but loses and duplicates none, their
bodies carry nothing of the events behind them, and what the outbox gives up on reaches the front desk."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.auth.models import User
from app.extensions import db
from app.messaging import services as messaging
from app.notifications import services as notifications
from app.notifications.models import DeliveryAlert, Notification
from app.outbox.models import DEAD, DELIVERED, PENDING, OutboxMessage
from app.patients import services as patients
from app.prescribing import plans, states
from app.prescribing import services as prescribing
from app.worker import run_cycle
from tests.conftest import audit_actions, csrf_from, sign_in_as
from tests.smtp import SMTPServer, free_port
from tests.test_prescribing_helpers import acting_as, prepare, sign_new

SMTP_PORT = free_port()
S = states.State


@pytest.fixture
def app_config():
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": SMTP_PORT, "OUTBOX_MAX_ATTEMPTS": 3}


def _make_due() -> None:
    """Time passes: every retry's backoff is over (the tests' only write to the outbox's table)."""
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.status == PENDING)
                       .values(next_attempt_at=dt.datetime.now(dt.UTC)))
    db.session.commit()


def _emails(status: str | None = None) -> list[OutboxMessage]:
    query = sa.select(OutboxMessage).where(OutboxMessage.kind == "email").order_by(OutboxMessage.id)
    if status:
        query = query.where(OutboxMessage.status == status)
    return list(db.session.scalars(query))


def _body(message) -> str:
    return message["Subject"] + message.get_body(("plain",)).get_content() + message.get_body(("html",)).get_content()


def test_an_smtp_outage_delays_every_email_but_loses_and_duplicates_none(ctx, personas):
    server = SMTPServer(SMTP_PORT).start()
    try:
        ready = prepare(personas)
        prescription = sign_new(ready)
        run_cycle()  # the patient's "issued" email, the pharmacy's message, then "with the pharmacy"
        before = len(server.messages)
        assert before >= 2
    finally:
        server.stop()

    # The mail server goes down; the day goes on.
    patient, doctor = patients.get(ready.patient_id), db.session.get(User, ready.clinician_id)
    reason = "Dizziness and low blood pressure after the first week on Verdant T22 Flower"
    with acting_as(personas["pharmacist"].user_id, "pharmacist"):
        states.apply(prescription, S.RECEIVED, actor_role="pharmacy")
        states.apply(prescription, S.OUT_OF_STOCK, actor_role="pharmacy")
    prescribing.cancel(prescription, doctor, reason)
    with acting_as(patient.user_id, "patient"):
        thread = messaging.start_thread(patient, patients.user_of(patient), "My medication",
                                        "Where is my Verdant T22 Flower? The pain is 8/10 tonight.")
    reception = db.session.get(User, personas["reception"].user_id)
    with acting_as(reception.id, "reception"):
        messaging.post(thread, reception, "Your clinician has cancelled it after the dizziness you reported.")
    waiting = _emails(PENDING)
    assert len(waiting) >= 4, [m.idempotency_key for m in waiting]
    for _ in range(2):
        run_cycle()
        _make_due()
    for message in _emails(PENDING):
        assert message.attempts == 2 and message.last_error, "tried, refused, kept for later"
    assert not _emails(DEAD)

    server = SMTPServer(SMTP_PORT).start()
    try:
        run_cycle()
        _make_due()
        run_cycle()
        received = server.messages
        assert len(received) == len(waiting), "every email delivered once the server is back"
        ids = [m["Message-ID"] for m in received]
        assert len(set(ids)) == len(ids), "none twice"
        assert {m.status for m in _emails()} == {DELIVERED}
    finally:
        server.stop()

    # The emails carry nothing of the events behind them: checked against the events' own data.
    plan = plans.current(patient)
    clinical = {reason, "Dizziness", "blood pressure", plan.indication, plan.goals, "8/10", "pain", "cannabis",
                "Verdant", "T22"}
    for item in prescription.items:
        clinical |= {item.product_name, item.dose, item.strength, item.quantity_text, item.form_label}
    for message in received:
        body = _body(message)
        for term in clinical:
            assert term.lower() not in body.lower(), f"{term!r} in {message['Subject']!r}"


def _dead_email(personas) -> Notification:
    """A notice whose email the mail server refused every time (it is down): the outbox gives up on it."""
    server = SMTPServer(SMTP_PORT).start()  # the personas' welcome emails go while it is up
    try:
        run_cycle()
    finally:
        server.stop()
    notice = notifications.notify(personas["patient"].user_id, "prescription.issued", key="dead:1", link="/timeline")
    for _ in range(3):
        run_cycle()
        _make_due()
    assert db.session.get(OutboxMessage, notice.email_message_id).status == DEAD
    return notice


def test_an_email_the_outbox_gives_up_on_alerts_the_front_desk_and_goes_once_when_sent_again(app, client, personas):
    with app.app_context():
        notice = _dead_email(personas)
        assert notifications.scan_dead_letters() == 1
        assert notifications.scan_dead_letters() == 0, "one alert per dead letter"
        told = db.session.scalars(sa.select(Notification.user_id).where(Notification.event == "staff.delivery_failed"))
        assert set(told) == {personas["reception"].user_id, personas["admin"].user_id}
        [row] = notifications.open_alerts()
        assert row.person.id == personas["patient"].user_id
        assert row.subject == "There is an update in your Verity account"
        alert_id, message_id = row.alert.id, notice.email_message_id
    sign_in_as(client, personas["reception"])
    banner = client.get("/staff/delivery-problems/banner").get_data(as_text=True)
    assert "1 email or text message could not be delivered" in banner
    page = client.get("/staff/delivery-problems").get_data(as_text=True)
    assert "Alice Example" in page and ("Connection refused" in page or "Errno" in page)
    token = csrf_from(page)
    assert client.post(f"/staff/delivery-problems/{alert_id}/resend", data={"csrf_token": token,
                                                                           "confirm": "1"}).status_code == 302
    assert client.get("/staff/delivery-problems/banner").get_data(as_text=True).strip() == ""
    server = SMTPServer(SMTP_PORT).start()
    try:
        with app.app_context():
            assert db.session.get(OutboxMessage, message_id).status == PENDING
            run_cycle()
            run_cycle()
            assert len(server.messages) == 1 and server.messages[0]["To"] == personas["patient"].email
            assert db.session.get(OutboxMessage, message_id).status == DELIVERED
            assert notifications.scan_dead_letters() == 0
    finally:
        server.stop()
    assert "notification.resent" in audit_actions(app)


def test_a_resent_email_that_fails_again_opens_its_alert_again(ctx, personas):
    notice = _dead_email(personas)
    notifications.scan_dead_letters()
    alert = db.session.scalar(sa.select(DeliveryAlert))
    notifications.resend(alert, db.session.get(User, personas["admin"].user_id))
    for _ in range(3):
        run_cycle()
        _make_due()
    assert db.session.get(OutboxMessage, notice.email_message_id).status == DEAD
    assert notifications.scan_dead_letters() == 1
    db.session.refresh(alert)
    assert (alert.resolution, alert.failures) == (None, 2)


def test_dismissing_an_alert_needs_to_say_how_the_person_was_told(app, client, personas):
    with app.app_context():
        _dead_email(personas)
        notifications.scan_dead_letters()
        alert_id = db.session.scalar(sa.select(DeliveryAlert.id))
    sign_in_as(client, personas["admin"])
    token = csrf_from(client.get("/staff/delivery-problems").get_data(as_text=True))
    refused = client.post(f"/staff/delivery-problems/{alert_id}/dismiss", data={"csrf_token": token, "note": "  "})
    assert refused.status_code == 400 and "Say how the person was told" in refused.get_data(as_text=True)
    done = client.post(f"/staff/delivery-problems/{alert_id}/dismiss",
                       data={"csrf_token": token, "note": "Phoned the patient"})
    assert done.status_code == 302
    with app.app_context():
        alert = db.session.get(DeliveryAlert, alert_id)
        assert (alert.resolution, alert.note) == ("dismissed", "Phoned the patient")
    assert "notification.alert_dismissed" in audit_actions(app)
