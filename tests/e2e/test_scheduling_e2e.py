"""Scheduling as people use it: reception books a patient, the patient sees it, the calendar email arrives
over SMTP with an .ics, and moving the appointment sends an update of the same calendar event.

Headless Chromium against the real embedded server (see conftest.py), whose worker delivers email to
the session's local SMTP server.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import icalendar
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import REPO, ConsoleLog
from tests.e2e.people import reception_signs_in, sign_in

pytestmark = pytest.mark.e2e

PASSWORD = "harbour-lantern-copper-7"
MAIL_DEADLINE = 30.0

#: Run against the live server's database: a patient whose intake and identity check are done.
MAKE_PATIENT = """
import datetime as dt, sys
from app import create_app
app = create_app()
with app.app_context():
    from app.auth import services as accounts
    from app.patients import details, onboarding, services as patients
    patient = patients.register(email=sys.argv[1], password=sys.argv[2], full_name=sys.argv[3],
                                date_of_birth=dt.date(1984, 2, 29))
    # The demo clinician's patient: other e2e tests add clinicians to the same live server.
    patients.assign_clinician(patient, accounts.find_by_email("clinician@demo.example.com"))
    onboarding.intake_submitted(patient, "eligible", [])
    onboarding.identity_verified(patient)
    details.update(patient, "booking", {"address_line1": "4 Quay Street", "town": "Bristol",
                                        "postcode": "BS1 4DJ", "phone": "07700 900456"})
"""


def wait_for_mail(smtp_server, to: str, subject: str, count: int = 1):
    """The messages to `to` with `subject`, once `count` have arrived (the worker polls every second)."""
    deadline = time.monotonic() + MAIL_DEADLINE
    while time.monotonic() < deadline:
        found = [m for m in smtp_server.messages if m["To"] == to and m["Subject"] == subject]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    seen = [(m["To"], m["Subject"]) for m in smtp_server.messages]
    raise AssertionError(f"no {subject!r} email to {to} within {MAIL_DEADLINE:.0f} s; the server sent {seen}")


def event_in(message) -> tuple[icalendar.Calendar, icalendar.Event]:
    [part] = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    calendar = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    [event] = calendar.walk("VEVENT")
    return calendar, event


def choose_a_time_next_week(page: Page) -> str:
    """Go to next week in the week view (an htmx swap) and press the first free time; return its label."""
    page.wait_for_load_state("load")  # htmx (a deferred script) is ready before the click
    heading = page.locator("#week-heading")
    this_week = heading.inner_text()
    page.locator("#week").get_by_role("link", name=re.compile("Next week")).click()
    expect(heading).not_to_have_text(this_week)  # the swap has landed
    first = page.locator("#week button[name=slot]").first
    expect(first).to_be_visible()
    label = first.get_attribute("aria-label")
    first.click()
    page.wait_for_load_state()
    return label


def test_reception_books_a_patient_who_sees_it_and_gets_a_calendar_email(browser, base_url, live_server,
                                                                         smtp_server, flask_cli):
    flask_cli("scheduling", "demo-availability")
    email = f"robin.{uuid.uuid4().hex[:8]}@example.com"
    subprocess.run([sys.executable, "-c", MAKE_PATIENT, email, PASSWORD, "Robin Demo"], cwd=REPO,
                   env=live_server.env, check=True, capture_output=True, timeout=60)

    # Reception finds the patient and books the first free time next week.
    console = ConsoleLog()
    desk_context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    desk_context.set_default_timeout(10_000)
    desk_context.on("page", console.watch)
    desk = desk_context.new_page()
    reception_signs_in(desk)
    desk.goto("/scheduling/patients")
    desk.get_by_label("Find a patient").press_sequentially("Robin Demo", delay=20)
    desk.locator("#patient-results").get_by_role("link", name="Book for Robin Demo").click()
    expect(desk.get_by_role("heading", name="Book a consultation for Robin Demo")).to_be_visible()
    booked_label = choose_a_time_next_week(desk)
    expect(desk.get_by_text(re.compile(r"Booked: Robin Demo, .* with Dr Priya Shah"))).to_be_visible()
    when = desk.locator("#appointment-when").inner_text()
    appointment_url = desk.url

    # One email, with a calendar invitation that any calendar can read.
    [invitation] = wait_for_mail(smtp_server, email, "Your consultation is booked")
    calendar, event = event_in(invitation)
    assert str(calendar["METHOD"]) == "REQUEST"
    appointment_id = appointment_url.rstrip("/").rsplit("/", 1)[1]
    assert str(event["UID"]) == f"appointment-{appointment_id}@verity" and int(event["SEQUENCE"]) == 0
    body = invitation.get_body(("plain",)).get_content()
    assert "Dr Priya Shah" in body and appointment_url in body
    assert booked_label.split(",")[0].split(" at ")[0] in body, "the day booked is the day in the email"

    # The patient sees it on the dashboard and on their appointments page, on a phone.
    phone_context = browser.new_context(base_url=base_url, viewport={"width": 375, "height": 812}, is_mobile=True,
                                        has_touch=True)
    phone_context.set_default_timeout(10_000)
    phone_context.on("page", console.watch)
    phone = phone_context.new_page()
    sign_in(phone, email, PASSWORD)
    phone.goto("/dashboard")
    expect(phone.get_by_text(re.compile(r"Consultation booked: .* with Dr Priya Shah"))).to_be_visible()
    phone.goto("/appointments")
    expect(phone.locator("#upcoming")).to_contain_text("Dr Priya Shah")
    phone.goto("/book")
    expect(phone.locator("#already-booked")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375

    # Reception moves it: the patient's calendar gets an update of the same event.
    desk.goto(appointment_url)
    desk.get_by_role("link", name="Change the time").click()
    choose_a_time_next_week(desk)
    expect(desk.get_by_text("The consultation has moved.")).to_be_visible()
    assert desk.locator("#appointment-when").inner_text() != when
    [update] = wait_for_mail(smtp_server, email, "Your consultation has moved")
    calendar, moved = event_in(update)
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(moved["UID"]) == str(event["UID"]) and int(moved["SEQUENCE"]) == 1
    assert moved.decoded("DTSTART") != event.decoded("DTSTART")
    assert len([m for m in smtp_server.messages if m["To"] == email and "consultation" in m["Subject"]]) == 2

    desk_context.close()
    phone_context.close()
    console.check()
