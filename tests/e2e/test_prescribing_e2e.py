"""Prescribing, as people use it: the clinician searches the formulary, builds a prescription that is
refused for exceeding the quota, fixes it and signs it; the patient sees it issued.

The consultation page does not exist yet, so the builder is driven from the patient's prescribing page
(/patients/<id>/prescribing), where the same htmx fragments will sit in the consultation side panel.
The clinician's step-up is the TOTP code entered at sign-in (fresh for 5 minutes); the step-up page
itself, with wrong and reused codes, is covered in tests/test_prescribing_web.py.
"""

from __future__ import annotations

import re
import time
import uuid

import pyotp
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

DEMO_CLINICIAN = ("clinician@demo.example.com", "VerityDemo-Clinician1", "VERITYDEMOCLINICIANSECRETAAAAAAA")
PASSWORD = "lantern-orchard-pebble-9"


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()


def clinician_signs_in(page: Page) -> None:
    """The demo clinician's code of this 30-second step may already have been used by another test:
    then, like a person, wait for the next code."""
    email, password, secret = DEMO_CLINICIAN
    sign_in(page, email, password)
    deadline = time.monotonic() + 70
    while True:
        expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
        step = int(time.time() // 30)
        page.locator("#totp-code").fill(pyotp.TOTP(secret).at(step * 30))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
        if "/auth/two-factor" not in page.url:
            return
        assert time.monotonic() < deadline, "no fresh TOTP step was accepted"
        while int(time.time() // 30) <= step:
            time.sleep(0.2)


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


def test_a_clinician_builds_a_prescription_refused_for_quota_fixes_it_and_signs_it(browser, base_url, flask_cli):
    name = f"Morgan Vale{uuid.uuid4().hex[:4]}"
    email = f"morgan.{uuid.uuid4().hex[:8]}@example.com"
    patient_context = browser.new_context(base_url=base_url, viewport={"width": 375, "height": 812}, is_mobile=True,
                                          has_touch=True)
    patient_page = patient_context.new_page()
    register_patient(patient_page, name, email)
    # The onboarding steps (identity, address, pharmacy consent), the plan and the MDT approval, made for the demo.
    flask_cli("prescribing", "demo", "--patient-email", email)

    clinician_context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    page = clinician_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Refused to" in m.text or "Content Security" in m.text
            else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    clinician_signs_in(page)
    page.goto("/staff")
    page.get_by_label("Find a patient").fill(name)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(r"/patients/\d+$"))
    page.goto(page.url + "/prescribing")
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator("#mdt-status")).to_contain_text("Approved")

    # Search the formulary: flower with at least 20% THC.
    page.get_by_label("Product or manufacturer").fill("Verdant")
    page.get_by_label("Form").select_option("dried_flower")
    page.get_by_label("THC from").fill("20")
    results = page.locator("#formulary-search-results")
    expect(results).to_contain_text("Verdant T22 Flower")
    expect(results).not_to_contain_text("Verdant T18 Flower")
    expect(results).to_contain_text("Stock unknown")
    results.get_by_role("link", name="Prescribe Verdant T22 Flower").click()
    expect(page.locator("#product_id option:checked")).to_contain_text("Verdant T22 Flower")

    # 40 g is over the 30 g quota: the live check says so as the quantity is typed.
    page.wait_for_load_state("load")
    page.get_by_label("Total quantity").fill("40")
    page.get_by_label("Days of supply").fill("30")
    page.get_by_label("Dose").fill("Vaporise 0.1 g up to ten times a day")
    checks = page.locator("#prescription-checks")
    expect(checks).to_contain_text("40 (forty) grams")
    expect(checks).to_contain_text("Quota exceeded")
    page.get_by_role("button", name="Add to prescription").click()
    expect(page.locator("#draft-items")).to_contain_text("40 (forty) grams")
    page.get_by_role("link", name="Review and sign").click()
    expect(page.get_by_role("heading", name="Review and sign the prescription")).to_be_visible()
    expect(page.locator("#blocking-reasons")).to_contain_text("Quota exceeded")
    expect(page.get_by_role("button", name="Sign prescription")).to_have_count(0)

    # Fix it: 30 g.
    page.get_by_role("link", name="Change the prescription").click()
    page.get_by_role("link", name="Change Verdant T22 Flower").click()
    expect(page.get_by_role("heading", name="Change item 1")).to_be_visible()
    page.wait_for_load_state("load")  # htmx (a deferred script) listens before we type
    page.get_by_label("Total quantity").fill("30")
    expect(checks).to_contain_text("30 (thirty) grams")
    expect(checks).to_contain_text("Ready to sign")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#draft-items")).to_contain_text("30 (thirty) grams")
    page.get_by_role("link", name="Review and sign").click()
    expect(page.locator("#sign-items")).to_contain_text("30 (thirty) grams")
    page.get_by_role("button", name="Sign prescription").click()

    expect(page.get_by_text("Prescription signed.")).to_be_visible()
    expect(page.locator("#prescription-status")).to_contain_text("Signed")
    expect(page.get_by_role("link", name="Print the FP10PCD for your ink signature")).to_be_visible()
    verify_path = page.get_by_role("link", name="Verification page").get_attribute("href")
    assert not errors, errors
    clinician_context.close()

    # The patient sees it issued.
    sign_in(patient_page, email, PASSWORD)
    patient_page.goto("/my/prescriptions")
    expect(patient_page.get_by_role("heading", name=re.compile("Prescription issued"))).to_be_visible()
    expect(patient_page.get_by_text("30 (thirty) grams", exact=False)).to_be_visible()
    assert patient_page.evaluate("document.documentElement.scrollWidth") <= 375
    # A pharmacist scanning the QR code on a phone, not signed in: genuine and valid, nothing about the patient.
    patient_page.get_by_role("button", name="Sign out").click()
    patient_page.goto(verify_path)
    expect(patient_page.locator("#verdict-authentic")).to_have_text("Authentic")
    expect(patient_page.locator("#verdict-status")).to_contain_text("valid")
    expect(patient_page.locator("body")).not_to_contain_text(name)
    assert patient_page.evaluate("document.documentElement.scrollWidth") <= 375
    patient_context.close()
