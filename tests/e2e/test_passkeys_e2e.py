"""Passkeys as a clinician uses them (issue 12): the demo clinician signs in with their authenticator app, adds a
passkey called "Work laptop", signs out, signs back in with the passkey, and during a consultation signs a
prescription in the side panel with a passkey step-up; then removes the passkey.

The browser's authenticator is Chromium's virtual one (Chrome DevTools Protocol: WebAuthn.enable,
WebAuthn.addVirtualAuthenticator, ctap2 over the internal transport, with resident keys and user verification),
so navigator.credentials.create() and get() run for real against it, through app/static/js/passkeys.js.

The module runs an embedded server of its own, for two reasons. WebAuthn will not use an IP address, so the
browser opens http://localhost:<port> and VERITY_BASE_URL says the same (the relying party id is derived from
it). And a passkey sign-in is a fresh second factor: to see the step-up that signing asks for, that freshness
must lapse, so this server counts it fresh for one minute (VERITY_STEP_UP_MINUTES=1) and the test waits for the
minute to pass before it signs. The demo clinician's passkey stays on this server, away from the other tests'.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import REPO, LiveServer, demo_server
from tests.e2e.people import DEMO_CLINICIAN, sign_in, staff_signs_in
from tests.e2e.test_prescribing_e2e import PASSWORD, book_demo_call, call_page
from tests.e2e.test_scheduling_e2e import MAKE_PATIENT

pytestmark = pytest.mark.e2e

STEP_UP_MINUTES = 1
VIRTUAL_AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                         "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True}


@pytest.fixture(scope="module")
def passkey_server(tmp_path_factory, smtp_server) -> Iterator[LiveServer]:
    with demo_server(tmp_path_factory.mktemp("e2e-passkeys"), smtp_port=smtp_server.port, host="localhost",
                     VERITY_STEP_UP_MINUTES=str(STEP_UP_MINUTES)) as server:
        yield server


def virtual_authenticator(page: Page):
    """Chromium's virtual authenticator for this page; returns the CDP session and the authenticator's id."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    return cdp, authenticator["authenticatorId"]


def credentials(cdp, authenticator_id: str) -> list[dict]:
    return cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]


def test_a_clinician_adds_a_passkey_signs_in_with_it_and_signs_a_prescription_with_it(browser, passkey_server):
    server = passkey_server
    name = f"Robin Hale{uuid.uuid4().hex[:4]}"
    email = f"robin.{uuid.uuid4().hex[:8]}@example.com"

    with call_page(browser, server.url) as page:
        cdp, authenticator_id = virtual_authenticator(page)

        # Signed in with the authenticator app, the clinician adds a passkey on their security page.
        staff_signs_in(page, DEMO_CLINICIAN)
        page.goto("/account/security")
        expect(page.get_by_role("heading", name="Passkeys", exact=True)).to_be_visible()
        expect(page.locator("#no-passkeys")).to_be_visible()
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator("[data-passkey-status]")).to_have_text("Give the passkey a name, like “Work laptop”.")
        page.get_by_label("Name").fill("Work laptop")
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.get_by_text("Passkey “Work laptop” added.")).to_be_visible()
        expect(page.locator("#passkeys")).to_contain_text("Work laptop")
        expect(page.locator("#passkeys")).to_contain_text("Not yet")
        [credential] = credentials(cdp, authenticator_id)
        assert credential["isResidentCredential"] and credential["rpId"] == "localhost"
        uses = credential["signCount"]

        # Signed out and back in: after the password, the passkey is offered first.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_text("You have signed out.")).to_be_visible()
        sign_in(page, DEMO_CLINICIAN[0], DEMO_CLINICIAN[1])
        expect(page.get_by_role("heading", name="Use your passkey")).to_be_visible()
        expect(page.get_by_role("link", name="Use a code from your authenticator app instead")).to_be_visible()
        page.get_by_role("button", name="Use your passkey").click()
        expect(page.get_by_role("link", name="Waiting room")).to_be_visible()  # the staff menu: fully signed in
        signed_in_at = time.time()
        assert "/auth/two-factor" not in page.url
        assert credentials(cdp, authenticator_id)[0]["signCount"] > uses  # the passkey answered, not a code
        uses = credentials(cdp, authenticator_id)[0]["signCount"]

        # A consultation with a new patient whose plan the MDT approved (as the prescribing e2e test prepares it).
        subprocess.run([sys.executable, "-c", MAKE_PATIENT, email, PASSWORD, name], cwd=REPO, env=server.env,
                       check=True, capture_output=True, timeout=60)
        server.flask("prescribing", "demo", "--patient-email", email)
        appointment = book_demo_call(server.flask, email)
        page.goto(f"/consult/{appointment}")
        expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
        call_url = page.url
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

        page.locator("#panel").get_by_role("button", name="Prescribing").click()
        panel = page.locator("#prescribing-slot")
        expect(panel.locator("#mdt-status")).to_contain_text("Approved")
        panel.get_by_label("Product or manufacturer").fill("Verdant T22")
        panel.get_by_label("Product or manufacturer").press("Tab")
        results = panel.locator("#formulary-search-results")
        results.get_by_role("link", name="Prescribe Verdant T22 Flower").click()
        expect(panel.locator("#product_id option:checked")).to_contain_text("Verdant T22 Flower")
        page.wait_for_load_state("load")
        for label, value in (("Total quantity", "30"), ("Days of supply", "30"),
                             ("Dose", "Vaporise 0.1 g up to ten times a day")):
            panel.get_by_label(label, exact=True).fill(value)
            panel.get_by_label(label, exact=True).press("Tab")
        expect(panel.locator("#prescription-checks")).to_contain_text("Ready to sign")
        panel.get_by_role("button", name="Add to prescription").click()
        expect(panel.locator("#draft-items")).to_contain_text("30 (thirty) grams")

        # The passkey sign-in counts as fresh for STEP_UP_MINUTES; signing after that asks again.
        stale_at = signed_in_at + STEP_UP_MINUTES * 60 + 1
        while time.time() < stale_at:  # the condition is the server's clock, which the test shares
            page.wait_for_timeout(min(1000, max(0.0, stale_at - time.time()) * 1000 + 10))

        panel.get_by_role("link", name="Review and sign").click()
        expect(panel.locator("#sign-items")).to_contain_text("30 (thirty) grams")
        expect(panel.locator("#sign-code")).to_be_visible()  # the code stays as the fallback
        panel.get_by_role("button", name="Sign with your passkey").click()
        expect(panel.locator("#prescribing-notice")).to_have_text("Prescription signed.")
        expect(panel.locator("#prescription-signed")).to_contain_text("30 (thirty) grams")
        assert credentials(cdp, authenticator_id)[0]["signCount"] > uses
        assert page.url == call_url and not navigations, navigations  # the call page never went anywhere

        # The step-up was just given, so removing the passkey needs no other check.
        page.goto("/account/security")
        expect(page.locator("#passkeys")).to_contain_text(re.compile(r"\d+ \w+ \d{4} \d\d:\d\d UTC"))  # last used
        page.get_by_role("button", name="Remove Work laptop").click()
        expect(page.get_by_text("Passkey “Work laptop” removed.")).to_be_visible()
        expect(page.locator("#no-passkeys")).to_be_visible()
