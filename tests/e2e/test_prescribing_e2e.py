"""Prescribing, as people use it (issue 7): during a demo consultation the clinician searches the formulary,
builds a prescription that is first refused for exceeding the quota, fixes it, signs it with a TOTP code,
and the patient sees "Prescription issued" on their dashboard.

All of it happens in the Prescribing tab of the call page's side panel: the page never navigates (that would
drop the video). The clinician opens the call page without the patient connected, in a Chromium of its own
with a fake camera and microphone, as the call page asks for them. The step-up that signing needs is the TOTP
code the clinician entered a minute earlier at sign-in (fresh for 5 minutes); the panel's own code field,
when it is stale, and wrong or reused codes are covered in tests/test_prescribing_panel.py.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, REPO, ConsoleLog
from tests.e2e.people import clinician_signs_in, sign_in
from tests.e2e.test_consult_e2e import MEDIA_ARGS
from tests.e2e.test_scheduling_e2e import MAKE_PATIENT

pytestmark = pytest.mark.e2e

PASSWORD = "lantern-orchard-pebble-9"


def register_patient(page: Page, name: str, email: str) -> None:
    page.goto("/register")
    page.get_by_label("Full name").fill(name)
    page.get_by_label("Email address").fill(email)
    page.locator("#dob_day").fill("3")
    page.locator("#dob_month").fill("9")
    page.locator("#dob_year").fill("1982")
    page.get_by_label("Create a password").fill(PASSWORD)
    page.get_by_label("Confirm your password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name=f"Hello, {name.split()[0]}")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()


def book_demo_call(flask_cli: Callable[..., subprocess.CompletedProcess], patient_email: str | None = None) -> int:
    """A consultation of the demo clinician starting in a few minutes (`flask consult demo-call`); its id."""
    args = ("--patient", patient_email) if patient_email else ()
    return int(flask_cli("consult", "demo-call", *args).stdout.split()[0])


@contextlib.contextmanager
def call_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A desktop page for the clinician's seat of a call: a Chromium with a fake camera and microphone (the
    call page asks for them as it opens), its console watched for CSP violations and uncaught errors."""
    media = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + MEDIA_ARGS)
    console = ConsoleLog()
    try:
        context = media.new_context(base_url=base_url, viewport={"width": 1280, "height": 900},
                                    permissions=["camera", "microphone"])
        context.set_default_timeout(15_000)
        context.on("page", console.watch)
        yield context.new_page()
        context.close()
    finally:
        media.close()
    console.check()


def test_during_a_consultation_the_clinician_prescribes_from_the_side_panel_and_the_patient_sees_it(
        browser, base_url, live_server, flask_cli):
    name = f"Morgan Vale{uuid.uuid4().hex[:4]}"
    email = f"morgan.{uuid.uuid4().hex[:8]}@example.com"
    # Intake and identity done; then the pharmacy, its consent, the plan and the MDT approval made for the demo.
    subprocess.run([sys.executable, "-c", MAKE_PATIENT, email, PASSWORD, name], cwd=REPO, env=live_server.env,
                   check=True, capture_output=True, timeout=60)
    flask_cli("prescribing", "demo", "--patient-email", email)
    appointment = book_demo_call(flask_cli, email)

    with call_page(browser, base_url) as page:
        clinician_signs_in(page)
        page.goto(f"/consult/{appointment}")
        expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
        call_url = page.url
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

        page.locator("#panel").get_by_role("button", name="Prescribing").click()
        panel = page.locator("#prescribing-slot")
        expect(panel.locator("#mdt-status")).to_contain_text("Approved")
        expect(panel.locator("#prescribing-plan")).to_contain_text("Chronic pain")

        # Search the formulary: flower with at least 20% THC, with the stock at the patient's pharmacy.
        panel.get_by_label("Product or manufacturer").fill("Verdant")
        panel.get_by_label("Form", exact=True).select_option("dried_flower")
        panel.get_by_label("THC from").fill("20")
        panel.get_by_label("THC from").press("Tab")
        results = panel.locator("#formulary-search-results")
        expect(results).to_contain_text("Verdant T22 Flower")
        expect(results).not_to_contain_text("Verdant T18 Flower")
        row = results.locator("tr", has_text="Verdant T22 Flower")
        expect(row).to_contain_text(re.compile(r"In stock \(\d+ packs?\)"))
        expect(row).to_contain_text(re.compile(r"updated \d+ \w+ \d\d:\d\d UTC"))
        results.get_by_role("link", name="Prescribe Verdant T22 Flower").click()
        expect(panel.locator("#product_id option:checked")).to_contain_text("Verdant T22 Flower")

        # 40 g is over the 30 g quota: the live check says so as the line is typed.
        page.wait_for_load_state("load")
        checks = panel.locator("#prescription-checks")
        for label, value in (("Total quantity", "40"), ("Days of supply", "30"),
                             ("Dose", "Vaporise 0.1 g up to ten times a day")):
            panel.get_by_label(label, exact=True).fill(value)
            panel.get_by_label(label, exact=True).press("Tab")
        expect(checks).to_contain_text("40 (forty) grams")
        expect(checks).to_contain_text("Quota exceeded")
        panel.get_by_role("button", name="Add to prescription").click()
        expect(panel.locator("#prescribing-notice")).to_contain_text("Item saved to the draft prescription.")
        expect(panel.locator("#draft-items")).to_contain_text("40 (forty) grams")
        expect(results).to_contain_text("Verdant T22 Flower")  # the search is still there for a second product

        # Review and sign refuses it: the reason, and no way to sign.
        panel.get_by_role("link", name="Review and sign").click()
        expect(panel.get_by_role("heading", name="Review and sign the prescription")).to_be_visible()
        expect(panel.locator("#blocking-reasons")).to_contain_text("Quota exceeded")
        expect(panel.get_by_role("button", name="Sign prescription")).to_have_count(0)

        # Fix it: 30 g.
        panel.get_by_role("link", name="Change the prescription").click()
        panel.get_by_role("link", name="Change Verdant T22 Flower").click()
        expect(panel.get_by_role("heading", name="Change item 1")).to_be_visible()
        page.wait_for_load_state("load")
        panel.get_by_label("Total quantity").fill("30")
        panel.get_by_label("Total quantity").press("Tab")  # leaving the field is a change too, as a person does
        expect(checks).to_contain_text("30 (thirty) grams")
        expect(checks).to_contain_text("Ready to sign")
        panel.get_by_role("button", name="Save changes").click()
        expect(panel.locator("#draft-items")).to_contain_text("30 (thirty) grams")

        # Sign: the second factor is the TOTP code given at sign-in, a minute ago.
        panel.get_by_role("link", name="Review and sign").click()
        expect(panel.locator("#sign-items")).to_contain_text("30 (thirty) grams")
        panel.get_by_role("button", name="Sign prescription").click()
        expect(panel.locator("#prescribing-notice")).to_have_text("Prescription signed.")
        expect(panel.locator("#prescription-signed")).to_contain_text("30 (thirty) grams")
        expect(panel.get_by_role("link", name=re.compile("Print the FP10PCD"))).to_have_attribute("target", "_blank")

        # The call page never went anywhere.
        assert page.url == call_url and not navigations, navigations
        expect(page.locator("#remote-video")).to_be_attached()

    # The patient sees it issued, on a phone.
    phone_context = browser.new_context(base_url=base_url, viewport={"width": 375, "height": 812}, is_mobile=True,
                                        has_touch=True)
    phone_context.set_default_timeout(15_000)
    console = ConsoleLog()
    phone_context.on("page", console.watch)
    phone = phone_context.new_page()
    sign_in(phone, email, PASSWORD)
    phone.goto("/")
    step = phone.locator("#checklist").get_by_role("link", name="Prescription issued")
    expect(step).to_be_visible()
    step.click()
    expect(phone.get_by_role("heading", name=re.compile("Prescription issued"))).to_be_visible()
    expect(phone.get_by_text("30 (thirty) grams", exact=False)).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone_context.close()
    console.check()
