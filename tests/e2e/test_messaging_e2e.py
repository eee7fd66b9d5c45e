"""Patient communication, as people use it: a patient asks "where is my medication?" in a message, reception
answers from the team inbox (the patient's state beside the thread), and the patient's timeline shows the
prescription dispatched with the carrier's tracking link, then delivered, without reloading the page.

The pharmacy's own steps are made by a small script against the live server's database calling
`app.prescribing.states.apply(..., actor_role="pharmacy")` (the pharmacy portal is being built in parallel;
the point here is the messaging and the live timeline). The timeline polls every 20 seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import REPO
from tests.e2e.people import reception_signs_in, sign_in

pytestmark = pytest.mark.e2e

PASSWORD = "quiet-harbour-lantern-4"
TRACKING = "AB123456785GB"
#: The timeline polls every 20 s: a change shows within one interval (and a little).
LIVE_UPDATE_MS = 35_000

#: Against the live server's database: a patient of the demo clinician, eligible, with address and phone.
MAKE_PATIENT = """
import datetime as dt, sys
from app import create_app
app = create_app()
with app.app_context():
    from app.auth import services as accounts
    from app.patients import onboarding, services as patients
    patient = patients.register(email=sys.argv[1], password=sys.argv[2], full_name=sys.argv[3],
                                date_of_birth=dt.date(1983, 6, 14))
    patients.assign_clinician(patient, accounts.find_by_email("clinician@demo.example.com"))
    onboarding.intake_submitted(patient, "eligible", [])
"""

#: The demo clinician signs a prescription for the patient; the pharmacy takes it to "dispatched". Prints its id.
DISPATCH = """
import json, secrets, sys
from app import create_app
from app.audit import context
app = create_app()
with app.app_context():
    from app.auth import services as accounts
    from app.patients import services as patients
    from app.prescribing import services as prescribing, states
    from app.prescribing.demo import load_demo_formulary
    S = states.State
    clinician = accounts.find_by_email("clinician@demo.example.com")
    patient = patients.for_user(accounts.find_by_email(sys.argv[1]))
    flower = next(p for p in load_demo_formulary() if p.name == "Verdant T22 Flower")
    token = context.bind(context.Actor(user_id=clinician.id, role="clinician"))
    draft = prescribing.add_item(patient, clinician, {"product_id": str(flower.id), "quantity": "10",
                                 "days_supply": "10", "dose": "Vaporise 0.1 g up to ten times a day"})
    prescription = prescribing.sign(draft, clinician, token=secrets.token_urlsafe(24), revision=draft.revision)
    prescription = prescription.prescription
    context.reset(token)
    try:  # the live worker may have delivered it to the pharmacy first
        states.apply(prescription, S.TRANSMITTED, actor_role="system")
    except states.TransitionError:
        pass
    for step in (S.RECEIVED, S.STOCK_ALLOCATED):
        states.apply(prescription, step, actor_role="pharmacy")
    if prescription.paper_original:
        prescribing.record_original_received(prescription, matches=True)
    for step in (S.CLINICALLY_VERIFIED, S.DISPENSED):
        states.apply(prescription, step, actor_role="pharmacy")
    states.apply(prescription, S.DISPATCHED, actor_role="pharmacy",
                 detail={"carrier": "Royal Mail Tracked 24", "tracking": sys.argv[2]})
    print(json.dumps({"id": prescription.id}))
"""

#: The courier delivered it: the pharmacy records it.
DELIVER = """
import sys
from app import create_app
app = create_app()
with app.app_context():
    from app.prescribing import services as prescribing, states
    states.apply(prescribing.get(int(sys.argv[1])), states.State.DELIVERED, actor_role="pharmacy")
"""


def run_script(live_server, script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=live_server.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_patient_asks_where_their_medication_is_and_watches_it_arrive(phone: Page, page: Page, live_server,
                                                                        flask_cli):
    name = f"Jamie Rowe{uuid.uuid4().hex[:4]}"
    email = f"jamie.{uuid.uuid4().hex[:8]}@example.com"
    run_script(live_server, MAKE_PATIENT, email, PASSWORD, name)
    flask_cli("prescribing", "demo", "--patient-email", email)  # identity, address, pharmacy consent, plan, MDT
    prescription_id = json.loads(run_script(live_server, DISPATCH, email, TRACKING))["id"]

    # The patient asks, from their phone.
    sign_in(phone, email, PASSWORD)
    phone.goto("/timeline")
    phone.get_by_role("link", name="Send us a message").click()
    phone.get_by_label("Subject").fill("Where is my medication?")
    phone.get_by_label("Your message").fill("Hello,\nit was signed days ago. Where is my medication?")
    phone.get_by_role("button", name="Send message").click()
    expect(phone.get_by_text("Message sent.")).to_be_visible()
    expect(phone.get_by_role("heading", name="Where is my medication?")).to_be_visible()
    thread_url = phone.url
    assert re.search(r"/messages/\d+$", thread_url)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375

    # Reception answers from the team inbox, with the patient's state beside the thread.
    reception_signs_in(page)
    page.goto("/staff/messages")
    row = page.locator("#inbox tbody tr", has_text="Where is my medication?").filter(has_text=name)
    expect(row).to_contain_text("Your medicine is on its way")
    row.get_by_role("link", name=re.compile("Where is my medication")).click()
    expect(page.locator("#patient-glance")).to_contain_text(TRACKING)
    page.get_by_label("Your message").fill("Good news: it left the pharmacy with Royal Mail. "
                                          "The tracking link is on your timeline.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_text("Message sent.")).to_be_visible()
    expect(page.locator("#thread-status")).to_have_text("Waiting on patient")

    # The patient is told in the portal (the header badge), reads the answer, and opens the timeline.
    phone.goto("/messages")
    expect(phone.locator("#unread-count")).to_be_visible()
    expect(phone.locator("#thread-list")).to_contain_text("1 new")
    phone.goto(thread_url)
    expect(phone.locator("#thread-messages")).to_contain_text("it left the pharmacy with Royal Mail")
    phone.goto("/timeline")
    card = phone.locator(f"#prescription-{prescription_id}")
    expect(card.locator(f"#prescription-{prescription_id}-status")).to_have_text("Your medicine is on its way")
    expect(card.locator('[data-step="dispatched"]')).to_have_attribute("data-status", "current")
    link = card.locator(f"#tracking-link-{prescription_id}")
    expect(link).to_have_attribute("href", f"https://www.royalmail.com/track-your-item#/tracking-results/{TRACKING}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375

    # The pharmacy marks it delivered: the open timeline shows it without a reload.
    phone.evaluate("window.verityNoReload = 'still the same page'")
    run_script(live_server, DELIVER, str(prescription_id))
    expect(card.locator(f"#prescription-{prescription_id}-status")).to_have_text("Delivered", timeout=LIVE_UPDATE_MS)
    expect(card.locator('[data-step="delivered"]')).to_have_attribute("data-status", "done")
    assert phone.evaluate("window.verityNoReload") == "still the same page", "updated in place, not reloaded"
