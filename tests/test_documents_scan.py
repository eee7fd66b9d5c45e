"""Virus scanning of uploads through clamd (app/documents/scan.py), against a small local peer.

ClamAV's signature database cannot be fetched here, so the peer is a thread that speaks clamd's
INSTREAM protocol on a unix socket (or TCP on 127.0.0.1) and reports the EICAR test string as
"Eicar-Test-Signature FOUND", as clamd does. Both engines.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.audit.models import AuditEvent
from app.documents import scan
from app.documents.models import Document, UploadSession, UploadStatus
from app.extensions import db
from tests.attack_corpus import EICAR, eicar_pdf, raw_pdf
from tests.conftest import csrf_from, sign_in_as
from tests.test_documents import upload

INFECTED = "Our virus check found something harmful in this file, so it was not stored."
UNAVAILABLE = "We cannot check files for viruses at the moment, so nothing was stored. Try again later."


class ClamdPeer:
    """clamd's side of INSTREAM: reads the length-prefixed pieces, answers OK or FOUND.

    `reply` overrides the answer (e.g. an ERROR line); `received` keeps each scanned stream.
    """

    def __init__(self, listener: socket.socket):
        self.listener = listener
        self.received: list[bytes] = []
        self.commands: list[bytes] = []
        self.reply: bytes | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        command = b""
        while not command.endswith(b"\0"):
            byte = reader.read(1)
            if not byte:
                return
            command += byte
        self.commands.append(command)
        data = bytearray()
        while True:
            length = int.from_bytes(reader.read(4), "big")
            if length == 0:
                break
            data += reader.read(length)
        self.received.append(bytes(data))
        if self.reply is not None:
            answer = self.reply
        elif EICAR in data:
            answer = b"stream: Eicar-Test-Signature FOUND\0"
        else:
            answer = b"stream: OK\0"
        conn.sendall(answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        self.listener.close()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()


@pytest.fixture
def clamd_socket(tmp_path_factory) -> Iterator[tuple[str, ClamdPeer]]:
    # A short path: unix socket paths are limited to 108 bytes.
    path = os.path.join(tmp_path_factory.mktemp("clamd"), "clamd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    peer = ClamdPeer(listener)
    yield path, peer
    peer.close()


@pytest.fixture
def app_config(clamd_socket):
    return {"CLAMD_SOCKET": clamd_socket[0], "CLAMD_TIMEOUT": 5}


@pytest.fixture
def peer(clamd_socket) -> ClamdPeer:
    return clamd_socket[1]


def _patient(client, personas) -> str:
    sign_in_as(client, personas["patient"])
    return csrf_from(client.get("/documents").get_data(as_text=True))


def _documents(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Document))


def _blobs(app) -> list[Path]:
    return [p for p in (Path(app.config["INSTANCE_DIR"]) / "documents" / "store").rglob("*") if p.is_file()]


def _last_refusal(app) -> AuditEvent:
    with app.app_context():
        return db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "document.rejected")
                                  .order_by(AuditEvent.seq.desc())).first()


def test_a_clean_file_is_scanned_then_stored(app, client, personas, peer):
    token = _patient(client, personas)
    letter = raw_pdf()

    response = upload(client, token, letter, filename="letter.pdf")

    assert response.status_code == 201, response.json
    assert peer.commands == [b"zINSTREAM\0"]
    assert peer.received == [letter], "clamd saw the file exactly as it arrived, before anything parsed it"
    assert _documents(app) == 1


def test_an_infected_file_is_refused_audited_and_not_stored(app, client, personas, peer):
    token = _patient(client, personas)

    chunked = upload(client, token, eicar_pdf(), filename="letter.pdf")
    form = client.post("/documents", data={"kind": "medical_summary", "file": (io.BytesIO(eicar_pdf()), "letter.pdf")},
                       headers={"X-CSRFToken": token}, content_type="multipart/form-data")

    assert chunked.status_code == 422
    assert chunked.json["code"] == "infected" and chunked.json["error"].startswith(INFECTED)
    assert form.status_code == 422 and INFECTED in form.get_data(as_text=True)
    assert _documents(app) == 0 and not _blobs(app)
    entry = _last_refusal(app)
    assert entry.patient_id == personas["patient"].patient_id
    assert '"reason":"infected"' in entry.detail and '"signature":"Eicar-Test-Signature"' in entry.detail
    with app.app_context():
        assert db.session.scalar(sa.select(UploadSession.status)) is UploadStatus.REJECTED


def test_an_infected_identity_photo_is_refused_next_to_its_field(app, client, personas, peer):
    from tests.test_documents_files import jpeg_bytes

    sign_in_as(client, personas["patient"])
    token = csrf_from(client.get("/identity/new").get_data(as_text=True))
    photo = jpeg_bytes() + EICAR  # bytes after the end marker: a real photo, carrying the test string

    response = client.post("/identity/new", data={"csrf_token": token, "document_type": "passport",
                                                  "document_photo": (io.BytesIO(photo), "passport.jpg")},
                           content_type="multipart/form-data")

    assert response.status_code == 400
    assert INFECTED in response.get_data(as_text=True)
    assert _documents(app) == 0


def test_an_unreachable_scanner_fails_closed_with_try_again_later(app, client, personas, clamd_socket):
    app.config["CLAMD_SOCKET"] = str(Path(clamd_socket[0]).with_name("nobody-listens.sock"))
    token = _patient(client, personas)

    chunked = upload(client, token, raw_pdf(), filename="letter.pdf")
    form = client.post("/documents", data={"kind": "medical_summary", "file": (io.BytesIO(raw_pdf()), "letter.pdf")},
                       headers={"X-CSRFToken": token}, content_type="multipart/form-data")

    assert chunked.status_code == 503
    assert chunked.json == {"error": UNAVAILABLE, "code": "scan_unavailable", "retake": False}
    assert form.status_code == 422 and UNAVAILABLE in form.get_data(as_text=True)
    assert _documents(app) == 0 and not _blobs(app)
    assert '"reason":"scan_unavailable"' in _last_refusal(app).detail


def test_a_scanner_that_cannot_scan_fails_closed(app, client, personas, peer):
    """clamd answers ERROR, e.g. when a file passes its StreamMaxLength."""
    peer.reply = b"INSTREAM size limit exceeded. ERROR\0"
    token = _patient(client, personas)

    response = upload(client, token, raw_pdf(), filename="letter.pdf")

    assert response.status_code == 503 and response.json["error"] == UNAVAILABLE
    assert _documents(app) == 0 and not _blobs(app)


def test_no_scanner_configured_means_no_scan(app, client, personas):
    app.config.update(CLAMD_SOCKET=None, CLAMD_HOST=None)
    token = _patient(client, personas)

    assert upload(client, token, eicar_pdf(), filename="letter.pdf").status_code == 201


def test_the_scanner_speaks_tcp_too(app, client, personas):
    listener = socket.create_server(("127.0.0.1", 0))
    tcp_peer = ClamdPeer(listener)
    try:
        app.config.update(CLAMD_SOCKET=None, CLAMD_HOST="127.0.0.1", CLAMD_PORT=listener.getsockname()[1])
        token = _patient(client, personas)
        refused = upload(client, token, eicar_pdf(), filename="letter.pdf")
        accepted = upload(client, token, raw_pdf(), filename="letter.pdf")
    finally:
        tcp_peer.close()
    assert refused.status_code == 422 and refused.json["code"] == "infected"
    assert accepted.status_code == 201
    assert len(tcp_peer.received) == 2


@pytest.mark.parametrize(("reply", "verdict"), [
    (b"stream: OK\0", None),
    (b"stream: Win.Test.EICAR_HDB-1 FOUND\0", "Win.Test.EICAR_HDB-1"),
])
def test_clamd_replies_are_read_as_clamd_writes_them(reply, verdict):
    assert scan.interpret(reply) == verdict


@pytest.mark.parametrize("reply", [b"INSTREAM size limit exceeded. ERROR\0", b"UNKNOWN COMMAND\0", b"\0", b"garbage"])
def test_any_other_reply_means_the_file_was_not_scanned(reply):
    with pytest.raises(scan.ScannerUnavailable):
        scan.interpret(reply)
