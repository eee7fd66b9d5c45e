"""Prescribing through its services: the rules that block signing, bad input, signing once and only
once, immutability, plan versions, the MDT order, the state machine, the formulary import,
expiry, cancellation, repeats and the CD log."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.auth.models import User
from app.database import transaction, utcnow
from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.prescribing import formulary, immutability, plans, rules, services, states
from app.prescribing.models import Prescription
from tests.test_prescribing_helpers import CAPSULES, FLOWER, OIL, acting_as, line, plan_values, prepare, sign_new

S = states.State


def _doctor(ready) -> User:
    return db.session.get(User, ready.clinician_id)


def _blocks(ready, lines_values, *, user=None) -> set[str]:
    patient = patients.get(ready.patient_id)
    lines = []
    for values in lines_values:
        parsed, errors = rules.line_errors(values)
        assert not errors, errors
        lines.append(parsed)
    return {b.code for b in rules.blocking_reasons(patient, user or _doctor(ready), lines)}


# The rules that block signing ----------------------------------------------------------------

def test_a_ready_patient_with_a_line_inside_the_plan_may_be_signed(ctx, personas):
    ready = prepare(personas)
    assert _blocks(ready, [line(ready.products)]) == set()


def test_quota_counts_the_rolling_thirty_days(ctx, personas):
    ready = prepare(personas)
    sign_new(ready, quantity="20", days="20")
    assert _blocks(ready, [line(ready.products, quantity="10", days="10")]) == set()
    assert _blocks(ready, [line(ready.products, quantity="11", days="11")]) == {"quota"}
    # Signed 31 days ago, it no longer counts.
    with transaction():
        db.session.execute(sa.update(Prescription).values(signed_at=utcnow() - dt.timedelta(days=31),
                                                          valid_until=utcnow() + dt.timedelta(days=1)))
    assert _blocks(ready, [line(ready.products, quantity="30")]) == set()


def test_quota_adds_up_every_line_of_the_same_unit(ctx, personas):
    ready = prepare(personas)
    with acting_as(ready.clinician_id, "clinician"):
        plans.save_version(patients.get(ready.patient_id), _doctor(ready),
                           plan_values(ready.products, products={ready.products[FLOWER]: ("0.1", "1"),
                                                                 ready.products["Verdant T18 Flower"]: ("0.1", "1")}),
                           reason="Add a second strain")
    both = [line(ready.products, quantity="20"), line(ready.products, "Verdant T18 Flower", quantity="20")]
    assert _blocks(ready, both) == {"quota"}


def test_cancelled_prescriptions_do_not_use_the_quota(ctx, personas):
    ready = prepare(personas)
    first = sign_new(ready)
    assert _blocks(ready, [line(ready.products)]) == {"quota"}
    with acting_as(ready.clinician_id, "clinician"):
        services.cancel(first, _doctor(ready), "Wrong strain")
    assert _blocks(ready, [line(ready.products)]) == set()


def test_more_than_thirty_days_needs_a_written_justification(ctx, personas):
    ready = prepare(personas)
    assert "justification" in _blocks(ready, [line(ready.products, quantity="20", days="40")])
    justified = line(ready.products, quantity="20", days="40",
                     justification="Patient travels abroad for six weeks; stable on this dose for a year.")
    assert "justification" not in _blocks(ready, [justified])


def test_a_product_outside_the_plan_blocks(ctx, personas):
    ready = prepare(personas)
    assert _blocks(ready, [line(ready.products, "Serenis CBD 50 Oil", quantity="30", dose="1 ml twice a day")]) \
        == {"outside_plan"}


def test_more_than_the_plans_highest_daily_dose_blocks(ctx, personas):
    ready = prepare(personas)
    assert _blocks(ready, [line(ready.products, quantity="20", days="10")]) == {"dose"}


def test_a_clinician_without_prescriber_details_may_not_prescribe(ctx, personas):
    ready = prepare(personas, prescriber=False)
    assert "prescriber" in _blocks(ready, [line(ready.products)])


def test_only_a_specialist_initiates_treatment(ctx, personas):
    ready = prepare(personas, specialist=False)
    blocks = rules.blocking_reasons(patients.get(ready.patient_id), _doctor(ready),
                                    [rules.line_errors(line(ready.products))[0]])
    assert [b.code for b in blocks] == ["prescriber"]
    assert "Specialist Register" in blocks[0].message


@pytest.mark.parametrize(("missing", "code"), [("identity", "identity"), ("address", "address"),
                                               ("consent", "consent"), ("mdt", "mdt"), ("plan", "plan")])
def test_each_missing_prerequisite_blocks_with_its_reason(ctx, personas, missing, code):
    ready = prepare(personas, **{missing: False})
    if missing == "plan":
        patient = patients.get(ready.patient_id)
        blocks = rules.blocking_reasons(patient, _doctor(ready), [])
        assert {"plan", "mdt"} <= {b.code for b in blocks}
        return
    assert code in _blocks(ready, [line(ready.products)])


def test_an_mdt_approval_recorded_by_the_prescriber_themself_does_not_count(ctx, personas):
    ready = prepare(personas, mdt=False)
    patient = patients.get(ready.patient_id)
    doctor, colleague = _doctor(ready), db.session.get(User, ready.colleague_id)
    with acting_as(colleague.id, "clinician"):
        review = plans.refer(patient, colleague, "Referred by the colleague, decided by the prescriber.")
    with acting_as(doctor.id, "clinician"):
        plans.decide(review, doctor, decision="approved", decided_on=dt.date.today(), note="ok")
    assert "mdt" in _blocks(ready, [line(ready.products)])


def test_the_mdt_decision_comes_from_a_second_clinician_after_the_referral(ctx, personas):
    ready = prepare(personas, mdt=False)
    patient, doctor = patients.get(ready.patient_id), _doctor(ready)
    with acting_as(doctor.id, "clinician"):
        review = plans.refer(patient, doctor, "Chronic pain for six years; two licensed treatments failed.")
        with pytest.raises(plans.MdtError, match="second clinician"):
            plans.decide(review, doctor, decision="approved", decided_on=dt.date.today(), note="ok")
    colleague = db.session.get(User, ready.colleague_id)
    with acting_as(colleague.id, "clinician"), pytest.raises(plans.MdtError, match="future"):
        plans.decide(review, colleague, decision="approved", decided_on=dt.date.today() + dt.timedelta(days=1),
                     note="ok")
    assert plans.approval(patient) is None


def test_a_missing_address_field_is_named(ctx, personas):
    ready = prepare(personas, address=False)
    blocks = rules.patient_blocks(patients.get(ready.patient_id))
    message = next(b.message for b in blocks if b.code == "address")
    assert "postcode" in message and "town" in message


# Bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "message"), [
    ("quantity", "0", "more than zero"),
    ("quantity", "-5", "more than zero"),
    ("quantity", "abc", "as a number"),
    ("quantity", "1e3", "as a number"),
    ("quantity", "7.55", "decimal place"),
    ("quantity", "999999", "not a plausible quantity"),
    ("days_supply", "0", "1 to 90"),
    ("days_supply", "2.5", "1 to 90"),
    ("dose", "As directed", "not a dose"),
    ("dose", "use as directed.", "not a dose"),
    ("dose", "MDU", "not a dose"),
    ("dose", "Vaporise when needed", "not a dose"),
    ("dose", "Vaporise some of the flower", "with a number"),
    ("product_id", "999999", "Choose a product"),
    ("product_id", "1 OR 1=1", "Choose a product"),
    ("unit", "ml", "not ml"),
])
def test_bad_lines_are_refused_with_a_clear_message(ctx, personas, field, value, message):
    ready = prepare(personas)
    values = line(ready.products, **{field: value}) if field != "days_supply" else \
        line(ready.products, days=value)
    parsed, errors = rules.line_errors(values)
    assert parsed is None
    assert message in errors[field]


def test_capsules_are_prescribed_in_whole_numbers(ctx, personas):
    ready = prepare(personas)
    parsed, errors = rules.line_errors(line(ready.products, CAPSULES, quantity="30.5", dose="1 capsule twice a day"))
    assert parsed is None and "whole numbers" in errors["quantity"]


def test_a_withdrawn_product_is_refused(ctx, personas):
    ready = prepare(personas)
    formulary.set_active(formulary.get(ready.products[FLOWER]), False)
    parsed, errors = rules.line_errors(line(ready.products))
    assert parsed is None and "withdrawn" in errors["product_id"]


def test_a_refused_line_writes_nothing(ctx, personas):
    ready = prepare(personas)
    with acting_as(ready.clinician_id, "clinician"), pytest.raises(services.PrescribingError):
        services.add_item(patients.get(ready.patient_id), _doctor(ready), line(ready.products, quantity="0"))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 0


# Signing ------------------------------------------------------------------------------------

def test_signing_writes_the_pdf_the_jws_the_audit_entry_and_the_pharmacy_message_together(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    assert prescription.status == S.SIGNED
    assert prescription.pdf.startswith(b"%PDF") and prescription.jws.count(".") == 2
    assert prescription.valid_until - prescription.signed_at == dt.timedelta(days=28)
    assert prescription.plan_version_id == plans.current(patients.get(ready.patient_id)).id
    entry = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "prescription.signed"))
    assert entry.patient_id == ready.patient_id and json.loads(entry.detail)["pdf_sha256"] == prescription.pdf_sha256
    message = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.idempotency_key == f"prescription:{prescription.id}:signed"))
    assert message.kind == "pharmacy.prescription"
    assert json.loads(message.payload) == {"event": "signed", "pharmacy_id": ready.pharmacy_id,
                                           "prescription_id": prescription.id, "public_id": prescription.public_id}


def test_signing_twice_with_the_same_form_signs_once(ctx, personas):
    ready = prepare(personas)
    doctor, patient = _doctor(ready), patients.get(ready.patient_id)
    token = secrets.token_urlsafe(24)
    with acting_as(doctor.id, "clinician"):
        draft = services.add_item(patient, doctor, line(ready.products))
        first = services.sign(draft, doctor, token=token, revision=draft.revision)
        again = services.sign(draft, doctor, token=token, revision=draft.revision)
        with pytest.raises(services.SigningError, match="already signed"):
            services.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=draft.revision)
    assert (first.repeated, again.repeated) == (False, True)
    assert again.prescription.pdf_sha256 == first.prescription.pdf_sha256
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "prescription.signed")) == 1


def test_a_blocked_draft_stays_a_draft_with_nothing_written(ctx, personas):
    ready = prepare(personas)
    doctor, patient = _doctor(ready), patients.get(ready.patient_id)
    with acting_as(doctor.id, "clinician"):
        draft = services.add_item(patient, doctor, line(ready.products, quantity="31", days="31",
                                                        justification="x" * 30))
        with pytest.raises(services.SigningBlocked) as refused:
            services.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=draft.revision)
    assert "quota" in {b.code for b in refused.value.blocks}
    db.session.refresh(draft)
    assert (draft.status, draft.pdf, draft.signed_at, draft.sign_token) == ("draft", None, None, None)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.kind == "pharmacy.prescription")) == 0


def test_a_draft_changed_after_review_is_not_signed(ctx, personas):
    ready = prepare(personas)
    doctor, patient = _doctor(ready), patients.get(ready.patient_id)
    with acting_as(doctor.id, "clinician"):
        draft = services.add_item(patient, doctor, line(ready.products, quantity="10", days="10"))
        reviewed = draft.revision
        services.add_item(patient, doctor, line(ready.products, OIL, quantity="30", dose="0.5 ml twice a day"))
        with pytest.raises(services.SigningError, match="changed since you reviewed"):
            services.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=reviewed)


def test_only_the_drafts_author_signs_it(ctx, personas):
    ready = prepare(personas)
    doctor, patient = _doctor(ready), patients.get(ready.patient_id)
    colleague = db.session.get(User, ready.colleague_id)
    with acting_as(doctor.id, "clinician"):
        draft = services.add_item(patient, doctor, line(ready.products))
    with acting_as(colleague.id, "clinician"), pytest.raises(services.SigningError, match="Only the clinician"):
        services.sign(draft, colleague, token=secrets.token_urlsafe(24), revision=draft.revision)


def test_a_signing_key_is_never_decrypted_for_anyone_else(ctx, personas):
    from app.prescribing import pki

    ready = prepare(personas)
    doctor = _doctor(ready)
    with acting_as(ready.colleague_id, "clinician"), pytest.raises(pki.PkiError, match="its own clinician"):
        pki.signing_material(doctor, prescriber_id=doctor.id)


def test_a_signed_prescription_cannot_be_altered(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    with pytest.raises(immutability.ImmutableRecordError), transaction():
        prescription.items[0].quantity = Decimal("1")
    db.session.rollback()
    prescription = db.session.get(Prescription, prescription.id)
    with pytest.raises(immutability.ImmutableRecordError), transaction():
        prescription.pdf = b"%PDF-forged"
    db.session.rollback()
    doctor = _doctor(ready)
    with acting_as(doctor.id, "clinician"), pytest.raises(services.PrescribingError, match="cannot be changed"):
        services.update_item(db.session.get(Prescription, prescription.id), prescription.items[0].id, doctor,
                             line(ready.products, quantity="5"))


# Plan versions --------------------------------------------------------------------------------

def test_every_plan_change_is_a_new_version_with_reason_and_field_differences(ctx, personas):
    ready = prepare(personas)
    patient, doctor = patients.get(ready.patient_id), _doctor(ready)
    first = sign_new(ready, quantity="10", days="10")
    with acting_as(doctor.id, "clinician"):
        with pytest.raises(plans.PlanError, match="reason"):
            plans.save_version(patient, doctor, plan_values(ready.products, quotas={"g": "20", "ml": "60",
                                                                                   "capsule": "120"}), reason=" ")
        with pytest.raises(plans.PlanError, match="Nothing changed"):
            plans.save_version(patient, doctor, plan_values(ready.products), reason="No change")
        plans.save_version(patient, doctor, plan_values(ready.products, quotas={"g": "20", "ml": "60",
                                                                               "capsule": "120"}),
                           reason="Tolerance concerns")
    history = plans.history(patient)
    assert [v.version for v, _, _ in history] == [2, 1]
    newest_changes = history[0][1]
    assert set(newest_changes) == {"quotas"}
    assert newest_changes["quotas"][0].startswith("120 capsules; 30 g") and "20 g" in newest_changes["quotas"][1]
    second = sign_new(ready, quantity="5", days="5")
    versions = {v.version: v.id for v, _, _ in history}
    assert (first.plan_version_id, second.plan_version_id) == (versions[1], versions[2])
    with pytest.raises(immutability.ImmutableRecordError), transaction():
        plans.get_version(versions[1]).goals = "rewritten"
    db.session.rollback()


def test_a_plan_with_a_bad_snomed_code_or_past_review_date_is_refused(ctx, personas):
    ready = prepare(personas, plan=False)
    patient, doctor = patients.get(ready.patient_id), _doctor(ready)
    with pytest.raises(plans.PlanError) as refused:
        plans.save_version(patient, doctor, plan_values(ready.products, snomed_code="82423002",
                                                        review_date=dt.date.today()), reason="x")
    assert set(refused.value.errors) >= {"snomed_code", "review_date"}


# The state machine ----------------------------------------------------------------------------

def test_every_state_is_reachable_and_every_live_state_can_end():
    reachable = {S.DRAFT}
    frontier = [S.DRAFT]
    while frontier:
        state = frontier.pop()
        for (frm, to) in states.TRANSITIONS:
            if frm == state and to not in reachable:
                reachable.add(to)
                frontier.append(to)
    assert reachable == set(S)
    for state in states.BEFORE_SUPPLY:
        assert {S.CANCELLED, S.EXPIRED, S.SUPERSEDED} <= {to for (frm, to) in states.TRANSITIONS if frm == state}
    assert not any(frm in states.ENDS for frm, _ in states.TRANSITIONS)


def test_the_pharmacy_walks_a_prescription_to_delivery_and_each_step_is_audited(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    with acting_as(None, "system"):
        states.apply(prescription, S.TRANSMITTED, actor_role="system", detail={"channel": "portal"})
    pharmacist = personas["pharmacist"].user_id
    with acting_as(pharmacist, "pharmacist"):
        states.apply(prescription, S.RECEIVED, actor_role="pharmacy")
        states.apply(prescription, S.STOCK_ALLOCATED, actor_role="pharmacy")
        states.apply(prescription, S.AWAITING_ORIGINAL, actor_role="pharmacy")
        with pytest.raises(states.TransitionError, match="paper original"):
            states.apply(prescription, S.CLINICALLY_VERIFIED, actor_role="pharmacy")
        services.record_original_received(prescription, matches=True)
        states.apply(prescription, S.CLINICALLY_VERIFIED, actor_role="pharmacy")
        states.apply(prescription, S.DISPENSED, actor_role="pharmacy")
        with pytest.raises(states.TransitionError, match="carrier"):
            states.apply(prescription, S.DISPATCHED, actor_role="pharmacy", detail={"tracking": "AB1"})
        states.apply(prescription, S.DISPATCHED, actor_role="pharmacy",
                     detail={"carrier": "Royal Mail", "tracking": "AB123456789GB"})
        states.apply(prescription, S.DELIVERED, actor_role="pharmacy")
    actions = list(db.session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.subject_id == str(prescription.id), AuditEvent.action.like("prescription.%"))
        .order_by(AuditEvent.seq)))
    assert [a for a in actions if a.removeprefix("prescription.") in set(S)] == [
        "prescription.signed", "prescription.transmitted", "prescription.received_by_pharmacy",
        "prescription.stock_allocated", "prescription.awaiting_original", "prescription.clinically_verified",
        "prescription.dispensed", "prescription.dispatched", "prescription.delivered"]
    assert "prescription.original_received" in actions
    timeline = [t.to_state for t in states.history(prescription)]
    assert timeline[0] == "signed" and timeline[-1] == "delivered"
    patient_mail = db.session.scalars(sa.select(OutboxMessage.idempotency_key).where(
        OutboxMessage.kind == "email", OutboxMessage.idempotency_key.like(f"prescription:{prescription.id}:%"))).all()
    assert {f"prescription:{prescription.id}:{s}:patient:{personas['patient'].user_id}"
            for s in ("signed", "transmitted", "dispatched", "delivered")} <= set(patient_mail)
    body = json.loads(db.session.scalar(sa.select(OutboxMessage.payload).where(
        OutboxMessage.idempotency_key == f"prescription:{prescription.id}:dispatched:patient:"
                                         f"{personas['patient'].user_id}")))
    assert "Verdant" not in body["text"] and "update in your Verity account" in body["text"]


def test_apply_refuses_wrong_moves_roles_and_internal_steps(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    with pytest.raises(states.TransitionError, match="cannot go from"):
        states.apply(prescription, S.DISPENSED, actor_role="pharmacy")
    with pytest.raises(states.TransitionError, match="Your role"):
        states.apply(prescription, S.TRANSMITTED, actor_role="clinician")
    with pytest.raises(states.TransitionError, match="its own step"):
        states.apply(prescription, S.SUPERSEDED, actor_role="clinician")
    with pytest.raises(states.TransitionError, match="still within"):
        states.apply(prescription, S.EXPIRED, actor_role="system")
    assert prescription.status == S.SIGNED


def test_without_the_paper_switch_there_is_no_original_to_wait_for(app, ctx, personas):
    app.config["PAPER_ORIGINAL"] = False
    ready = prepare(personas)
    prescription = sign_new(ready)
    assert prescription.paper_original is False
    with acting_as(personas["pharmacist"].user_id, "pharmacist"):
        for state in (S.TRANSMITTED, S.RECEIVED, S.STOCK_ALLOCATED):
            states.apply(prescription, state, actor_role="pharmacy")
        with pytest.raises(states.TransitionError, match="no paper"):
            states.apply(prescription, S.AWAITING_ORIGINAL, actor_role="pharmacy")
        states.apply(prescription, S.CLINICALLY_VERIFIED, actor_role="pharmacy")
        states.apply(prescription, S.DISPENSED, actor_role="pharmacy")


def test_the_worker_marks_portal_prescriptions_transmitted(ctx, personas):
    from app import worker

    ready = prepare(personas)
    prescription = sign_new(ready)
    worker.run_cycle()
    db.session.refresh(prescription)
    assert prescription.status == S.TRANSMITTED
    message = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.idempotency_key == f"prescription:{prescription.id}:signed"))
    assert message.status == "delivered"


def test_prescriptions_expire_after_28_days(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    assert services.expire_due(now=utcnow() + dt.timedelta(days=27)) == 0
    assert services.expire_due(now=utcnow() + dt.timedelta(days=29)) == 0  # valid_until is still in the future
    with transaction():
        db.session.execute(sa.update(Prescription).where(Prescription.id == prescription.id)
                           .values(valid_until=utcnow() - dt.timedelta(seconds=1)))
    assert services.expire_due() == 1
    db.session.refresh(prescription)
    assert prescription.status == S.EXPIRED


def test_cancelling_tells_the_pharmacy_and_needs_a_reason(ctx, personas):
    ready = prepare(personas)
    prescription = sign_new(ready)
    doctor = _doctor(ready)
    with acting_as(doctor.id, "clinician"):
        with pytest.raises(services.PrescribingError, match="reason"):
            services.cancel(prescription, doctor, "  ")
        services.cancel(prescription, doctor, "Patient reported side effects")
    assert prescription.status == S.CANCELLED and prescription.ended_reason == "Patient reported side effects"
    message = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.idempotency_key == f"prescription:{prescription.id}:cancelled"))
    assert json.loads(message.payload)["event"] == "cancelled"


def test_a_replacement_supersedes_the_old_prescription_when_signed(ctx, personas):
    ready = prepare(personas)
    old = sign_new(ready)
    doctor = _doctor(ready)
    with acting_as(personas["pharmacist"].user_id, "pharmacist"):
        for state in (S.TRANSMITTED, S.RECEIVED, S.OUT_OF_STOCK):
            states.apply(old, state, actor_role="pharmacy")
    with acting_as(doctor.id, "clinician"):
        draft = services.start_superseding(old, doctor)
        assert draft.supersedes_id == old.id and len(draft.items) == 1
        # The old one's 30 g does not count against its own replacement.
        services.update_item(draft, draft.items[0].id, doctor,
                             line(ready.products, "Verdant T18 Flower", quantity="30"))
        assert old.status == S.OUT_OF_STOCK
    with acting_as(doctor.id, "clinician"):
        plans.save_version(patients.get(ready.patient_id), doctor, plan_values(
            ready.products, products={ready.products[FLOWER]: ("0.1", "1"),
                                      ready.products["Verdant T18 Flower"]: ("0.1", "1")}), reason="Alternative")
        new = services.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=draft.revision).prescription
    db.session.refresh(old)
    assert (old.status, new.status) == (S.SUPERSEDED, S.SIGNED)


# Formulary ------------------------------------------------------------------------------------

def test_the_csv_import_is_all_or_nothing_and_names_each_bad_line(ctx):
    bad = (b"name,manufacturer,form,thc,cbd,pack_size,price\n"
           b"Alpha Flower,Maker,dried_flower,20,1,10,80\n"
           b"Beta Oil,Maker,oil,abc,5,30,100\n"
           b"Gamma Joint,Maker,pre-roll,20,1,1,10\n"
           b"Delta Caps,Maker,capsule,5,5,30.5,90\n")
    result = formulary.import_csv(bad)
    assert [line for line, _ in result.errors] == [3, 4, 5]
    assert "THC content" in result.errors[0][1] and "smoking" in result.errors[1][1]
    assert formulary.products() == []
    good = (b"name,manufacturer,form,thc,cbd,pack_size,price,pack_unit\n"
            b"Alpha Flower,Maker,dried_flower,20,1,10,80,g\n"
            b"Beta Oil,Maker,oil,10,5,30,100,ml\n")
    assert formulary.import_csv(good).created == 2
    again = formulary.import_csv(b"name,manufacturer,form,thc,cbd,pack_size,price\nAlpha Flower,Maker,dried_flower,"
                                 b"21,1,10,82\n")
    assert (again.created, again.updated) == (0, 1)
    assert formulary.products()[0].thc == Decimal("21")


def test_the_csv_import_refuses_units_that_do_not_match_the_form(ctx):
    result = formulary.import_csv(b"name,manufacturer,form,thc,cbd,pack_size,price,pack_unit\n"
                                  b"Alpha Flower,Maker,dried_flower,20,1,10,80,ml\n")
    assert result.errors == [(2, "pack_unit: A dried flower for vaporisation is measured in g, not ml")]


def test_the_formulary_search_filters_by_form_and_thc_range(ctx):
    from app.prescribing.demo import load_demo_formulary

    load_demo_formulary()
    found = formulary.search(formulary.Search(form="dried_flower", thc_min=Decimal(20)))
    assert [p.name for p in found] == [FLOWER]
    assert {p.name for p in formulary.search(formulary.Search(term="harbour", cbd_min=Decimal(10)))} == {
        OIL, "Serenis CBD 50 Oil"}
    assert formulary.stock_for(1, [found[0].id]) == {found[0].id: None}


# Patients, repeats and the log ----------------------------------------------------------------

def test_the_dashboard_says_prescription_issued_while_one_is_live(ctx, personas, app):
    ready = prepare(personas)
    patient = patients.get(ready.patient_id)
    with app.test_request_context():
        assert services.checklist_steps(patient) == []
        prescription = sign_new(ready)
        steps = services.checklist_steps(patient)
        assert [s.title for s in steps] == ["Prescription issued"]
        with acting_as(ready.clinician_id, "clinician"):
            services.cancel(prescription, _doctor(ready), "Changed plan")
        assert services.checklist_steps(patient) == []


def test_a_repeat_request_always_waits_for_a_clinician(ctx, personas):
    ready = prepare(personas)
    first = sign_new(ready)
    patient, doctor = patients.get(ready.patient_id), _doctor(ready)
    with acting_as(patient.user_id, "patient"):
        request = services.request_repeat(patient, first, "Running low")
        with pytest.raises(services.PrescribingError, match="already have"):
            services.request_repeat(patient, first, "again")
    assert request.status == "pending"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 1
    assert [r.id for r, _, _ in services.repeat_requests_for(doctor)] == [request.id]
    with acting_as(doctor.id, "clinician"):
        draft = services.start_repeat(request, doctor)
    assert draft.status == S.DRAFT and draft.items[0].product_id == first.items[0].product_id
    assert request.status == "started"


def test_the_cd_log_lists_each_signed_item_and_quotes_formula_like_cells(ctx, personas):
    from app.prescribing import log_export

    ready = prepare(personas)
    sign_new(ready, dose="=HYPERLINK(1) Vaporise 0.1 g twice a day", quantity="10", days="10")
    today = dt.date.today()
    rows = services.log_rows(today, today, prescriber=_doctor(ready))
    assert len(rows) == 1
    text = log_export.csv_text(rows)
    assert "10 (ten) grams" in text and "'=HYPERLINK" in text
    assert services.log_rows(today, today, prescriber=db.session.get(User, ready.colleague_id)) == []
