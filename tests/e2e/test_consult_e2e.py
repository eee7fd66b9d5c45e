"""The video consultation as people use it: the demo patient runs the pre-call check (a real WebRTC round
trip to the server's aiortc echo peer), waits; the demo clinician admits them; both browsers decode each
other's video and hear each other's audio (asserted from getStats()); the clinician writes and signs the
note in the side panel during the call, ends it, and the note is in the record with its revision.

Two headless Chromium contexts with fake camera and microphone, against an embedded server of this
module's own. All media stays on 127.0.0.1. Chromium may use loopback (--allow-loopback-in-peer-connection),
the ICE servers are empty, the echo peer offers only 127.0.0.1 (CONSULT_ECHO_ADDRESSES), and a test-only
init script drops every candidate not on 127.0.0.1 in both directions. That alone is not enough: Chromium
still sends connectivity checks from its other interfaces' sockets to the loopback candidates it is given,
and answers then go to the machine's other address (seen here: 192.0.2.2 -> 127.0.0.1 was the chosen pair).
So the server and the browsers run in a private network namespace whose only interface is lo
(bench.consult.LoopbackNamespace); where one cannot be made the test is skipped, never run on the machine's
other addresses. The test checks that each side's end of the connected pair is loopback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from bench.consult import CallServer, LoopbackNamespace, NamespaceUnavailable, call_server, make_pairs
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ConsoleLog
from tests.e2e.people import DEMO_CLINICIAN, DEMO_PATIENT

pytestmark = pytest.mark.e2e

MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]

#: Test only: keep every ICE candidate on 127.0.0.1, and keep a list of the page's peer connections so the
#: test can read their getStats(). Never part of the application.
LOOPBACK_ONLY = r"""
(() => {
  const Native = window.RTCPeerConnection
  if (!Native) return
  const loopback = line => {
    const parts = String(line).replace(/^a=/, '').split(' ')
    return parts.length > 4 && parts[4].startsWith('127.')
  }
  const strip = sdp => sdp.split('\r\n').filter(l => !l.startsWith('a=candidate:') || loopback(l)).join('\r\n')
  const keepEvent = handler => event => {
    if (event.candidate && event.candidate.candidate && !loopback(event.candidate.candidate)) return
    return handler.call(this, event)
  }
  const onCandidate = Object.getOwnPropertyDescriptor(Native.prototype, 'onicecandidate')
  const localDescription = Object.getOwnPropertyDescriptor(Native.prototype, 'localDescription')
  window.__pcs = []
  class LoopbackOnly extends Native {
    constructor (...args) { super(...args); window.__pcs.push(this) }
    addEventListener (type, handler, options) {
      return super.addEventListener(type, type === 'icecandidate' ? keepEvent(handler) : handler, options)
    }
    set onicecandidate (handler) { onCandidate.set.call(this, handler ? keepEvent(handler) : handler) }
    get onicecandidate () { return onCandidate.get.call(this) }
    get localDescription () {
      const description = localDescription.get.call(this)
      if (!description) return description
      const copy = { type: description.type, sdp: strip(description.sdp) }
      return { ...copy, toJSON () { return copy } }
    }
    setRemoteDescription (description) {
      const stripped = description && description.sdp ? { type: description.type, sdp: strip(description.sdp) } : null
      return super.setRemoteDescription(stripped || description)
    }
    addIceCandidate (candidate) {
      if (candidate && candidate.candidate && !loopback(candidate.candidate)) return Promise.resolve()
      return super.addIceCandidate(candidate)
    }
  }
  window.RTCPeerConnection = LoopbackOnly
})()
"""

#: Figures of the page's connected peer connection (the call, not the finished echo check).
STATS = """
async () => {
  const pcs = (window.__pcs || []).filter(pc => pc.connectionState === 'connected')
  if (!pcs.length) return null
  const pc = pcs[pcs.length - 1]
  const report = await pc.getStats()
  const out = { frames: 0, audioBytes: 0, local: null, remote: null, pairs: [] }
  let pairId = null
  report.forEach(s => { if (s.type === 'transport') pairId = s.selectedCandidatePairId })
  report.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames += s.framesDecoded || 0
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioBytes += s.bytesReceived || 0
    if (s.type === 'candidate-pair' && s.id === pairId) {
      out.local = report.get(s.localCandidateId).address
      out.remote = report.get(s.remoteCandidateId).address
    }
    if (s.type === 'remote-candidate' || s.type === 'local-candidate') out.pairs.push(s.address)
  })
  return out
}
"""


@pytest.fixture(scope="module")
def namespace() -> Iterator[LoopbackNamespace]:
    try:
        with LoopbackNamespace() as made:
            yield made
    except NamespaceUnavailable as exc:
        pytest.skip(f"no private network namespace for the media test ({exc}); media must stay on 127.0.0.1")


@pytest.fixture(scope="module")
def consult_server(namespace, tmp_path_factory) -> Iterator[CallServer]:
    folder = tmp_path_factory.mktemp("e2e-consult")
    try:
        with call_server(namespace, folder) as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{(folder / 'server.log').read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def media_browser(namespace, playwright, tmp_path_factory) -> Iterator[Browser]:
    chromium = namespace.wrapper(tmp_path_factory.mktemp("chromium"), CHROMIUM)
    browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS + MEDIA_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def new_page(browser: Browser, base_url: str, console: ConsoleLog, **options) -> tuple[BrowserContext, Page]:
    context = browser.new_context(base_url=base_url, viewport=options.pop("viewport", {"width": 1280, "height": 800}),
                                  permissions=["camera", "microphone"], **options)
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    context.on("page", console.watch)
    return context, context.new_page()


def sign_in(page: Page, email: str, password: str, totp: str | None = None) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()
    if totp:
        page.locator("#totp-code").fill(pyotp.TOTP(totp).now())
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()


def poll_stats(page: Page, ready, timeout: float = 20.0) -> dict:
    """Read the page's call figures every quarter second until `ready(figures)` (bounded)."""
    deadline = time.monotonic() + timeout
    figures = None
    while time.monotonic() < deadline:
        figures = page.evaluate(STATS)
        if figures and ready(figures):
            return figures
        page.wait_for_timeout(250)
    raise AssertionError(f"the call's media did not flow within {timeout:.0f} s: {figures}")


def wait_for_media(page: Page) -> dict:
    """Video frames are decoded and audio bytes arrive, and both keep growing."""
    first = poll_stats(page, lambda s: s["frames"] > 5 and s["audioBytes"] > 2000)
    return poll_stats(page, lambda s: s["frames"] > first["frames"] + 10 and s["audioBytes"] > first["audioBytes"])


def test_patient_checks_waits_is_admitted_and_both_see_and_hear_each_other(media_browser, consult_server):
    appointment = consult_server.book()
    console = ConsoleLog()
    patient_context, patient = new_page(media_browser, consult_server.url, console,
                                        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    doctor_context, doctor = new_page(media_browser, consult_server.url, console)
    try:
        # The patient opens the call page and runs the pre-call check: preview, meter, echo round trip.
        sign_in(patient, *DEMO_PATIENT)
        patient.goto(f"/consult/{appointment}")
        patient.get_by_role("button", name="Start the check").click()
        expect(patient.locator("#check-media")).to_have_attribute("data-state", "ok")
        expect(patient.locator("#check-network")).to_have_attribute("data-state", "ok", timeout=30_000)
        expect(patient.locator("#check-network")).to_contain_text(re.compile(r"round trip \d+ ms"))
        assert int(patient.locator("#precall").get_attribute("data-rtt")) < 1000
        patient.get_by_role("button", name="Join the waiting room").click()
        expect(patient.get_by_role("heading", name="You are in the waiting room")).to_be_visible()

        # The clinician sees who is waiting and admits them.
        sign_in(doctor, DEMO_CLINICIAN[0], DEMO_CLINICIAN[1], DEMO_CLINICIAN[2])
        doctor.goto("/consult/waiting")
        expect(doctor.locator(f'#waiting-table tr[data-appointment="{appointment}"]')).to_contain_text("Waiting")
        doctor.locator(f'#waiting-table tr[data-appointment="{appointment}"]').get_by_role("link", name="Admit").click()
        expect(doctor.locator("#waiting-status")).to_contain_text(re.compile("is waiting|Connecting|in the call"))

        # Both sides decode the other's video and receive their audio, over loopback only.
        for page in (doctor, patient):
            stats = wait_for_media(page)
            # Each page's end of the connected pair is loopback: together, both ends are.
            assert stats["local"].startswith("127."), stats
            assert all(address.startswith("127.") or address == "" for address in stats["pairs"]), stats
        expect(patient.locator("#call")).to_be_visible()
        expect(doctor.locator("#quality-label")).to_have_text(re.compile("good|fair|poor"), timeout=10_000)

        # The clinician writes the note beside the video: it autosaves, then is signed.
        doctor.locator("#note-text").fill("Chronic back pain, sleeps 4 h. Discussed options; start low dose.")
        expect(doctor.locator("#note-status")).to_contain_text("Draft saved at", timeout=10_000)
        doctor.get_by_role("button", name="Sign the note").click()
        expect(doctor.locator("#note-signed")).to_contain_text("Revision 1, signed")
        stats = wait_for_media(doctor)  # the call went on while the panel was used
        assert stats["frames"] > 0

        # Ending the call completes the appointment and leaves the clinician on the record.
        doctor.get_by_role("button", name="End consultation").click()
        doctor.wait_for_url(re.compile(r"/patients/\d+$"))
        expect(patient.locator("#after-call-heading")).to_be_visible()
        patient_id = doctor.url.rsplit("/", 1)[1]
        doctor.goto(f"/consult/patients/{patient_id}/notes")
        expect(doctor.locator(".consult-revision").first).to_contain_text("Revision 1 (current)")
        expect(doctor.locator(".consult-revision").first).to_contain_text("start low dose")
        doctor.goto(f"/appointments/{appointment}")
        expect(doctor.locator("#appointment-status")).to_have_text("Completed")
    finally:
        patient_context.close()
        doctor_context.close()
    console.check()


def test_a_patient_who_drops_out_or_reloads_comes_back_into_the_same_call(media_browser, consult_server):
    # A pair of its own: the demo pair's next free time would be past the waiting room's window.
    [pair] = make_pairs(consult_server, 1)
    appointment = pair["appointment"]
    console = ConsoleLog()
    patient_context, patient = new_page(media_browser, consult_server.url, console)
    doctor_context, doctor = new_page(media_browser, consult_server.url, console)
    try:
        sign_in(patient, pair["patient"], pair["password"])
        sign_in(doctor, pair["clinician"], pair["password"], pair["totp"])
        patient.goto(f"/consult/{appointment}")
        patient.get_by_role("button", name="Join the waiting room").click()
        doctor.goto(f"/consult/{appointment}")
        doctor.get_by_role("button", name=re.compile("^Admit")).click()
        wait_for_media(doctor)

        # The patient's tab vanishes (no goodbye): the clinician is told, and the call waits for them.
        patient.close()
        expect(doctor.locator("#call-status")).to_contain_text("The other person has lost connection")
        patient = patient_context.new_page()
        patient.goto(f"/consult/{appointment}")
        patient.get_by_role("button", name="Join the waiting room").click()  # admitted already: straight in
        expect(patient.locator("#call")).to_be_visible()
        wait_for_media(doctor)
        wait_for_media(patient)

        # A reload rejoins the same call by itself.
        patient.reload()
        expect(patient.locator("#call")).to_be_visible()
        wait_for_media(patient)
        wait_for_media(doctor)
        expect(doctor.locator("#call-status")).to_have_text("")
    finally:
        patient_context.close()
        doctor_context.close()
    console.check()
