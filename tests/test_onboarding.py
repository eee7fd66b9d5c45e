"""Onboarding glue: the journey state machine, eligibility after identity, details asked when needed,
consents, GP records requests and the staff board."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.audit import context
from app.audit.models import AuditEvent
from app.consent import services as consents
from app.consent.models import ConsentRecord
from app.extensions import db
from app.patients import details, onboarding
from app.patients import services as patients
from app.patients.journey import JourneyError, JourneyState, transition
from app.records import services as records
from tests.conftest import TEST_PASSWORD, audit_actions, csrf_from, sign_in_as

S = JourneyState


def as_actor(role: str, user_id: int | None = None):
    return context.bind(context.Actor(user_id=user_id, role=role))


def _patient(personas, name="patient"):
    return patients.get(personas[name].patient_id)


# Journey state machine ------------------------------------------------------------------------

def test_journey_moves_only_along_its_transitions(ctx, personas):
    patient = _patient(personas)
    token = as_actor("patient", personas["patient"].user_id)
    try:
        with pytest.raises(JourneyError, match="cannot go from"):
            transition(patient, S.ELIGIBLE)
        transition(patient, S.INTAKE_IN_PROGRESS)
        assert patient.journey_state == "intake_in_progress"
    finally:
        context.reset(token)
    entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (entry.action, entry.patient_id) == ("journey.intake_in_progress", patient.id)
    assert '"from":"registered"' in entry.detail


def test_journey_checks_who_may_move_it(ctx, personas):
    patient = _patient(personas)
    onboarding.intake_submitted(patient, "needs_clinical_review", ["History of psychosis"])
    onboarding.identity_verified(patient)
    assert patient.journey_state == "needs_clinical_review"
    token = as_actor("reception", personas["reception"].user_id)
    try:
        with pytest.raises(JourneyError, match="Your role"):
            onboarding.decide(patient, "eligible", "looks fine")
    finally:
        context.reset(token)
    token = as_actor("clinician", personas["clinician"].user_id)
    try:
        with pytest.raises(JourneyError, match="Give a reason"):
            onboarding.decide(patient, "eligible", "  ")
        onboarding.decide(patient, "eligible", "Reviewed the psychosis screen with the patient's GP letter")
    finally:
        context.reset(token)
    assert patient.journey_state == "eligible"


def test_eligibility_waits_for_the_identity_check(ctx, personas):
    patient = _patient(personas)
    onboarding.intake_submitted(patient, "eligible", [])
    assert patient.journey_state == "intake_submitted"
    onboarding.identity_verified(patient)
    assert patient.journey_state == "eligible"
    actions = audit_actions(ctx)
    assert actions[-3:] == ["journey.intake_submitted", "journey.identity_verified", "journey.eligible"]


def test_identity_first_then_intake_ends_in_the_same_place(ctx, personas):
    patient = _patient(personas)
    onboarding.identity_verified(patient)
    assert patient.journey_state == "registered", "the journey does not skip the intake"
    onboarding.intake_submitted(patient, "not_eligible", ["Fewer than two licensed treatments tried"])
    assert patient.journey_state == "not_eligible"
    assert onboarding.reasons_of(patient) == ["Fewer than two licensed treatments tried"]


# Details asked when needed --------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "clean"), [("bs14dj", "BS1 4DJ"), ("SW1A 1AA", "SW1A 1AA"), (" m1 1ae ", "M1 1AE"),
                                            ("EC1A1BB", "EC1A 1BB")])
def test_postcodes_are_normalised(raw, clean):
    assert details.normalise_postcode(raw) == clean


@pytest.mark.parametrize("raw", ["12345", "BS1", "QQ1 1AA", "BS1 4D", "BS1 4DJX", ""])
def test_bad_postcodes_are_refused(raw):
    assert details.normalise_postcode(raw) is None


def test_nhs_number_check_digit():
    assert details.nhs_number_valid("9434765919")
    assert not details.nhs_number_valid("9434765918")
    assert not details.nhs_number_valid("943476591")
    assert not details.nhs_number_valid("94347659x9")


@pytest.mark.parametrize(("raw", "clean"), [("07700 900123", "+447700900123"), ("+44 7700 900123", "+447700900123"),
                                            ("0044 (0)117 496 0000", "+441174960000")])
def test_phone_numbers_become_e164(raw, clean):
    assert details.normalise_phone(raw) == clean


def test_details_page_says_why_and_keeps_what_was_typed(app, client, personas):
    sign_in_as(client, personas["patient"])
    page = client.get("/details/booking?next=/records").get_data(as_text=True)
    assert "the law requires your full address on every controlled-drug prescription" in page
    token = csrf_from(page)
    bad = client.post("/details/booking?next=/records", data={
        "csrf_token": token, "address_line1": "12 Riverside Walk", "town": "Bristol", "postcode": "BS1",
        "phone": "07700 900123"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Enter a real UK postcode" in text and 'value="12 Riverside Walk"' in text
    good = client.post("/details/booking?next=/records", data={
        "csrf_token": token, "address_line1": "12 Riverside Walk", "town": "Bristol", "postcode": "bs14dj",
        "phone": "07700 900123"})
    assert good.status_code == 302 and good.headers["Location"] == "/records"
    with app.app_context():
        patient = _patient(personas)
        assert (patient.postcode, patient.phone) == ("BS1 4DJ", "+447700900123")
        entry = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert entry.action == "patient.details_updated" and "Riverside" not in entry.detail


def test_details_redirect_refuses_other_sites(client, personas):
    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/details/records").get_data(as_text=True))
    response = client.post("/details/records?next=//evil.example.com", data={
        "csrf_token": token, "gp_practice": "Clifton Surgery, Bristol"})
    assert response.headers["Location"] == "/dashboard"


# Consents -------------------------------------------------------------------------------------

@pytest.fixture
def published(app):
    with app.app_context():
        return [d.id for d in consents.load_defaults()]


def test_each_consent_is_accepted_explicitly_with_version_and_origin(app, client, personas, published):
    sign_in_as(client, personas["patient"])
    page = client.get("/consents").get_data(as_text=True)
    assert "Terms of service" in page and "Privacy notice" in page and "Video consultations" in page
    token = csrf_from(page)
    nothing = client.post("/consents", data={"csrf_token": token})
    assert nothing.status_code == 400 and "Tick the box" in nothing.get_data(as_text=True)
    with app.app_context():
        ids = [d.id for d in consents.required_documents(_patient(personas))]
    done = client.post("/consents", data={"csrf_token": token, "document": [str(i) for i in ids]},
                       headers={"User-Agent": "ConsentTest/1.0"})
    assert done.status_code == 302
    with app.app_context():
        patient = _patient(personas)
        assert consents.outstanding(patient) == []
        record = db.session.scalars(sa.select(ConsentRecord)).first()
        assert record.user_agent == "ConsentTest/1.0" and record.ip == "127.0.0.1"
    assert audit_actions(app).count("consent.accepted") == len(ids)


def test_pharmacy_sharing_is_asked_for_the_nominated_pharmacy(app, personas, world, published):
    pharmacy_id = world.pharmacy("main")
    with app.app_context():
        consents.load_defaults()
        patient = _patient(personas)
        from app.database import transaction

        with transaction():
            patient.pharmacy_id = pharmacy_id
        kinds = {(d.kind, d.pharmacy_id) for d in consents.required_documents(patient)}
        assert ("pharmacy_sharing", pharmacy_id) in kinds
        assert not consents.has_consent(patient, "pharmacy_sharing", pharmacy_id)
        consents.accept(patient, [d.id for d in consents.required_documents(patient)])
        assert consents.has_consent(patient, "pharmacy_sharing", pharmacy_id)


def test_new_version_is_asked_again_at_next_sign_in(app, personas, published):
    with app.app_context():
        patient = _patient(personas)
        consents.accept(patient, [d.id for d in consents.required_documents(patient)])
        consents.publish("privacy", "Privacy notice", "A clearer privacy notice.\n\nSecond paragraph.")
        assert consents.needs_reacceptance(patient)
        assert not consents.has_consent(patient, "privacy")
        assert consents.has_consent(patient, "terms")
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "email": personas["patient"].email,
                                           "password": TEST_PASSWORD})
    assert response.headers["Location"].startswith("/consents")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You agreed to version 1; this is version 2." in page


def test_stale_or_foreign_consent_cannot_be_accepted(app, personas, published):
    with app.app_context():
        patient = _patient(personas)
        old_privacy = consents.current("privacy").id
        consents.publish("privacy", "Privacy notice", "Version two.")
        with pytest.raises(consents.ConsentError):
            consents.accept(patient, [old_privacy])
        with pytest.raises(consents.ConsentError):
            consents.accept(patient, [])


def test_withdrawal_is_recorded_and_the_consent_is_needed_again(app, client, personas, published):
    with app.app_context():
        patient = _patient(personas)
        consents.accept(patient, [d.id for d in consents.required_documents(patient)])
        video = consents.current("video").id
    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/consents").get_data(as_text=True))
    assert client.post(f"/consents/{video}/withdraw", data={"csrf_token": token}).status_code == 302
    with app.app_context():
        patient = _patient(personas)
        assert not consents.has_consent(patient, "video")
        assert [d.kind for d in consents.outstanding(patient)] == ["video"]
    assert "consent.withdrawn" in audit_actions(app)


# GP records requests --------------------------------------------------------------------------

def test_records_request_asks_for_the_gp_practice_first(app, client, personas):
    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/records").get_data(as_text=True))
    response = client.post("/records", data={"csrf_token": token})
    assert response.headers["Location"].startswith("/details/records")
    with app.app_context():
        details.update(_patient(personas), "records", {"gp_practice": "Clifton Surgery, Bristol",
                                                       "nhs_number": "943 476 5919"})
    assert client.post("/records", data={"csrf_token": token}).status_code == 302
    assert "We will ask your GP practice" in client.get("/records").get_data(as_text=True)


def test_staff_track_a_records_request_and_races_are_harmless(app, personas):
    with app.app_context():
        patient = _patient(personas)
        details.update(patient, "records", {"gp_practice": "Clifton Surgery, Bristol"})
        request = records.authorise(patient)
        assert records.authorise(patient).id == request.id, "one open request at a time"
        records.advance(request, "requested")
        with pytest.raises(records.RecordsError, match="moved on"):
            records.advance(request, "requested")
        records.advance(request, "chased")
        records.advance(request, "chased")
        assert (request.status, request.times_chased) == ("chased", 2)
    reception = app.test_client()
    sign_in_as(reception, personas["reception"])
    page = reception.get("/records/requests").get_data(as_text=True)
    assert "Clifton Surgery" in page and "chased 2 times" in page


# Staff board ----------------------------------------------------------------------------------

def test_board_groups_patients_by_step_with_waiting_time(app, client, personas):
    with app.app_context():
        onboarding.intake_submitted(_patient(personas), "eligible", [])
        db.session.execute(sa.update(patients.Patient).where(patients.Patient.id == personas["patient"].patient_id)
                           .values(journey_changed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3)))
        db.session.commit()
    sign_in_as(client, personas["reception"])
    page = client.get("/staff/onboarding").get_data(as_text=True)
    submitted = page.split('id="board-intake_submitted"')[1].split("<h2")[0]
    assert "Alice Example" in submitted and "3 days" in submitted
    waiting = client.get("/staff/onboarding?waiting=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Alice Example" in waiting and "Bob Example" not in waiting and "<html" not in waiting
    assert client.get("/staff/onboarding?from=2026-13-01").status_code == 400


def test_funnel_counts_distinct_patients_per_step(app, personas, world):
    carol = world.patient("carol")
    with app.app_context():
        onboarding.intake_started(_patient(personas))
        onboarding.intake_started(patients.get(carol.patient_id))
        onboarding.intake_submitted(patients.get(carol.patient_id), "eligible", [])
        today = dt.date.today()
        counts = dict(patients.funnel(today, today))
    assert counts["Registered"] == 3
    assert counts["Started health questions"] == 2
    assert counts["Sent health questions"] == 1
    assert counts["Identity confirmed"] == 0


def test_funnel_svg_shows_each_step(app, client, personas):
    sign_in_as(client, personas["admin"])
    page = client.get("/staff/onboarding").get_data(as_text=True)
    assert 'data-step="Registered" data-count="2"' in page



def test_cancelling_the_only_booking_returns_to_the_state_before_it(ctx, personas):
    patient = _patient(personas)
    onboarding.intake_submitted(patient, "needs_clinical_review", ["GAD-7 score 16"])
    onboarding.identity_verified(patient)
    onboarding.booked(patient)
    onboarding.booked(patient)  # a second booking changes nothing
    assert patient.journey_state == "booked"
    onboarding.booking_cancelled(patient, other_live_bookings=1)
    assert patient.journey_state == "booked"
    onboarding.booking_cancelled(patient, other_live_bookings=0)
    assert patient.journey_state == "needs_clinical_review"
