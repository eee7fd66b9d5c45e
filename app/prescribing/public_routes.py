"""The patient's prescriptions and repeat requests; the verification page (from the QR code); the JWKS."""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.extensions import limiter
from app.patients import services as patients
from app.prescribing import forms as parse
from app.prescribing import pdf, pki, services, states, verification
from app.prescribing.routes import bp

MAX_PDF_BYTES = 2 * 1024 * 1024 - 64 * 1024  # under MAX_CONTENT_LENGTH, with room for the form around it


def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


@bp.route("/my/prescriptions")
@policy.signed_in(Role.PATIENT)
def my_prescriptions():
    patient = _own_patient()
    return render_template("prescribing/my_prescriptions.html", patient=patient,
                           prescriptions=services.prescriptions_for_patient(patient),
                           requests=services.repeat_requests_of(patient), states=states)


@bp.route("/my/prescriptions/<int:prescription_id>/repeat", methods=["POST"])
@policy.signed_in(Role.PATIENT)
@limiter.limit("10 per hour", methods=["POST"], scope="repeat-request")
def request_repeat(prescription_id: int):
    patient = _own_patient()
    prescription = services.get(prescription_id)
    if prescription is None:
        abort(404)
    policy.require(prescription.patient_id == patient.id, subject=("prescription", prescription_id),
                   patient_id=prescription.patient_id)
    try:
        services.request_repeat(patient, prescription, parse.text(request.form, "note", 1000))
    except services.PrescribingError as exc:
        flash(str(exc), "error")
    else:
        flash("Your request was sent to your clinician. They will review it; we will tell you when they have.",
              "success")
    return redirect(url_for("prescribing.my_prescriptions"))


def _verify_context(prescription):
    full = current_user.is_authenticated and current_user.role is not Role.PATIENT \
        and services.can_view_prescription(current_user, prescription)
    context = {"prescription": prescription, "verdict": verification.verdict(prescription), "full": full,
               "can_upload": current_user.is_authenticated and current_user.role in (
                   Role.PHARMACIST, Role.CLINICIAN, Role.ADMIN), "check": None}
    if full:
        patient = patients.get(prescription.patient_id)
        context.update(patient=patient, user=patients.user_of(patient),
                       address=[x for x in (patient.address_line1, patient.address_line2, patient.town,
                                            patient.postcode) if x])
    return context


@bp.route("/verify/<public_id>")
@policy.public
@limiter.limit("120 per minute", scope="verify")
def verify(public_id: str):
    """Anyone with the QR code learns whether the prescription is genuine and valid, never whose it is;
    a pharmacist of the pharmacy it was sent to (signed in) also sees its content."""
    prescription = services.by_public_id(public_id)
    if prescription is None or prescription.signed_at is None:
        abort(404)
    context = _verify_context(prescription)
    if context["full"]:
        patients.record_read(context["patient"], section="prescription_verification")
    return render_template("prescribing/verify.html", **context)


@bp.route("/verify/<public_id>/check", methods=["POST"])
@policy.staff(Role.PHARMACIST, Role.CLINICIAN, Role.ADMIN)
@limiter.limit("30 per hour", methods=["POST"], scope="verify-upload")
def verify_upload(public_id: str):
    """A pharmacist uploads the PDF they were given: is its signature the clinic's, is it this prescription?"""
    prescription = services.by_public_id(public_id)
    if prescription is None or prescription.signed_at is None:
        abort(404)
    upload = request.files.get("pdf")
    context = _verify_context(prescription)
    if upload is None or not upload.filename:
        context["upload_error"] = "Choose the PDF file to check."
        return render_template("prescribing/verify.html", **context), 400
    data = upload.read(MAX_PDF_BYTES + 1)
    if len(data) > MAX_PDF_BYTES:
        context["upload_error"] = "That file is too large to be a Verity prescription."
        return render_template("prescribing/verify.html", **context), 400
    result = pdf.check(data, expected_sha256=prescription.pdf_sha256)
    if result.valid and result.signer_fingerprint != prescription.signer_fingerprint:
        result = pdf.PdfCheck(False, False, result.signer, result.signer_fingerprint,
                              "The PDF is signed by the clinic, but not by this prescription's prescriber.")
    from app.audit import services as audit

    audit.record("prescription.pdf_checked", subject=("prescription", prescription.id),
                 detail={"valid": result.valid, "matches": result.matches_record})
    context["check"] = result
    return render_template("prescribing/verify.html", **context), 200 if result.valid and result.matches_record \
        else 422


@bp.route("/.well-known/jwks.json")
@policy.public
def jwks():
    """The clinicians' public signing keys (with x5c chains to the clinic CA) for verifying prescription JWSs."""
    response = jsonify(pki.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
