"""Documents through HTTP, as the browser's upload script and the pages use them (both engines).

Covers the issue's "Done when" for documents: EXIF GPS gone from stored photos; a blurred photo
refused and a sharp one accepted; stored files unreadable as plaintext on disk; a patient
cannot fetch another patient's document (403 and an audit entry); and each bad input refused
at once with a message that says what to do. (The 50 MB memory figure: test_documents_memory.py.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import ExifTags, Image

from app.audit.models import AuditEvent
from app.documents import services as documents
from app.documents.models import Document, DocumentRequest, RequestStatus, UploadSession, UploadStatus
from app.extensions import db
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.patients.checklist import StepStatus
from tests.conftest import csrf_from, sign_in_as
from tests.test_documents_files import (
    big_pdf,
    bomb_png,
    executable_bytes,
    gps_exif,
    heic_bytes,
    jpeg_bytes,
    page_image,
    pdf_bytes,
    png_bytes,
)

CHUNK = 1024 * 1024
BLURRED = "This photo looks blurred. Hold your phone steady and take it again."


# The upload script's side of the protocol ------------------------------------------------------

def signed_in(client, persona) -> str:
    """Sign the client in; return the CSRF token the pages carry."""
    sign_in_as(client, persona)
    page = "/documents" if persona.role.value == "patient" else "/staff"
    return csrf_from(client.get(page).get_data(as_text=True))


def start(client, token, *, size, kind="medical_summary", filename="letter.pdf", **extra):
    return client.post("/documents/uploads", data={"kind": kind, "filename": filename, "size": size, **extra},
                       headers={"X-CSRFToken": token, "Accept": "application/json"})


def send(client, token, upload_id, data: bytes, start_at: int, total: int, **kwargs):
    end = start_at + len(data) - 1
    return client.post(f"/documents/uploads/{upload_id}", data=data,
                       headers={"X-CSRFToken": token, "Accept": "application/json",
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"bytes {start_at}-{end}/{total}"}, **kwargs)


def finish(client, token, upload_id):
    return client.post(f"/documents/uploads/{upload_id}/complete",
                       headers={"X-CSRFToken": token, "Accept": "application/json"})


def upload(client, token, content: bytes, *, kind="medical_summary", filename="letter.pdf", **extra):
    """The whole chunked upload; returns the first refusal, or the answer to "complete"."""
    created = start(client, token, size=len(content), kind=kind, filename=filename, **extra)
    if created.status_code != 201:
        return created
    upload_id = created.json["id"]
    for offset in range(0, len(content), CHUNK):
        sent = send(client, token, upload_id, content[offset:offset + CHUNK], offset, len(content))
        if sent.status_code != 200:
            return sent
    return finish(client, token, upload_id)


def stored_plaintext(app, document_id: int) -> bytes:
    with app.app_context():
        return b"".join(documents.open_plaintext(documents.get(document_id)))


def documents_folder(app) -> Path:
    return Path(app.config["INSTANCE_DIR"]) / "documents"


def files_on_disk(app) -> list[Path]:
    return [p for p in documents_folder(app).rglob("*") if p.is_file()]


def last_audit(app, action: str | None = None) -> AuditEvent:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.seq.desc())
        if action:
            query = query.where(AuditEvent.action == action)
        return db.session.scalars(query).first()


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# Photos ---------------------------------------------------------------------------------------

def test_photo_is_stored_upright_and_without_exif_gps(app, client, personas):
    photo = jpeg_bytes(page_image((1600, 1200)), exif=gps_exif(orientation=6))  # phone held sideways
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo), "the test photo must carry a GPS position"
    token = signed_in(client, personas["patient"])

    response = upload(client, token, photo, kind="medical_summary", filename="IMG_0042.JPG")

    assert response.status_code == 201, response.json
    stored = stored_plaintext(app, response.json["document"]["id"])
    assert b"PhoneMaker" not in stored and b"GPS" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "JPEG"
        assert not image.getexif(), "no EXIF at all leaves the upload"
        assert not image.info.get("exif") and not image.info.get("xmp")
        # Orientation 6: the top-left mark of the sensor image ends up at the top right, upright.
        assert image.size == (1200, 1600)
        red, green, _ = image.convert("RGB").getpixel((image.width - 20, 20))
        assert red > 180 and green < 80


def test_blurred_photo_is_refused_and_sharp_one_accepted(app, client, personas):
    token = signed_in(client, personas["patient"])

    blurred = upload(client, token, jpeg_bytes(page_image(blur=6)), filename="blurry.jpg")
    sharp = upload(client, token, jpeg_bytes(page_image()), filename="sharp.jpg")

    assert blurred.status_code == 422
    assert blurred.json["error"] == BLURRED
    assert blurred.json["retake"] is True
    assert sharp.status_code == 201
    with app.app_context():
        assert [d.original_filename for d in documents.documents_of(personas["patient"].patient_id)] == ["sharp.jpg"]
    assert last_audit(app, "document.rejected").detail == '{"kind":"medical_summary","reason":"blurred"}'


def test_heic_photo_from_an_iphone_is_accepted_and_stored_as_jpeg(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = upload(client, token, heic_bytes(page_image((900, 1200))), kind="other", filename="IMG_7781.HEIC")

    assert response.status_code == 201, response.json
    with app.app_context():
        document = documents.get(response.json["document"]["id"])
        assert (document.uploaded_type, document.content_type) == ("image/heic", "image/jpeg")
        assert (document.width, document.height) == (900, 1200)
        assert document.download_name == "IMG_7781.jpg"
    assert stored_plaintext(app, document.id)[:3] == b"\xff\xd8\xff"


# Encryption at rest ----------------------------------------------------------------------------

def test_stored_and_in_flight_files_are_not_readable_as_plaintext_on_disk(app, client, personas):
    marker = "VerityPlaintextMarker7f3a"
    content = big_pdf(2.5, title=marker)
    assert marker.encode() in content and len(content) > 2 * CHUNK
    token = signed_in(client, personas["patient"])
    created = start(client, token, size=len(content))
    upload_id = created.json["id"]
    assert send(client, token, upload_id, content[:CHUNK], 0, len(content)).status_code == 200
    in_flight = files_on_disk(app)
    assert in_flight, "the first chunk is on disk"
    assert all(marker.encode() not in path.read_bytes() for path in in_flight)

    for offset in range(CHUNK, len(content), CHUNK):
        assert send(client, token, upload_id, content[offset:offset + CHUNK], offset, len(content)).status_code == 200
    done = finish(client, token, upload_id)

    assert done.status_code == 201, done.json
    on_disk = files_on_disk(app)
    assert len(on_disk) == 1, "only the encrypted document is left: no part file, no work file"
    assert marker.encode() not in on_disk[0].read_bytes()
    assert b"%PDF" not in on_disk[0].read_bytes()
    plaintext = stored_plaintext(app, done.json["document"]["id"])
    assert plaintext == content
    with app.app_context():
        document = documents.get(done.json["document"]["id"])
        assert document.page_count > 1
        assert document.sha256 == hashlib.sha256(content).hexdigest()


# Access ----------------------------------------------------------------------------------------

def _a_document_of(app, persona) -> int:
    with app.app_context():
        return documents.store_file(patient_id=persona.patient_id, kind="specialist_letter", filename="letter.pdf",
                                    stream=io.BytesIO(pdf_bytes()), uploaded_by=persona.user_id).id


def test_a_patient_cannot_fetch_another_patients_document(app, client, personas):
    document_id = _a_document_of(app, personas["patient"])
    sign_in_as(client, personas["other_patient"])

    for url in (f"/documents/{document_id}/file", f"/documents/{document_id}",
                f"/documents/{document_id}/file?download=1"):
        response = client.get(url)
        assert response.status_code == 403
        assert b"%PDF" not in response.data
        entry = last_audit(app)
        assert (entry.action, entry.actor_id, entry.patient_id, entry.subject_type, entry.subject_id) == (
            "access.denied", personas["other_patient"].user_id, personas["patient"].patient_id, "document",
            str(document_id))


def test_the_clinician_opens_a_document_safely_and_the_read_is_audited(app, client, personas):
    document_id = _a_document_of(app, personas["patient"])
    sign_in_as(client, personas["clinician"])

    # The viewer's frame shows the PDF; any other visit (a new tab, a link) saves it.
    inline = client.get(f"/documents/{document_id}/file",
                        headers={"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin"})
    visited = client.get(f"/documents/{document_id}/file")
    download = client.get(f"/documents/{document_id}/file?download=1")

    assert inline.status_code == 200 and inline.data.startswith(b"%PDF-")
    assert inline.headers["Content-Type"] == "application/pdf"
    assert inline.headers["X-Content-Type-Options"] == "nosniff"
    assert inline.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "frame-ancestors 'self'" in inline.headers["Content-Security-Policy"]
    assert inline.headers["Content-Disposition"].startswith("inline;")
    assert visited.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert 'filename="letter.pdf"' in download.headers["Content-Disposition"]
    entry = last_audit(app)
    assert (entry.action, entry.actor_id, entry.patient_id) == (
        "document.read", personas["clinician"].user_id, personas["patient"].patient_id)
    assert '"disposition":"download"' in entry.detail


def test_the_viewer_shows_photos_in_an_img_and_pdfs_in_a_frame(app, client, personas):
    token = signed_in(client, personas["patient"])
    photo = upload(client, token, jpeg_bytes(), kind="other", filename="scan.jpg").json["document"]["id"]
    pdf = _a_document_of(app, personas["patient"])

    photo_page = client.get(f"/documents/{photo}").get_data(as_text=True)
    pdf_page = client.get(f"/documents/{pdf}").get_data(as_text=True)

    assert f'<img class="verity-document-image" src="/documents/{photo}/file"' in photo_page
    assert f'<iframe class="verity-document-frame" src="/documents/{pdf}/file"' in pdf_page


def test_a_pharmacist_may_not_open_patients_documents(app, client, personas):
    document_id = _a_document_of(app, personas["patient"])
    sign_in_as(client, personas["pharmacist"])

    assert client.get(f"/documents/{document_id}/file").status_code == 403
    assert client.get(f"/patients/{personas['patient'].patient_id}/documents").status_code == 403


def test_an_upload_in_flight_belongs_to_whoever_started_it(app, client, personas):
    token = signed_in(client, personas["patient"])
    upload_id = start(client, token, size=5000).json["id"]
    intruder = app.test_client()
    intruder_token = signed_in(intruder, personas["other_patient"])

    status = intruder.get(f"/documents/uploads/{upload_id}", headers={"Accept": "application/json"})
    chunk = send(intruder, intruder_token, upload_id, b"%PDF-1.7\n", 0, 5000)
    guessed = intruder.get("/documents/uploads/" + "0" * 32, headers={"Accept": "application/json"})

    assert (status.status_code, chunk.status_code, guessed.status_code) == (403, 403, 404)
    entry = last_audit(app)
    assert (entry.action, entry.subject_type, entry.patient_id) == (
        "access.denied", "document_upload", personas["patient"].patient_id)
    with app.app_context():
        assert db.session.get(UploadSession, upload_id).received_bytes == 0


def test_a_patient_cannot_upload_into_another_patients_record(app, client, personas):
    token = signed_in(client, personas["other_patient"])

    response = start(client, token, size=1000, patient_id=personas["patient"].patient_id)

    assert response.status_code == 403
    assert count(app, UploadSession) == 0
    assert last_audit(app).action == "access.denied"


# Bad input -------------------------------------------------------------------------------------

BAD_FILES = {
    "wrong type": (b"GIF89a" + b"\x00" * 5000, "notes.gif", "must be a PDF, JPG, PNG or HEIC", "wrong_type"),
    "renamed executable": (executable_bytes(), "letter.pdf", "is a program, not a document", "program"),
    "truncated PDF": (pdf_bytes(4)[:-300], "summary.pdf", "damaged or incomplete", "pdf_damaged"),
    "password-protected PDF": (pdf_bytes(2, password="secret"), "summary.pdf", "protected with a password",
                               "pdf_password"),
    "decompression bomb": (bomb_png(30_000, 30_000), "scan.png", "too large to open", "too_many_pixels"),
    "bomb under Pillow's own limit": (bomb_png(10_000, 8_000), "scan.png", "too large to open", "too_many_pixels"),
    "blurred photo": (jpeg_bytes(page_image(blur=6)), "photo.jpg", BLURRED, "blurred"),
    "too dark photo": (jpeg_bytes(page_image(dim=0.1)), "photo.jpg", "This photo is too dark", "too_dark"),
    "damaged photo": (jpeg_bytes()[:4000], "photo.jpg", "damaged or incomplete", "image_damaged"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_refused_with_a_message_and_nothing_is_kept(app, client, personas, name):
    content, filename, message, code = BAD_FILES[name]
    token = signed_in(client, personas["patient"])
    kept = _a_document_of(app, personas["patient"])  # what the patient had already sent stays

    response = upload(client, token, content, filename=filename)

    assert response.status_code == 422
    assert message in response.json["error"]
    assert response.json["code"] == code
    with app.app_context():
        assert [d.id for d in documents.documents_of(personas["patient"].patient_id)] == [kept]
        statuses = {u.status for u in db.session.scalars(sa.select(UploadSession))}
    assert statuses == {UploadStatus.REJECTED}
    assert len(files_on_disk(app)) == 1, "the refused file's data is deleted; the earlier document is kept"
    assert f'"reason":"{code}"' in last_audit(app, "document.rejected").detail


@pytest.mark.parametrize("name", ["wrong type", "renamed executable"])
def test_a_file_of_the_wrong_type_is_refused_at_its_first_chunk(app, client, personas, name):
    content = BAD_FILES[name][0] + b"\x00" * (3 * CHUNK)
    token = signed_in(client, personas["patient"])
    upload_id = start(client, token, size=len(content)).json["id"]

    first = send(client, token, upload_id, content[:CHUNK], 0, len(content))
    second = send(client, token, upload_id, content[CHUNK:2 * CHUNK], CHUNK, len(content))

    assert first.status_code == 422 and first.json["code"] == BAD_FILES[name][3]
    assert second.status_code == 410, "the refused upload is closed"
    assert files_on_disk(app) == []


def test_an_empty_file_is_refused_before_anything_is_sent(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = start(client, token, size=0, filename="empty.pdf")

    assert response.status_code == 422
    assert response.json["error"].startswith("The selected file is empty.")
    assert count(app, UploadSession) == 0


def test_a_51_mb_file_is_refused_when_declared(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = start(client, token, size=51_000_000)

    assert response.status_code == 413
    assert response.json["error"].startswith("The selected file must be smaller than 50 MB.")
    assert count(app, UploadSession) == 0


def test_a_51_mb_file_is_refused_when_its_sender_declared_less(app, client, personas):
    token = signed_in(client, personas["patient"])
    declared = 50_000_000
    upload_id = start(client, token, size=declared).json["id"]
    chunk = b"%PDF-1.7\n" + b"\x00" * (CHUNK - 9)

    offset, response = 0, None
    while offset < 51_000_000:
        response = send(client, token, upload_id, chunk, offset, declared)
        if response.status_code != 200:
            break
        offset += CHUNK

    assert offset == 47 * CHUNK, "refused at the chunk that goes past 50 MB, not later"
    assert response.status_code == 413
    assert response.json["error"].startswith("The selected file must be smaller than 50 MB.")
    with app.app_context():
        assert db.session.get(UploadSession, upload_id).status is UploadStatus.REJECTED
    assert files_on_disk(app) == []


def test_a_chunk_larger_than_allowed_is_refused(app, client, personas):
    token = signed_in(client, personas["patient"])
    upload_id = start(client, token, size=3 * CHUNK).json["id"]

    response = send(client, token, upload_id, b"%PDF-" + b"\x00" * (CHUNK + 10), 0, 3 * CHUNK)

    assert response.status_code == 400
    with app.app_context():
        assert db.session.get(UploadSession, upload_id).received_bytes == 0


# Resuming --------------------------------------------------------------------------------------

def test_an_interrupted_upload_resumes_where_it_stopped(app, client, personas):
    content = big_pdf(3)
    total = len(content)
    token = signed_in(client, personas["patient"])
    upload_id = start(client, token, size=total).json["id"]
    assert send(client, token, upload_id, content[:CHUNK], 0, total).status_code == 200

    # The phone loses its signal part-way through the second chunk: the server reads 300,000 of its bytes.
    cut = client.post(f"/documents/uploads/{upload_id}", input_stream=io.BytesIO(content[CHUNK:CHUNK + 300_000]),
                      environ_overrides={"CONTENT_LENGTH": str(CHUNK)},  # the body promised, not the body sent
                      headers={"X-CSRFToken": token, "Accept": "application/json",
                               "Content-Type": "application/octet-stream",
                               "Content-Range": f"bytes {CHUNK}-{2 * CHUNK - 1}/{total}"})
    status = client.get(f"/documents/uploads/{upload_id}", headers={"Accept": "application/json"})
    stale = send(client, token, upload_id, content[:CHUNK], 0, total)  # a retry of an old chunk

    assert cut.status_code == 200
    offset = status.json["offset"]
    assert CHUNK < offset <= CHUNK + 300_000, "whole pieces that arrived are kept"
    assert stale.status_code == 409 and stale.json["offset"] == offset
    assert finish(client, token, upload_id).status_code == 409, "not complete yet"
    while offset < total:
        response = send(client, token, upload_id, content[offset:offset + CHUNK], offset, total)
        assert response.status_code == 200
        offset = response.json["offset"]
    done = finish(client, token, upload_id)
    again = finish(client, token, upload_id)  # the answer was lost; the browser asks again

    assert done.status_code == 201
    assert again.status_code == 201 and again.json["document"]["id"] == done.json["document"]["id"]
    assert stored_plaintext(app, done.json["document"]["id"]) == content
    assert count(app, Document) == 1


def test_stale_uploads_expire_and_their_data_is_deleted(app, client, personas):
    token = signed_in(client, personas["patient"])
    upload_id = start(client, token, size=2 * CHUNK).json["id"]
    send(client, token, upload_id, b"%PDF-1.7\n" + b"\x00" * 1000, 0, 2 * CHUNK)
    assert files_on_disk(app)

    with app.app_context():
        assert documents.expire_stale_uploads(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == 0
        assert documents.expire_stale_uploads(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)) == 1
        assert db.session.get(UploadSession, upload_id).status is UploadStatus.EXPIRED
    assert files_on_disk(app) == []
    assert send(client, token, upload_id, b"\x00" * 10, 1009, 2 * CHUNK).status_code == 410


# The page without JavaScript -------------------------------------------------------------------

def test_a_plain_form_post_uploads_a_file(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = client.post("/documents", data={"csrf_token": token, "kind": "prescription_history",
                                               "file": (io.BytesIO(png_bytes()), "meds.png")},
                           content_type="multipart/form-data")

    assert response.status_code == 302
    page = client.get("/documents").get_data(as_text=True)
    assert "Prescription history" in page and "meds.png" in page


def test_a_plain_form_post_of_a_bad_file_shows_the_message_and_keeps_the_choice(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = client.post("/documents", data={"csrf_token": token, "kind": "specialist_letter",
                                               "file": (io.BytesIO(pdf_bytes(password="x")), "letter.pdf")},
                           content_type="multipart/form-data")

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "This PDF is protected with a password" in page
    assert 'id="document-upload-error"' in page and "nhsuk-form-group--error" in page
    assert '<option selected value="specialist_letter">' in page


def test_a_plain_form_post_over_the_request_limit_says_what_to_do(app, client, personas):
    token = signed_in(client, personas["patient"])

    response = client.post("/documents", data={"csrf_token": token, "kind": "other",
                                               "file": (io.BytesIO(b"%PDF-" + b"\x00" * 3_000_000), "big.pdf")},
                           content_type="multipart/form-data")

    assert response.status_code == 413
    assert "too big to send from this page without JavaScript" in response.get_data(as_text=True)
    assert count(app, Document) == 0


def test_the_page_offers_camera_picker_and_progress(app, client, personas):
    signed_in(client, personas["patient"])

    page = client.get("/documents").get_data(as_text=True)

    assert 'capture="environment"' in page and 'accept="image/*"' in page
    assert 'accept="application/pdf,image/jpeg,image/png,image/heic,image/heif' in page
    assert 'data-module="nhsuk-file-upload"' in page and "<progress" in page
    assert "/static/js/uploads.js" in page and "<script>" not in page and "style=" not in page


# Requests, the checklist, hiding ---------------------------------------------------------------

def test_a_staff_request_appears_on_the_checklist_and_an_upload_fulfils_it(app, client, personas):
    patient = personas["patient"]
    staff = app.test_client()
    staff_token = signed_in(staff, personas["clinician"])
    asked = staff.post(f"/patients/{patient.patient_id}/documents/requests",
                       data={"ask-csrf_token": staff_token, "ask-kind": "specialist_letter",
                             "ask-note": "The rheumatology letter from 2023, please."})
    assert asked.status_code == 302
    with app.test_request_context():
        record = patients.get(patient.patient_id)
        steps = {step.key: step for step in documents.checklist_steps(record)}
        request = db.session.scalars(sa.select(DocumentRequest)).one()
        message = db.session.scalars(sa.select(OutboxMessage)).all()[-1]
    assert steps["documents:medical_summary"].status is StepStatus.TODO
    step = steps[f"documents:request:{request.id}"]
    assert step.status is StepStatus.ACTION and step.hint == "The rheumatology letter from 2023, please."
    assert "rheumatology" not in message.payload, "the email carries no clinical detail"

    token = signed_in(client, patient)
    page = client.get("/documents").get_data(as_text=True)
    assert f'id="request-{request.id}"' in page and "The rheumatology letter from 2023, please." in page
    done = upload(client, token, pdf_bytes(), kind="specialist_letter", request_id=request.id)

    assert done.status_code == 201
    with app.test_request_context():
        request = db.session.get(DocumentRequest, request.id)
        assert request.status is RequestStatus.FULFILLED
        assert request.document_id == done.json["document"]["id"]
        steps = {step.key: step for step in documents.checklist_steps(patients.get(patient.patient_id))}
    assert list(steps) == ["documents:medical_summary"]
    assert steps["documents:medical_summary"].status is StepStatus.DONE


def test_staff_cancel_a_request_with_a_reason(app, client, personas):
    patient = personas["patient"]
    with app.app_context():
        request_id = documents.request_document(patient_id=patient.patient_id, kind="prescription_history", note="",
                                                requested_by=personas["reception"].user_id).id
    token = signed_in(client, personas["reception"])

    without_reason = client.post(f"/documents/requests/{request_id}/cancel", data={"cancel-csrf_token": token})
    cancelled = client.post(f"/documents/requests/{request_id}/cancel",
                            data={"cancel-csrf_token": token, "cancel-reason": "Received by post"})

    assert without_reason.status_code == 400 and "Enter a reason" in without_reason.get_data(as_text=True)
    assert cancelled.status_code == 302
    with app.test_request_context():
        request = db.session.get(DocumentRequest, request_id)
        assert (request.status, request.cancel_reason) == (RequestStatus.CANCELLED, "Received by post")
        assert len(documents.checklist_steps(patients.get(patient.patient_id))) == 1


def test_staff_add_a_letter_for_the_patient_through_the_same_upload(app, client, personas):
    patient = personas["patient"]
    token = signed_in(client, personas["reception"])

    response = upload(client, token, pdf_bytes(), kind="specialist_letter", patient_id=patient.patient_id)
    page = client.get(f"/patients/{patient.patient_id}/documents").get_data(as_text=True)

    assert response.status_code == 201
    assert "Letter from a specialist" in page and "(Reception)" in page
    with app.app_context():
        assert documents.get(response.json["document"]["id"]).uploaded_by == personas["reception"].user_id


def test_a_hidden_document_leaves_the_patients_list_but_the_clinic_keeps_it(app, client, personas):
    document_id = _a_document_of(app, personas["patient"])
    token = signed_in(client, personas["patient"])

    refused = client.post(f"/documents/{document_id}/hide", data={"hide-csrf_token": token})
    hidden = client.post(f"/documents/{document_id}/hide",
                         data={"hide-csrf_token": token, "hide-reason": "Wrong file"})

    assert refused.status_code == 400
    assert hidden.status_code == 302
    assert client.get(f"/documents/{document_id}/file").status_code == 404
    assert "letter.pdf" not in client.get("/documents").get_data(as_text=True)
    clinic = app.test_client()
    sign_in_as(clinic, personas["clinician"])
    staff_page = clinic.get(f"/patients/{personas['patient'].patient_id}/documents").get_data(as_text=True)
    assert "Hidden" in staff_page and "Wrong file" in staff_page
    assert clinic.get(f"/documents/{document_id}/file").status_code == 200
    assert count(app, Document) == 1
