"""Uploading documents as a person does, in headless Chromium against the real embedded server.

Uses the end-to-end suite's live server and browser (tests/e2e/conftest.py): every page's console
is watched, so a CSP violation or an uncaught error in uploads.js fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.test_documents_files import big_pdf, jpeg_bytes, page_image

pytestmark = pytest.mark.e2e

PATIENT = ("patient@demo.example.com", "VerityDemo-Patient1")
PICKER = '#document-upload input[type="file"][accept^="application/pdf"]'
CAMERA = "#document-upload-camera"


def sign_in_as_patient(tab: Page) -> None:
    tab.goto("/login")
    tab.get_by_label("Email address").fill(PATIENT[0])
    tab.get_by_label("Password", exact=True).fill(PATIENT[1])
    tab.get_by_role("button", name="Sign in", exact=True).click()
    tab.wait_for_load_state()
    tab.goto("/documents")


def ranges_sent(tab: Page) -> list[str]:
    """The Content-Range of every chunk the page sends, as it sends them."""
    sent: list[str] = []
    tab.on("request", lambda request: sent.append(request.headers["content-range"])
           if "content-range" in request.headers else None)
    return sent


def test_a_pdf_is_sent_in_chunks_with_progress_and_appears_in_the_list(page, tmp_path):
    letter = tmp_path / "Rheumatology letter.pdf"
    letter.write_bytes(big_pdf(2.5))
    sign_in_as_patient(page)
    chunks = ranges_sent(page)

    page.get_by_label("What is this document?").select_option("specialist_letter")
    page.locator(PICKER).set_input_files(letter)

    expect(page.locator("#document-upload-status")).to_contain_text("Uploaded: Rheumatology letter.pdf",
                                                                   timeout=30_000)
    expect(page.locator("#documents-list")).to_contain_text("Rheumatology letter.pdf")
    expect(page.locator("#documents-list")).to_contain_text("Letter from a specialist")
    assert len(chunks) == 3 and chunks[0].startswith("bytes 0-1048575/")
    expect(page.locator("#document-upload progress")).to_have_attribute("value", "100")


def test_a_blurred_photo_from_the_phone_camera_gets_a_retake_message(phone, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(page_image(blur=6)))
    sign_in_as_patient(phone)

    camera_button = phone.locator("#document-upload .verity-upload__camera-button")
    expect(camera_button).to_be_visible()
    assert phone.locator(CAMERA).get_attribute("capture") == "environment"
    phone.locator(CAMERA).set_input_files(photo)

    error = phone.locator("#document-upload-error")
    expect(error).to_be_visible(timeout=20_000)
    expect(error).to_contain_text("This photo looks blurred. Hold your phone steady and take it again.")
    expect(phone.locator("#document-upload")).to_have_class(re.compile("nhsuk-form-group--error"))
    expect(camera_button).to_have_text("Take the photo again")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"


def test_an_upload_cut_off_by_a_lost_connection_carries_on_after_a_reload(page, tmp_path):
    scan = tmp_path / "summary.pdf"
    scan.write_bytes(big_pdf(3.5))
    sign_in_as_patient(page)
    sent = ranges_sent(page)

    def lose_connection_after_first_chunk(route):
        if not route.request.headers.get("content-range", "").startswith("bytes 0-"):
            return route.abort("internetdisconnected")
        return route.continue_()

    page.route(re.compile(r".*/documents/uploads/[0-9a-f]{32}$"), lose_connection_after_first_chunk)
    page.locator(PICKER).set_input_files(scan)
    expect(page.locator("#document-upload-status")).to_contain_text("Trying again", timeout=15_000)

    page.unroute(re.compile(r".*/documents/uploads/[0-9a-f]{32}$"))
    page.reload()
    expect(page.locator("#document-upload-status")).to_contain_text("stopped at", timeout=10_000)
    sent.clear()
    page.locator(PICKER).set_input_files(scan)

    expect(page.locator("#document-upload-status")).to_contain_text("Uploaded: summary.pdf", timeout=30_000)
    assert sent and not any(r.startswith("bytes 0-") for r in sent), f"resumed, not restarted: {sent}"


def test_the_viewer_shows_an_uploaded_pdf_in_the_page(page, tmp_path):
    letter = tmp_path / "gp-summary.pdf"
    letter.write_bytes(big_pdf(0.2))
    sign_in_as_patient(page)
    page.locator(PICKER).set_input_files(letter)
    expect(page.locator("#document-upload-status")).to_contain_text("Uploaded", timeout=30_000)

    served: list[str] = []
    page.on("response", lambda response: served.append(response.headers.get("content-disposition", ""))
            if response.url.endswith("/file") else None)
    page.locator("#document-upload-status a").click()

    frame = page.locator("iframe.verity-document-frame")
    expect(frame).to_be_visible()
    assert Path(frame.get_attribute("src")).name == "file"
    # Shown in the frame (the browser marks it a same-origin frame); opened any other way, it is saved.
    page.wait_for_load_state("networkidle")
    assert served and served[0].startswith("inline;"), served  # (the PDF viewer's own fetch shows no headers)
    assert not any(value.startswith("attachment") for value in served), served
