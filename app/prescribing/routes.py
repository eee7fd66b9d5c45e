"""Prescribing pages for clinicians: the patient's prescribing page (plan, MDT, builder, history),
signing, a prescription's page and its lifecycle, the repeat-request queue and the CD log.

The builder is a set of htmx fragments so the consultation side panel can embed it:
`prescribing.builder` (GET, the whole builder), `prescribing.check` (POST, the live checks) and
`prescribing.add_item` (POST). Each answers a fragment when the request carries HX-Request and
the full page otherwise. `prescribing.panel` is the consultation side panel itself: every request made
from inside it carries `panel=1`, and the routes it reaches (the builder's, review and signing) answer
those with the panel, so the call page, and its video, never goes away. The formulary and prescriber
administration live in admin_routes.py, the patient's own pages, the verification page and the JWKS in
public_routes.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth import passkeys
from app.auth import services as accounts
from app.auth.models import Role
from app.extensions import limiter
from app.patients import services as patients
from app.pharmacy import services as pharmacies
from app.prescribing import cli, formulary, immutability, plans, prescribers, services, signing, states
from app.prescribing import config as prescribing_config
from app.prescribing import forms as parse
from app.prescribing.quantities import UNITS, figures
from app.scheduling import services as scheduling

bp = Blueprint("prescribing", __name__, template_folder="templates", cli_group=None)
bp.cli.add_command(cli.pki_group)
bp.cli.add_command(cli.prescribing_group)
immutability.install()

S = states.State


@bp.app_template_filter("prescription_state")
def _prescription_state(value: str) -> states.State:
    return states.State(value)


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def in_panel() -> bool:
    """An htmx request from the consultation side panel: the panel's wrapper adds panel=1 to every request
    made inside it (hx-vals is inherited), including the formulary's "Prescribe" links."""
    return is_htmx() and request.values.get("panel") == "1"


def _patient(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(policy.can_view_patient(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    return patient


def _own_patient_as_clinician(patient_id: int):
    """The builder, the plan and the MDT referral: the patient's own clinician only."""
    patient = _patient(patient_id)
    policy.require(current_user.role is Role.CLINICIAN, subject=("patient", patient_id), patient_id=patient_id)
    return patient


def _prescription(prescription_id: int):
    prescription = services.get(prescription_id)
    if prescription is None:
        abort(404)
    policy.require(services.can_view_prescription(current_user, prescription),
                   subject=("prescription", prescription_id), patient_id=prescription.patient_id)
    return prescription


def _own_prescription(prescription_id: int):
    """A prescription the current clinician wrote (drafts are changed, signed ones printed, only by them)."""
    prescription = _prescription(prescription_id)
    policy.require(prescription.prescriber_id == current_user.id, subject=("prescription", prescription_id),
                   patient_id=prescription.patient_id)
    return prescription


# The patient's prescribing page ---------------------------------------------------------------

def _builder_context(patient, *, values=None, errors=None, editing=None, check=None, panel=False):
    draft = services.draft_for(patient, current_user) if current_user.role is Role.CLINICIAN else None
    version = plans.current(patient)
    allowed = plans.allowances(version) if version else {}
    choices = [p for p in formulary.products(include_withdrawn=False)]
    choices.sort(key=lambda p: (p.id not in allowed, p.name))
    if check is None and current_user.role is Role.CLINICIAN:
        # A line being changed is checked as it now reads, in place of what the draft holds.
        check = services.check(patient, current_user, draft, values if editing else None,
                               editing_item_id=editing.id if editing else None)
    return {"patient": patient, "draft": draft, "choices": choices, "allowed": allowed, "values": values or {},
            "errors": errors or {}, "editing": editing, "check": check, "units": UNITS, "forms": formulary.FORMS,
            "formulary": formulary, "panel": panel}


def _status_context(patient):
    """The plan, the MDT decision and the nominated pharmacy: what the page and the panel both open with."""
    version = plans.current(patient)
    pharmacy = pharmacies.get(patient.pharmacy_id) if patient.pharmacy_id else None
    return {"patient": patient, "version": version, "plan_text": _plan_text(version),
            "reviews": plans.reviews(patient), "approval": plans.approval(patient), "pharmacy": pharmacy}


def _page_context(patient):
    return {**_status_context(patient), "user": patients.user_of(patient),
            "prescriptions": services.prescriptions_for_patient(patient), "forms": formulary.FORMS,
            "profile": prescribers.get(current_user) if current_user.role is Role.CLINICIAN else None,
            "requests": services.repeat_requests_of(patient)}


def _plan_text(version):
    if version is None:
        return {}
    return {key: plans.describe(key, getattr(version, key)) for key in plans.FIELD_LABELS}


@bp.route("/patients/<int:patient_id>/prescribing")
@policy.signed_in(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def patient_page(patient_id: int):
    patient = _patient(patient_id)
    patients.record_read(patient, section="prescribing")
    context = _page_context(patient)
    if current_user.role is Role.CLINICIAN:
        values, editing = _builder_request(patient)
        context.update(_builder_context(patient, values=values, editing=editing))
    return render_template("prescribing/patient.html", **context)


def _builder_request(patient):
    """The builder's form as the URL asks for it: a product chosen from the search, or a line to change."""
    values = {"product_id": request.args.get("product_id", "")[:12]}
    draft = services.draft_for(patient, current_user)
    item_id = parse.int_or_none(request.args.get("edit"))
    editing = next((i for i in draft.items if i.id == item_id), None) if draft and item_id is not None else None
    if editing is not None:
        values = {"product_id": str(editing.product_id), "quantity": figures(editing.quantity),
                  "unit": editing.unit, "days_supply": str(editing.days_supply), "dose": editing.dose,
                  "justification": editing.justification or ""}
    return values, editing


@bp.route("/patients/<int:patient_id>/prescribing/builder")
@policy.staff(Role.CLINICIAN)
def builder(patient_id: int):
    patient = _own_patient_as_clinician(patient_id)
    values, editing = _builder_request(patient)
    context = _builder_context(patient, values=values, editing=editing, panel=in_panel())
    if is_htmx():
        return render_template("prescribing/_builder.html", **context)
    return redirect(url_for("prescribing.patient_page", patient_id=patient.id,
                            product_id=request.args.get("product_id") or None,
                            edit=editing.id if editing else None, _anchor="prescription-builder"))


@bp.route("/patients/<int:patient_id>/prescribing/check", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def check(patient_id: int):
    """The live checks, as the prescriber types: the line's errors, the blocking reasons, the words."""
    patient = _own_patient_as_clinician(patient_id)
    values = parse.values(request.form, parse.ITEM_FIELDS)
    draft = services.draft_for(patient, current_user)
    result = services.check(patient, current_user, draft, values,
                            editing_item_id=parse.int_or_none(request.form.get("item_id")))
    return render_template("prescribing/_checks.html", check=result, draft=draft, patient=patient)


@bp.route("/patients/<int:patient_id>/prescribing/items", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def add_item(patient_id: int):
    patient = _own_patient_as_clinician(patient_id)
    values = parse.values(request.form, parse.ITEM_FIELDS)
    item_id = parse.int_or_none(request.form.get("item_id"))
    draft = services.draft_for(patient, current_user)
    try:
        if item_id is not None:
            if draft is None:
                raise services.PrescribingError("There is no draft to change.")
            services.update_item(draft, item_id, current_user, values)
        else:
            services.add_item(patient, current_user, values)
    except services.PrescribingError as exc:
        editing = next((i for i in draft.items if i.id == item_id), None) if draft and item_id else None
        typed = dict(values=values, errors=exc.errors or {"form": str(exc)}, editing=editing,
                     check=services.check(patient, current_user, draft, values, editing_item_id=item_id))
        if in_panel():
            return _panel_fragment(patient, **typed)
        context = _builder_context(patient, **typed)
        if is_htmx():
            return render_template("prescribing/_builder.html", **context)
        context.update(_page_context(patient))
        return render_template("prescribing/patient.html", **context), 400
    if in_panel():
        return _panel_fragment(patient, notice="Item saved to the draft prescription.")
    if is_htmx():
        return render_template("prescribing/_builder.html", **_builder_context(patient))
    flash("Item saved to the draft prescription.", "success")
    return redirect(url_for("prescribing.patient_page", patient_id=patient.id, _anchor="prescription-builder"))


@bp.route("/prescriptions/<int:prescription_id>/items/<int:item_id>/remove", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def remove_item(prescription_id: int, item_id: int):
    prescription = _own_prescription(prescription_id)
    patient = patients.get(prescription.patient_id)
    try:
        services.remove_item(prescription, item_id, current_user)
    except services.PrescribingError as exc:
        if in_panel():
            return _panel_fragment(patient, problem=str(exc))
        flash(str(exc), "error")
    else:
        if in_panel():
            return _panel_fragment(patient, notice="Item removed from the draft.")
    if is_htmx():
        return render_template("prescribing/_builder.html", **_builder_context(patient))
    return redirect(url_for("prescribing.patient_page", patient_id=patient.id, _anchor="prescription-builder"))


@bp.route("/prescriptions/<int:prescription_id>/discard", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def discard(prescription_id: int):
    prescription = _own_prescription(prescription_id)
    try:
        services.discard(prescription, current_user)
    except (services.PrescribingError, states.TransitionError) as exc:
        if in_panel():
            return _panel_fragment(patients.get(prescription.patient_id), problem=str(exc))
        flash(str(exc), "error")
    else:
        if in_panel():
            return _panel_fragment(patients.get(prescription.patient_id), notice="The draft was discarded.")
        flash("The draft was discarded.", "success")
    return redirect(url_for("prescribing.patient_page", patient_id=prescription.patient_id))


# The consultation side panel ------------------------------------------------------------------

@bp.route("/patients/<int:patient_id>/prescribing/panel")
@policy.staff(Role.CLINICIAN)
def panel(patient_id: int):
    """The Prescribing tab of the consultation side panel (also what the panel's "Back to the draft" loads)."""
    patient = _own_patient_as_clinician(patient_id)
    appointment_id = parse.int_or_none(request.args.get("appointment_id"))
    if appointment_id is not None:
        appointment = scheduling.get(appointment_id)
        if appointment is None or appointment.patient_id != patient.id:
            abort(404)
    patients.record_read(patient, section="prescribing (consultation)" if appointment_id else "prescribing")
    values, editing = _builder_request(patient)
    return _panel_fragment(patient, values=values, editing=editing)


def _panel_fragment(patient, *, review=None, notice: str | None = None, problem: str | None = None,
                    signed=None, refusal: str | None = None, needs_code: bool | None = None,
                    code_error: str | None = None, passkey_error: str | None = None, **builder):
    """The panel: the plan and MDT status, then either the formulary search and the builder, or (`review`,
    a draft) review-and-sign, with the step-up code field when the second factor is not fresh.

    Answered with 200 even for a refusal: htmx swaps only successful responses, and the panel is where
    the clinician must read it."""
    context = {**_status_context(patient), "notice": notice, "problem": problem, "signed": signed}
    if review is not None:
        needs_code = not policy.second_factor_fresh() if needs_code is None else needs_code
        context.update(review=review, refusal=refusal, code_error=code_error, token=secrets.token_urlsafe(24),
                       review_check=services.check(patient, current_user, review, None), needs_code=needs_code,
                       paper=prescribing_config.paper_original(), passkey_error=passkey_error,
                       passkey=needs_code and passkeys.has_passkeys(current_user))
    else:
        context.update(_builder_context(patient, panel=True, **builder))
    return render_template("prescribing/_panel.html", **context)


def step_up_in_panel(view):
    """Review and signing from the side panel take the step-up code in the panel itself.

    The view's rule stays `step_up=True`; for a panel request without a fresh second factor this checks the
    code or passkey assertion posted with the form (as auth.step_up does) before the rule is enforced, or answers
    the review with the code field. Leaving it to the rule would redirect to the step-up page, which htmx would
    swap into the panel, and whose form would then take the call page, and the video, away."""
    @functools.wraps(view)
    def guarded(prescription_id: int):
        if not (in_panel() and current_user.is_authenticated and current_user.role is Role.CLINICIAN
                and policy.second_factor_passed() and not policy.second_factor_fresh()):
            return view(prescription_id)  # the rule decides, as for any other request
        prescription = _own_prescription(prescription_id)
        patient = patients.get(prescription.patient_id)
        if prescription.status != S.DRAFT:
            return _panel_fragment(patient, notice="This prescription is no longer a draft.")
        if request.method != "POST":
            return _panel_fragment(patient, review=prescription, needs_code=True)
        if request.form.get("passkey_assertion"):  # "Sign with your passkey" (app/static/js/passkeys.js)
            try:
                passkeys.finish_authentication(current_user, request.form["passkey_assertion"], passkeys.STEP_UP)
            except passkeys.PasskeyError as exc:
                g.attempt_failed = True
                return _panel_fragment(patient, review=prescription, needs_code=True, passkey_error=str(exc))
            policy.second_factor_given()
            return view(prescription_id)
        if "code" not in request.form:
            return _panel_fragment(patient, review=prescription, needs_code=True,
                                   code_error="Your security code was entered more than a few minutes ago: "
                                              "enter a new one to sign.")
        code = parse.text(request.form, "code", 20)
        if not code:
            return _panel_fragment(patient, review=prescription, needs_code=True,
                                   code_error="Enter the 6-digit code from your authenticator app.")
        if not accounts.verify_totp(current_user, code, step_up=True):
            g.attempt_failed = True
            return _panel_fragment(patient, review=prescription, needs_code=True,
                                   code_error="That code is not right or has already been used. Wait for the "
                                              "next code and try again.")
        policy.second_factor_given()
        return view(prescription_id)

    return guarded


# Treatment plan and MDT -----------------------------------------------------------------------

@bp.route("/patients/<int:patient_id>/plan", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN)
def plan_edit(patient_id: int):
    patient = _own_patient_as_clinician(patient_id)
    version = plans.current(patient)
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = parse.plan_values(request.form)
        reason = parse.text(request.form, "reason")
        try:
            plans.save_version(patient, current_user, values, reason)
        except plans.PlanError as exc:
            errors = exc.errors
        else:
            flash("The treatment plan was saved as a new version.", "success")
            return redirect(url_for("prescribing.patient_page", patient_id=patient.id))
        form = request.form
    else:
        form = _plan_form_defaults(version)
    return render_template("prescribing/plan_form.html", patient=patient, user=patients.user_of(patient),
                           version=version, form=form, errors=errors, units=UNITS, formulary=formulary,
                           products=formulary.products(include_withdrawn=False)), 400 if errors else 200


def _plan_form_defaults(version) -> dict[str, str]:
    if version is None:
        return {}
    values = {"snomed_code": version.snomed_code, "indication": version.indication, "goals": version.goals,
              "review_date-day": str(version.review_date.day), "review_date-month": str(version.review_date.month),
              "review_date-year": str(version.review_date.year)}
    for line in version.products:
        values[f"product-{line['product_id']}"] = "on"
        values[f"dose_min-{line['product_id']}"] = line["dose_min"]
        values[f"dose_max-{line['product_id']}"] = line["dose_max"]
    for unit, amount in (version.quotas or {}).items():
        values[f"quota-{unit}"] = amount
    return values


@bp.route("/patients/<int:patient_id>/plan/history")
@policy.staff(Role.CLINICIAN, Role.ADMIN)
def plan_history(patient_id: int):
    patient = _patient(patient_id)
    return render_template("prescribing/plan_history.html", patient=patient, user=patients.user_of(patient),
                           history=plans.history(patient), labels=plans.FIELD_LABELS)


@bp.route("/patients/<int:patient_id>/mdt", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def mdt_refer(patient_id: int):
    patient = _own_patient_as_clinician(patient_id)
    summary = parse.text(request.form, "case_summary", 8000)
    try:
        plans.refer(patient, current_user, summary)
    except plans.MdtError as exc:
        context = _page_context(patient)
        context.update(_builder_context(patient))
        return render_template("prescribing/patient.html", mdt_errors=exc.errors, mdt_summary=summary,
                               **context), 400
    flash("The case was sent to the MDT. A second clinician records the decision.", "success")
    return redirect(url_for("prescribing.patient_page", patient_id=patient.id, _anchor="mdt"))


@bp.route("/mdt")
@policy.staff(Role.CLINICIAN)
def mdt_queue():
    rows = [(review, patients.get(review.patient_id)) for review in plans.pending()]
    rows = [(review, patient, patients.user_of(patient)) for review, patient in rows]
    return render_template("prescribing/mdt_queue.html", rows=rows)


@bp.route("/mdt/<int:review_id>", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN)
def mdt_decide(review_id: int):
    """Any clinician of the clinic may sit on the MDT; the one who referred the patient may not decide."""
    review = plans.get_review(review_id)
    if review is None:
        abort(404)
    patient = patients.get(review.patient_id)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            plans.decide(review, current_user, decision=parse.text(request.form, "decision", 20),
                         decided_on=parse.date(request.form, "decided_on"),
                         note=parse.text(request.form, "note", 8000))
        except plans.MdtError as exc:
            errors = exc.errors
        else:
            flash("The MDT decision was recorded.", "success")
            return redirect(url_for("prescribing.mdt_queue"))
    patients.record_read(patient, section="mdt")
    version = plans.current(patient)
    return render_template("prescribing/mdt_decide.html", review=review, patient=patient,
                           user=patients.user_of(patient), version=version, plan_text=_plan_text(version),
                           form=request.form, errors=errors, referrer=_user(review.referred_by_id),
                           today=dt.date.today()), 400 if errors else 200


def _user(user_id):
    from app.auth.models import User
    from app.extensions import db

    return db.session.get(User, user_id) if user_id else None


# Signing --------------------------------------------------------------------------------------

@bp.route("/prescriptions/<int:prescription_id>/sign", methods=["GET"])
@step_up_in_panel
@policy.staff(Role.CLINICIAN, step_up=True)
def sign_confirm(prescription_id: int):
    prescription = _own_prescription(prescription_id)
    patient = patients.get(prescription.patient_id)
    if in_panel():
        if prescription.status != S.DRAFT:
            return _panel_fragment(patient, notice="This prescription is no longer a draft.")
        return _panel_fragment(patient, review=prescription)
    if prescription.status != S.DRAFT:
        return redirect(url_for("prescribing.prescription", prescription_id=prescription.id))
    result = services.check(patient, current_user, prescription, None)
    return render_template("prescribing/sign.html", prescription=prescription, patient=patient,
                           user=patients.user_of(patient), check=result, token=secrets.token_urlsafe(24),
                           paper=prescribing_config.paper_original())


@bp.route("/prescriptions/<int:prescription_id>/sign", methods=["POST"])
@limiter.limit(policy.STEP_UP_ATTEMPTS, methods=["POST"], key_func=policy.attempts_key,
               deduct_when=policy.attempt_failed, scope="step-up")  # one count with the step-up page's
@step_up_in_panel
@policy.staff(Role.CLINICIAN, step_up=True)
def sign(prescription_id: int):
    prescription = _own_prescription(prescription_id)
    token = parse.text(request.form, "token", 100)
    revision = parse.int_or_none(request.form.get("revision"))
    if not token or revision is None:
        abort(400)
    patient = patients.get(prescription.patient_id)
    try:
        outcome = services.sign(prescription, current_user, token=token, revision=revision)
    except services.SigningError as exc:
        if in_panel():
            return _panel_fragment(patient, review=prescription, refusal=str(exc)) \
                if prescription.status == S.DRAFT else _panel_fragment(patient, problem=str(exc))
        result = services.check(patient, current_user, prescription, None) \
            if prescription.status == S.DRAFT else None
        return render_template("prescribing/sign.html", prescription=prescription, patient=patient,
                               user=patients.user_of(patient), check=result, token=secrets.token_urlsafe(24),
                               refusal=str(exc), paper=prescribing_config.paper_original()), 409
    if in_panel():
        return _panel_fragment(patient, signed=outcome.prescription, notice=(
            "This prescription was already signed (the form was sent twice)." if outcome.repeated
            else "Prescription signed."))
    if outcome.repeated:
        flash("This prescription was already signed (the form was sent twice): here it is.", "info")
    else:
        flash("Prescription signed.", "success")
    return redirect(url_for("prescribing.prescription", prescription_id=outcome.prescription.id))


# A prescription -------------------------------------------------------------------------------

@bp.route("/prescriptions/<int:prescription_id>")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN, Role.PHARMACIST)
def prescription(prescription_id: int):
    prescription = _prescription(prescription_id)
    if prescription.status == S.DRAFT:
        return redirect(url_for("prescribing.patient_page", patient_id=prescription.patient_id))
    patient = patients.get(prescription.patient_id)
    patients.record_read(patient, section="prescription")
    version = plans.get_version(prescription.plan_version_id) if prescription.plan_version_id else None
    return render_template("prescribing/prescription.html", prescription=prescription, patient=patient,
                           user=patients.user_of(patient), state=states.state_of(prescription),
                           history=states.history(prescription), version=version,
                           prescriber=_user(prescription.prescriber_id), profile=prescribers.get(
                               prescription.prescriber_id),
                           pharmacy=pharmacies.get(prescription.pharmacy_id) if prescription.pharmacy_id else None,
                           replaced_by=_replacement(prescription), errors={}, form={})


def _replacement(prescription):
    import sqlalchemy as sa

    from app.extensions import db
    from app.prescribing.models import Prescription

    return db.session.scalar(sa.select(Prescription).where(Prescription.supersedes_id == prescription.id,
                                                           Prescription.signed_at.is_not(None)))


@bp.route("/prescriptions/<int:prescription_id>/pdf")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN, Role.PHARMACIST)
def prescription_pdf(prescription_id: int):
    prescription = _prescription(prescription_id)
    if prescription.pdf is None:
        abort(404)
    patients.record_read(patients.get(prescription.patient_id), section="prescription_pdf")
    return Response(prescription.pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="prescription-{prescription.public_id}.pdf"'})


@bp.route("/prescriptions/<int:prescription_id>/jws")
@policy.staff(Role.CLINICIAN, Role.ADMIN, Role.PHARMACIST)
def prescription_jws(prescription_id: int):
    """The signed FHIR Bundle (compact JWS, ES256); verify it with the keys at /.well-known/jwks.json."""
    prescription = _prescription(prescription_id)
    if prescription.jws is None:
        abort(404)
    return Response(prescription.jws, mimetype="application/jose")


@bp.route("/prescriptions/<int:prescription_id>/fp10pcd")
@policy.staff(Role.CLINICIAN)
def fp10pcd(prescription_id: int):
    """The paper original to print on an FP10PCD(SS) form and sign in ink."""
    prescription = _own_prescription(prescription_id)
    if prescription.signed_at is None or not prescription.paper_original:
        abort(404)
    from app.prescribing import pdf

    document = pdf.render("prescribing/pdf/fp10pcd.html", **signing.print_facts(prescription))
    from app.audit import services as audit

    audit.record("prescription.original_printed", subject=("prescription", prescription.id),
                 patient_id=prescription.patient_id)
    return Response(document, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="fp10pcd-{prescription.public_id}.pdf"'})


@bp.route("/prescriptions/<int:prescription_id>/posted", methods=["POST"])
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def record_posting(prescription_id: int):
    prescription = _prescription(prescription_id)
    carrier, tracking = parse.text(request.form, "carrier", 100), parse.text(request.form, "tracking", 100)
    try:
        services.record_posting(prescription, carrier=carrier, tracking=tracking)
    except services.PrescribingError as exc:
        return _prescription_page_with_errors(prescription, exc, {"carrier": carrier, "tracking": tracking})
    flash("The posting of the paper original was recorded.", "success")
    return redirect(url_for("prescribing.prescription", prescription_id=prescription.id))


@bp.route("/prescriptions/<int:prescription_id>/cancel", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def cancel(prescription_id: int):
    prescription = _prescription(prescription_id)
    reason = parse.text(request.form, "reason", 1000)
    try:
        services.cancel(prescription, current_user, reason)
    except services.PrescribingError as exc:
        return _prescription_page_with_errors(prescription, exc, {"reason": reason}, field="reason")
    flash("The prescription was cancelled. The pharmacy and the patient have been told.", "success")
    return redirect(url_for("prescribing.prescription", prescription_id=prescription.id))


@bp.route("/prescriptions/<int:prescription_id>/supersede", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def supersede(prescription_id: int):
    prescription = _prescription(prescription_id)
    try:
        services.start_superseding(prescription, current_user)
    except services.PrescribingError as exc:
        flash(str(exc), "error")
        return redirect(url_for("prescribing.prescription", prescription_id=prescription.id))
    flash("A replacement draft was started from this prescription. It replaces the old one when you sign it.",
          "success")
    return redirect(url_for("prescribing.patient_page", patient_id=prescription.patient_id,
                            _anchor="prescription-builder"))


def _prescription_page_with_errors(prescription, exc, form, field: str | None = None):
    patient = patients.get(prescription.patient_id)
    errors = exc.errors or {field or "form": str(exc)}
    version = plans.get_version(prescription.plan_version_id) if prescription.plan_version_id else None
    return render_template("prescribing/prescription.html", prescription=prescription, patient=patient,
                           user=patients.user_of(patient), state=states.state_of(prescription),
                           history=states.history(prescription), version=version,
                           prescriber=_user(prescription.prescriber_id),
                           profile=prescribers.get(prescription.prescriber_id),
                           pharmacy=pharmacies.get(prescription.pharmacy_id) if prescription.pharmacy_id else None,
                           replaced_by=_replacement(prescription), errors=errors, form=form), 400


# Repeat requests and the CD log ---------------------------------------------------------------

@bp.route("/prescribing/repeats")
@policy.staff(Role.CLINICIAN)
def repeat_queue():
    return render_template("prescribing/repeats.html", rows=services.repeat_requests_for(current_user),
                           services=services)


@bp.route("/prescribing/repeats/<int:request_id>", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def repeat_decide(request_id: int):
    repeat = services.get_repeat_request(request_id)
    if repeat is None:
        abort(404)
    patient = patients.get(repeat.patient_id)
    policy.require(policy.can_view_patient(current_user, patient), subject=("repeat_request", request_id),
                   patient_id=patient.id)
    action = request.form.get("action")
    try:
        if action == "start":
            services.start_repeat(repeat, current_user)
            flash("A draft was started from the earlier prescription: check it, then sign.", "success")
            return redirect(url_for("prescribing.patient_page", patient_id=patient.id, _anchor="prescription-builder"))
        if action == "decline":
            services.decline_repeat(repeat, current_user, parse.text(request.form, "note", 1000))
            flash("The request was declined; the patient can read your note in their account.", "success")
            return redirect(url_for("prescribing.repeat_queue"))
    except services.PrescribingError as exc:
        flash(str(exc), "error")
        return redirect(url_for("prescribing.repeat_queue"))
    abort(400)


@bp.route("/prescribing/log")
@policy.staff(Role.CLINICIAN, Role.ADMIN)
def cd_log():
    """The prescriber's controlled-drug prescription log for a date range, on screen, as CSV or as PDF."""
    from app.prescribing import log_export

    today = dt.date.today()
    try:
        start = dt.date.fromisoformat(request.args.get("from") or (today - dt.timedelta(days=30)).isoformat())
        end = dt.date.fromisoformat(request.args.get("to") or today.isoformat())
    except ValueError:
        abort(400)
    if start > end or (end - start).days > 366 * 2:
        abort(400)
    prescriber = current_user if current_user.role is Role.CLINICIAN else None
    rows = services.log_rows(start, end, prescriber=prescriber)
    fmt = request.args.get("format", "html")
    if fmt == "csv":
        return Response(log_export.csv_text(rows), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="cd-prescriptions-{start}-{end}.csv"'})
    if fmt == "pdf":
        return Response(log_export.pdf_bytes(rows, start, end, prescriber), mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="cd-prescriptions-{start}-{end}.pdf"'})
    if fmt != "html":
        abort(400)
    return render_template("prescribing/log.html", rows=rows, start=start, end=end, states=states)


from app.prescribing import admin_routes, public_routes  # noqa: E402, F401  (their views join this blueprint)
