"""Identity: the patient's capture and status pages, the staff review queue, the provider webhook."""

from __future__ import annotations

import datetime as dt

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app import policy
from app.auth.models import Role
from app.extensions import csrf
from app.identity import providers
from app.identity import services as identity
from app.identity.forms import IdentityForm, ReviewForm
from app.identity.models import CheckStatus, DocumentType, IdentityCheck
from app.patients import services as patients
from app.patients.models import Patient

bp = Blueprint("identity", __name__, template_folder="templates")
# A provider that cannot work (no URL, no webhook secret) stops the app at start, not at the first check.
bp.record_once(lambda state: providers.check_configuration(state.app.config))
bp.add_app_template_filter(identity.clinic_time, "identity_time")

#: (photo, file field, hidden field the upload script fills, hidden field keeping a photo from an earlier try)
PHOTOS = (("document", "document_photo", "document_uploaded", "document_upload"),
          ("selfie", "selfie", "selfie_uploaded", "selfie_upload"))


def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _check_or_404(check_id: int) -> IdentityCheck:
    check = identity.get(check_id)
    if check is None:
        abort(404)
    policy.require(policy.can_view_patient(current_user, check.patient), subject=("identity_check", check_id),
                   patient_id=check.patient_id)
    return check


# The patient --------------------------------------------------------------------------------

@bp.route("/identity")
@policy.signed_in(Role.PATIENT)
def status():
    patient = _own_patient()
    check = identity.latest_for(patient)
    if check is None and patient.identity_verified_at is None:
        return redirect(url_for("identity.start"))
    return render_template("identity/status.html", check=check, verified=patient.identity_verified_at is not None)


@bp.route("/identity/new", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
@csrf.exempt  # checked below, once this route's larger upload limit applies
def start():
    too_large = False
    if request.method == "POST":
        # Two phone photos in one form: above the app-wide request limit, which only this route raises.
        request.max_content_length = providers.setting("IDENTITY_MAX_UPLOAD_BYTES")
        try:
            csrf.protect()
        except RequestEntityTooLarge:
            too_large = True
    patient = _own_patient()
    latest = identity.latest_for(patient)
    if patient.identity_verified_at is not None or (latest is not None and latest.status is not CheckStatus.REJECTED):
        return redirect(url_for("identity.status"))
    form = IdentityForm(formdata=None) if too_large else IdentityForm()
    message = None
    if too_large:
        limit_mb = request.max_content_length // (1024 * 1024)
        message = (f"Your photos were too large to send together (the limit is {limit_mb} MB). "
                   "Take them again, or choose smaller copies.")
    elif request.method == "POST":
        details_valid = form.validate()
        photos = _take_photos(form, patient)
        expiry = form.expiry()
        if details_valid and expiry is None:
            form.expiry_day.errors = ["Enter a real date, as printed on your document"]
        elif details_valid and photos is not None:
            try:
                identity.submit(patient, document_type=DocumentType(form.document_type.data),
                                document_id=photos[0], selfie_document_id=photos[1], expiry=expiry,
                                mrz_text=form.mrz.data)
            except identity.IdentityError as exc:
                field = {"expiry": form.expiry_day, "mrz": form.mrz, "document": form.document_photo,
                         "selfie": form.selfie}.get(exc.field or "")
                if field is None:
                    message = str(exc)
                else:
                    field.errors = [*field.errors, str(exc)]
            else:
                flash("Thank you: we have your photos.", "success")
                return redirect(url_for("identity.status"))
    failed = bool(message) or any(f.errors for f in form)
    return render_template("identity/start.html", form=form, message=message, previous=latest,
                           limit=providers.setting("IDENTITY_MAX_UPLOAD_BYTES"),
                           provider_is_remote=providers.configured().remote), \
        (413 if too_large else 400 if failed else 200)


def _take_photos(form: IdentityForm, patient: Patient) -> tuple[int, int] | None:
    """Each photo: the file posted with the form (no JavaScript), else the one the upload control
    sent ahead, else the one kept from an earlier try. Keep the ids of those accepted, so a
    retry after a form error does not ask for them again."""
    ids: list[int] = []
    for which, file_name, sent_name, kept_name in PHOTOS:
        upload, sent, kept = getattr(form, file_name), getattr(form, sent_name), getattr(form, kept_name)
        document_id = None
        if upload.data and getattr(upload.data, "filename", ""):
            try:
                document_id = identity.store_photo(patient, which, filename=upload.data.filename,
                                                   stream=upload.data.stream, uploaded_by=current_user.id)
            except identity.IdentityError as exc:
                upload.errors = [*upload.errors, str(exc)]
                kept.data = ""
                continue
        else:
            document_id = identity.usable_photo(patient, which, sent.data) or identity.usable_photo(
                patient, which, kept.data)
        if document_id is None:
            upload.errors = [*upload.errors, "Take a photo of your document" if which == "document"
                             else "Take a selfie"]
            kept.data = ""
            continue
        kept.data = str(document_id)
        ids.append(document_id)
    return (ids[0], ids[1]) if len(ids) == 2 else None


# Staff --------------------------------------------------------------------------------------

def _clinician_filter() -> int | None:
    return current_user.id if current_user.role is Role.CLINICIAN else None


@bp.route("/identity/reviews")
@policy.staff(Role.RECEPTION, Role.ADMIN, Role.CLINICIAN)
def reviews():
    return render_template("identity/reviews.html", queue=identity.review_queue(clinician_id=_clinician_filter()),
                           at_provider=identity.with_provider(clinician_id=_clinician_filter()))


def _render_review(check: IdentityCheck, form: ReviewForm, *, message: str | None = None, status: int = 200):
    patient = check.patient
    return render_template(
        "identity/review.html", check=check, form=form, message=message, patient=patient, today=dt.date.today(),
        photos=identity.photos_of(check),
        user=patients.user_of(patient), mrz=identity.mrz_of(check), reasons=identity.REJECTION_REASONS,
        delivery_problem=identity.delivery_problem(check) if check.provider != providers.STAFF else None,
        can_decide=current_user.role in (Role.RECEPTION, Role.ADMIN) and check.provider == providers.STAFF,
    ), status


@bp.route("/identity/reviews/<int:check_id>")
@policy.staff(Role.RECEPTION, Role.ADMIN, Role.CLINICIAN)
def review(check_id: int):
    check = _check_or_404(check_id)
    patients.record_read(check.patient, section="identity")
    return _render_review(check, ReviewForm(formdata=None))


@bp.route("/identity/reviews/<int:check_id>/decision", methods=["POST"])
@policy.staff(Role.RECEPTION, Role.ADMIN)
def decide(check_id: int):
    check = _check_or_404(check_id)
    form = ReviewForm()
    if not form.validate():
        return _render_review(check, form, status=400)
    try:
        identity.staff_decision(check, current_user, approved=form.decision.data == "approve",
                                reason_code=form.reason.data, note=form.note.data)
    except identity.AlreadyDecided as exc:
        return _render_review(check, ReviewForm(formdata=None), message=str(exc), status=409)
    except identity.IdentityError as exc:
        return _render_review(check, form, message=str(exc), status=400)
    name = patients.user_of(check.patient).full_name
    flash(f"Identity confirmed for {name}." if check.status is CheckStatus.APPROVED
          else f"Check rejected. {name} will see your reason and can try again.", "success")
    return redirect(url_for("identity.reviews"))


# Providers ----------------------------------------------------------------------------------

@bp.route("/identity/webhooks/<provider>", methods=["POST"])
@policy.public
@csrf.exempt  # authenticated by its HMAC signature instead
def webhook(provider: str):
    try:
        check = identity.receive_webhook(
            provider, timestamp=request.headers.get(providers.TIMESTAMP_HEADER),
            signature=request.headers.get(providers.SIGNATURE_HEADER), body=request.get_data(cache=False))
    except providers.WebhookRefused as refused:
        return jsonify(error=refused.reason, status=refused.status), refused.status
    return jsonify(status=check.status.value, reference=check.provider_reference), 200
