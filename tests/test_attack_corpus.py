"""The attack corpus (tests/attack_corpus.py) through every way a patient can send a file (both engines).

For each upload route a patient can use (the documents page's form, the chunked upload the page's
script speaks, the identity photos, a new message and a reply with a file) every item of the
corpus must be refused with a plain message and nothing half-written (no document row, no stored
blob, no work or part file left), or neutralised: stored re-rendered or under a clean name, and
served back only as a download or as a re-rendered image, never as a page of this site. While it
is handled, the process's peak memory grows by no more than a bound that reading a whole file or
body into memory would break (measured as bench/upload_memory.py does: the peak resident set,
VmHWM, after resetting it through /proc/self/clear_refs).

Bodies far over the request limits (200 MB, streamed to the app as it reads them, with and without
a Content-Length) are refused with 413 and a plain page, without being read, on every route.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import gc
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from flask import Response
from PIL import Image
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.documents import services as documents
from app.documents.errors import DocumentRejected, Reason
from app.documents.models import Document, UploadSession, UploadStatus
from app.extensions import db
from tests.attack_corpus import (
    MULTIPART_TYPE,
    NEUTRALISED,
    REFUSED,
    SCRIPT,
    Item,
    StreamedBody,
    check_specimens,
    corpus,
    multipart,
    multipart_stream,
    raw_pdf,
    sharp_jpeg,
)
from tests.conftest import csrf_from, sign_in_as

MIB = 1024 * 1024
#: Growth of the peak resident set allowed while one corpus item is handled. The largest item is a
#: 24 MB PDF that pypdf would repair by reading all of it: a route that read a whole upload into
#: memory breaks this bound.
ITEM_BOUND = 24 * MIB
#: The items whose honest cost is higher: a 49-megapixel 1-bit scan (under the 50 MP limit) decodes
#: to 49 MB, and once more to greyscale to be scaled smoothly; Pillow keeps every metadata segment of
#: a JPEG (8 MB of them here) while it reads the picture.
ITEM_BOUNDS = {"png_near_the_pixel_limit": 160 * MIB, "jpeg_many_metadata_segments": 32 * MIB}
#: A 200 MB body must not be read: the app's memory may grow by a small fraction of it.
HUGE_BODY = 200 * 1024 * 1024
HUGE_BODY_BOUND = 32 * MIB
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"/")
CHUNK = 1024 * 1024


# Measuring ---------------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


@dataclass
class Peak:
    growth: int = 0


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """The growth of this process's peak resident set over the block (Linux 4.0+).

    Memory freed earlier is handed back to the system first (malloc_trim): otherwise a large
    allocation could reuse pages still resident from an earlier request and not show.
    """
    gc.collect()
    _LIBC.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) back to the current resident set
    baseline = _status_kib("VmRSS")
    peak = Peak()
    try:
        yield peak
    finally:
        peak.growth = (_status_kib("VmHWM") - baseline) * 1024


def send(client, path: str, body: bytes | io.RawIOBase, content_type: str, *, token: str,
         accept: str = "text/html", length: int | None = None, extra_headers: dict | None = None):
    """POST a body made before the measurement starts; return (response, peak memory growth).

    A streamed body (StreamedBody) goes to the app as wsgi.input as it is, with the Content-Length
    given, or none (a chunked request): the test client would measure its length by seeking.
    """
    headers = {"X-CSRFToken": token, "Accept": accept, **(extra_headers or {})}
    if isinstance(body, bytes):
        builder = EnvironBuilder(path=path, method="POST", input_stream=io.BytesIO(body), content_type=content_type,
                                 content_length=len(body), headers=headers)
        with peak_memory() as peak:
            response = client.open(builder)
            response.get_data()
        return response, peak.growth
    environ = EnvironBuilder(path=path, method="POST", content_type=content_type, headers=headers).get_environ()
    environ["wsgi.input"] = body
    if length is None:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(length)
    app = client.application
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    environ["HTTP_COOKIE"] = f"{cookie.key}={cookie.value}"
    with peak_memory() as peak:
        app_iter, status, response_headers = run_wsgi_app(app, environ, buffered=True)
        response = Response(b"".join(app_iter), status=status, headers=response_headers)
    return response, peak.growth


# What is stored ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    documents: frozenset[int]
    blobs: frozenset[str]
    work_files: frozenset[str]
    parts: frozenset[str]


def snapshot(app) -> Snapshot:
    folder = Path(app.config["INSTANCE_DIR"]) / "documents"

    def files(sub: str) -> frozenset[str]:
        return frozenset(str(p) for p in (folder / sub).rglob("*") if p.is_file())

    with app.app_context():
        ids = frozenset(db.session.scalars(sa.select(Document.id)))
    return Snapshot(ids, files("store"), files("work"), files("incoming"))


def message_for(app, code: str) -> str:
    reason = next(r for r in Reason if r.code == code)
    with app.app_context():
        return DocumentRejected(reason).message


def plain_text(response) -> str:
    """The words of an HTML page or a JSON answer, as the person reads them."""
    if response.is_json:
        return str(response.json.get("error", ""))
    html = response.get_data(as_text=True)
    return unicodedata.normalize("NFC", re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))).replace("&#34;", '"') \
        .replace("&quot;", '"').replace("&#39;", "'").replace("&amp;", "&")


# The routes a patient sends files through -----------------------------------------------------------

@dataclass
class Route:
    name: str
    #: Largest body the route reads (its request limit), or None for the chunked protocol.
    limit: Callable[[object], int | None]
    #: (app, client, token, item, content) -> (response, growth, accepted document id or None)
    post: Callable
    #: The too-large message the route shows for a body over its limit.
    too_large: str


def _expiry() -> dict[str, str]:
    soon = dt.date.today() + dt.timedelta(days=400)
    return {"expiry_day": str(soon.day), "expiry_month": str(soon.month), "expiry_year": str(soon.year)}


def _new_documents(app, before: Snapshot) -> list[int]:
    return sorted(snapshot(app).documents - before.documents)


def _post_form(path: str, fields: dict[str, str], file_field: str):
    def post(app, client, token, item: Item, content: bytes):
        before = snapshot(app)
        body = multipart(fields, {file_field: (item.filename, content)})
        response, growth = send(client, path() if callable(path) else path, body, MULTIPART_TYPE, token=token)
        new = _new_documents(app, before)
        return response, growth, new[-1] if new else None
    return post


def _post_chunked(app, client, token, item: Item, content: bytes):
    """The upload script's protocol: start, 1 MiB chunks, complete; the first refusal ends it.

    The peak is measured over the whole upload (a 1 MiB slice of the file is made per chunk).
    """
    headers = {"X-CSRFToken": token, "Accept": "application/json"}
    with peak_memory() as peak:
        answer = _chunked_upload(client, headers, item, content)
    document_id = answer.json["document"]["id"] if answer.status_code == 201 else None
    return answer, peak.growth, document_id


def _chunked_upload(client, headers: dict, item: Item, content: bytes):
    created = client.post("/documents/uploads", data={"kind": "medical_summary", "filename": item.filename,
                                                      "size": len(content)}, headers=headers)
    if created.status_code != 201:
        return created
    upload_id = created.json["id"]
    for offset in range(0, len(content), CHUNK):
        piece = content[offset:offset + CHUNK]
        answer = client.post(f"/documents/uploads/{upload_id}", data=piece, headers={
            **headers, "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {offset}-{offset + len(piece) - 1}/{len(content)}"})
        if answer.status_code != 200:
            return answer
    return client.post(f"/documents/uploads/{upload_id}/complete", headers=headers)


def _thread_path(app) -> str:
    return f"/messages/{app.extensions['corpus_thread']}/reply"


ROUTES = {
    "documents_form": Route(
        "documents_form", lambda app: app.config["MAX_CONTENT_LENGTH"],
        _post_form("/documents", {"kind": "medical_summary"}, "file"),
        "The selected file is too big to send from this page without JavaScript"),
    "documents_chunked": Route("documents_chunked", lambda app: None, _post_chunked, ""),
    "identity_photo": Route(
        "identity_photo", lambda app: app.config.get("IDENTITY_MAX_UPLOAD_BYTES", 25 * MIB),
        _post_form("/identity/new", {"document_type": "passport", **_expiry()}, "document_photo"),
        "Your photos were too large to send together"),
    "message_new": Route(
        "message_new", lambda app: app.config["MESSAGING_MAX_REQUEST_BYTES"],
        _post_form("/messages/new", {"subject": "My letter", "body": "Here is my letter."}, "file"),
        "That is too large to send here"),
    "message_reply": Route("message_reply", lambda app: app.config["MESSAGING_MAX_REQUEST_BYTES"], None,
                           "That is too large to send here"),
}


def _reply(app, client, token, item, content):
    return _post_form(lambda: _thread_path(app), {"body": "And this."}, "file")(app, client, token, item, content)


ROUTES["message_reply"].post = _reply


@pytest.fixture
def patient_client(app, personas):
    """The owner patient, signed in, with a conversation to reply in; returns (client, CSRF token)."""
    from app.auth.models import User
    from app.messaging import services as messaging
    from app.patients import services as patients

    client = app.test_client()
    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/documents").get_data(as_text=True))
    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        thread = messaging.start_thread(patient, db.session.get(User, personas["patient"].user_id), "Letters",
                                        "I will send my letters here.", [])
        app.extensions["corpus_thread"] = thread.id
    return client, token


def test_the_corpus_holds_real_specimens():
    """The polyglots open in both their formats, the bombs and floods say what they claim."""
    check_specimens()


# Every item, every route -----------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Tag data larger than file")  # Pillow, reading the malformed EXIF item
@pytest.mark.parametrize("route", list(ROUTES.values()), ids=list(ROUTES))
def test_every_corpus_item_is_refused_or_neutralised(app, personas, patient_client, route):
    client, token = patient_client
    failures: list[str] = []
    for item in corpus():
        content = item.content
        before = snapshot(app)
        response, growth, document_id = route.post(app, client, token, item, content)
        problems = _check_answer(app, route, item, content, response, before, document_id)
        if document_id is not None:
            problems += _check_stored_and_served(app, client, route, item, document_id)
        bound = ITEM_BOUNDS.get(item.name, ITEM_BOUND)
        if growth > bound:
            problems.append(f"peak memory grew {growth / MIB:.1f} MiB (bound {bound / MIB:.0f} MiB)")
        failures += [f"{item.name}: {problem}" for problem in problems]
    assert not failures, f"{route.name}:\n" + "\n".join(failures)


def _check_answer(app, route: Route, item: Item, content: bytes, response, before: Snapshot,
                  document_id: int | None) -> list[str]:
    problems = []
    status, text = response.status_code, plain_text(response)
    if status >= 500 or TRACEBACK.search(response.get_data(as_text=True)):
        return [f"answered {status} (a crash, or a traceback in the page)"]
    limit = route.limit(app)
    too_big = limit is not None and len(content) > limit - 4096  # the form around the file needs a little room
    after = snapshot(app)
    if after.work_files:
        problems.append(f"work files left behind: {sorted(after.work_files)}")
    if item.expect == REFUSED or too_big:
        if document_id is not None or after.documents != before.documents:
            problems.append(f"was stored (document {document_id}) but should be refused")
        if after.blobs != before.blobs:
            problems.append("a blob was left in the store although nothing was accepted")
        if after.parts - before.parts:
            problems.append("a part file of the refused upload was left in incoming/")
        if status < 400:
            problems.append(f"answered {status}, not a refusal")
        expected = route.too_large if too_big else message_for(app, item.reason)
        if expected not in text:
            problems.append(f"the answer ({status}) does not say {expected!r}: {text[:300]!r}")
        return problems
    if document_id is None:
        problems.append(f"was refused ({status}: {text[:200]!r}) but should be accepted")
    return problems


def _check_stored_and_served(app, client, route: Route, item: Item, document_id: int) -> list[str]:
    problems = []
    with app.app_context():
        document = documents.get(document_id)
        stored = b"".join(documents.open_plaintext(document))
        name, content_type, download_name = document.original_filename, document.content_type, document.download_name
    problems += _check_name(name, "stored name")
    if content_type not in ("application/pdf", "image/jpeg"):
        problems.append(f"stored as {content_type}")
    if content_type == "image/jpeg":
        problems += _check_rerendered(stored, "stored photo")
    for needle in item.never:
        if needle in stored:
            problems.append(f"{needle!r} survived into the stored file")
    # Every way the file is served back.
    urls = {"viewer frame": (f"/documents/{document_id}/file", {"Sec-Fetch-Dest": "iframe",
                                                                 "Sec-Fetch-Site": "same-origin"}),
            "framed by another site": (f"/documents/{document_id}/file", {"Sec-Fetch-Dest": "iframe",
                                                                           "Sec-Fetch-Site": "cross-site"}),
            "a link opened in a tab": (f"/documents/{document_id}/file", {"Sec-Fetch-Dest": "document",
                                                                           "Sec-Fetch-Site": "none"}),
            "no fetch metadata": (f"/documents/{document_id}/file", {}),
            "an <img>": (f"/documents/{document_id}/file", {"Sec-Fetch-Dest": "image",
                                                             "Sec-Fetch-Site": "same-origin"}),
            "download": (f"/documents/{document_id}/file?download=1", {})}
    if route.name.startswith("message"):
        with app.app_context():
            from app.messaging.models import MessageAttachment

            thread_id = db.session.scalar(sa.select(MessageAttachment.message_id).where(
                MessageAttachment.document_id == document_id))
            from app.messaging.models import Message

            thread_id = db.session.get(Message, thread_id).thread_id
        urls["message attachment"] = (f"/messages/{thread_id}/attachments/{document_id}", {})
    for how, (url, headers) in urls.items():
        served = client.get(url, headers=headers)
        problems += [f"{how}: {p}" for p in _check_served(served, headers, download_name, stored, item)]
    # The name as the pages show it.
    page = client.get(f"/documents/{document_id}").get_data(as_text=True)
    listing = client.get("/documents").get_data(as_text=True)
    for where, html in (("viewer page", page), ("documents list", listing)):
        if any(ch in html for ch in ("\u202e", "\x00", "\x1b", "\u2066")):
            problems.append(f"the {where} shows a control or direction character of the name")
        if SCRIPT.decode() in html:
            problems.append(f"the {where} carries the script unescaped")
    return problems


def _check_name(name: str, what: str) -> list[str]:
    problems = []
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        problems.append(f"{what} {name!r} has control or format characters")
    if "/" in name or "\\" in name or name.startswith(".") or not name.strip() or len(name) > 200:
        problems.append(f"{what} {name!r} is not a plain file name")
    if any(unicodedata.category(ch) in ("Zl", "Zp") for ch in name):
        problems.append(f"{what} {name!r} has a line break")
    return problems


def _check_rerendered(data: bytes, what: str) -> list[str]:
    problems = []
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "JPEG":
            problems.append(f"{what} is {image.format}, not a re-rendered JPEG")
        if image.getexif() or image.info.get("exif") or image.info.get("comment") or image.info.get("xmp"):
            problems.append(f"{what} kept metadata: {sorted(image.info)}")
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        problems.append(f"{what} has bytes after its end marker")
    return problems


def _check_served(response, request_headers: dict, download_name: str, stored: bytes, item: Item) -> list[str]:
    problems = []
    if response.status_code != 200:
        return [f"answered {response.status_code}"]
    content_type = response.headers.get("Content-Type", "")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if content_type.split(";")[0] not in ("application/pdf", "image/jpeg"):
        problems.append(f"served as {content_type}")
    disposition = response.headers.get("Content-Disposition", "")
    if not disposition or "\r" in disposition or "\n" in disposition:
        problems.append(f"Content-Disposition {disposition!r}")
    inline = disposition.startswith("inline")
    if inline and content_type == "image/jpeg":
        problems += _check_rerendered(response.data, "served photo")
    elif inline:
        framed = request_headers.get("Sec-Fetch-Dest") == "iframe" and \
            request_headers.get("Sec-Fetch-Site") == "same-origin"
        if not framed:
            problems.append("a PDF shown inline outside the viewer's frame")
        if not response.headers.get("Content-Security-Policy", "").startswith("sandbox"):
            problems.append("a PDF shown inline without a sandbox")
    elif not disposition.startswith("attachment;"):
        problems.append(f"neither inline nor attachment: {disposition!r}")
    fallback = re.search(r'filename="([^"]*)"', disposition)
    extended = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition)
    if not (fallback and extended):
        problems.append(f"Content-Disposition without filename and filename* (RFC 6266): {disposition!r}")
    else:
        if not fallback.group(1).isascii() or not fallback.group(1).isprintable():
            problems.append(f"plain filename {fallback.group(1)!r}")
        if unquote(extended.group(1)) != download_name:
            problems.append(f"filename* {extended.group(1)!r} is not the stored name {download_name!r}")
        problems += _check_name(unquote(extended.group(1)), "served name")
    if response.data != stored:
        problems.append("served bytes differ from the stored file")
    for needle in item.never:
        if needle in response.data:
            problems.append(f"{needle!r} served back")
    return problems


# Bodies far over the limit ---------------------------------------------------------------------------

MULTIPART_ROUTES = {
    "documents_form": ("/documents", {"kind": "medical_summary"}, "file"),
    "identity_photo": ("/identity/new", {"document_type": "passport", **_expiry()}, "document_photo"),
    "message_new": ("/messages/new", {"subject": "Scan", "body": "My scan."}, "file"),
    "message_reply": (None, {"body": "My scan."}, "file"),
    "health_data_import": ("/outcomes/imports", {}, "file"),
}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", list(MULTIPART_ROUTES), ids=list(MULTIPART_ROUTES))
def test_a_200_mb_body_is_refused_with_a_plain_413_without_being_read(app, patient_client, route, declared):
    client, token = patient_client
    path, fields, file_field = MULTIPART_ROUTES[route]
    path = path or _thread_path(app)
    before = snapshot(app)
    body = multipart_stream({"csrf_token": token, **fields}, file_field, HUGE_BODY)

    response, growth = send(client, path, body, MULTIPART_TYPE, token=token,
                            length=HUGE_BODY if declared else None)

    assert response.status_code == 413, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    text = plain_text(response)
    assert "too large" in text.lower() or "too big" in text.lower(), text[:500]
    assert not TRACEBACK.search(response.get_data(as_text=True))
    assert growth < HUGE_BODY_BOUND, f"peak memory grew {growth / MIB:.1f} MiB"
    # Declared too large: refused before reading. Chunked: read only up to the route's limit.
    assert body.produced <= (2 * MIB if declared else 32 * MIB), f"{body.produced / MIB:.0f} MiB of the body read"
    after = snapshot(app)
    assert after.documents == before.documents and after.blobs == before.blobs and not after.work_files


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_200_mb_chunk_is_refused_without_being_read(app, patient_client, declared):
    client, token = patient_client
    created = client.post("/documents/uploads", data={"kind": "other", "filename": "big.pdf", "size": 40_000_000},
                          headers={"X-CSRFToken": token, "Accept": "application/json"})
    upload_id = created.json["id"]
    body = StreamedBody(b"%PDF-1.7\n", HUGE_BODY)

    response, growth = send(client, f"/documents/uploads/{upload_id}", body, "application/octet-stream",
                            token=token, accept="application/json", length=HUGE_BODY if declared else None,
                            extra_headers={"Content-Range": f"bytes 0-{CHUNK - 1}/40000000"})

    # Declared: over the request limit, refused unread. Chunked: more than its Content-Range said,
    # so the upload is refused once the declared megabyte has passed.
    assert response.status_code == (413 if declared else 422), response.data[:300]
    assert response.is_json and response.json["error"]
    assert growth < HUGE_BODY_BOUND, f"peak memory grew {growth / MIB:.1f} MiB"
    assert body.produced <= 2 * MIB, f"{body.produced / MIB:.0f} MiB of the body read"
    with app.app_context():
        upload = db.session.get(UploadSession, upload_id)
        assert (upload.status, upload.received_bytes) == (
            (UploadStatus.OPEN, 0) if declared else (UploadStatus.REJECTED, 0))
    assert not snapshot(app).parts, "nothing of it is kept in incoming/"


def test_an_upload_declared_at_200_mb_is_refused_at_once(app, patient_client):
    client, token = patient_client
    response = client.post("/documents/uploads", data={"kind": "other", "filename": "huge.pdf", "size": HUGE_BODY},
                           headers={"X-CSRFToken": token, "Accept": "application/json"})
    assert response.status_code == 413
    assert response.json["code"] == "too_large" and "smaller than 50 MB" in response.json["error"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UploadSession)) == 0


# A few items in detail, so a failure of the walk above reads plainly -------------------------------

def test_a_pdf_that_is_also_a_zip_is_refused(app, patient_client):
    from tests.attack_corpus import by_name

    client, token = patient_client
    item = by_name("pdf_zip_polyglot")
    response, _, document_id = _post_chunked(app, client, token, item, item.content)
    assert response.status_code == 422 and response.json["code"] == "polyglot"
    assert document_id is None


def test_a_pdf_with_a_script_is_refused_and_the_refusal_audited(app, patient_client, personas):
    from app.audit.models import AuditEvent
    from tests.attack_corpus import by_name

    client, token = patient_client
    item = by_name("pdf_javascript_open_action")
    response, _, _ = ROUTES["documents_form"].post(app, client, token, item, item.content)
    assert response.status_code == 422
    assert "This PDF contains a script" in plain_text(response)
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "document.rejected")
                                   .order_by(AuditEvent.seq.desc())).first()
        assert entry.patient_id == personas["patient"].patient_id and '"reason":"pdf_active"' in entry.detail


def test_a_right_to_left_override_cannot_disguise_a_name(app, patient_client):
    from tests.attack_corpus import by_name

    client, token = patient_client
    item = by_name("name_rtl_override")
    _, _, document_id = _post_chunked(app, client, token, item, item.content)
    served = client.get(f"/documents/{document_id}/file")
    assert served.headers["Content-Disposition"] == (
        "attachment; filename=\"reportfdp.pdf\"; filename*=UTF-8''reportfdp.pdf")


def test_a_photo_is_shown_inline_and_a_pdf_only_in_the_viewer_frame(app, patient_client):
    client, token = patient_client
    photo = Item("photo", "photo.jpg", sharp_jpeg, NEUTRALISED)
    _, _, photo_id = _post_chunked(app, client, token, photo, photo.content)
    pdf = Item("pdf", "letter.pdf", raw_pdf, NEUTRALISED)
    _, _, pdf_id = _post_chunked(app, client, token, pdf, pdf.content)

    top_level = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}
    framed = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin"}
    assert client.get(f"/documents/{photo_id}/file", headers=top_level).headers["Content-Disposition"] \
        .startswith("inline;")
    assert client.get(f"/documents/{pdf_id}/file", headers=top_level).headers["Content-Disposition"] \
        .startswith("attachment;")
    assert client.get(f"/documents/{pdf_id}/file", headers=framed).headers["Content-Disposition"] \
        .startswith("inline;")
    viewer = client.get(f"/documents/{pdf_id}").get_data(as_text=True)
    assert f'<iframe class="verity-document-frame" src="/documents/{pdf_id}/file"' in viewer
    assert "Open in a new tab" not in viewer, "a new tab would only save the PDF"
