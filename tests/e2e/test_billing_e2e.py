"""Billing as people use it: a patient books a consultation, pays its invoice on the payment provider's checkout page
(tests/payment_peer.py, a real HTTP server that posts the signed webhook back), downloads the invoice PDF, and
reception sees the appointment paid on the payments desk.

The shared live server uses Verity's own sandbox checkout; this module starts one of its own, configured with the
external provider (BILLING_PROVIDER=http), the same way (conftest.py's helpers).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import subprocess
import sys
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import REPO, ConsoleLog, demo_server
from tests.e2e.people import reception_signs_in, sign_in
from tests.e2e.test_scheduling_e2e import MAKE_PATIENT, choose_a_time_next_week
from tests.payment_peer import PaymentPeer

pytestmark = pytest.mark.e2e

PASSWORD = "copper-harbour-lantern-9"
SECRET = "whsec-e2e-" + secrets.token_hex(8)

APPOINTMENT_DAY = """
import sys
from app import create_app
app = create_app()
with app.app_context():
    from app.billing import services as billing
    from app.scheduling import services as scheduling
    appointment = scheduling.get(int(sys.argv[1]))
    print(appointment.starts_at.astimezone(billing.clinic_zone()).date().isoformat())
"""


@pytest.fixture(scope="module")
def peer():
    provider = PaymentPeer(secret=SECRET).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def billing_server(tmp_path_factory, peer, smtp_server):
    with demo_server(tmp_path_factory.mktemp("e2e-billing"), smtp_port=smtp_server.port,
                     VERITY_BILLING_PROVIDER="http", VERITY_BILLING_PROVIDER_URL=peer.url,
                     VERITY_BILLING_WEBHOOK_SECRET=SECRET) as server:
        yield server


def test_a_patient_books_pays_on_the_providers_page_and_downloads_the_invoice(browser, billing_server, peer,
                                                                              tmp_path):
    email = f"morgan.{uuid.uuid4().hex[:8]}@example.com"
    subprocess.run([sys.executable, "-c", MAKE_PATIENT, email, PASSWORD, "Morgan Payer"], cwd=REPO,
                   env=billing_server.env, check=True, capture_output=True, timeout=60)
    console = ConsoleLog()
    context = browser.new_context(base_url=billing_server.url, viewport={"width": 1280, "height": 800},
                                  accept_downloads=True)
    context.set_default_timeout(10_000)
    context.on("page", console.watch)
    page = context.new_page()

    # The patient books a consultation next week: it is charged at booking.
    sign_in(page, email, PASSWORD)
    page.goto("/book")
    choose_a_time_next_week(page)
    expect(page.get_by_text("Your consultation is booked.")).to_be_visible()
    appointment_id = re.search(r"/appointments/(\d+)", page.url).group(1)

    # The dashboard asks for payment; the Payments page has the invoice.
    page.goto("/dashboard")
    page.get_by_role("link", name="Payment due: £150.00").click()
    expect(page.get_by_role("heading", name="Payments and invoices")).to_be_visible()
    row = page.locator("#invoices tbody tr").first
    number = row.get_by_role("link").first.inner_text()
    assert re.fullmatch(r"INV-\d{6}", number)
    expect(row).to_contain_text("Unpaid")

    # Pay: to the provider's checkout page, press its Pay button, and back to Verity.
    row.get_by_role("button", name=re.compile(r"Pay £150\.00")).click()
    expect(page.get_by_role("heading", name="Test Payments Ltd")).to_be_visible()
    assert page.url.startswith(peer.url)
    page.get_by_role("button", name="Pay £150.00").click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert page.url.startswith(billing_server.url)
    assert [d.status for d in peer.deliveries] == [200]

    # The invoice PDF: a real PDF naming the invoice, marked paid.
    with page.expect_download() as download_info:
        page.get_by_role("link", name=f"Download invoice {number} (PDF)").click()
    saved = tmp_path / "invoice.pdf"
    download_info.value.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(saved), "-"], capture_output=True, text=True, check=True,
                              timeout=30).stdout
        assert number in text and "PAID" in text and "Initial consultation" in text and "Morgan Payer" in text
    else:
        assert number.encode() in data or b"/Type /Page" in data
    page.goto("/billing")
    expect(page.locator("#invoices tbody tr").first).to_contain_text("Paid")
    expect(page.locator("#statement-balance")).to_contain_text("Nothing to pay")

    # Reception sees it paid beside the day's appointments.
    day = subprocess.run([sys.executable, "-c", APPOINTMENT_DAY, appointment_id], cwd=REPO, env=billing_server.env,
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    dt.date.fromisoformat(day)
    desk_context = browser.new_context(base_url=billing_server.url, viewport={"width": 1280, "height": 800})
    desk_context.set_default_timeout(10_000)
    desk_context.on("page", console.watch)
    desk = desk_context.new_page()
    reception_signs_in(desk)
    desk.goto(f"/billing/desk?day={day}")
    expect(desk.get_by_role("heading", name=re.compile("^Payments: "))).to_be_visible()
    row = desk.locator(f"#appointment-{appointment_id}")
    expect(row).to_contain_text("Morgan Payer")
    expect(row).to_contain_text("Paid")
    expect(row).to_contain_text(number)
    context.close()
    desk_context.close()
    console.check()
