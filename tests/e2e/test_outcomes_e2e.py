"""Outcomes, as people use them: on a phone, the demo patient answers the GAD-7 that is due and sees their
anxiety chart gain the point; the clinician then sees it in the Outcomes tab of a consultation's side panel
and on the patient's outcomes page.

The demo history and the due GAD-7 come from `flask outcomes demo`, the same `load_demo_outcomes` that
`flask demo load` runs; it asks again when the demo GAD-7 was answered by an earlier run.
"""

from __future__ import annotations

import datetime as dt
import re

import defusedxml.ElementTree as ET
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.people import DEMO_PATIENT, clinician_signs_in, sign_in
from tests.e2e.test_prescribing_e2e import book_demo_call, call_page

pytestmark = pytest.mark.e2e

SVG = "{http://www.w3.org/2000/svg}"


def _gad7_points(page: Page, selector: str) -> list[tuple[str, str]]:
    markup = page.locator(f"{selector} svg").first.evaluate("node => node.outerHTML")
    svg = ET.fromstring(markup)
    return [(c.get("data-date"), c.get("data-value")) for c in svg.iter(f"{SVG}circle")]


def test_the_patient_answers_a_due_gad7_on_a_phone_and_the_clinician_sees_it(phone: Page, browser, base_url,
                                                                             flask_cli):
    output = flask_cli("outcomes", "demo").stdout
    patient_id = int(re.search(r"patient (\d+)", output).group(1))

    sign_in(phone, *DEMO_PATIENT)
    phone.goto("/outcomes")
    expect(phone.get_by_role("heading", name="Your progress")).to_be_visible()
    before = _gad7_points(phone, "#chart-70274-6")
    assert len(before) >= 5
    expect(phone.locator("#chart-70274-6-summary")).to_contain_text("Your anxiety (GAD-7) went down")
    phone.locator("#due-questionnaires").get_by_role("link", name="Anxiety (GAD-7)").click()
    expect(phone.get_by_role("heading", level=1, name="Anxiety (GAD-7)")).to_be_visible()

    # Sending too early names what is missing and keeps what was chosen.
    phone.locator("label[for='q-gad7-69725-0--2']").click()  # "Several days"
    phone.get_by_role("button", name="Send my answers").click()
    expect(phone.get_by_role("heading", name="There is a problem")).to_be_visible()
    expect(phone.locator("#q-gad7-69725-0--2")).to_be_checked()

    for link_id in ("68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"):
        phone.locator(f"label[for='q-gad7-{link_id}']").click()  # "Not at all"
    phone.locator("label[for='q-gad7-69733-4--3']").click()  # "More than half the days": total 3
    # A problem ticked brings in the difficulty question (htmx re-renders the questions).
    difficulty = phone.locator("label[for='q-gad7-69722-7']")
    expect(difficulty).to_be_visible()
    difficulty.click()
    phone.get_by_role("button", name="Send my answers").click()
    expect(phone.get_by_text("Thank you: your answers are sent to your clinician")).to_be_visible()
    after = _gad7_points(phone, "#chart-70274-6")
    today = dt.date.today().isoformat()
    assert len(after) == len(before) + 1 and after[-1] == (today, "3")
    expect(phone.locator("#due-questionnaires")).to_have_count(0)

    # In a consultation with the patient, the Outcomes tab of the side panel has the new point.
    appointment = book_demo_call(flask_cli)
    with call_page(browser, base_url) as page:
        clinician_signs_in(page)
        page.goto(f"/consult/{appointment}")
        page.locator("#panel").get_by_role("button", name="Outcomes").click()
        outcomes = page.locator("#panel-outcomes #outcomes-panel")
        expect(outcomes).to_be_visible()
        expect(outcomes).to_contain_text("Anxiety (GAD-7)")
        expect(outcomes.locator("#chart-70274-6 svg")).to_be_attached()
        assert _gad7_points(page, "#outcomes-panel #chart-70274-6")[-1] == (today, "3")
        page.goto(f"/patients/{patient_id}/outcomes")
        expect(page.get_by_role("heading", name="Outcomes")).to_be_visible()
        expect(page.locator("#chart-70274-6")).to_contain_text("Latest: 3 points (minimal)")
