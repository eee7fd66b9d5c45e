"""A new patient's onboarding from start to finish, on a phone, in headless Chromium against the real
embedded server (tests/e2e/conftest.py): register, answer the branching health questions, upload a
20 MB PDF whose upload is cut off and resumes, send a photo from the camera, send an ID photo and a
selfie, agree to the consents; reception confirms the identity; the dashboard says "You are eligible".

What is real: the server, its database and worker, every page, form, htmx swap and script the patient
and the staff use, the chunked upload protocol with the server's checks (PDF opens, photo not blurred or
dark, encryption), the identity review, the FHIR endpoint. The patient's browser is a Chromium launched
with `--use-fake-device-for-media-stream --use-fake-ui-for-media-stream`, at 375 x 812 with touch.

What is simulated, and how:
- The camera. On a phone, the upload control's "Take a photo" button is an `<input type="file"
  capture=...>`: the phone's own camera app takes the picture and hands a JPEG back to the page. Headless
  Chromium has no camera app, and the app's pages do not capture in the page themselves (they send
  `Permissions-Policy: camera=()`, which this test checks). So a second tab plays the camera app: a blank
  page at a private address on the server's origin, served by Playwright's router (no request reaches the
  server), calls `getUserMedia({video: true})`, which Chromium's fake capture device answers with its
  moving test pattern (640 x 480, green with a "pacman" and a frame timer), draws one frame on a canvas and
  encodes it as a JPEG. Those bytes are given to the camera input with `set_input_files`, as the camera app
  would. The server's photo checks judge that frame: it is bright enough (mean about 82 of 255, limit 35) and
  sharp enough at 640 x 480 (variance of the Laplacian about 140, limit 40). At 1280 x 720 and above the
  same flat pattern scores 35 or less and is refused as blurred, so the frame is taken at the camera's
  default size.
- The photo of the passport: there is no passport to photograph, so it is a sharp image drawn with Pillow
  and chosen with the file picker.
- The lost connection: Playwright's router drops one chunk's request (and its retries) as a phone losing
  signal would, and the context is then put offline and back online (`context.set_offline`), which the
  page sees as `navigator.onLine` and the `online` event.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Request, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ConsoleLog
from tests.e2e.people import DEMO_ADMIN, DEMO_RECEPTION, staff_signs_in
from tests.test_documents_files import big_pdf

pytestmark = pytest.mark.e2e

PASSWORD = "meadow-kettle-granite-4"
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PHONE = {"viewport": {"width": 375, "height": 812}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
#: The "camera app" tab's address: answered by Playwright's router, never by the server.
CAMERA_APP = "/__e2e__/camera-app"
PDF_BYTES = 20 * 1024 * 1024
#: The chunk whose request is dropped: the ninth (chunks are 1 MiB).
CUT_AT = 8 * 1024 * 1024
UPLOAD_DEADLINE = 60_000
#: The steps (top-level groups, whose linkIds prefix their questions') that psychiatric history opens.
BRANCH_STEPS = frozenset({"psychosis", "phq9", "gad7"})

#: In the camera app tab: one frame from the (fake) camera, as JPEG bytes in base64.
TAKE_PHOTO = """async (facing) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: facing } })
  try {
    const video = document.createElement('video')
    video.muted = true
    video.srcObject = stream
    await video.play()
    const canvas = document.createElement('canvas')
    canvas.width = video.videoWidth
    canvas.height = video.videoHeight
    canvas.getContext('2d').drawImage(video, 0, 0)
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92))
    const bytes = new Uint8Array(await blob.arrayBuffer())
    let binary = ''
    for (const byte of bytes) binary += String.fromCharCode(byte)
    return { device: stream.getVideoTracks()[0].label, width: canvas.width, height: canvas.height, jpeg: btoa(binary) }
  } finally {
    stream.getTracks().forEach((track) => track.stop())
  }
}"""


# Browsers and people ------------------------------------------------------------------------

@pytest.fixture
def camera_browser(browser: Browser) -> Iterator[Browser]:
    """A second Chromium (same executable and switches as conftest's) with Chromium's fake camera."""
    launched = browser.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                           args=[*CHROMIUM_ARGS, *FAKE_CAMERA_ARGS])
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def open_context(base_url: str) -> Iterator[Callable[..., BrowserContext]]:
    """open_context(browser, **options): a context on the live server, its pages' consoles watched for
    CSP violations and uncaught errors (as conftest's `page` does); all are closed after the test."""
    console = ConsoleLog()
    opened: list[BrowserContext] = []

    def open_(browser: Browser, **options: Any) -> BrowserContext:
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(10_000)
        context.on("page", console.watch)
        opened.append(context)
        return context

    yield open_
    for context in opened:
        context.close()
    console.check()


def register(tab: Page, name: str, email: str) -> None:
    tab.goto("/register")
    tab.get_by_label("Full name").fill(name)
    tab.get_by_label("Email address").fill(email)
    tab.locator("#dob_day").fill("14")
    tab.locator("#dob_month").fill("6")
    tab.locator("#dob_year").fill("1979")
    tab.get_by_label("Create a password").fill(PASSWORD)
    tab.get_by_label("Confirm your password").fill(PASSWORD)
    tab.get_by_role("button", name="Create account").click()
    expect(tab.get_by_role("heading", name=f"Hello, {name.split()[0]}")).to_be_visible()


def no_sideways_scrolling(tab: Page) -> None:
    assert tab.evaluate("document.documentElement.scrollWidth") <= 375, f"sideways scrolling on {tab.url}"


# The health questions -----------------------------------------------------------------------

def question(tab: Page, link_id: str) -> Locator:
    """A question's form group (ids are the linkId with '.' as '-', see Item.html_id)."""
    return tab.locator(f"#q-{link_id.replace('.', '-')}--group")


def progress(tab: Page) -> Locator:
    return tab.locator("#intake-progress")


def answer_live(tab: Page, choice: Locator) -> None:
    """Choose an answer that shows or hides other questions, and wait until htmx has swapped in the
    re-rendered questions (the old #intake-fields is marked; the swap replaces it)."""
    tab.evaluate("document.getElementById('intake-fields').dataset.stale = 'yes'")
    choice.check()
    tab.wait_for_function("""() => {
      const fields = document.getElementById('intake-fields')
      return fields && !fields.dataset.stale &&
        !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')
    }""")


def next_page(tab: Page, heading: str) -> None:
    """Wait for the page a click led to, up to its load event: htmx (a deferred script) has then
    wired up the questions that re-render the step. A person answering before that is not lost (the
    answer is saved with the step) but gets no live re-render, which is not what this test checks."""
    expect(tab.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    tab.wait_for_load_state()


def save_and_continue(tab: Page, next_heading: str) -> None:
    tab.get_by_role("button", name="Save and continue").click()
    next_page(tab, next_heading)


def answer_first_steps(tab: Page) -> None:
    """Steps 1 to 4: a diagnosed condition, two licensed treatments tried, nothing for review."""
    tab.goto("/intake")
    tab.get_by_role("link", name="Start now").click()
    next_page(tab, "Your condition")
    answer_live(tab, question(tab, "condition.diagnosed").get_by_label("Yes, a hospital or specialist doctor"))
    question(tab, "condition.main").get_by_label("Chronic pain").check()
    tab.locator("#q-condition-diagnosis_date--month").fill("3")
    tab.locator("#q-condition-diagnosis_date--year").fill("2019")
    tab.get_by_label("How does your condition affect your daily life?").fill(
        "Constant pain in my lower back; I sleep badly and work fewer hours.")
    save_and_continue(tab, "Treatments you have tried")

    licensed = question(tab, "treatments.licensed")
    answer_live(tab, licensed.get_by_label("Opioid painkillers, like codeine, tramadol or morphine"))
    answer_live(tab, licensed.get_by_label("Anti-inflammatory painkillers, like naproxen or diclofenac"))
    tab.get_by_label("What happened when you tried these treatments?").fill(
        "Neither helped enough; codeine made me too drowsy to drive.")
    save_and_continue(tab, "Medicines you take now")

    answer_live(tab, question(tab, "medication.current").get_by_label("No", exact=True))
    answer_live(tab, question(tab, "medication.allergies").get_by_label("No", exact=True))
    save_and_continue(tab, "Alcohol, smoking and drugs")

    answer_live(tab, question(tab, "substances.cannabis").get_by_label("No, never"))
    answer_live(tab, question(tab, "substances.other_drugs").get_by_label("No", exact=True))
    tab.get_by_label("About how many units of alcohol do you drink in a typical week?").fill("4")
    question(tab, "substances.tobacco").get_by_label("No, never").check()
    question(tab, "substances.dependence").get_by_label("No", exact=True).check()
    save_and_continue(tab, "Mental health")


def mental_health_branch_opens_and_closes_in_the_page(tab: Page) -> None:
    """On the mental health step, "Yes" opens the psychosis, PHQ-9 and GAD-7 steps (3 more steps) and a
    details box, "No" closes them again: both without loading a new page."""
    history = question(tab, "psychiatric.history")
    details = tab.get_by_label("Tell us about your mental health")
    expect(progress(tab)).to_have_text("Step 5 of 7")
    expect(details).to_have_count(0)
    tab.evaluate("window.__marker = 'same page'")

    answer_live(tab, history.get_by_label("Yes", exact=True))
    expect(details).to_be_visible()
    expect(progress(tab)).to_have_text("Step 5 of 10")
    answer_live(tab, history.get_by_label("No", exact=True))
    expect(details).to_have_count(0)
    expect(progress(tab)).to_have_text("Step 5 of 7")
    answer_live(tab, history.get_by_label("Yes", exact=True))
    expect(progress(tab)).to_have_text("Step 5 of 10")
    assert tab.evaluate("window.__marker") == "same page", "the branch was shown by reloading the page"


def phq9_is_answered_and_gad7_shown(tab: Page) -> None:
    tab.get_by_label("Tell us about your mental health").fill("Low mood after a bereavement in 2015, treated by my GP.")
    save_and_continue(tab, "Psychosis")
    for link_id in ("psychosis.diagnosed", "psychosis.experiences", "psychosis.cannabis_reaction",
                    "psychosis.family"):
        question(tab, link_id).get_by_label("No", exact=True).check()
    save_and_continue(tab, "Patient Health Questionnaire (PHQ-9)")
    expect(progress(tab)).to_have_text("Step 7 of 10")
    items = tab.locator("[id^='q-phq9-'][id$='--group']")
    expect(items).to_have_count(9)
    expect(items.first).to_contain_text("Little interest or pleasure in doing things")
    for index in range(9):
        answer_live(tab, items.nth(index).get_by_label("Not at all"))
    save_and_continue(tab, "Generalised Anxiety Disorder questionnaire (GAD-7)")
    expect(tab.locator("[id^='q-gad7-'][id$='--group']")).to_have_count(7)
    expect(tab.get_by_text("Feeling nervous, anxious or on edge")).to_be_visible()

    # The PHQ-9 answers are saved with the rest: the summary shows them.
    tab.goto("/intake/check")
    phq9 = tab.locator("#step-7 + dl")
    expect(tab.locator("#step-7")).to_have_text("Patient Health Questionnaire (PHQ-9)")
    expect(phq9.locator(".nhsuk-summary-list__value").filter(has_text="Not at all")).to_have_count(9)


def branch_is_closed_and_intake_sent(tab: Page) -> None:
    """Back on the mental health step, "No": the branch's steps go (in the page), the next step is
    pregnancy, and the answers summary no longer has the PHQ-9."""
    tab.goto("/intake/step/5")
    expect(progress(tab)).to_have_text("Step 5 of 10")
    tab.evaluate("window.__marker = 'same page'")
    answer_live(tab, question(tab, "psychiatric.history").get_by_label("No", exact=True))
    expect(progress(tab)).to_have_text("Step 5 of 7")
    expect(tab.get_by_label("Tell us about your mental health")).to_have_count(0)
    assert tab.evaluate("window.__marker") == "same page"
    save_and_continue(tab, "Pregnancy and breastfeeding")
    expect(progress(tab)).to_have_text("Step 6 of 7")

    question(tab, "pregnancy.status").get_by_label("No, none of these").check()
    save_and_continue(tab, "Driving and work")
    answer_live(tab, question(tab, "work.drives").get_by_label("No", exact=True))
    tab.get_by_label("What is your job?").fill("Primary school teacher")
    question(tab, "work.safety_critical").get_by_label("No", exact=True).check()
    save_and_continue(tab, "Check your answers before sending them")

    expect(tab.get_by_role("heading", name="Mental health")).to_be_visible()
    for gone in ("Psychosis", "Patient Health Questionnaire (PHQ-9)",
                 "Generalised Anxiety Disorder questionnaire (GAD-7)"):
        expect(tab.get_by_role("heading", name=gone, exact=True)).to_have_count(0)
    expect(tab.get_by_text("Little interest or pleasure in doing things")).to_have_count(0)
    no_sideways_scrolling(tab)
    tab.get_by_role("button", name="Send my answers").click()
    expect(tab.get_by_role("heading", name="Health questions sent")).to_be_visible()
    expect(tab.get_by_text("Your answers mean you can go on to book a consultation")).to_be_visible()


# Documents and the camera -------------------------------------------------------------------

def scanned_pdf() -> bytes:
    """A PDF of at least 20 MiB: pages of photo-like noise (big_pdf), as a phone's scan of a long record."""
    data = big_pdf(PDF_BYTES * 1.3 / 1_000_000)
    assert len(data) >= PDF_BYTES, f"the generated PDF is only {len(data)} bytes"
    return data


def camera_photo(context: BrowserContext, facing: str) -> bytes:
    """One frame from Chromium's fake camera, taken in a tab that plays the phone's camera app."""
    app = context.new_page()
    try:
        app.goto(CAMERA_APP)
        shot = app.evaluate(TAKE_PHOTO, facing)
    finally:
        app.close()
    assert shot["device"].startswith("fake_device"), f"not Chromium's fake camera: {shot['device']}"
    assert (shot["width"], shot["height"]) == (640, 480)
    return base64.b64decode(shot["jpeg"])


def passport_photo() -> bytes:
    """A sharp, well-lit photo of a passport's photo page, drawn."""
    image = Image.new("RGB", (1400, 980), (232, 228, 240))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.rectangle((60, 160, 460, 700), fill=(120, 110, 105))
    draw.text((60, 50), "UNITED KINGDOM OF GREAT BRITAIN AND NORTHERN IRELAND", fill=(25, 25, 60), font=font)
    for row, line in enumerate(("PASSPORT  P  GBR", "Surname / Nom: ASHWORTH", "Given names: ROBIN",
                                "Date of birth: 14 JUN 1979", "Date of expiry: see form")):
        draw.text((520, 180 + row * 90), line, fill=(20, 20, 30), font=font)
    draw.text((60, 800), "P<GBRASHWORTH<<ROBIN<<<<<<<<<<<<<<<<<<<<<<<<<", fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def picker(control_id: str) -> str:
    """The upload control's file input (the design system's script gives its id to a drop button)."""
    return f'#{control_id} input[type="file"][accept^="application/pdf"]'


class ChunkLog:
    """The Content-Range of each chunk request: those the server answered, and those that were lost."""

    def __init__(self, tab: Page):
        self.delivered: list[str] = []
        self.lost: list[str] = []
        tab.on("requestfinished", lambda request: self._add(self.delivered, request))
        tab.on("requestfailed", lambda request: self._add(self.lost, request))

    @staticmethod
    def _add(into: list[str], request: Request) -> None:
        if "content-range" in request.headers:
            into.append(request.headers["content-range"])


def starts(ranges: list[str]) -> list[int]:
    return [int(re.match(r"bytes (\d+)-", r).group(1)) for r in ranges]


def pdf_upload_survives_a_lost_connection(tab: Page, context: BrowserContext, pdf_path) -> None:
    size = pdf_path.stat().st_size
    chunks = ChunkLog(tab)
    signal = {"cut": False, "down": False}

    def phone_signal(route):
        """The connection drops when the chunk at CUT_AT goes out, and stays down until the test says."""
        if not signal["cut"] and starts([route.request.headers.get("content-range", "bytes 0-")])[0] >= CUT_AT:
            signal["cut"] = signal["down"] = True
        return route.abort("internetdisconnected") if signal["down"] else route.continue_()

    chunk_url = re.compile(r".*/documents/uploads/[0-9a-f]{32}$")
    tab.route(chunk_url, phone_signal)
    status = tab.locator("#document-upload-status")
    bar = tab.locator("#document-upload progress")

    tab.get_by_label("What is this document?").select_option(label="Medical summary from your GP")
    tab.locator(picker("document-upload")).set_input_files(pdf_path)
    expect(status).to_contain_text("The connection was interrupted. Trying again", timeout=UPLOAD_DEADLINE)
    context.set_offline(True)
    expect(status).to_contain_text("You are offline. The upload will carry on when your connection is back.",
                                   timeout=20_000)
    stopped_at = int(bar.get_attribute("value"))
    assert 0 < stopped_at < 100, f"the bar shows {stopped_at}% while the upload is stopped"

    signal["down"] = False
    tab.unroute(chunk_url)
    context.set_offline(False)
    expect(status).to_contain_text(f"Uploaded: {pdf_path.name}", timeout=UPLOAD_DEADLINE)
    expect(bar).to_have_attribute("value", "100")
    expect(tab.locator("#documents-list")).to_contain_text(pdf_path.name)
    expect(tab.locator("#documents-list")).to_contain_text("Medical summary from your GP")

    # The server got every byte once, in order: after the lost chunk it carried on from that chunk.
    assert chunks.lost and set(starts(chunks.lost)) == {CUT_AT}, chunks.lost
    delivered = starts(chunks.delivered)
    chunk = 1024 * 1024
    assert delivered == list(range(0, size, chunk)), f"chunks the server got: {chunks.delivered}"
    assert chunks.delivered[-1].endswith(f"-{size - 1}/{size}")


# The test -----------------------------------------------------------------------------------

def test_a_new_patient_onboards_on_a_phone_and_becomes_eligible(camera_browser, browser, base_url, open_context,
                                                                 tmp_path):
    name = f"Robin Ashworth{uuid.uuid4().hex[:4]}"
    email = f"robin.{uuid.uuid4().hex[:8]}@example.com"
    pdf_path = tmp_path / "GP summary of care.pdf"
    pdf_path.write_bytes(scanned_pdf())

    phone_context = open_context(camera_browser, **PHONE)
    phone_context.route(f"{base_url}{CAMERA_APP}", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><title>Camera</title>"))
    phone = phone_context.new_page()

    # Registration and the health questions.
    register(phone, name, email)
    no_sideways_scrolling(phone)
    patient_id = phone.get_by_role("link", name="View your record").get_attribute("href").rsplit("/", 1)[1]
    answer_first_steps(phone)
    mental_health_branch_opens_and_closes_in_the_page(phone)
    phq9_is_answered_and_gad7_shown(phone)
    branch_is_closed_and_intake_sent(phone)

    # Documents: a 20 MB PDF through a lost connection, and a photo from the camera.
    phone.goto("/documents")
    camera = phone.locator("#document-upload-camera")
    expect(phone.locator("#document-upload .verity-upload__camera-button")).to_be_visible()
    assert camera.get_attribute("capture") == "environment"
    assert phone.evaluate("navigator.mediaDevices.getUserMedia({video: true}).then(() => 'allowed', e => e.name)") \
        == "NotAllowedError", "the documents page now captures in the page: use that instead of the camera app tab"
    pdf_upload_survives_a_lost_connection(phone, phone_context, pdf_path)

    phone.get_by_label("What is this document?").select_option(label="Letter from a specialist")
    camera.set_input_files({"name": "photo.jpg", "mimeType": "image/jpeg",
                            "buffer": camera_photo(phone_context, "environment")})
    expect(phone.locator("#document-upload-status")).to_contain_text("Uploaded: photo.jpg",
                                                                    timeout=UPLOAD_DEADLINE)
    expect(phone.locator("#document-upload-error")).to_be_hidden()
    expect(phone.locator("#documents-list tr", has_text="photo.jpg")).to_contain_text("Letter from a specialist")
    no_sideways_scrolling(phone)

    # Identity: the passport photo page and a selfie from the front camera.
    phone.goto("/identity/new")
    phone.get_by_label("Passport", exact=True).check()
    phone.locator(picker("document_photo")).set_input_files(
        {"name": "passport.jpg", "mimeType": "image/jpeg", "buffer": passport_photo()})
    expect(phone.locator("#document_photo-status")).to_contain_text("Uploaded: passport.jpg",
                                                                    timeout=UPLOAD_DEADLINE)
    assert phone.locator("#selfie-camera").get_attribute("capture") == "user"
    phone.locator("#selfie-camera").set_input_files(
        {"name": "selfie.jpg", "mimeType": "image/jpeg", "buffer": camera_photo(phone_context, "user")})
    expect(phone.locator("#selfie-status")).to_contain_text("Uploaded: selfie.jpg", timeout=UPLOAD_DEADLINE)
    expiry = dt.date.today() + dt.timedelta(days=3 * 365)
    phone.locator("#expiry_day").fill(str(expiry.day))
    phone.locator("#expiry_month").fill(str(expiry.month))
    phone.locator("#expiry_year").fill(str(expiry.year))
    no_sideways_scrolling(phone)
    phone.get_by_role("button", name="Send for checking").click()
    expect(phone.locator("#identity-status")).to_contain_text("Waiting for the clinic")

    # Consents: agree to every one.
    phone.goto("/consents")
    boxes = phone.locator("input[name=document]")
    assert boxes.count() > 0, "no consent documents to agree to"
    for index in range(boxes.count()):
        boxes.nth(index).check()
    phone.get_by_role("button", name="Save my choices").click()
    expect(phone.get_by_text("Thank you. Your choices are saved")).to_be_visible()
    phone.goto("/dashboard")
    expect(phone.locator("#journey-outcome")).to_have_count(0)  # nothing decided before the identity check
    expect(phone.locator("#journey-state")).to_have_text("Health questions sent")

    # Reception confirms the identity.
    desk = open_context(browser, **DESKTOP).new_page()
    staff_signs_in(desk, DEMO_RECEPTION)
    desk.goto("/identity/reviews")
    desk.locator("#review-queue").get_by_role("link", name=name).click()
    expect(desk.get_by_role("heading", name=f"Identity check: {name}")).to_be_visible()
    expect(desk.locator("#selfie-photo")).to_be_visible()
    desk.get_by_label("Approve: this is the patient").check()
    desk.get_by_role("button", name="Save decision").click()
    expect(desk.get_by_text(f"Identity confirmed for {name}.")).to_be_visible()

    # The patient sees the outcome.
    phone.goto("/dashboard")
    expect(phone.locator("#journey-outcome").get_by_role("heading", name="You are eligible")).to_be_visible()
    expect(phone.locator("#journey-state")).to_have_text("Ready to book")
    no_sideways_scrolling(phone)

    # The stored answers, as FHIR: the branch closed, so none of its answers were kept.
    admin_context = open_context(browser, **DESKTOP)
    admin = admin_context.new_page()
    staff_signs_in(admin, DEMO_ADMIN)
    admin.goto(f"/patients/{patient_id}/intake")
    link = admin.get_by_role("link", name="FHIR QuestionnaireResponse (JSON)")
    response = admin_context.request.get(link.get_attribute("href"))
    assert response.ok, response.status
    resource = response.json()
    assert resource["resourceType"] == "QuestionnaireResponse" and resource["status"] == "completed"
    assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
    answered = dict(link_ids_and_answers(resource.get("item", [])))
    assert answered["psychiatric.history"] == [{"valueBoolean": False}]
    assert "treatments.licensed" in answered and "work.job" in answered
    leaked = sorted(link_id for link_id in answered if link_id.split(".")[0] in BRANCH_STEPS)
    assert not leaked, f"answers of the closed branch are stored: {leaked}"


def link_ids_and_answers(items: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Every (linkId, answers) in a QuestionnaireResponse's items, groups and nested items included."""
    for item in items:
        yield item["linkId"], item.get("answer", [])
        yield from link_ids_and_answers(item.get("item", []))
        for answer in item.get("answer", []):
            yield from link_ids_and_answers(answer.get("item", []))
