"""Documents: receive, check, clean, encrypt and store files; show them only to those allowed.

The contract other domains rely on:

    store_file(...) -> Document       check, normalise, encrypt and store one file; raise DocumentRejected
    open_plaintext(document) -> Iterator[bytes]   stream the decrypted content (for authorised viewers)
    get(document_id) -> Document | None

plus the chunked upload (create_upload, append_chunk, complete_upload: the protocol is in
routes.py), the clinic's requests for documents, hiding, and `checklist_steps` for the
patient's dashboard.

Every file takes the same way in, whether it came in one form post or in chunks:
plaintext in a private work file -> sniffed by content -> a PDF must open (page count kept), an
image is decoded, checked and re-encoded as a clean JPEG -> encrypted in segments into the
store -> the work files deleted. Nothing holds a whole file in memory, and the database write
(the document row, the request it fulfils, the audit entry) is one short transaction at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import sqlalchemy as sa
from flask import current_app, url_for

from app import worker
from app.audit import services as audit
from app.database import transaction, utcnow
from app.documents import encryption, filetypes, imaging, scan, settings, storage
from app.documents.errors import DocumentRejected, Reason
from app.documents.models import (
    Document,
    DocumentKind,
    DocumentRequest,
    RequestStatus,
    UploadSession,
    UploadStatus,
)
from app.extensions import db
from app.patients.checklist import Step, StepStatus

__all__ = ["Document", "DocumentKind", "DocumentRejected", "DocumentRequest", "Reason", "UploadSession", "get",
           "open_plaintext", "store_file"]

log = logging.getLogger(__name__)

#: Kinds that complete the "Medical summary" step of the checklist.
SUMMARY_KINDS = (DocumentKind.MEDICAL_SUMMARY, DocumentKind.SPECIALIST_LETTER)
#: Bytes of a request body read, encrypted and written at a time.
PIECE_BYTES = 64 * 1024
NOTE_MAX = 500
REASON_MAX = 500


class UploadConflict(Exception):
    """The chunk does not start where the upload stands: the client should resume from `offset`."""

    def __init__(self, offset: int, message: str = "This upload has moved on; carry on from the offset given."):
        super().__init__(message)
        self.offset = offset


class UploadIncomplete(UploadConflict):
    def __init__(self, offset: int):
        super().__init__(offset, "Not all of the file has arrived yet; send the rest, then try again.")


class UploadClosed(Exception):
    """The upload is finished, refused or expired: start a new one."""


# Reading ------------------------------------------------------------------------------------

def get(document_id: int) -> Document | None:
    return db.session.get(Document, document_id)


def documents_of(patient_id: int, *, include_hidden: bool = False) -> list[Document]:
    query = sa.select(Document).where(Document.patient_id == patient_id).order_by(Document.created_at.desc(),
                                                                                   Document.id.desc())
    if not include_hidden:
        query = query.where(Document.hidden_at.is_(None))
    return list(db.session.scalars(query))


def document_of_patient(document_id: int | str | None, patient_id: int,
                        kinds: Iterable[DocumentKind] | None = None) -> Document | None:
    """A visible document of this patient (optionally of these kinds), e.g. one a form names by id."""
    try:
        document = get(int(document_id)) if document_id not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if document is None or document.patient_id != patient_id or document.is_hidden:
        return None
    if kinds is not None and document.kind not in set(kinds):
        return None
    return document


def open_plaintext(document: Document) -> Iterator[bytes]:
    """The decrypted content, segment by segment.

    The key and the open file are taken now, so the iterator can run after the request's
    context has gone (a streamed response). The first segment is decrypted now too: a file
    that does not decrypt fails here, before any response has started.
    """
    data_key = current_app.extensions["verity_data_key"]
    handle = storage.store().open(document.storage_key)
    pieces = encryption.unseal(data_key, document.storage_key, handle.read)
    try:
        first = next(pieces)
    except BaseException:
        handle.close()
        raise

    def stream() -> Iterator[bytes]:
        try:
            yield first
            yield from pieces
        finally:
            handle.close()

    return stream()


def record_read(document: Document, *, disposition: str) -> None:
    """Opening a document is audited, whoever opens it."""
    audit.record("document.read", subject=("document", document.id), patient_id=document.patient_id,
                 detail={"kind": document.kind.value, "disposition": disposition})


# Storing ------------------------------------------------------------------------------------

def store_file(*, patient_id: int, kind: str, filename: str, stream: IO[bytes], uploaded_by: int | None,
               request_id: int | None = None) -> Document:
    """Check, normalise, encrypt and store one file read from `stream`; raise DocumentRejected.

    For a whole file at hand (a form post); large files from a browser come through the chunked
    upload instead. The stream is copied to a private work file, never held in memory.
    """
    limits = settings.current()
    document_kind = DocumentKind(kind)
    with _work_file() as plain:
        size = 0
        with open(plain, "wb") as out:
            for piece in storage.read_pieces(stream, PIECE_BYTES):
                size += len(piece)
                if size > limits.DOCUMENTS_MAX_BYTES:
                    _refused(patient_id, document_kind, Reason.TOO_LARGE)
                out.write(piece)
        if size == 0:
            _refused(patient_id, document_kind, Reason.EMPTY)
        try:
            return _ingest(plain, patient_id=patient_id, kind=document_kind, filename=filename,
                           uploaded_by=uploaded_by, request_id=request_id)
        except DocumentRejected as exc:
            _audit_refusal(patient_id, document_kind, exc.code, exc.detail)
            raise


def _ingest(plain: Path, *, patient_id: int, kind: DocumentKind, filename: str, uploaded_by: int | None,
            request_id: int | None, upload: UploadSession | None = None) -> Document:
    """The one way in: sniff, scan, check, clean, encrypt, store, record."""
    limits = settings.current()
    uploaded_type = filetypes.sniff_file(plain)
    _scan(plain)
    with _work_file() as cleaned:
        page_count = width = height = None
        if uploaded_type == filetypes.PDF:
            page_count = filetypes.pdf_page_count(plain)
            source, content_type = plain, filetypes.PDF
        else:
            image = imaging.normalise(plain, cleaned, uploaded_type, limits)
            width, height = image.width, image.height
            source, content_type = cleaned, filetypes.JPEG
        key = secrets.token_hex(16)
        digest = hashlib.sha256()
        size = 0

        def hashed() -> Iterator[bytes]:
            nonlocal size
            with open(source, "rb") as fh:
                for piece in storage.read_pieces(fh, encryption.SEGMENT_BYTES):
                    digest.update(piece)
                    size += len(piece)
                    yield piece

        store = storage.store()
        store.put(key, encryption.seal(current_app.extensions["verity_data_key"], key, hashed()))
    try:
        with transaction() as session:
            document = Document(
                patient_id=patient_id, kind=kind, original_filename=clean_filename(filename),
                uploaded_type=uploaded_type, content_type=content_type, size_bytes=size, page_count=page_count,
                width=width, height=height, sha256=digest.hexdigest(), storage_key=key, uploaded_by=uploaded_by)
            session.add(document)
            session.flush()
            fulfilled = _fulfil_request(document, request_id)
            if upload is not None:
                session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(
                    status=UploadStatus.COMPLETED, document_id=document.id, updated_at=utcnow()))
            audit.record("document.uploaded", subject=("document", document.id), patient_id=patient_id,
                         detail={"kind": kind.value, "content_type": content_type, "uploaded_type": uploaded_type,
                                 "size": size, "pages": page_count, "request_id": fulfilled})
    except BaseException:
        store.delete(key)  # no row points at it: do not leave an orphan behind
        raise
    return document


def _scan(plain: Path) -> None:
    """The virus scanner's word, when one is configured (scan.py), before any parser opens the file."""
    try:
        scan.scan_file(plain)
    except scan.Infected as exc:
        raise DocumentRejected(Reason.INFECTED, detail={"signature": exc.signature[:100]}) from None
    except scan.ScannerUnavailable as exc:
        raise DocumentRejected(Reason.SCAN_UNAVAILABLE) from exc


def _fulfil_request(document: Document, request_id: int | None) -> int | None:
    """Close the request this upload answers: the one named, else the oldest open one of its kind."""
    query = sa.select(DocumentRequest).where(DocumentRequest.patient_id == document.patient_id,
                                             DocumentRequest.status == RequestStatus.OPEN,
                                             DocumentRequest.kind == document.kind)
    named = db.session.scalar(query.where(DocumentRequest.id == request_id)) if request_id else None
    request = named or db.session.scalar(query.order_by(DocumentRequest.created_at, DocumentRequest.id).limit(1))
    if request is None:
        return None
    request.status = RequestStatus.FULFILLED
    request.closed_at = utcnow()
    request.closed_by = document.uploaded_by
    request.document_id = document.id
    audit.record("document.request_fulfilled", subject=("document_request", request.id),
                 patient_id=document.patient_id, detail={"document_id": document.id})
    return request.id


def _refused(patient_id: int, kind: DocumentKind, reason: Reason) -> None:
    rejection = DocumentRejected(reason)
    _audit_refusal(patient_id, kind, rejection.code)
    raise rejection


def _audit_refusal(patient_id: int, kind: DocumentKind, code: str, extra: dict | None = None) -> None:
    audit.record("document.rejected", subject=("patient", patient_id), patient_id=patient_id,
                 detail={"kind": kind.value, "reason": code, **(extra or {})})


@contextlib.contextmanager
def _work_file() -> Iterator[Path]:
    """A private (0600) work file that is gone when the block ends, whatever happens in it."""
    handle, name = tempfile.mkstemp(dir=storage.work_dir(), suffix=".work")
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_filename(name: str | None) -> str:
    """The last part of the name the browser sent, at most 200 characters, without control or format
    characters (NUL, escape codes, the right-to-left override that makes "fdp.exe" read "exe.pdf",
    zero-width and direction marks) and with line breaks and odd spaces as plain spaces."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(ch)[0] == "Z" else ch for ch in name
                   if unicodedata.category(ch)[0] != "C")
    name = " ".join(name.split()).strip(". ")
    if not name:
        return "document"
    if len(name) > 200:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[:190]}.{suffix[:8]}" if dot and len(suffix) <= 8 else name[:200]
    return name


# Chunked uploads ----------------------------------------------------------------------------

def create_upload(*, user_id: int, patient_id: int, kind: str, filename: str, size: int,
                  request_id: int | None = None) -> UploadSession:
    """Open an upload of `size` bytes; refuse at once what is empty or too large."""
    limits = settings.current()
    document_kind = DocumentKind(kind)
    if size <= 0:
        _refused(patient_id, document_kind, Reason.EMPTY)
    if size > limits.DOCUMENTS_MAX_BYTES:
        _refused(patient_id, document_kind, Reason.TOO_LARGE)
    if request_id is not None:
        request = db.session.get(DocumentRequest, request_id)
        if request is None or request.patient_id != patient_id:
            request_id = None  # a stale or foreign request id changes nothing: the upload still counts
    with transaction() as session:
        upload = UploadSession(id=secrets.token_hex(16), user_id=user_id, patient_id=patient_id, kind=document_kind,
                               filename=clean_filename(filename), size_bytes=size, request_id=request_id)
        session.add(upload)
    return upload


def get_upload(upload_id: str) -> UploadSession | None:
    if not (isinstance(upload_id, str) and len(upload_id) == 32 and upload_id.isalnum()):
        return None
    return db.session.get(UploadSession, upload_id)


def append_chunk(upload: UploadSession, *, start: int, stream: IO[bytes], length: int | None) -> UploadSession:
    """Add the bytes from `start`; return the upload with its new offset.

    The part file is locked while it is written, so two requests for the same upload (a retry
    racing the original) cannot interleave. A connection that drops mid-chunk keeps the
    pieces that arrived whole; the client asks for the offset and resumes from there.
    """
    _reload(upload)
    if upload.status is not UploadStatus.OPEN:
        raise UploadClosed()  # before opening the part file, which would make it anew
    path = storage.incoming_path(upload.id)
    with open(path, "a+b") as part:
        try:
            fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UploadConflict(upload.received_bytes, "Another request is sending this upload.") from exc
        _reload(upload)
        if upload.status is not UploadStatus.OPEN:
            raise UploadClosed()
        if start != upload.received_bytes:
            raise UploadConflict(upload.received_bytes)
        if length is not None and start + length > upload.size_bytes:
            _reject_upload(upload, _overflow(start + length))
        part.truncate(upload.part_bytes)  # drop the tail of a chunk that was cut off last time
        part.seek(upload.part_bytes)
        received, written = 0, 0
        # No more than the chunk said it holds (a body without a Content-Length could run on), nor
        # than the file has left.
        room = upload.size_bytes - start if length is None else length
        pieces = _sniffed(upload, start, _pieces(stream, room))
        try:
            for record, plain_length in encryption.seal_records(current_app.extensions["verity_data_key"], upload.id,
                                                                start, pieces):
                part.write(record)
                received += plain_length
                written += len(record)
        except _TooMuch:
            _reject_upload(upload, _overflow(upload.size_bytes + 1) if length is None else Reason.SIZE_MISMATCH)
        except _Disconnected:
            # Keep what arrived whole: the client asks for the offset and resumes from it.
            log.info("upload chunk cut off after %d bytes", received)
        part.flush()
        os.fsync(part.fileno())
        with transaction() as session:
            session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(
                received_bytes=start + received, part_bytes=upload.part_bytes + written, updated_at=utcnow()))
        _reload(upload)
    return upload


def _reload(upload: UploadSession) -> None:
    """Read the upload afresh: end any read transaction first (on SQLite it would be a stale snapshot)."""
    session = db.session()
    if session.in_transaction():
        session.commit()
    session.refresh(upload)


def _overflow(total: int) -> Reason:
    return Reason.TOO_LARGE if total > settings.current().DOCUMENTS_MAX_BYTES else Reason.SIZE_MISMATCH


class _TooMuch(Exception):
    pass


class _Disconnected(Exception):
    pass


def _pieces(stream: IO[bytes], room: int) -> Iterator[bytes]:
    """The request body in pieces; stop with _TooMuch once it passes the room the upload has left."""
    total = 0
    while True:
        try:
            piece = stream.read(PIECE_BYTES)
        except Exception as exc:  # werkzeug's ClientDisconnected (a BadRequest), or the server's own error
            raise _Disconnected() from exc
        if not piece:
            return
        total += len(piece)
        if total > room:
            raise _TooMuch()
        yield piece


def _sniffed(upload: UploadSession, start: int, pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Refuse a file of the wrong type as soon as its first bytes arrive, not after 50 MB."""
    if start != 0:
        yield from pieces
        return
    wanted = min(filetypes.PDF_WINDOW, upload.size_bytes)
    head = b""
    checked = False
    for piece in pieces:
        if not checked:
            head += piece[:wanted - len(head)]
            if len(head) >= wanted:
                _check_head(upload, head)
                checked = True
        yield piece
    if not checked and head:
        _check_head(upload, head)


def _check_head(upload: UploadSession, head: bytes) -> None:
    try:
        filetypes.sniff(head)
    except DocumentRejected as exc:
        _reject_upload(upload, exc.reason or Reason.WRONG_TYPE)


def _reject_upload(upload: UploadSession, reason: Reason) -> None:
    """Close the upload as refused, delete what it sent, and raise the refusal."""
    rejection = DocumentRejected(reason)
    with transaction() as session:
        session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(
            status=UploadStatus.REJECTED, rejected_reason=rejection.code, updated_at=utcnow()))
        _audit_refusal(upload.patient_id, upload.kind, rejection.code)
    _delete_part(upload.id)
    raise rejection


def complete_upload(upload: UploadSession) -> Document:
    """All bytes are in: decrypt them to a work file and take them the one way in."""
    _reload(upload)
    if upload.status is UploadStatus.COMPLETED and upload.document_id:
        return get(upload.document_id)  # a retried "complete" after a lost answer
    if upload.status is not UploadStatus.OPEN:
        raise UploadClosed()
    if upload.received_bytes != upload.size_bytes:
        raise UploadIncomplete(upload.received_bytes)
    with transaction() as session:
        claimed = session.execute(sa.update(UploadSession).where(
            UploadSession.id == upload.id, UploadSession.status == UploadStatus.OPEN).values(
            status=UploadStatus.PROCESSING, updated_at=utcnow())).rowcount
    if not claimed:
        raise UploadConflict(upload.received_bytes, "This upload is already being checked.")
    try:
        with _work_file() as plain:
            data_key = current_app.extensions["verity_data_key"]
            with open(storage.incoming_path(upload.id), "rb") as part, open(plain, "wb") as out:
                for piece in encryption.open_records(data_key, upload.id, part.read, upload.size_bytes):
                    out.write(piece)
            document = _ingest(plain, patient_id=upload.patient_id, kind=upload.kind, filename=upload.filename,
                               uploaded_by=upload.user_id, request_id=upload.request_id, upload=upload)
    except DocumentRejected as exc:
        _reopen_then_reject(upload, exc)
        raise
    except encryption.Corrupt:
        log.warning("upload %s part file does not decrypt", upload.id)
        _reopen_then_reject(upload, DocumentRejected(Reason.SIZE_MISMATCH))
        raise DocumentRejected(Reason.SIZE_MISMATCH) from None
    except BaseException:
        with transaction() as session:  # let the client try "complete" again
            session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(
                status=UploadStatus.OPEN))
        raise
    _delete_part(upload.id)
    db.session.refresh(upload)
    return document


def _reopen_then_reject(upload: UploadSession, rejection: DocumentRejected) -> None:
    with transaction() as session:
        session.execute(sa.update(UploadSession).where(UploadSession.id == upload.id).values(
            status=UploadStatus.REJECTED, rejected_reason=rejection.code, updated_at=utcnow()))
        _audit_refusal(upload.patient_id, upload.kind, rejection.code, rejection.detail)
    _delete_part(upload.id)


def _delete_part(upload_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        storage.incoming_path(upload_id).unlink()


@worker.periodic("documents.expire_uploads", every_seconds=15 * 60)
def expire_stale_uploads(now: dt.datetime | None = None) -> int:
    """Drop uploads left unfinished (and their encrypted partial data), and stray work files."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(hours=settings.current().DOCUMENTS_UPLOAD_EXPIRY_HOURS)
    stale = list(db.session.scalars(sa.select(UploadSession.id).where(
        UploadSession.status.in_([UploadStatus.OPEN, UploadStatus.PROCESSING]), UploadSession.updated_at < cutoff)))
    if stale:
        with transaction() as session:
            session.execute(sa.update(UploadSession).where(UploadSession.id.in_(stale)).values(
                status=UploadStatus.EXPIRED, updated_at=now))
        for upload_id in stale:
            _delete_part(upload_id)
    # A work file outlives its check only if the process died mid-way: an hour is ample.
    for path in storage.work_dir().glob("*.work"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < now.timestamp() - 3600:
                path.unlink()
    return len(stale)


# Hiding -------------------------------------------------------------------------------------

def hide(document: Document, *, reason: str, by: int) -> None:
    """Take a document out of the patient's list. It is never deleted: the clinic still sees it."""
    reason = (reason or "").strip()[:REASON_MAX]
    if not reason:
        raise ValueError("Enter why this document should be hidden")
    if document.is_hidden:
        return
    with transaction():
        document.hidden_at = utcnow()
        document.hidden_reason = reason
        document.hidden_by = by
        audit.record("document.hidden", subject=("document", document.id), patient_id=document.patient_id,
                     detail={"kind": document.kind.value})


# Requests from the clinic -------------------------------------------------------------------

def request_document(*, patient_id: int, kind: str, note: str, requested_by: int) -> DocumentRequest:
    from app.notifications import services as notifications
    from app.patients import services as patients

    with transaction() as session:
        request = DocumentRequest(patient_id=patient_id, kind=DocumentKind(kind), note=(note or "").strip()[:NOTE_MAX],
                                  requested_by=requested_by)
        session.add(request)
        session.flush()
        audit.record("document.requested", subject=("document_request", request.id), patient_id=patient_id,
                     detail={"kind": request.kind.value})
        # The portal notice names the document and the note; the email says only that there is something to do.
        notifications.notify(patients.get(patient_id), "document.requested", key=f"document-request:{request.id}",
                             link=notifications.link_to("documents.index"),
                             context={"kind": request.kind.label, "note": request.note})
    return request


def get_request(request_id: int) -> DocumentRequest | None:
    return db.session.get(DocumentRequest, request_id)


def requests_of(patient_id: int, *, open_only: bool = False) -> list[DocumentRequest]:
    query = sa.select(DocumentRequest).where(DocumentRequest.patient_id == patient_id).order_by(
        DocumentRequest.created_at.desc(), DocumentRequest.id.desc())
    if open_only:
        query = query.where(DocumentRequest.status == RequestStatus.OPEN)
    return list(db.session.scalars(query))


def cancel_request(request: DocumentRequest, *, reason: str, by: int) -> None:
    reason = (reason or "").strip()[:REASON_MAX]
    if not reason:
        raise ValueError("Enter why the document is no longer needed")
    if request.status is not RequestStatus.OPEN:
        return
    with transaction():
        request.status = RequestStatus.CANCELLED
        request.closed_at = utcnow()
        request.closed_by = by
        request.cancel_reason = reason
        audit.record("document.request_cancelled", subject=("document_request", request.id),
                     patient_id=request.patient_id, detail={"kind": request.kind.value})


# The patient's checklist --------------------------------------------------------------------

def checklist_steps(patient) -> list[Step]:
    """A "Medical summary" step, and one step for each document the clinic asked for."""
    has_summary = db.session.scalar(sa.select(sa.func.count()).select_from(Document).where(
        Document.patient_id == patient.id, Document.kind.in_(SUMMARY_KINDS), Document.hidden_at.is_(None))) > 0
    page = url_for("documents.index")
    steps = [Step(
        key="documents:medical_summary", title="Medical summary",
        status=StepStatus.DONE if has_summary else StepStatus.TODO,
        hint=("Thank you: the clinician will read it before your consultation." if has_summary else
              "Upload your GP summary or a letter from a specialist, so the clinician can see your diagnosis and "
              "the treatments you have tried."),
        url=page, action=None if has_summary else "Upload your medical summary", order=30)]
    for position, request in enumerate(reversed(requests_of(patient.id, open_only=True))):
        steps.append(Step(
            key=f"documents:request:{request.id}", title=f"{request.kind.label}: the clinic asked for this",
            status=StepStatus.ACTION, hint=request.note or f"Upload your {request.kind.label.lower()}.",
            url=url_for("documents.index", _anchor=f"request-{request.id}"), action="Upload the document",
            order=31 + min(position, 8)))
    return steps


def content_disposition(disposition: str, name: str) -> str:
    """RFC 6266: a plain-ASCII `filename` for old clients and the exact name as `filename*` (RFC 8187)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(ch for ch in ascii_name if ch.isprintable() and ch not in '"\\;%').strip() or "document"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
