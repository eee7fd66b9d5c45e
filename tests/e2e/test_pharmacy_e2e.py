"""The pharmacy handshake, as people use it: a prescription signed by the demo clinician appears in the
demo pharmacist's queue without a reload; the pharmacist checks the signature on screen, allocates stock,
records the paper original, verifies, dispenses and books the courier; the patient follows each step on
their order page, with the carrier's tracking link. Then a stock-out: the pharmacist reports it offering
an alternative, the prescriber replaces the prescription in two clicks, the patient is told."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.people import clinician_signs_in, pharmacist_signs_in, sign_in
from tests.e2e.test_prescribing_e2e import PASSWORD, register_patient

pytestmark = pytest.mark.e2e

TRACKING = "AB123456785GB"


def _context(browser, base_url, *, phone: bool = False) -> BrowserContext:
    options = {"viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True} if phone \
        else {"viewport": {"width": 1280, "height": 900}}
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(15_000)
    return context


def _watch(page: Page, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(m.text) if "Refused to" in m.text or "Content Security" in m.text
            else None)
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e} {e.stack}"))


def _ready_patient(browser, base_url, flask_cli) -> tuple[str, str, BrowserContext]:
    name = f"Robin Ashby{uuid.uuid4().hex[:4]}"
    email = f"robin.{uuid.uuid4().hex[:8]}@example.com"
    context = _context(browser, base_url, phone=True)
    register_patient(context.new_page(), name, email)
    flask_cli("prescribing", "demo", "--patient-email", email)
    flask_cli("pharmacy", "demo")
    return name, email, context


def _open_prescribing_page(page: Page, name: str) -> str:
    page.goto("/staff")
    page.get_by_label("Find a patient").fill(name)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(r"/patients/\d+$"))
    patient_url = page.url
    page.goto(patient_url + "/prescribing")
    return patient_url


def _prescribe_and_sign(page: Page, product: str, *, expect_stock: re.Pattern | None = None) -> str:
    page.wait_for_load_state("load")  # htmx (a deferred script) listens before we type
    page.get_by_label("Product or manufacturer").fill(product)
    results = page.locator("#formulary-search-results")
    expect(results).to_contain_text(product)
    if expect_stock:
        row = results.locator("tr", has_text=product)
        expect(row).to_contain_text(expect_stock)
        expect(row).to_contain_text(re.compile(r"updated \d+ \w+ \d\d:\d\d UTC"))
    results.get_by_role("link", name=f"Prescribe {product}").click()
    expect(page.locator("#product_id option:checked")).to_contain_text(product)
    page.get_by_label("Total quantity").fill("10")
    page.get_by_label("Days of supply").fill("10")
    page.get_by_label("Dose").fill("Vaporise 0.1 g up to ten times a day")
    expect(page.locator("#prescription-checks")).to_contain_text("Ready to sign")
    page.get_by_role("button", name="Add to prescription").click()
    page.get_by_role("link", name="Review and sign").click()
    page.get_by_role("button", name="Sign prescription").click()
    expect(page.get_by_text("Prescription signed.")).to_be_visible()
    return page.url


def _step(page: Page, button: str) -> None:
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator(".verity-flash--success")).to_be_visible()


def test_a_signed_prescription_reaches_the_pharmacist_and_the_patient_follows_it_to_the_door(browser, base_url,
                                                                                              flask_cli):
    problems: list[str] = []
    name, email, patient_context = _ready_patient(browser, base_url, flask_cli)

    pharmacist_context = _context(browser, base_url)
    queue = pharmacist_context.new_page()
    _watch(queue, problems)
    pharmacist_signs_in(queue)
    queue.goto("/pharmacy")
    expect(queue.get_by_role("heading", name="Prescriptions")).to_be_visible()
    expect(queue.locator("#pharmacy-queue")).not_to_contain_text(name)

    clinician_context = _context(browser, base_url)
    doctor = clinician_context.new_page()
    _watch(doctor, problems)
    clinician_signs_in(doctor)
    _open_prescribing_page(doctor, name)
    # Live stock at the patient's pharmacy, before anything is written.
    _prescribe_and_sign(doctor, "Verdant T22 Flower", expect_stock=re.compile(r"In stock \(\d+ packs\)"))

    # The pharmacist's open queue shows it without a reload (htmx polls it).
    entry = queue.locator("#pharmacy-queue").get_by_role("link", name=name)
    expect(entry).to_be_visible(timeout=20_000)
    entry.click()
    expect(queue.locator("#signature-verdict")).to_have_text("Genuine: signed by Dr Priya Shah")
    expect(queue.locator("#signature-check .nhsuk-tag--red")).to_have_count(0)
    expect(queue.locator("#signature-check")).to_contain_text("Unchanged since signing")
    expect(queue.locator("#patient-details")).to_contain_text(name)

    _step(queue, "Allocate stock")
    expect(queue.locator("#held-stock")).to_contain_text("VT22-2407A")
    queue.get_by_label("Yes, it matches").check()
    _step(queue, "Record the paper original")
    _step(queue, "Clinically verified")
    _step(queue, "Dispense")
    queue.get_by_label("Carrier").select_option(label="Royal Mail Tracked 24")
    queue.get_by_label("Tracking number").fill(TRACKING)
    _step(queue, "Book the dispatch")
    expect(queue.locator("#parcel")).to_contain_text(TRACKING)

    # The patient, on their phone, follows the order.
    phone = patient_context.new_page()
    _watch(phone, problems)
    sign_in(phone, email, PASSWORD)
    phone.goto("/my/prescriptions")
    phone.get_by_role("link", name=re.compile("Follow your order")).first.click()
    expect(phone.locator("#order-status")).to_have_text("Your medicine is on its way")
    for step in ("issued", "pharmacy", "preparing", "dispensed"):
        expect(phone.locator(f'[data-step="{step}"]')).to_have_attribute("data-status", "done")
    expect(phone.locator('[data-step="on_its_way"]')).to_have_attribute("data-status", "current")
    expect(phone.locator("#tracking-number")).to_have_text(TRACKING)
    expect(phone.locator("#tracking-link")).to_have_attribute(
        "href", f"https://www.royalmail.com/track-your-item#/tracking-results/{TRACKING}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375

    _step(queue, "Delivered")
    phone.reload()
    expect(phone.locator("#order-status")).to_have_text("Delivered")
    expect(phone.locator('[data-step="delivered"]')).to_have_attribute("data-status", "done")
    assert not problems, problems
    for context in (pharmacist_context, clinician_context, patient_context):
        context.close()


def test_a_stock_out_is_replaced_by_the_prescriber_in_two_clicks_and_the_patient_is_told(browser, base_url,
                                                                                           flask_cli):
    problems: list[str] = []
    name, email, patient_context = _ready_patient(browser, base_url, flask_cli)
    clinician_context = _context(browser, base_url)
    doctor = clinician_context.new_page()
    _watch(doctor, problems)
    clinician_signs_in(doctor)
    patient_url = _open_prescribing_page(doctor, name)

    # The plan allows the T18 flower as well, so it can stand in for the T22.
    doctor.goto(patient_url + "/plan")
    t18 = doctor.get_by_label(re.compile(r"^Verdant T18 Flower"))
    t18.check()
    product_id = t18.get_attribute("id").removeprefix("product-")
    doctor.locator(f"#dose_min-{product_id}").fill("0.1")
    doctor.locator(f"#dose_max-{product_id}").fill("1")
    doctor.get_by_label("Reason for this version").fill("T18 as an alternative when T22 is short")
    doctor.get_by_role("button", name="Save the plan").click()
    expect(doctor.get_by_text("The treatment plan was saved as a new version.")).to_be_visible()
    _prescribe_and_sign(doctor, "Verdant T22 Flower")

    pharmacist_context = _context(browser, base_url)
    pharmacist = pharmacist_context.new_page()
    _watch(pharmacist, problems)
    pharmacist_signs_in(pharmacist)
    pharmacist.goto("/pharmacy")
    pharmacist.locator("#pharmacy-queue").get_by_role("link", name=name).click()
    pharmacist.locator("#out-of-stock summary").click()
    pharmacist.get_by_label(re.compile(r"^Verdant T18 Flower")).check()
    pharmacist.get_by_label("Note for the prescriber (optional)").fill("Our T22 delivery is delayed two weeks")
    _step(pharmacist, "Report out of stock")
    expect(pharmacist.locator("#prescription-status")).to_contain_text("Out of stock")

    # The patient is told in their portal.
    phone = patient_context.new_page()
    _watch(phone, problems)
    sign_in(phone, email, PASSWORD)
    phone.goto("/my/prescriptions")
    phone.get_by_role("link", name=re.compile("Follow your order")).first.click()
    order_url = phone.url
    expect(phone.locator("#stock-out-notice")).to_contain_text(
        "Your pharmacy is out of Verdant T22 Flower; your clinician has been asked to choose an alternative")

    # The prescriber is alerted at once, and replaces it in two clicks.
    doctor.goto("/pharmacy/alerts")
    doctor.locator("#pharmacy-alerts").get_by_role("link", name=re.compile(name)).click()
    expect(doctor.locator("#stock-out")).to_contain_text("Our T22 delivery is delayed two weeks")
    doctor.get_by_role("button", name="Replace with Verdant T18 Flower").click()  # click one
    expect(doctor.locator("#sign-items")).to_contain_text("Verdant T18 Flower")
    doctor.get_by_role("button", name="Sign prescription").click()  # click two
    expect(doctor.get_by_text("Prescription signed.")).to_be_visible()
    doctor.goto("/pharmacy/alerts")
    expect(doctor.locator("#pharmacy-alerts-none")).to_be_visible()

    phone.goto(order_url)
    expect(phone.locator("#order-status")).to_have_text("Replaced by a new prescription")
    expect(phone.locator("#replacement-notice")).to_be_visible()
    phone.locator("#replacement-notice a").click()
    expect(phone.locator("body")).to_contain_text("Verdant T18 Flower")

    # The new one is in the pharmacy's queue; the old one is gone from it.
    pharmacist.goto("/pharmacy")
    row = pharmacist.locator("#pharmacy-queue tr", has_text=name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Verdant T18 Flower")
    assert not problems, problems
    for context in (pharmacist_context, clinician_context, patient_context):
        context.close()
