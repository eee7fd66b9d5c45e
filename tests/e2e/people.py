"""The people of the end-to-end tests: the demo accounts, and signing in as a person does.

The app takes each 30-second TOTP step's code once, and accepts the previous step's code too (clock
drift). Other tests in the session sign the same demo accounts in, so `staff_signs_in` types the oldest
acceptable code first and leaves newer ones unused: the previous step's, then the current one, then
(like a person whose code was refused) the next one when it comes.
"""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import Page, expect

from app.auth.models import Role
from app.demo import ACCOUNTS

_BY_ROLE = {account.role: account for account in ACCOUNTS}
DEMO_PATIENT = (_BY_ROLE[Role.PATIENT].email, _BY_ROLE[Role.PATIENT].password)
DEMO_CLINICIAN, DEMO_RECEPTION, DEMO_PHARMACIST, DEMO_ADMIN = (
    (_BY_ROLE[role].email, _BY_ROLE[role].password, _BY_ROLE[role].totp_secret)
    for role in (Role.CLINICIAN, Role.RECEPTION, Role.PHARMACIST, Role.ADMIN))


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()


def staff_signs_in(page: Page, account: tuple[str, str, str]) -> None:
    email, password, secret = account
    sign_in(page, email, password)
    deadline = time.monotonic() + 70
    candidate = int(time.time() // 30) - 1
    while True:
        expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
        page.locator("#totp-code").fill(pyotp.TOTP(secret).at(candidate * 30))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
        if "/auth/two-factor" not in page.url:
            return
        assert time.monotonic() < deadline, "no TOTP code was accepted"
        candidate += 1
        while int(time.time() // 30) < candidate:  # never a code from the future
            time.sleep(0.2)


def clinician_signs_in(page: Page) -> None:
    staff_signs_in(page, DEMO_CLINICIAN)


def reception_signs_in(page: Page) -> None:
    staff_signs_in(page, DEMO_RECEPTION)


def pharmacist_signs_in(page: Page) -> None:
    staff_signs_in(page, DEMO_PHARMACIST)
