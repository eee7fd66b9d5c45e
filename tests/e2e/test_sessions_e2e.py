"""Sessions, as people meet them: an admin disables a signed-in account and that person's other browser is
signed out at its next request, with a plain message; the idle warning appears before a session ends,
"Stay signed in" keeps it, "Sign out" signs out, and a session left alone goes to the sign-in page.

The idle tests run against a second embedded server whose idle limit is one minute and whose warning
comes 55 seconds before the end (configuration, as an installation would set it), so the dialog appears
a few seconds after signing in: the tests wait on it with Playwright's waits, never a fixed sleep.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ConsoleLog, LiveServer, demo_server
from tests.e2e.people import DEMO_ADMIN, DEMO_PATIENT, sign_in, staff_signs_in

pytestmark = pytest.mark.e2e

PASSWORD = "quartz-meadow-lantern-4"


@pytest.fixture
def second_browser(browser: Browser, base_url: str) -> Iterator[Page]:
    """Another person's browser: a context of its own (its own cookies), console watched like `page`."""
    yield from _watched(browser, base_url)


def _watched(browser: Browser, base_url: str) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    console = ConsoleLog()
    context.on("page", console.watch)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
    console.check()


def test_disabling_a_signed_in_account_signs_it_out_in_the_other_browser(page: Page, second_browser: Page,
                                                                         flask_cli):
    email = f"dr.rowe.{uuid.uuid4().hex[:8]}@example.com"
    flask_cli("users", "create", "--email", email, "--name", "Dr Sam Rowe", "--role", "clinician",
              "--password", PASSWORD)

    # The clinician signs in on their own computer (setting up their authenticator on the way) and is at work.
    clinician = second_browser
    sign_in(clinician, email, PASSWORD)
    expect(clinician.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    secret = clinician.locator("#totp-secret").get_attribute("data-secret")
    clinician.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    clinician.get_by_role("button", name="Turn on two-factor authentication").click()
    clinician.get_by_role("link", name=re.compile("I have saved my codes")).click()
    expect(clinician.get_by_role("heading", name="Clinician home")).to_be_visible()

    # The admin, elsewhere, disables the account.
    staff_signs_in(page, DEMO_ADMIN)
    page.goto("/admin/users")
    page.get_by_role("link", name="Dr Sam Rowe").click()
    page.get_by_role("button", name="Disable account").click()
    expect(page.get_by_text("Account disabled. Their open sessions have ended.")).to_be_visible()
    expect(page.locator("#current-status")).to_have_text("Disabled")

    # The clinician's next click lands on the sign-in page, told plainly why.
    clinician.get_by_role("link", name="Appointments").click()
    expect(clinician).to_have_url(re.compile(r"/login$"))
    expect(clinician.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    expect(clinician.get_by_text("Your session ended because your account has been disabled.")).to_be_visible()
    expect(clinician.get_by_role("button", name="Sign out")).to_have_count(0)


# The idle warning, on a server with a one-minute idle limit ----------------------------------------------

@pytest.fixture(scope="module")
def short_idle_server(tmp_path_factory) -> Iterator[LiveServer]:
    # No worker and no SMTP server: this server sends no email the tests read (it is written to its folder).
    with demo_server(tmp_path_factory.mktemp("e2e-short-idle"), smtp_port=None, worker=False,
                     VERITY_IDLE_TIMEOUT_PATIENT="1", VERITY_IDLE_TIMEOUT_STAFF="1",
                     VERITY_SESSION_WARNING_SECONDS="55") as server:
        yield server


@pytest.fixture
def idle_page(browser: Browser, short_idle_server: LiveServer) -> Iterator[Page]:
    yield from _watched(browser, short_idle_server.url)


def seconds_left(page: Page) -> int:
    """What the server says (the time-left endpoint, which does not extend the session)."""
    response = page.request.get("/auth/session", headers={"Accept": "application/json"})
    assert response.ok, response.status
    return response.json()["remaining_seconds"]


def test_the_idle_warning_keeps_a_session_on_request_and_signs_out_when_ignored(idle_page: Page):
    page = idle_page
    sign_in(page, *DEMO_PATIENT)
    expect(page.get_by_role("heading", name=re.compile(r"^Hello, "))).to_be_visible()
    dialog = page.get_by_role("dialog", name="You will be signed out soon")
    expect(dialog).to_be_hidden()

    # A few seconds in, the warning: 55 seconds before the one-minute limit.
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-session-countdown]")).to_have_text(re.compile(r"^\d+ seconds$"))
    before = seconds_left(page)
    assert before <= 55
    dialog.get_by_role("button", name="Stay signed in").click()
    expect(dialog).to_be_hidden()
    assert seconds_left(page) > before, "the idle time started again"
    page.get_by_role("link", name="Appointments").click()
    expect(page).to_have_url(re.compile(r"/appointments"))

    # Left alone this time: when the minute runs out the page goes to the sign-in page, which says why.
    expect(dialog).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"), timeout=90_000)
    expect(page.get_by_text("Your session ended: you were inactive for 1 minute.")).to_be_visible()
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_sign_out_in_the_idle_warning_signs_out(idle_page: Page):
    page = idle_page
    sign_in(page, *DEMO_PATIENT)
    dialog = page.get_by_role("dialog", name="You will be signed out soon")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
