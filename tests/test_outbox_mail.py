"""Email leaves through the outbox: queued with the change, delivered by the worker over real SMTP."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app import mail
from app.extensions import db
from app.outbox import services as outbox
from app.outbox.models import DEAD, DELIVERED, PENDING, OutboxMessage
from app.patients import services as patients
from app.worker import run_cycle
from tests.smtp import SMTPServer, free_port

SMTP_PORT = free_port()


@pytest.fixture
def app_config():
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": SMTP_PORT, "OUTBOX_MAX_ATTEMPTS": 3}


@pytest.fixture
def smtp():
    server = SMTPServer(SMTP_PORT).start()
    yield server
    server.stop()


def _register(name="Robin Patel", email="robin@example.com"):
    return patients.register(email=email, password="correct-horse-battery", full_name=name,
                             date_of_birth=dt.date(1975, 9, 30))


def _make_due():
    db.session.execute(sa.update(OutboxMessage).values(next_attempt_at=dt.datetime.now(dt.UTC)))
    db.session.commit()


def test_welcome_email_is_delivered_once_without_personal_details(ctx, smtp):
    patient = _register()
    assert run_cycle() == 1
    assert run_cycle() == 0, "nothing is sent twice"
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["To"] == "robin@example.com"
    assert message["Message-ID"].startswith("<") and "welcome" in message["Message-ID"]
    body = message.get_body(("plain",)).get_content() + message.get_body(("html",)).get_content()
    for personal in ("Robin", "Patel", "1975", "30 September", "30/09", f"patients/{patient.id}"):
        assert personal not in body
    assert "/login" in body
    stored = db.session.scalar(sa.select(OutboxMessage))
    assert (stored.status, stored.attempts) == (DELIVERED, 1)


def test_smtp_outage_delays_but_loses_nothing(ctx):
    _register()
    assert run_cycle() == 0  # nothing listens on the port yet
    message = db.session.scalar(sa.select(OutboxMessage))
    assert (message.status, message.attempts) == (PENDING, 1)
    assert "Connection refused" in message.last_error or "Errno" in message.last_error
    assert message.next_attempt_at > dt.datetime.now(dt.UTC), "retried later, with backoff"
    server = SMTPServer(SMTP_PORT).start()
    try:
        _make_due()
        assert run_cycle() == 1
        assert len(server.messages) == 1
        _make_due()
        assert run_cycle() == 0
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_gives_up_after_the_limit_into_dead_letters(ctx):
    _register()
    for _ in range(3):
        _make_due()
        run_cycle()
    message = db.session.scalar(sa.select(OutboxMessage))
    assert (message.status, message.attempts) == (DEAD, 3)
    assert outbox.depth() == {DEAD: 1}


def test_same_key_is_one_message(ctx):
    first = outbox.enqueue("email", "k:1", {"to": "a@example.com", "subject": "s", "text": "t", "html": "h"})
    second = outbox.enqueue("email", "k:1", {"to": "b@example.com", "subject": "s", "text": "t", "html": "h"})
    assert first.id == second.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1


def test_a_claimed_message_is_not_claimed_again_until_its_lease_ends(ctx):
    """A worker killed after claiming leaves the message to be retried once the lease runs out."""
    mail.queue("x@example.com", "Subject", "welcome", key="lease:1")
    assert len(outbox.claim()) == 1
    assert outbox.claim() == [], "a second worker does not take a leased message"
    _make_due()  # the lease ran out: the first worker died
    assert len(outbox.claim()) == 1


def test_file_transport_when_no_smtp_is_configured(app, tmp_path):
    app.config["MAIL_SERVER"] = None
    with app.app_context():
        _register()
        assert run_cycle() == 1
    files = list((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1
    assert b"Your Verity account is ready" in files[0].read_bytes()


def test_attachments_travel_with_the_email(ctx, smtp):
    calendar = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    mail.queue("x@example.com", "Your consultation", "welcome", key="ics:1",
               attachments=(mail.Attachment("consultation.ics", "text/calendar; method=REQUEST", calendar),))
    assert run_cycle() == 1
    message = smtp.messages[0]
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "consultation.ics"
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "REQUEST"
    assert part.get_payload(decode=True) == calendar
