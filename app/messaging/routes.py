"""Messaging pages: the patient's conversations, a thread (both sides), the staff inbox, pharmacy queries,
and the admins' saved responses. Routes parse and render; app/messaging/services.py decides and writes."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app import policy
from app.auth.models import Role
from app.documents import services as documents
from app.extensions import csrf
from app.messaging import services as messaging
from app.messaging.forms import AFTER_REPLY, HideForm, MessageForm, SavedResponseForm
from app.messaging.models import Thread, ThreadKind, ThreadStatus
from app.patients import services as patients

bp = Blueprint("messaging", __name__, template_folder="templates")

INBOX_ROLES = (Role.CLINICIAN, Role.RECEPTION, Role.PHARMACIST, Role.ADMIN)
#: A message with a phone photo is bigger than the app-wide request limit, which only the message posts raise.
DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
POLL_SECONDS = 20
FILE_CSP = "default-src 'none'; sandbox"


def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _thread(thread_id: int) -> Thread:
    thread = messaging.get(thread_id)
    if thread is None:
        abort(404)
    policy.require(messaging.can_view_thread(current_user, thread), subject=("message_thread", thread_id),
                   patient_id=thread.patient_id)
    return thread


def _accept_upload() -> str | None:
    """Raise this route's request limit, then check CSRF; a message when the request is still too large."""
    limit = int(current_app.config.get("MESSAGING_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES))
    request.max_content_length = limit
    try:
        csrf.protect()
    except RequestEntityTooLarge:
        return (f"That is too large to send here (the limit is {limit // (1024 * 1024)} MB). Choose a smaller file, "
                "or upload it from your documents page and attach it from the list.")
    return None


def _attachments(patient_id: int, form: MessageForm, *, uploads: bool) -> list[int]:
    """The chosen documents, and the uploaded file stored through the documents domain (same checks, encrypted)."""
    chosen = [int(d) for d in (form.documents.data or [])]
    upload = request.files.get("file")
    if uploads and upload is not None and upload.filename:
        document = documents.store_file(patient_id=patient_id, kind="other", filename=upload.filename,
                                        stream=upload.stream, uploaded_by=current_user.id)
        chosen.append(document.id)
    return chosen


def _errors_from(exc: Exception) -> dict[str, str]:
    if isinstance(exc, documents.DocumentRejected):
        return {"file": str(exc)}
    return {getattr(exc, "field", None) or "body": str(exc)}


# The patient's conversations --------------------------------------------------------------------

@bp.route("/messages")
@policy.signed_in(Role.PATIENT)
def my_threads():
    patient = _own_patient()
    threads = messaging.threads_of_patient(patient)
    unread = messaging.unread_by_thread(current_user, [t.id for t in threads])
    return render_template("messaging/my_threads.html", threads=threads, unread=unread)


def _document_choices(patient_id: int) -> list:
    return documents.documents_of(patient_id)[:20]


@bp.route("/messages/new", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
@csrf.exempt  # checked in _accept_upload, once this route's larger request limit applies
def new_thread():
    patient = _own_patient()
    return _compose_new(patient, url_for("messaging.new_thread"), heading="Send a message to the clinic")


@bp.route("/patients/<int:patient_id>/messages/new", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
@csrf.exempt  # checked in _accept_upload
def start_for_patient(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(messaging.can_start_for(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    name = patients.user_of(patient).full_name
    return _compose_new(patient, url_for("messaging.start_for_patient", patient_id=patient_id),
                        heading=f"Send a message to {name}")


def _compose_new(patient, action: str, *, heading: str):
    form = MessageForm(formdata=None)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        too_large = _accept_upload()
        status = 413 if too_large else 400
        if too_large:
            errors["file"] = too_large
        else:
            form = MessageForm()
            try:
                messaging.check_subject(form.subject.data)
                messaging.check_body(form.body.data)
                attached = _attachments(patient.id, form, uploads=True)
                thread = messaging.start_thread(patient, current_user, form.subject.data, form.body.data, attached)
            except (messaging.MessagingError, documents.DocumentRejected) as exc:
                errors = _errors_from(exc)
            else:
                flash("Message sent. We will tell you when the clinic answers." if not current_user.is_staff
                      else "Message sent.", "success")
                return redirect(url_for("messaging.thread", thread_id=thread.id))
    return render_template("messaging/new_thread.html", form=form, errors=errors, action=action, heading=heading,
                           patient=patient, choices=_document_choices(patient.id),
                           max_body=messaging.MAX_BODY), status if errors else 200


# A thread ----------------------------------------------------------------------------------------

def _uploads(thread: Thread) -> bool:
    """A new file goes into the patient's documents: clinic threads only, by those who may open the record."""
    return thread.kind is ThreadKind.CLINIC and messaging.can_attach(current_user, thread.patient_id)


def _render_thread(thread: Thread, form: MessageForm | None = None, errors: dict[str, str] | None = None,
                   hide_errors: dict[int, str] | None = None):
    viewer = current_user
    messages = messaging.visible_messages(thread, viewer)
    attached = {a.document_id: documents.get(a.document_id) for m in messages for a in m.attachments}
    context = {
        "thread": thread, "messages": messages, "attached": attached, "form": form or MessageForm(formdata=None),
        "errors": errors or {}, "hide_errors": hide_errors or {}, "receipts": messaging.receipts(thread, viewer),
        "author_label": lambda m: messaging.author_label(m, viewer), "max_body": messaging.MAX_BODY,
        "latest": messages[-1].id if messages else 0, "poll_seconds": POLL_SECONDS,
        "patient": patients.get(thread.patient_id), "uploads": _uploads(thread),
        "choices": _document_choices(thread.patient_id) if messaging.can_attach(viewer, thread.patient_id) else [],
    }
    if viewer.is_staff:
        context.update(
            glance=messaging.at_a_glance(context["patient"]),
            patient_name=patients.user_of(context["patient"]).full_name,
            statuses=list(ThreadStatus), after_choices=AFTER_REPLY,
            clinicians=messaging.clinicians() if messaging.can_assign(viewer, thread) else [],
            can_triage=messaging.can_triage(viewer, thread),
            saved=messaging.saved_responses() if thread.kind is ThreadKind.CLINIC else [],
            hide_form=HideForm(formdata=None), prescription=messaging.prescription_of(thread))
    return render_template("messaging/thread.html", **context)


@bp.route("/messages/<int:thread_id>")
@policy.signed_in()
def thread(thread_id: int):
    item = _thread(thread_id)
    if request.headers.get("HX-Request") == "true" and request.args.get("since") is not None:
        messages = messaging.visible_messages(item, current_user)
        latest = messages[-1].id if messages else 0
        if str(latest) == request.args["since"]:
            return "", 204
        messaging.mark_read(item, current_user)
        return render_template("messaging/_messages.html", thread=item, messages=messages, latest=latest,
                               attached={a.document_id: documents.get(a.document_id)
                                         for m in messages for a in m.attachments},
                               receipts=messaging.receipts(item, current_user), poll_seconds=POLL_SECONDS,
                               author_label=lambda m: messaging.author_label(m, current_user),
                               hide_form=HideForm(formdata=None), hide_errors={},
                               can_triage=messaging.can_triage(current_user, item))
    messaging.mark_read(item, current_user)
    messaging.record_read(item, current_user)
    form = MessageForm(formdata=None)
    chosen = request.args.get("response", type=int)
    if chosen and current_user.is_staff:
        saved = messaging.get_saved_response(chosen)
        if saved is not None and saved.active:
            form.body.data = messaging.fill_in(saved, patients.get(item.patient_id))
    return _render_thread(item, form)


@bp.route("/messages/<int:thread_id>/reply", methods=["POST"])
@policy.signed_in()
@csrf.exempt  # checked in _accept_upload, once this route's larger request limit applies
def reply(thread_id: int):
    item = _thread(thread_id)
    form = MessageForm(formdata=None)
    too_large = _accept_upload()
    if too_large:
        return _render_thread(item, form, {"file": too_large}), 413
    form = MessageForm()
    after = None
    if current_user.is_staff and item.kind is ThreadKind.CLINIC and form.after.data in set(ThreadStatus):
        after = ThreadStatus(form.after.data)
    try:
        messaging.check_body(form.body.data)
        attached = _attachments(item.patient_id, form, uploads=_uploads(item))
        message = messaging.post(item, current_user, form.body.data, attached, status=after)
    except (messaging.MessagingError, documents.DocumentRejected) as exc:
        return _render_thread(item, form, _errors_from(exc)), 400
    flash("Message sent.", "success")
    return redirect(url_for("messaging.thread", thread_id=item.id, _anchor=f"message-{message.id}"))


@bp.route("/messages/<int:thread_id>/triage", methods=["POST"])
@policy.staff(*INBOX_ROLES)
def triage(thread_id: int):
    item = _thread(thread_id)
    policy.require(messaging.can_triage(current_user, item), subject=("message_thread", thread_id),
                   patient_id=item.patient_id)
    status, assignee = request.form.get("status"), request.form.get("assignee")
    if status is None and assignee is None:
        abort(400)
    try:
        if assignee is not None and messaging.can_assign(current_user, item):
            messaging.assign(item, int(assignee) if assignee.isdigit() else None, current_user)
        if status is not None:
            if status not in set(ThreadStatus):
                raise messaging.MessagingError("Choose a status from the list.", "status")
            messaging.set_status(item, ThreadStatus(status), current_user)
    except messaging.MessagingError as exc:
        flash(str(exc), "error")
        return _render_thread(item), 400
    flash("Saved.", "success")
    return redirect(url_for("messaging.thread", thread_id=item.id))


@bp.route("/messages/<int:thread_id>/hide/<int:message_id>", methods=["POST"])
@policy.staff(*INBOX_ROLES)
def hide(thread_id: int, message_id: int):
    item = _thread(thread_id)
    message = messaging.get_message(message_id)
    if message is None or message.thread_id != item.id:
        abort(404)
    policy.require(messaging.can_triage(current_user, item), subject=("message", message_id),
                   patient_id=item.patient_id)
    try:
        messaging.hide(message, current_user, request.form.get("reason", ""))
    except messaging.MessagingError as exc:
        return _render_thread(item, hide_errors={message.id: str(exc)}), 400
    flash("The message is hidden from the patient. It stays in the record.", "success")
    return redirect(url_for("messaging.thread", thread_id=item.id, _anchor=f"message-{message.id}"))


@bp.route("/messages/<int:thread_id>/attachments/<int:document_id>")
@policy.signed_in()
def attachment(thread_id: int, document_id: int):
    item = _thread(thread_id)
    shown = {a.document_id for m in messaging.visible_messages(item, current_user) for a in m.attachments}
    document = documents.get(document_id) if document_id in shown else None
    if document is None:
        abort(404)
    documents.record_read(document, disposition="download")
    response = Response(documents.open_plaintext(document), mimetype=document.content_type, direct_passthrough=True)
    response.content_length = document.size_bytes
    response.headers["Content-Disposition"] = documents.content_disposition("attachment", document.download_name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


# Pharmacy queries ---------------------------------------------------------------------------------

@bp.route("/prescriptions/<int:prescription_id>/query", methods=["GET", "POST"])
@policy.staff(Role.PHARMACIST, Role.CLINICIAN)
def new_query(prescription_id: int):
    from app.prescribing import services as prescribing

    prescription = prescribing.get(prescription_id)
    if prescription is None:
        abort(404)
    policy.require(messaging.can_query(current_user, prescription), subject=("prescription", prescription_id),
                   patient_id=prescription.patient_id)
    form = MessageForm(formdata=None)
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = MessageForm()
        try:
            thread = messaging.open_prescription_query(prescription, current_user, form.body.data)
        except messaging.MessagingError as exc:
            errors = _errors_from(exc)
        else:
            flash("Query sent.", "success")
            return redirect(url_for("messaging.thread", thread_id=thread.id))
    return render_template("messaging/new_query.html", form=form, errors=errors, prescription=prescription,
                           max_body=messaging.MAX_BODY), 400 if errors else 200


# The staff inbox -----------------------------------------------------------------------------------

@bp.route("/staff/messages")
@policy.staff(*INBOX_ROLES)
def inbox():
    views = messaging.views_for(current_user)
    view = request.args.get("view") if request.args.get("view") in views else views[0]
    rows = messaging.inbox(current_user, view)
    return render_template("messaging/inbox.html", rows=rows, view=view, views=views, labels=messaging.VIEWS,
                           waiting_text=messaging.waiting_text)


# Saved responses (admins) ---------------------------------------------------------------------------

@bp.route("/admin/saved-responses")
@policy.staff(Role.ADMIN)
def saved_responses():
    return render_template("messaging/saved_responses.html", responses=messaging.saved_responses(active_only=False))


@bp.route("/admin/saved-responses/new", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def saved_response_new():
    return _saved_response_form(None)


@bp.route("/admin/saved-responses/<int:response_id>", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def saved_response_edit(response_id: int):
    response = messaging.get_saved_response(response_id)
    if response is None:
        abort(404)
    return _saved_response_form(response)


def _saved_response_form(response):
    form = SavedResponseForm(obj=response) if request.method == "GET" else SavedResponseForm()
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            messaging.save_response(current_user, title=form.title.data, body=form.body.data,
                                    active=bool(form.active.data), response=response)
        except messaging.MessagingError as exc:
            errors = _errors_from(exc)
        else:
            flash("Saved.", "success")
            return redirect(url_for("messaging.saved_responses"))
    return render_template("messaging/saved_response_form.html", form=form, errors=errors, response=response,
                           max_body=messaging.MAX_BODY), 400 if errors else 200
