"""Identity checks with the built-in staff review: capture, MRZ, review queue, decisions, access.

Helpers at the top (photos, patients at the right journey state) are shared with the webhook
tests and the route x role walk.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import threading

import pytest
import sqlalchemy as sa
from markupsafe import escape
from PIL import Image, ImageDraw

from app.audit.models import AuditEvent
from app.auth.models import Role
from app.extensions import db
from app.patients.journey import JourneyState
from tests.conftest import Persona, World, audit_actions, csrf_from, sign_in_as

IN_DATE = dt.date.today() + dt.timedelta(days=3 * 365)


# Helpers ------------------------------------------------------------------------------------

def jpeg(seed: int = 0, size: tuple[int, int] = (900, 600)) -> bytes:
    """A sharp, well-lit photo-like JPEG (a card with lines of text), which passes image checks."""
    image = Image.new("RGB", size, (238, 236, 228))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, size[0] - 40, size[1] - 40), outline=(20, 40, 60), width=6)
    draw.rectangle((70, 90, 300, 400), fill=(120 + seed % 100, 90, 80), outline=(0, 0, 0), width=3)
    for row in range(12):
        y = 90 + row * 36
        draw.text((340, y), f"LINE {row} SPECIMEN {seed:04d} <<<<<< 0123456789", fill=(10, 10, 10))
        draw.line((340, y + 24, size[0] - 80, y + 24), fill=(60, 60, 60), width=2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def store_photos(app, persona: Persona, seed: int = 0) -> tuple[int, int]:
    """Store a document photo and a selfie for the patient through the documents domain."""
    from app.documents import services as documents

    with app.app_context():
        document = documents.store_file(patient_id=persona.patient_id, kind="id_document", filename="passport.jpg",
                                        stream=io.BytesIO(jpeg(seed)), uploaded_by=persona.user_id)
        selfie = documents.store_file(patient_id=persona.patient_id, kind="selfie", filename="selfie.jpg",
                                      stream=io.BytesIO(jpeg(seed + 1, (600, 800))), uploaded_by=persona.user_id)
        return document.id, selfie.id


def submit_check(app, persona: Persona, *, expiry: dt.date = IN_DATE, document_type: str = "passport",
                 mrz: str | None = None, seed: int = 0) -> int:
    from app.identity import services as identity
    from app.identity.models import DocumentType
    from app.patients import services as patients

    document_id, selfie_id = store_photos(app, persona, seed)
    with app.app_context():
        check = identity.submit(patients.get(persona.patient_id), document_type=DocumentType(document_type),
                                document_id=document_id, selfie_document_id=selfie_id, expiry=expiry, mrz_text=mrz)
        return check.id


def intake_done(app, persona: Persona, outcome: str = "eligible") -> None:
    from app.patients import onboarding
    from app.patients import services as patients

    with app.app_context():
        onboarding.intake_submitted(patients.get(persona.patient_id), outcome, [])


def mrz_for(surname: str, born: dt.date, expiry: dt.date, number: str = "925076473") -> str:
    """Two TD3 lines with correct check digits for the given details."""
    from app.identity.mrz import check_digit

    line1 = f"P<GBR{surname.upper()}<<SAM".ljust(44, "<")
    dob, exp = born.strftime("%y%m%d"), expiry.strftime("%y%m%d")
    line2 = f"{number}{check_digit(number)}GBR{dob}{check_digit(dob)}M{exp}{check_digit(exp)}" + "<" * 15
    return f"{line1}\n{line2}{check_digit(line2[0:10] + line2[13:20] + line2[21:43])}"


def check_of(app, check_id: int):
    from app.identity import services as identity

    with app.app_context():
        check = identity.get(check_id)
        db.session.expunge(check)
        return check


def patient_row(app, persona: Persona):
    from app.patients import services as patients

    with app.app_context():
        patient = patients.get(persona.patient_id)
        db.session.expunge(patient)
        return patient


def form_post(client, url: str, data: dict, files: dict[str, bytes] | None = None):
    token = csrf_from(client.get(url).get_data(as_text=True))
    payload = {"csrf_token": token, **data}
    for name, content in (files or {}).items():
        payload[name] = (io.BytesIO(content), f"{name}.jpg", "image/jpeg")
    return client.post(url, data=payload, content_type="multipart/form-data")


def expiry_fields(day: dt.date) -> dict[str, str]:
    return {"expiry_day": str(day.day), "expiry_month": str(day.month), "expiry_year": str(day.year)}


@pytest.fixture
def patient(world: World) -> Persona:
    return world.patient("alice")


@pytest.fixture
def reception(world: World) -> Persona:
    return world.staff(Role.RECEPTION)


# The patient submits ------------------------------------------------------------------------

def test_patient_submits_id_and_selfie_and_sees_the_wait(app, client, patient):
    sign_in_as(client, patient)
    assert client.get("/identity").headers["Location"].endswith("/identity/new")
    response = form_post(client, "/identity/new", {"document_type": "passport", **expiry_fields(IN_DATE)},
                         {"document_photo": jpeg(1), "selfie": jpeg(2)})
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get("/identity").get_data(as_text=True)
    assert "We are checking your identity, usually within one working day" in page

    from app.documents import services as documents
    from app.identity import services as identity
    from app.patients import services as patients

    with app.app_context():
        check = identity.latest_for(patients.get(patient.patient_id))
        assert (check.status.value, check.provider, check.document_expiry) == ("submitted", "staff", IN_DATE)
        assert documents.get(check.document_id).kind == "id_document"
        assert documents.get(check.selfie_document_id).kind == "selfie"
        assert check.provider_reference == f"staff-{check.id}"
    assert "identity.submitted" in audit_actions(app)
    # A second visit to the start page goes to the status: one open check at a time.
    assert client.get("/identity/new").headers["Location"].endswith("/identity")


def test_expired_document_is_refused_and_the_photos_are_kept_for_the_retry(app, client, patient):
    sign_in_as(client, patient)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    response = form_post(client, "/identity/new", {"document_type": "driving_licence", **expiry_fields(yesterday)},
                         {"document_photo": jpeg(1), "selfie": jpeg(2)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"Your photocard driving licence expired on {yesterday.day} {yesterday:%B %Y}" in page
    assert "identity.submitted" not in audit_actions(app)
    kept = dict(re.findall(r'name="(document_upload|selfie_upload)" type="hidden" value="(\d+)"', page))
    assert set(kept) == {"document_upload", "selfie_upload"}, "the accepted photos ride along with the form"
    assert page.count("We have this photo") == 2

    # The patient corrects the date only: no new photos needed.
    retry = form_post(client, "/identity/new", {"document_type": "driving_licence", **expiry_fields(IN_DATE), **kept})
    assert retry.status_code == 302
    check = check_of(app, _latest_id(app, patient))
    assert (check.document_id, check.selfie_document_id) == (int(kept["document_upload"]), int(kept["selfie_upload"]))


def _latest_id(app, persona: Persona) -> int:
    from app.identity import services as identity
    from app.patients import services as patients

    with app.app_context():
        return identity.latest_for(patients.get(persona.patient_id)).id


def test_photos_sent_ahead_by_the_upload_control_go_with_the_check(app, client, patient):
    document_id, selfie_id = store_photos(app, patient)  # what the control's chunked upload leaves behind
    sign_in_as(client, patient)
    page = client.get("/identity/new").get_data(as_text=True)
    assert 'name="document_uploaded"' in page and 'name="selfie_uploaded"' in page
    assert 'capture="environment"' in page and 'capture="user"' in page
    response = form_post(client, "/identity/new", {"document_type": "passport", **expiry_fields(IN_DATE),
                                                   "document_uploaded": str(document_id),
                                                   "selfie_uploaded": str(selfie_id)})
    assert response.status_code == 302
    check = check_of(app, _latest_id(app, patient))
    assert (check.document_id, check.selfie_document_id) == (document_id, selfie_id)


def test_missing_photos_and_details_are_each_named(client, patient):
    sign_in_as(client, patient)
    response = form_post(client, "/identity/new", {})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in ("Choose the document you will use", "Take a photo of your document", "Take a selfie",
                    "The expiry date must include a day"):
        assert message in page


def test_another_patients_photo_cannot_be_attached(app, world, patient):
    from app.identity import services as identity
    from app.identity.models import DocumentType
    from app.patients import services as patients

    bob = world.patient("bob")
    bobs_document, bobs_selfie = store_photos(app, bob)
    with app.app_context(), pytest.raises(identity.IdentityError) as refused:
        identity.submit(patients.get(patient.patient_id), document_type=DocumentType.PASSPORT,
                        document_id=bobs_document, selfie_document_id=bobs_selfie, expiry=IN_DATE)
    assert refused.value.field == "document"


def test_hidden_photo_ids_of_another_patient_are_ignored_by_the_form(app, client, world, patient):
    bobs_document, bobs_selfie = store_photos(app, world.patient("bob"))
    sign_in_as(client, patient)
    response = form_post(client, "/identity/new", {"document_type": "passport", **expiry_fields(IN_DATE),
                                                   "document_upload": str(bobs_document),
                                                   "selfie_upload": str(bobs_selfie),
                                                   "document_uploaded": str(bobs_document),
                                                   "selfie_uploaded": str(bobs_selfie)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Take a photo of your document" in page and "Take a selfie" in page
    assert "identity.submitted" not in audit_actions(app)


def test_a_second_open_check_is_refused(app, patient):
    from app.identity import services as identity

    submit_check(app, patient)
    with pytest.raises(identity.IdentityError, match="already with the clinic"):
        submit_check(app, patient, seed=5)


def test_oversized_upload_keeps_the_patient_on_the_form_with_a_reason(app, client, patient):
    app.config["IDENTITY_MAX_UPLOAD_BYTES"] = 20_000
    sign_in_as(client, patient)
    response = form_post(client, "/identity/new", {"document_type": "passport", **expiry_fields(IN_DATE)},
                         {"document_photo": jpeg(1, (1600, 1200)), "selfie": jpeg(2)})
    assert response.status_code == 413
    assert "too large to send together" in response.get_data(as_text=True)
    assert "identity.submitted" not in audit_actions(app)


def test_upload_form_example_mrz_is_itself_valid(client, patient):
    from app.identity.mrz import parse_td3

    sign_in_as(client, patient)
    page = client.get("/identity/new").get_data(as_text=True)
    lines = re.findall(r'<code class="verity-inline-code">([^<]+)</code>', page)
    assert len(lines) == 2
    parse_td3("\n".join(line.replace("&lt;", "<") for line in lines), today=dt.date(2026, 1, 1))


# MRZ at submission --------------------------------------------------------------------------

def test_valid_mrz_is_kept_encrypted_and_shown_to_the_reviewer(app, client, patient, reception):
    born = patient_row(app, patient).date_of_birth
    mrz = mrz_for("example", born, IN_DATE)
    check_id = submit_check(app, patient, mrz=mrz)
    with app.app_context():
        stored = db.session.execute(sa.text("SELECT mrz_enc FROM identity_checks WHERE id = :id"),
                                    {"id": check_id}).scalar_one()
    assert stored and b"925076473" not in bytes(stored), "the passport number is not stored in clear"
    sign_in_as(client, reception)
    page = client.get(f"/identity/reviews/{check_id}").get_data(as_text=True)
    assert "Check digits valid" in page
    assert "Name in the lines: SAM EXAMPLE" in page


@pytest.mark.parametrize(("change", "message"), [
    ("birth", "is not the date of birth on your account"),
    ("expiry", "is not the expiry date you entered"),
    ("digit", "does not match its check digit"),
])
def test_mrz_that_cannot_be_this_passport_is_refused_on_the_form(app, client, patient, change, message):
    born = patient_row(app, patient).date_of_birth
    mrz = mrz_for("example", born - dt.timedelta(days=1) if change == "birth" else born,
                  IN_DATE + dt.timedelta(days=1) if change == "expiry" else IN_DATE)
    if change == "digit":
        mrz = mrz[:45 + 9] + str((int(mrz[45 + 9]) + 1) % 10) + mrz[45 + 10:]
    sign_in_as(client, patient)
    response = form_post(client, "/identity/new", {"document_type": "passport", "mrz": mrz, **expiry_fields(IN_DATE)},
                         {"document_photo": jpeg(1), "selfie": jpeg(2)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert str(escape(mrz.split("\n")[1])) in page, "what the patient typed is still in the box"
    assert "identity.submitted" not in audit_actions(app)


def test_mrz_lines_with_a_driving_licence_are_refused(app, patient):
    from app.identity import services as identity

    born = patient_row(app, patient).date_of_birth
    with pytest.raises(identity.IdentityError, match="Only passports") as refused:
        submit_check(app, patient, document_type="driving_licence", mrz=mrz_for("example", born, IN_DATE))
    assert refused.value.field == "mrz"


# Staff review -------------------------------------------------------------------------------

def _decide(client, check_id: int, **data):
    """Open the check's review page, then send the decision form from it."""
    token = csrf_from(client.get(f"/identity/reviews/{check_id}").get_data(as_text=True))
    return client.post(f"/identity/reviews/{check_id}/decision", data={"csrf_token": token, **data})


@pytest.mark.parametrize("outcome", ["eligible", "needs_clinical_review"])
def test_reception_approval_verifies_identity_and_the_dashboard_shows_the_outcome(app, world, patient, reception,
                                                                                  outcome):
    intake_done(app, patient, outcome)
    check_id = submit_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, reception)
    response = _decide(staff, check_id, decision="approve")
    assert response.status_code == 302
    assert "Identity confirmed for Alice Example" in staff.get(response.headers["Location"]).get_data(as_text=True)

    record = patient_row(app, patient)
    assert record.identity_verified_at is not None
    assert record.journey_state == outcome
    check = check_of(app, check_id)
    assert (check.status.value, check.reviewer_id) == ("approved", reception.user_id)
    actions = audit_actions(app)
    assert actions.index("identity.approved") < actions.index("journey.identity_verified") < actions.index(
        f"journey.{outcome}")

    own = app.test_client()
    sign_in_as(own, patient)
    dashboard = own.get("/dashboard").get_data(as_text=True)
    assert JourneyState(outcome).label in dashboard  # "Ready to book" / "A clinician is reviewing your answers"
    assert "Your identity is confirmed." in dashboard
    assert "Your identity is confirmed" in own.get("/identity").get_data(as_text=True)


def test_approval_before_the_intake_takes_effect_when_the_intake_arrives(app, patient, reception):
    from app.auth.models import User
    from app.identity import services as identity

    check_id = submit_check(app, patient)
    with app.app_context():
        identity.approve(identity.get(check_id), reviewer=db.session.get(User, reception.user_id))
    record = patient_row(app, patient)
    assert record.identity_verified_at is not None and record.journey_state == "registered"
    intake_done(app, patient, "eligible")
    assert patient_row(app, patient).journey_state == "eligible"


def test_rejection_reason_is_shown_to_the_patient_who_can_try_again(app, patient, reception):
    check_id = submit_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, reception)
    response = _decide(staff, check_id, decision="reject", reason="photo_unclear",
                       note="The glare hides your date of birth.")
    assert response.status_code == 302

    own = app.test_client()
    sign_in_as(own, patient)
    page = own.get("/identity").get_data(as_text=True)
    assert "We could not read your document in the photo" in page
    assert "The glare hides your date of birth." in page
    assert 'href="/identity/new"' in page and "Try again" in page
    start = own.get("/identity/new")
    assert start.status_code == 200 and "The glare hides your date of birth." in start.get_data(as_text=True)

    second = submit_check(app, patient, seed=7)
    assert second != check_id
    assert check_of(app, check_id).status.value == "rejected"
    assert check_of(app, second).status.value == "submitted"
    assert "identity.rejected" in audit_actions(app)


@pytest.mark.parametrize(("data", "message"), [
    ({}, "Choose approve or reject"),
    ({"decision": "reject"}, "Choose the reason the patient will see"),
    ({"decision": "reject", "reason": "other"}, "Write the reason the patient will see"),
])
def test_a_decision_needs_its_reason(app, patient, reception, data, message):
    check_id = submit_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, reception)
    response = _decide(staff, check_id, **data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert check_of(app, check_id).status.value == "submitted"


def test_a_free_text_reason_reaches_the_patient_as_written(app, patient, reception):
    check_id = submit_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, reception)
    assert _decide(staff, check_id, decision="reject", reason="other",
                   note="Please use your passport: this licence is provisional.").status_code == 302
    assert check_of(app, check_id).rejection_reason == "Please use your passport: this licence is provisional."


def test_second_reviewer_is_told_who_reviewed_first(app, world, patient, reception):
    admin = world.staff(Role.ADMIN)
    check_id = submit_check(app, patient)
    first, second = app.test_client(), app.test_client()
    sign_in_as(first, reception)
    sign_in_as(second, admin)
    token = csrf_from(second.get(f"/identity/reviews/{check_id}").get_data(as_text=True))  # both have the page open
    assert _decide(first, check_id, decision="approve").status_code == 302
    late = second.post(f"/identity/reviews/{check_id}/decision",
                       data={"csrf_token": token, "decision": "reject", "reason": "selfie_mismatch"})
    assert late.status_code == 409
    assert "already reviewed by Reception Person" in late.get_data(as_text=True)
    check = check_of(app, check_id)
    assert (check.status.value, check.reviewer_id, check.rejection_reason) == ("approved", reception.user_id, None)
    decisions = [a for a in audit_actions(app) if a in ("identity.approved", "identity.rejected")]
    assert decisions == ["identity.approved"]


def test_simultaneous_decisions_decide_the_check_once(app, world, patient, reception):
    from app.auth.models import User
    from app.identity import services as identity

    admin = world.staff(Role.ADMIN)
    check_id = submit_check(app, patient)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def review(persona: Persona, approve: bool) -> None:
        with app.app_context():
            check = identity.get(check_id)
            reviewer = db.session.get(User, persona.user_id)
            barrier.wait(timeout=10)
            try:
                identity.staff_decision(check, reviewer, approved=approve, reason_code="name_mismatch")
                outcomes[persona.name] = "decided"
            except identity.AlreadyDecided as exc:
                outcomes[persona.name] = str(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=review, args=(reception, True)),
               threading.Thread(target=review, args=(admin, False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["admin", "reception"]
    assert list(outcomes.values()).count("decided") == 1
    loser = next(text for text in outcomes.values() if text != "decided")
    assert "already reviewed by" in loser
    decisions = [a for a in audit_actions(app) if a in ("identity.approved", "identity.rejected")]
    assert len(decisions) == 1
    check = check_of(app, check_id)
    assert check.status.value == {"identity.approved": "approved", "identity.rejected": "rejected"}[decisions[0]]


def test_review_queue_is_oldest_first_with_the_time_waiting(app, world, reception):
    from app.identity import services as identity

    first, second, decided = world.patient("first"), world.patient("second"), world.patient("decided")
    first_id = submit_check(app, first)
    second_id = submit_check(app, second)
    decided_id = submit_check(app, decided)
    with app.app_context():
        identity.reject(identity.get(decided_id), "Photo unclear")
        submitted = identity.get(first_id).submitted_at
        queue = identity.review_queue(now=submitted + dt.timedelta(hours=26))
    assert [entry.check.id for entry in queue] == [first_id, second_id]
    assert queue[0].waiting_text == "1 day 2 h"

    staff = app.test_client()
    sign_in_as(staff, reception)
    page = staff.get("/identity/reviews").get_data(as_text=True)
    assert page.index("First Example") < page.index("Second Example")
    assert "Decided Example" not in page


def test_review_page_shows_both_images_and_the_registration_details(app, patient, reception):
    check_id = submit_check(app, patient)
    staff = app.test_client()
    sign_in_as(staff, reception)
    page = staff.get(f"/identity/reviews/{check_id}").get_data(as_text=True)
    check = check_of(app, check_id)
    # Side by side, from the documents domain's viewer (which checks access and audits each read).
    assert page.index(f'src="/documents/{check.document_id}/file"') < page.index(
        f'src="/documents/{check.selfie_document_id}/file"')
    assert "Alice Example" in page and "17 May 1980" in page
    assert f"{IN_DATE.day} {IN_DATE:%B %Y}" in page, "shown as people write it: no leading zero"
    assert "Not typed by the patient" in page
    with app.app_context():
        last = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (last.action, last.patient_id) == ("record.read", patient.patient_id)


def test_the_photos_the_reviewer_sees_are_the_patients_and_each_read_is_audited(app, patient, reception):
    from app.documents import services as documents

    check_id = submit_check(app, patient)
    check = check_of(app, check_id)
    with app.app_context():
        expected = b"".join(documents.open_plaintext(documents.get(check.selfie_document_id)))
    staff = app.test_client()
    sign_in_as(staff, reception)
    page = staff.get(f"/identity/reviews/{check_id}").get_data(as_text=True)
    selfie_url = re.search(r'id="selfie-photo" src="([^"]+)"', page).group(1)
    response = staff.get(selfie_url)
    assert response.status_code == 200
    assert response.data == expected
    assert response.mimetype.startswith("image/")
    with app.app_context():
        read = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "document.read")).one()
        assert (read.actor_id, read.patient_id, read.subject_id) == (
            reception.user_id, patient.patient_id, str(check.selfie_document_id))


# Who may see what ---------------------------------------------------------------------------

def test_another_patient_is_refused_the_check_and_its_photos_and_it_is_audited(app, world, patient):
    check_id = submit_check(app, patient)
    check = check_of(app, check_id)
    bob = world.patient("bob")
    other = app.test_client()
    sign_in_as(other, bob)
    assert other.get(f"/identity/reviews/{check_id}").status_code == 403
    assert other.get(f"/documents/{check.document_id}/file").status_code == 403
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (entry.action, entry.actor_id, entry.patient_id) == ("access.denied", bob.user_id, patient.patient_id)
    assert "document.read" not in audit_actions(app)
    # Bob's own identity page knows nothing of Alice's check: he is asked to start his own.
    assert other.get("/identity").headers["Location"].endswith("/identity/new")
    assert "Alice" not in other.get("/identity/new").get_data(as_text=True)


def test_pharmacists_and_patients_cannot_review(app, world, patient):
    check_id = submit_check(app, patient)
    selfie_id = check_of(app, check_id).selfie_document_id
    for persona in (world.staff(Role.PHARMACIST), patient):
        client = app.test_client()
        sign_in_as(client, persona)
        assert client.get("/identity/reviews").status_code == 403
        assert client.get(f"/identity/reviews/{check_id}").status_code == 403
        assert client.get(f"/documents/{selfie_id}/file").status_code == (200 if persona is patient else 403)


def test_clinicians_see_their_own_patients_checks_but_do_not_decide(app, world):
    clinician = world.staff(Role.CLINICIAN, "clinician")
    mine = world.patient("mine", clinician=clinician)
    theirs = world.patient("theirs", clinician=world.staff(Role.CLINICIAN, "other"))
    my_check, their_check = submit_check(app, mine), submit_check(app, theirs)
    client = app.test_client()
    sign_in_as(client, clinician)
    page = client.get("/identity/reviews").get_data(as_text=True)
    assert "Mine Example" in page and "Theirs Example" not in page
    review = client.get(f"/identity/reviews/{my_check}")
    assert review.status_code == 200 and 'id="decision-form"' not in review.get_data(as_text=True)
    assert client.get(f"/identity/reviews/{their_check}").status_code == 403
    token = csrf_from(review.get_data(as_text=True))
    assert client.post(f"/identity/reviews/{my_check}/decision",
                       data={"csrf_token": token, "decision": "approve"}).status_code == 403
    assert check_of(app, my_check).status.value == "submitted"


# The dashboard checklist --------------------------------------------------------------------

def test_checklist_step_follows_the_check(app, patient):
    from app.identity import services as identity
    from app.patients import services as patients
    from app.patients.checklist import StepStatus

    def step():
        with app.test_request_context():
            steps = identity.checklist_steps(patients.get(patient.patient_id))
            assert [(s.key, s.order) for s in steps] == [("identity", 40)]
            return steps[0]

    assert (step().status, step().url) == (StepStatus.TODO, "/identity/new")
    check_id = submit_check(app, patient)
    assert (step().status, step().hint) == (
        StepStatus.WAITING, "We are checking your identity, usually within one working day.")
    with app.app_context():
        identity.reject(identity.get(check_id), "Your selfie was too dark.")
    assert (step().status, step().action) == (StepStatus.ACTION, "Try again")
    assert "Your selfie was too dark." in step().hint
    retry = submit_check(app, patient, seed=3)
    with app.app_context():
        identity.approve(identity.get(retry))
    assert step().status is StepStatus.DONE


def test_two_tabs_submitting_at_once_make_one_check(app, patient):
    from app.identity import services as identity
    from app.identity.models import DocumentType, IdentityCheck
    from app.patients import services as patients

    photos = [store_photos(app, patient, seed) for seed in (1, 3)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(document_id: int, selfie_id: int) -> None:
        with app.app_context():
            record = patients.get(patient.patient_id)
            barrier.wait(timeout=10)
            try:
                identity.submit(record, document_type=DocumentType.PASSPORT, document_id=document_id,
                                selfie_document_id=selfie_id, expiry=IN_DATE)
                outcomes.append("submitted")
            except identity.IdentityError as exc:
                outcomes.append(str(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=submit, args=pair) for pair in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes.count("submitted") == 1, outcomes
    assert any("already with the clinic" in outcome for outcome in outcomes)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdentityCheck)) == 1


def test_the_upload_form_still_needs_its_csrf_token(app, client, patient):
    sign_in_as(client, patient)
    client.get("/identity/new")
    response = client.post("/identity/new", content_type="multipart/form-data",
                           data={"document_type": "passport", **expiry_fields(IN_DATE),
                                 "document_photo": (io.BytesIO(jpeg(1)), "a.jpg", "image/jpeg"),
                                 "selfie": (io.BytesIO(jpeg(2)), "b.jpg", "image/jpeg")})
    assert response.status_code == 400
    assert "Your form expired or was sent from somewhere else" in response.get_data(as_text=True)
    actions = audit_actions(app)
    assert "security.csrf_rejected" in actions and "identity.submitted" not in actions


def test_a_patient_verified_without_a_check_sees_it_confirmed(app, client, patient):
    from app.patients import onboarding
    from app.patients import services as patients

    with app.app_context():
        onboarding.identity_verified(patients.get(patient.patient_id))
    sign_in_as(client, patient)
    assert "Your identity is confirmed" in client.get("/identity").get_data(as_text=True)
    assert client.get("/identity/new").headers["Location"].endswith("/identity")


def test_a_photo_the_documents_domain_refuses_is_explained_and_the_other_kept(app, client, patient):
    dark = io.BytesIO()
    Image.new("RGB", (900, 600), (4, 4, 4)).save(dark, "JPEG")
    sign_in_as(client, patient)
    response = form_post(client, "/identity/new", {"document_type": "passport", **expiry_fields(IN_DATE)},
                         {"document_photo": dark.getvalue(), "selfie": jpeg(2)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This photo is too dark" in page
    assert re.search(r'name="selfie_upload" type="hidden" value="\d+"', page), "the good selfie is kept"
    assert re.search(r'name="document_upload" type="hidden" value=""', page)
    assert "identity.submitted" not in audit_actions(app)
