"""The foundation, as people use it: registering, signing in, two-factor, finding a patient, the audit trail.

Each test drives headless Chromium against the real embedded server (see conftest.py).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e.people import DEMO_ADMIN, DEMO_CLINICIAN

pytestmark = pytest.mark.e2e

PASSWORD = "lantern-orchard-pebble-9"
AUDIT_PAGE = 50  # rows per page of the audit trail (app/audit/routes.py)


# What a person does, in a few words ----------------------------------------------------------

def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_text("You have signed out.")).to_be_visible()


def enter_security_code(page: Page, code: str) -> None:
    expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
    page.locator("#totp-code").fill(code)
    page.get_by_role("button", name="Continue").click()


def enter_recovery_code(page: Page, code: str) -> None:
    expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
    page.get_by_text("I cannot use my authenticator app").click()
    page.get_by_label("Recovery code").fill(code)
    page.get_by_role("button", name="Use recovery code").click()


def staff_sign_in(page: Page, email: str, password: str, secret: str) -> None:
    sign_in(page, email, password)
    enter_security_code(page, pyotp.TOTP(secret).now())


def error_summary(page: Page):
    return page.locator(".nhsuk-error-summary")


def no_horizontal_overflow(page: Page, width: int = 375) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide at a {width} px viewport"


def next_time_step(after: int, deadline_seconds: float = 35.0) -> None:
    """Wait for the authenticator's next 30-second step: a code of a used step is refused, by design."""
    deadline = time.monotonic() + deadline_seconds
    while int(time.time() // 30) <= after:
        assert time.monotonic() < deadline, "the clock did not reach the next TOTP step"
        time.sleep(0.2)


def unique_email(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:8]}@example.com"


# Patients ------------------------------------------------------------------------------------

def test_a_new_patient_registers_on_a_phone_signs_out_and_signs_back_in(phone: Page):
    email = unique_email("jamie")
    phone.goto("/")
    expect(phone.get_by_role("heading", name="Specialist medical cannabis care, online")).to_be_visible()
    no_horizontal_overflow(phone)

    phone.get_by_role("link", name="Create an account").click()
    expect(phone.get_by_role("heading", name="Create an account")).to_be_visible()
    no_horizontal_overflow(phone)
    phone.get_by_label("Full name").fill("Jamie Rivers")
    phone.get_by_label("Email address").fill(email)
    phone.locator("#dob_day").fill("7")
    phone.locator("#dob_month").fill("11")
    phone.locator("#dob_year").fill("1979")
    phone.get_by_label("Create a password").fill(PASSWORD)
    phone.get_by_label("Confirm your password").fill(PASSWORD)
    phone.get_by_role("button", name="Create account").click()

    expect(phone.get_by_role("heading", name="Hello, Jamie")).to_be_visible()
    expect(phone).to_have_url(re.compile(r"/dashboard$"))
    expect(phone.get_by_text("Your account is ready.")).to_be_visible()
    no_horizontal_overflow(phone)

    sign_out(phone)
    no_horizontal_overflow(phone)

    sign_in(phone, email, PASSWORD)
    expect(phone.get_by_role("heading", name="Hello, Jamie")).to_be_visible()
    expect(phone).to_have_url(re.compile(r"/dashboard$"))
    no_horizontal_overflow(phone)


def test_registration_refuses_an_under_18_and_keeps_what_they_typed(page: Page):
    email = unique_email("young")
    today = dt.date.today()
    born = dt.date(today.year - 17, today.month, 1)  # seventeen this month at the latest
    page.goto("/register")
    page.get_by_label("Full name").fill("Robin Young")
    page.get_by_label("Email address").fill(email)
    page.locator("#dob_day").fill(str(born.day))
    page.locator("#dob_month").fill(str(born.month))
    page.locator("#dob_year").fill(str(born.year))
    page.get_by_label("Create a password").fill(PASSWORD)
    page.get_by_label("Confirm your password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    expect(page.get_by_role("heading", name="There is a problem")).to_be_visible()
    expect(error_summary(page)).to_contain_text("18")
    expect(page.locator(".nhsuk-fieldset .nhsuk-error-message")).to_contain_text("18 or over")
    expect(page.get_by_label("Full name")).to_have_value("Robin Young")
    expect(page.get_by_label("Email address")).to_have_value(email)
    expect(page.locator("#dob_year")).to_have_value(str(born.year))
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_a_wrong_password_is_refused_and_nobody_is_signed_in(page: Page):
    sign_in(page, "patient@demo.example.com", "not-the-password")
    expect(error_summary(page)).to_contain_text("The email address or password is not right")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()


# Staff and the second factor -----------------------------------------------------------------

def test_a_clinician_enrols_an_authenticator_and_each_code_works_once(page: Page, flask_cli):
    email = unique_email("dr.okafor")
    flask_cli("users", "create", "--email", email, "--name", "Dr Ada Okafor", "--role", "clinician",
              "--password", PASSWORD)

    # First sign-in: a staff account must set up two-factor authentication before anything else.
    sign_in(page, email, PASSWORD)
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    expect(page.get_by_role("navigation", name="Menu")).to_have_count(0)
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]{16,}", secret)
    now = time.time()
    enrolment_step = int(now // 30)  # the step of the code she types, which the app then counts as used
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(now))
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    page.get_by_role("link", name=re.compile("I have saved my codes")).click()
    expect(page.get_by_role("heading", name="Clinician home")).to_be_visible()
    sign_out(page)

    # Without her phone she uses a recovery code; it works once. (Recovery codes first: the
    # authenticator's next code only comes with the next 30-second step, which this overlaps.)
    sign_in(page, email, PASSWORD)
    enter_recovery_code(page, codes[0])
    expect(page.get_by_role("heading", name="Clinician home")).to_be_visible()
    expect(page.get_by_text("You signed in with a recovery code. You have 9 left.")).to_be_visible()
    sign_out(page)
    sign_in(page, email, PASSWORD)
    enter_recovery_code(page, codes[0])
    expect(error_summary(page)).to_contain_text("That recovery code is not right or has been used")
    expect(page.get_by_role("heading", name="Clinician home")).to_have_count(0)

    # With her phone again: the next code the app shows lets her in.
    next_time_step(enrolment_step)
    code = pyotp.TOTP(secret).now()
    enter_security_code(page, code)
    expect(page.get_by_role("heading", name="Clinician home")).to_be_visible()
    sign_out(page)

    # The same code a second time (someone watching over her shoulder, within the same 30 s) is refused.
    sign_in(page, email, PASSWORD)
    enter_security_code(page, code)
    expect(error_summary(page)).to_contain_text("That code is not right or has already been used")
    expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
    page.goto("/staff")
    expect(page.get_by_role("heading", name="Clinician home")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/auth/two-factor"))


def test_the_demo_clinician_finds_a_patient_without_a_page_reload(page: Page):
    staff_sign_in(page, *DEMO_CLINICIAN)
    expect(page.get_by_role("heading", name="Clinician home")).to_be_visible()

    page.evaluate("window.__marker = 'same page'")
    page.get_by_label("Find a patient").press_sequentially("Alex", delay=30)
    result = page.locator("#search-results").get_by_role("link", name="Alex Morgan")
    expect(result).to_be_visible()
    assert page.evaluate("window.__marker") == "same page", "the search reloaded the page instead of using htmx"

    result.click()
    expect(page.get_by_role("heading", name="Alex Morgan")).to_be_visible()
    expect(page.get_by_text("Patient record")).to_be_visible()


def _fail_logins(base_url: str, count: int) -> None:
    """Failed sign-ins through plain HTTP, each of which the audit trail records."""
    def attempt(_: int) -> int:
        with requests.Session() as http:
            form = http.get(f"{base_url}/login", timeout=10)
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text).group(1)
            response = http.post(f"{base_url}/login", timeout=30, data={
                "csrf_token": token, "email": unique_email("nobody"), "password": "wrong-password-123"})
            return response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(attempt, range(count)))
    assert set(statuses) == {401}, statuses


def open_from_menu(page: Page, name: str) -> None:
    """Click a header menu item, through the "More" menu when the header has folded it away."""
    page.locator("header[data-nhsuk-header-init]").wait_for(state="attached")  # the header script has laid out
    menu = page.get_by_role("navigation", name="Menu")
    link = menu.get_by_role("link", name=name).locator("visible=true")
    if not link.count():
        menu.get_by_role("button", name=re.compile("More")).click()
    link.first.click()


def test_the_demo_admin_reads_the_audit_trail_and_pages_back_without_a_reload(page: Page, base_url):
    staff_sign_in(page, *DEMO_ADMIN)
    open_from_menu(page, "Audit trail")
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.locator("#audit-rows tr:not(#audit-more)")
    actions = page.locator("#audit-rows td:nth-child(4)")
    expect(actions.filter(has_text=re.compile(r"auth\.login$")).first).to_be_visible()  # her own sign-in

    if page.locator("#audit-more").count() == 0:
        # Fewer than a page of entries so far: add some (failed sign-ins are audited) and look again.
        _fail_logins(base_url, AUDIT_PAGE + 1 - rows.count())
        page.reload()
    first_page = rows.count()
    assert first_page == AUDIT_PAGE

    page.evaluate("window.__marker = 'same page'")
    page.get_by_role("link", name="Show older entries").click()
    expect(rows).not_to_have_count(first_page)
    assert rows.count() > first_page
    assert page.evaluate("window.__marker") == "same page", "paging reloaded the page instead of using htmx"
    cells = page.locator("#audit-rows tr:not(#audit-more) td:first-child").all_inner_texts()
    newest_first = [int(re.sub(r"\D", "", cell)) for cell in cells]
    assert newest_first == sorted(newest_first, reverse=True) and len(set(newest_first)) == len(newest_first)
