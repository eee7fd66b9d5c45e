"""Documents: the patient's page, the clinic's page for one patient, the viewer, and uploads.

The chunked, resumable upload protocol (what app/static/js/uploads.js speaks). Every call
sends the CSRF token in `X-CSRFToken` and `Accept: application/json`; answers are JSON.

1. POST /documents/uploads  (form-encoded or JSON)
       kind, filename, size (bytes), [patient_id: staff uploading for a patient], [request_id]
   -> 201 {"id", "offset": 0, "size", "chunk_bytes", "status_url", "chunk_url", "complete_url"}
   -> 413/422 {"error", "code"} at once for an empty file or one over 50 MB.
2. POST /documents/uploads/<id>     body: raw bytes (application/octet-stream), at most
       chunk_bytes, with `Content-Range: bytes <first>-<last>/<size>`; <first> must be the offset
   -> 200 {"offset", "size", "done"}                 the bytes are written (encrypted) on disk
   -> 409 {"error", "offset"}                        not where the upload stands: resume from offset
   -> 413/422 {"error", "code", "retake"}            refused (the first chunk is checked for the
                                                     file's type at once); the upload is closed
3. GET /documents/uploads/<id>
   -> 200 {"offset", "size", "status"}               resume after a dropped connection or a reload
4. POST /documents/uploads/<id>/complete
   -> 201 {"document": {"id", "kind", "filename", "url"}}   checked, cleaned, encrypted, stored
   -> 409 {"error", "offset"}                        bytes are still missing
   -> 413/422 {"error", "code", "retake"}            refused ("This photo looks blurred. ...")

An upload belongs to the person who started it: anyone else gets 403 (audited); an unknown id
404. Uploads left unfinished are deleted after DOCUMENTS_UPLOAD_EXPIRY_HOURS by the worker.

Without JavaScript the same pages post one file as multipart/form-data (up to the request
size limit) and get the same checks and messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_content_range_header

from app import policy
from app.auth.models import Role
from app.documents import filetypes, rules, settings
from app.documents import services as documents
from app.documents.forms import (
    PATIENT_KINDS,
    ReasonForm,
    RequestDocumentForm,
    StartUploadForm,
    UploadForm,
    kind_choices,
)
from app.documents.models import Document, RequestStatus, UploadSession
from app.patients import services as patients

bp = Blueprint("documents", __name__, template_folder="templates")

UPLOADERS = (Role.PATIENT, *rules.DOCUMENT_STAFF)

#: The file response: no script, no plugins, framed only by our own viewer page, never sniffed.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"


@bp.app_template_global()
def documents_upload_limits() -> settings.Settings:
    """For the upload macro, which other domains' templates import without their context."""
    return settings.current()


@bp.app_template_global()
def documents_accept() -> str:
    return filetypes.ACCEPT_ATTRIBUTE


# Pages --------------------------------------------------------------------------------------

@bp.route("/documents", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def index():
    patient = _own_patient()
    form = UploadForm()
    error = None
    if request.method == "POST":
        form.kind.choices = _all_kinds()  # a request's own form may send any kind the clinic asked for
        outcome = _form_upload(form, patient)
        if not isinstance(outcome, str):
            return outcome
        error = outcome
        form.kind.choices = kind_choices(PATIENT_KINDS)
    if request.headers.get("HX-Request"):
        return render_template("documents/_list.html", documents=documents.documents_of(patient.id), staff=False)
    return _patient_page(patient, form, error)


def _patient_page(patient, form: UploadForm, error: str | None = None):
    patients.record_read(patient, section="documents")
    requests = documents.requests_of(patient.id, open_only=True)
    return render_template("documents/index.html", patient=patient, form=form, error=error, requests=requests,
                           documents=documents.documents_of(patient.id)), 422 if error else 200


@bp.route("/patients/<int:patient_id>/documents", methods=["GET", "POST"])
@policy.staff(*rules.DOCUMENT_STAFF)
def patient_documents(patient_id: int):
    patient = _patient_for_staff(patient_id)
    form = UploadForm(prefix="add")
    form.kind.choices = _all_kinds()
    error = None
    if request.method == "POST":
        outcome = _form_upload(form, patient)
        if not isinstance(outcome, str):
            return outcome
        error = outcome
    if request.headers.get("HX-Request"):
        listed = documents.documents_of(patient.id, include_hidden=True)
        return render_template("documents/_list.html", documents=listed, staff=True)
    return _staff_page(patient, upload_form=form, error=error)


def _staff_page(patient, *, upload_form: UploadForm | None = None, request_form: RequestDocumentForm | None = None,
                cancel_form: ReasonForm | None = None, cancel_for: int | None = None, error: str | None = None,
                status: int | None = None):
    patients.record_read(patient, section="documents")
    if upload_form is None:
        upload_form = UploadForm(prefix="add", formdata=None)
        upload_form.kind.choices = _all_kinds()
    return render_template(
        "documents/patient.html", patient=patient, person=patients.user_of(patient), form=upload_form, error=error,
        request_form=request_form or RequestDocumentForm(formdata=None, prefix="ask"),
        documents=documents.documents_of(patient.id, include_hidden=True), requests=documents.requests_of(patient.id),
        cancel_form=cancel_form or ReasonForm(formdata=None, prefix="cancel"), cancel_for=cancel_for,
        RequestStatus=RequestStatus,
    ), status or (422 if error else 200)


@bp.route("/patients/<int:patient_id>/documents/requests", methods=["POST"])
@policy.staff(*rules.DOCUMENT_STAFF)
def request_document(patient_id: int):
    patient = _patient_for_staff(patient_id)
    policy.require(rules.can_request(current_user, patient), subject=("patient", patient_id), patient_id=patient_id)
    form = RequestDocumentForm(prefix="ask")
    if not form.validate_on_submit():
        return _staff_page(patient, request_form=form, status=400)
    documents.request_document(patient_id=patient.id, kind=form.kind.data, note=form.note.data or "",
                               requested_by=current_user.id)
    flash(f"Request sent. {patients.user_of(patient).full_name} will see it on their checklist and by email.",
          "success")
    return redirect(url_for("documents.patient_documents", patient_id=patient.id))


@bp.route("/documents/requests/<int:request_id>/cancel", methods=["POST"])
@policy.staff(*rules.DOCUMENT_STAFF)
def cancel_request(request_id: int):
    document_request = documents.get_request(request_id)
    if document_request is None:
        abort(404)
    patient = patients.get(document_request.patient_id)
    policy.require(rules.can_manage_request(current_user, document_request, patient),
                   subject=("document_request", request_id), patient_id=patient.id)
    form = ReasonForm(prefix="cancel")
    if not form.validate_on_submit():
        return _staff_page(patient, cancel_form=form, cancel_for=document_request.id, status=400)
    documents.cancel_request(document_request, reason=form.reason.data, by=current_user.id)
    flash("Request cancelled. It no longer shows on the patient's checklist.", "success")
    return redirect(url_for("documents.patient_documents", patient_id=patient.id))


@bp.route("/documents/<int:document_id>")
@policy.signed_in(Role.PATIENT, *rules.DOCUMENT_STAFF)
def view(document_id: int):
    document, patient = _visible_document(document_id)
    form = ReasonForm(formdata=None, prefix="hide")
    return render_template("documents/view.html", document=document, patient=patient, hide_form=form,
                           can_hide=rules.can_hide(current_user, document, patient),
                           person=patients.user_of(patient))


@bp.route("/documents/<int:document_id>/file")
@policy.signed_in(Role.PATIENT, *rules.DOCUMENT_STAFF)
def file(document_id: int):
    document, _patient = _visible_document(document_id)
    inline = _shown_inline(document, download=request.args.get("download") == "1")
    body = documents.open_plaintext(document)
    documents.record_read(document, disposition="inline" if inline else "download")
    return _file_response(document, body, inline=inline)


@bp.route("/documents/<int:document_id>/hide", methods=["POST"])
@policy.signed_in(Role.PATIENT, *rules.DOCUMENT_STAFF)
def hide(document_id: int):
    document, patient = _visible_document(document_id)
    policy.require(rules.can_hide(current_user, document, patient), subject=("document", document_id),
                   patient_id=patient.id)
    form = ReasonForm(prefix="hide")
    if not form.validate_on_submit():
        return render_template("documents/view.html", document=document, patient=patient, hide_form=form,
                               can_hide=True, person=patients.user_of(patient)), 400
    documents.hide(document, reason=form.reason.data, by=current_user.id)
    flash("Document removed from the list. The clinic keeps a record of it.", "success")
    if current_user.role is Role.PATIENT:
        return redirect(url_for("documents.index"))
    return redirect(url_for("documents.patient_documents", patient_id=patient.id))


# The chunked upload API ---------------------------------------------------------------------

@bp.route("/documents/uploads", methods=["POST"])
@policy.signed_in(*UPLOADERS)
def create_upload():
    form = StartUploadForm()
    if not form.validate():
        return _json_error(_first_error(form), 400, code="invalid")
    patient = _upload_patient(form.patient_id.data)
    try:
        upload = documents.create_upload(user_id=current_user.id, patient_id=patient.id, kind=form.kind.data,
                                         filename=form.filename.data, size=form.size.data,
                                         request_id=form.request_id.data)
    except documents.DocumentRejected as exc:
        return _refusal(exc)
    return jsonify(_upload_state(upload, chunk_bytes=settings.current().DOCUMENTS_CHUNK_BYTES)), 201


@bp.route("/documents/uploads/<upload_id>")
@policy.signed_in(*UPLOADERS)
def upload_status(upload_id: str):
    upload = _own_upload(upload_id)
    return jsonify(_upload_state(upload))


@bp.route("/documents/uploads/<upload_id>", methods=["POST"])
@policy.signed_in(*UPLOADERS)
def upload_chunk(upload_id: str):
    upload = _own_upload(upload_id)
    limits = settings.current()
    content_range = parse_content_range_header(request.headers.get("Content-Range"))
    if content_range is None or content_range.units != "bytes" or content_range.start is None:
        return _json_error("Send the chunk with a Content-Range header: bytes first-last/size.", 400, code="range")
    length = content_range.stop - content_range.start
    if request.content_length is not None and request.content_length != length:
        return _json_error("The Content-Range does not match the length of the body.", 400, code="range")
    if content_range.length not in (None, upload.size_bytes) or length > limits.DOCUMENTS_CHUNK_BYTES:
        return _json_error(f"Send at most {limits.DOCUMENTS_CHUNK_BYTES} bytes at a time, of the size declared.", 400,
                           code="range")
    try:
        upload = documents.append_chunk(upload, start=content_range.start, stream=request.stream,
                                        length=length)
    except documents.UploadConflict as exc:
        return jsonify(error=str(exc), offset=exc.offset), 409
    except documents.UploadClosed:
        return _json_error("This upload has ended. Choose the file again to send it.", 410, code="closed")
    except documents.DocumentRejected as exc:
        return _refusal(exc)
    return jsonify(offset=upload.received_bytes, size=upload.size_bytes,
                   done=upload.received_bytes == upload.size_bytes)


@bp.route("/documents/uploads/<upload_id>/complete", methods=["POST"])
@policy.signed_in(*UPLOADERS)
def complete_upload(upload_id: str):
    upload = _own_upload(upload_id)
    try:
        document = documents.complete_upload(upload)
    except documents.UploadConflict as exc:
        return jsonify(error=str(exc), offset=exc.offset), 409
    except documents.UploadClosed:
        return _json_error("This upload has ended. Choose the file again to send it.", 410, code="closed")
    except documents.DocumentRejected as exc:
        return _refusal(exc)
    return jsonify(document=_document_json(document)), 201


# Helpers ------------------------------------------------------------------------------------

def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _patient_for_staff(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(rules.can_see_documents(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    return patient


def _visible_document(document_id: int) -> tuple[Document, Any]:
    document = documents.get(document_id)
    if document is None:
        abort(404)
    patient = patients.get(document.patient_id)
    if current_user.role is Role.PATIENT and patient.user_id == current_user.id and document.is_hidden:
        abort(404)  # the patient removed it from their list
    policy.require(rules.can_see(current_user, document, patient), subject=("document", document_id),
                   patient_id=patient.id)
    return document, patient


def _upload_patient(patient_id: int | None):
    if current_user.role is Role.PATIENT:
        patient = _own_patient()
        if patient_id not in (None, patient.id):
            policy.deny("object", subject=("patient", patient_id), patient_id=patient_id)
        return patient
    if patient_id is None:
        abort(_json_error("Say which patient the document is for (patient_id).", 400, code="invalid"))
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(rules.can_upload_for(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    return patient


def _own_upload(upload_id: str) -> UploadSession:
    upload = documents.get_upload(upload_id)
    if upload is None:
        abort(404)
    policy.require(rules.owns_upload(current_user, upload), subject=("document_upload", upload_id),
                   patient_id=upload.patient_id)
    return upload


def _form_upload(form: UploadForm, patient) -> Any:
    """The page's plain form post of one file: the same checks as the chunked upload.

    Returns the redirect on success, or the message to show next to the file control.
    """
    if not rules.can_upload_for(current_user, patient):
        policy.deny("object", subject=("patient", patient.id), patient_id=patient.id)
    if not form.validate_on_submit():
        return next(iter(form.errors.values()))[0] if form.errors else "Select a file to upload."
    chosen = _chosen_file()
    if chosen is None:
        return "Select a file to upload."
    request_id = int(form.request_id.data) if (form.request_id.data or "").isdigit() else None
    try:
        document = documents.store_file(patient_id=patient.id, kind=form.kind.data, filename=chosen.filename or "",
                                        stream=chosen.stream, uploaded_by=current_user.id, request_id=request_id)
    except documents.DocumentRejected as exc:
        return str(exc)
    flash(f"{document.kind.label} uploaded.", "success")
    if current_user.role is Role.PATIENT:
        return redirect(url_for("documents.index"))
    return redirect(url_for("documents.patient_documents", patient_id=patient.id))


def _chosen_file() -> FileStorage | None:
    """The first file actually chosen: the page has a camera input and a picker under one name."""
    for name in request.files:
        for candidate in request.files.getlist(name):
            if candidate and candidate.filename:
                return candidate
    return None


def _all_kinds():
    return kind_choices()


def _upload_state(upload: UploadSession, **extra: Any) -> dict[str, Any]:
    return {
        "id": upload.id, "offset": upload.received_bytes, "size": upload.size_bytes, "status": upload.status.value,
        "status_url": url_for("documents.upload_status", upload_id=upload.id),
        "chunk_url": url_for("documents.upload_chunk", upload_id=upload.id),
        "complete_url": url_for("documents.complete_upload", upload_id=upload.id), **extra,
    }


def _document_json(document: Document) -> dict[str, Any]:
    return {"id": document.id, "kind": document.kind.value, "kind_label": document.kind.label,
            "filename": document.original_filename, "content_type": document.content_type,
            "url": url_for("documents.view", document_id=document.id)}


def _refusal(exc: documents.DocumentRejected):
    return jsonify(error=str(exc), code=exc.code, retake=exc.retake), exc.http_status


def _json_error(message: str, status: int, *, code: str):
    response = jsonify(error=message, code=code)
    response.status_code = status
    return response


def _first_error(form) -> str:
    for errors in form.errors.values():
        if errors:
            return errors[0]
    return "Something in that request was not right."


#: What the stored files are; anything else (there is nothing else) would only ever be downloaded.
INLINE_TYPES = ("image/jpeg", "application/pdf")
#: The Sec-Fetch-Dest of a file shown in a frame of one of our pages (the viewer's <iframe>).
FRAMED = ("iframe", "frame", "embed", "object")


def _shown_inline(document: Document, download: bool) -> bool:
    """Whether the browser may show the file rather than save it.

    A photo is always a JPEG Verity re-encoded, so it may show anywhere (an <img>, a new tab). A
    PDF is the patient's own file: it shows only inside our viewer's frame, a request the browser
    marks as a same-origin frame (Sec-Fetch-Dest/Site, which pages cannot forge); a link opened in
    a tab, or any request from an older browser, saves it instead, so no uploaded file is ever a
    page of this site.
    """
    if download or document.content_type not in INLINE_TYPES:
        return False
    if document.content_type == "image/jpeg":
        return True
    return (request.headers.get("Sec-Fetch-Dest") in FRAMED
            and request.headers.get("Sec-Fetch-Site") == "same-origin")


def _file_response(document: Document, body: Iterator[bytes], *, inline: bool) -> Response:
    response = Response(body, mimetype=document.content_type, direct_passthrough=True)
    response.content_length = document.size_bytes
    response.headers["Content-Disposition"] = documents.content_disposition("inline" if inline else "attachment",
                                                                  document.download_name)
    response.headers["Vary"] = "Sec-Fetch-Dest, Sec-Fetch-Site"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


# A request body over the size limit (the plain form post of a large file) -----------------------

@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_error: RequestEntityTooLarge):
    """The plain form post of a file over the request limit: say so next to the file control.

    The body was refused before the view ran (so before its access rule): the page is shown
    again only to someone it is for, and everyone else gets the plain refusal.
    """
    limit_mb = (request.max_content_length or 0) / 1_000_000
    message = (f"The selected file is too big to send from this page without JavaScript (the limit is "
               f"{limit_mb:.0f} MB). Turn on JavaScript in your browser to send files up to "
               f"{settings.current().max_megabytes}, or choose a smaller file.")
    user = current_user
    if user.is_authenticated and request.endpoint == "documents.index" and user.role is Role.PATIENT:
        patient = patients.for_user(user)
        if patient is not None:
            return _patient_page(patient, UploadForm(formdata=None), message)[0], 413
    if user.is_authenticated and request.endpoint == "documents.patient_documents" and \
            user.role in rules.DOCUMENT_STAFF and policy.second_factor_passed():
        patient = patients.get((request.view_args or {}).get("patient_id", 0))
        if patient is not None and rules.can_see_documents(user, patient):
            return _staff_page(patient, error=message, status=413)
    return _json_error(message, 413, code="too_large")
