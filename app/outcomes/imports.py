"""Health-data imports: the file comes in chunks (the protocol app/static/js/uploads.js speaks, see
routes.py), kept encrypted on disk as it arrives; the worker then reads it as a stream and imports it
all or nothing, recording its progress for the page's progress bar.

Nothing is held whole in memory: a chunk at a time on the way in, a 256 KiB piece at a time on the way
through the parser, and one running total per day. The observations of a file are written in one
transaction at the end; a bad line fails the whole import with a message naming the line. A day
imported again replaces that day's earlier imported value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from flask import current_app

from app.audit import services as audit
from app.audit.context import Actor
from app.auth.models import User
from app.database import transaction, utcnow
from app.documents import encryption
from app.extensions import db
from app.outcomes import parsers, scoring, settings
from app.outcomes.models import OutcomeImport, OutcomeObservation
from app.patients.models import Patient

log = logging.getLogger(__name__)

UPLOADING, QUEUED, RUNNING, DONE, FAILED = "uploading", "queued", "running", "done", "failed"
CSV, APPLE = "csv", "apple-health"
PIECE_BYTES = 64 * 1024
LEASE = dt.timedelta(minutes=10)
#: The progress is written at most this often (a small transaction of its own).
PROGRESS_EVERY = dt.timedelta(seconds=1)
UPLOAD_EXPIRY = dt.timedelta(hours=24)
NOON = dt.time(12, tzinfo=dt.UTC)


class ImportRefused(ValueError):
    """The upload cannot go on (wrong size, wrong kind of file): fit to show the person."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class UploadConflict(Exception):
    def __init__(self, offset: int, message: str = "The server has a different number of bytes of this file."):
        super().__init__(message)
        self.offset = offset


def _folder() -> Path:
    folder = Path(current_app.config["INSTANCE_DIR"]) / "outcomes" / "incoming"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def part_path(import_id: str) -> Path:
    if not import_id.isalnum():
        raise ValueError("import ids are letters and digits only")
    return _folder() / f"{import_id}.part"


def _data_key() -> bytes:
    return current_app.extensions["verity_data_key"]


def clean_filename(name: str | None) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    return "".join(ch for ch in base if ch.isprintable())[:200] or "health-data"


def get(import_id: str) -> OutcomeImport | None:
    if not (isinstance(import_id, str) and len(import_id) == 32 and import_id.isalnum()):
        return None
    return db.session.get(OutcomeImport, import_id)


def imports_of(patient: Patient, limit: int = 10) -> list[OutcomeImport]:
    return list(db.session.scalars(sa.select(OutcomeImport).where(OutcomeImport.patient_id == patient.id)
                                   .order_by(OutcomeImport.created_at.desc()).limit(limit)))


def _reload(row: OutcomeImport) -> None:
    session = db.session()
    if session.in_transaction():
        session.commit()
    session.refresh(row)


# The upload -----------------------------------------------------------------------------------

def start(patient: Patient, *, by: User, filename: str, size: int) -> OutcomeImport:
    limits = settings.current()
    if size <= 0:
        raise ImportRefused("The selected file is empty.")
    if size > limits.import_max_bytes:
        raise ImportRefused(f"The file must be smaller than {limits.import_max_label}. Export a shorter period, or "
                            "send the days as a CSV file.", 413)
    with transaction() as session:
        row = OutcomeImport(id=secrets.token_hex(16), patient_id=patient.id, user_id=by.id,
                            filename=clean_filename(filename), size_bytes=size)
        session.add(row)
        audit.record("outcomes.import_started", subject=("outcome_import", row.id), patient_id=patient.id,
                     detail={"bytes": size})
    return row


def _sniff(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"PK\x03\x04"):
        raise ImportRefused("This is the zipped export. Open export.zip, then upload the export.xml inside the "
                            "apple_health_export folder.")
    if b"\x00" in head:
        raise ImportRefused("This is not a CSV or an Apple Health export.xml. Choose one of those.")
    return APPLE if text.startswith(b"<") else CSV


def _pieces(stream: IO[bytes], room: int) -> Iterator[bytes]:
    total = 0
    while True:
        try:
            piece = stream.read(PIECE_BYTES)
        except Exception:  # the client went away mid-chunk: keep what arrived whole
            return
        if not piece:
            return
        total += len(piece)
        if total > room:
            raise ImportRefused("More bytes arrived than the size the upload declared.", 413)
        yield piece


def _head_checked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Refuse a zip or a binary file with its first chunk, not after it has all arrived."""
    first = True
    for piece in pieces:
        if first:
            _sniff(piece[:4096])
            first = False
        yield piece


def append(row: OutcomeImport, *, start_at: int, stream: IO[bytes]) -> OutcomeImport:
    """Add bytes from `start_at` (the client's offset must be the server's)."""
    _reload(row)
    if row.status != UPLOADING:
        raise ImportRefused("This upload has ended. Choose the file again to send it.", 410)
    with open(part_path(row.id), "a+b") as part:
        try:
            fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UploadConflict(row.received_bytes, "Another request is sending this upload.") from exc
        _reload(row)
        if start_at != row.received_bytes:
            raise UploadConflict(row.received_bytes)
        part.truncate(row.part_bytes)
        part.seek(row.part_bytes)
        received, written = 0, 0
        pieces = _pieces(stream, row.size_bytes - start_at)
        try:
            for record, length in encryption.seal_records(_data_key(), row.id, start_at,
                                                          _head_checked(pieces) if start_at == 0 else pieces):
                part.write(record)
                received += length
                written += len(record)
        except ImportRefused as exc:
            _fail_upload(row, str(exc))
            raise
        part.flush()
        os.fsync(part.fileno())
    with transaction() as session:
        session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == row.id).values(
            received_bytes=start_at + received, part_bytes=row.part_bytes + written, updated_at=utcnow()))
    _reload(row)
    return row


def _fail_upload(row: OutcomeImport, message: str = "The upload was refused.") -> None:
    with transaction() as session:
        session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == row.id).values(
            status=FAILED, message=message, finished_at=utcnow(), updated_at=utcnow()))
    with contextlib.suppress(FileNotFoundError):
        part_path(row.id).unlink()


def complete(row: OutcomeImport) -> OutcomeImport:
    """All bytes are in: check what kind of file it is and queue it for the worker."""
    _reload(row)
    if row.status in (QUEUED, RUNNING, DONE):
        return row  # a retried "complete" after a lost answer
    if row.status != UPLOADING:
        raise ImportRefused("This upload has ended. Choose the file again to send it.", 410)
    if row.received_bytes != row.size_bytes:
        raise UploadConflict(row.received_bytes, "Some of the file has not arrived yet.")
    with open_plaintext(row) as stream:
        head = stream.read(4096)
    try:
        kind = _sniff(head)
    except ImportRefused as exc:
        _fail_upload(row, str(exc))
        raise
    with transaction() as session:
        claimed = session.execute(sa.update(OutcomeImport).where(
            OutcomeImport.id == row.id, OutcomeImport.status == UPLOADING).values(
            status=QUEUED, format=kind, updated_at=utcnow())).rowcount
        if claimed:
            audit.record("outcomes.import_queued", subject=("outcome_import", row.id), patient_id=row.patient_id,
                         detail={"format": kind, "bytes": row.size_bytes})
    _reload(row)
    return row


def stage_file(patient: Patient, *, by: User, filename: str, stream: IO[bytes], size: int) -> OutcomeImport:
    """The one-request way in (a form posted without JavaScript, the benchmark): the same path as chunks."""
    row = start(patient, by=by, filename=filename, size=size)
    offset = 0
    while offset < size:
        row = append(row, start_at=offset, stream=_Limited(stream, settings.current().import_chunk_bytes))
        if row.received_bytes == offset:
            raise ImportRefused("The file ended before its declared size.", 400)
        offset = row.received_bytes
    return complete(row)


class _Limited(io.RawIOBase):
    """At most `limit` bytes of a stream (one "chunk" of a file posted whole)."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.stream, self.left = stream, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        piece = self.stream.read(min(self.left, size if size > 0 else self.left))
        self.left -= len(piece)
        return piece


class _Decrypted(io.RawIOBase):
    """The plaintext of a part file, as a readable stream, decrypted a record at a time."""

    def __init__(self, pieces: Iterator[bytes]):
        self.pieces, self.buffer = pieces, b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self.buffer:
            try:
                self.buffer = next(self.pieces)
            except StopIteration:
                return 0
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size


@contextlib.contextmanager
def open_plaintext(row: OutcomeImport) -> Iterator[io.BufferedReader]:
    with open(part_path(row.id), "rb") as part:
        raw = _Decrypted(encryption.open_records(_data_key(), row.id, part.read, row.received_bytes))
        yield io.BufferedReader(raw, buffer_size=parsers.READ_BYTES)


# The worker -----------------------------------------------------------------------------------

class _Counting(io.RawIOBase):
    """Counts the bytes read through it and reports them (the progress bar)."""

    def __init__(self, stream: IO[bytes], report):
        self.stream, self.report, self.read_bytes = stream, report, 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        piece = self.stream.read(len(target))
        target[:len(piece)] = piece
        self.read_bytes += len(piece)
        self.report(self.read_bytes)
        return len(piece)


def claim() -> OutcomeImport | None:
    """Take the oldest queued import (or a running one whose worker stopped), so no two workers run one."""
    now = utcnow()
    candidate = db.session.scalar(sa.select(OutcomeImport.id).where(sa.or_(
        OutcomeImport.status == QUEUED,
        sa.and_(OutcomeImport.status == RUNNING, OutcomeImport.lease_until < now)))
        .order_by(OutcomeImport.updated_at).limit(1))
    if candidate is None:
        db.session.rollback()
        return None
    with transaction() as session:
        claimed = session.execute(sa.update(OutcomeImport).where(
            OutcomeImport.id == candidate,
            sa.or_(OutcomeImport.status == QUEUED,
                   sa.and_(OutcomeImport.status == RUNNING, OutcomeImport.lease_until < now)))
            .values(status=RUNNING, started_at=now, lease_until=now + LEASE, progress_bytes=0, updated_at=now)
        ).rowcount
    return get(candidate) if claimed else None


@dataclass
class _Progress:
    import_id: str
    last: dt.datetime

    def __call__(self, read: int) -> None:
        now = utcnow()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        with transaction() as session:
            session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == self.import_id).values(
                progress_bytes=read, lease_until=now + LEASE, updated_at=now))


def run(row: OutcomeImport, *, today: dt.date | None = None) -> OutcomeImport:
    """Import a claimed file: parse it whole first, then write every value in one transaction."""
    today = today or dt.date.today()
    progress = _Progress(row.id, utcnow())
    try:
        with open_plaintext(row) as plain:
            stream = io.BufferedReader(_Counting(plain, progress), buffer_size=parsers.READ_BYTES)
            if row.format == APPLE:
                daily = parsers.parse_apple_health(stream, today=today)
            else:
                daily = parsers.parse_csv(parsers.text_lines(stream), today=today)
    except parsers.ParseProblem as problem:
        return _finish(row, FAILED, message=str(problem), line=problem.line)
    except encryption.Corrupt:
        log.warning("outcome import %s does not decrypt", row.id)
        return _finish(row, FAILED, message="The file was damaged on the way in. Send it again.")
    _write(row, daily)
    return _finish(row, DONE, summary={"days": daily.days, "observations": daily.counts(), "lines": daily.lines})


def _write(row: OutcomeImport, daily: parsers.Daily) -> None:
    now = utcnow()
    with transaction() as session:
        for code, per_day in daily.values.items():
            measure = scoring.measure(code)
            moments = [dt.datetime.combine(day, NOON) for day in per_day]
            for start in range(0, len(moments), 500):
                session.execute(sa.delete(OutcomeObservation).where(
                    OutcomeObservation.patient_id == row.patient_id, OutcomeObservation.code == code,
                    OutcomeObservation.source == "import",
                    OutcomeObservation.effective_at.in_(moments[start:start + 500])))
            rows = [{"patient_id": row.patient_id, "system": measure.system, "code": code, "display": measure.label,
                     "value": Decimal(value), "unit": measure.unit, "effective_at": dt.datetime.combine(day, NOON),
                     "source": "import", "import_id": row.id, "recorded_at": now}
                    for day, value in sorted(per_day.items())]
            for start in range(0, len(rows), 1000):
                session.execute(sa.insert(OutcomeObservation), rows[start:start + 1000])


def _finish(row: OutcomeImport, status: str, *, message: str | None = None, line: int | None = None,
            summary: dict | None = None) -> OutcomeImport:
    now = utcnow()
    actor = Actor(user_id=row.user_id, role="system")
    with transaction() as session:
        session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == row.id).values(
            status=status, message=message, error_line=line, summary=summary, finished_at=now, updated_at=now,
            progress_bytes=row.size_bytes if status == DONE else OutcomeImport.progress_bytes, lease_until=None))
        audit.record(f"outcomes.import_{status}", subject=("outcome_import", row.id), patient_id=row.patient_id,
                     detail={"line": line, **(summary or {})}, actor=actor)
    with contextlib.suppress(FileNotFoundError):
        part_path(row.id).unlink()
    _reload(row)
    return row


def run_queued(limit: int = 5) -> int:
    """The worker's job: import what is queued, one file at a time. Returns how many it finished."""
    done = 0
    for _ in range(limit):
        row = claim()
        if row is None:
            break
        try:
            run(row)
        except Exception:  # an unexpected failure: the patient is told, the part file is kept for a look
            log.exception("outcome import failed")
            db.session.rollback()
            with transaction() as session:
                session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == row.id).values(
                    status=FAILED, message="The import could not finish because of a problem on our side. "
                                           "Nothing was imported. Try again later.", finished_at=utcnow()))
        done += 1
    return done


def expire_uploads(now: dt.datetime | None = None) -> int:
    """Uploads left unfinished for a day are dropped with their encrypted bytes."""
    now = now or utcnow()
    stale = list(db.session.scalars(sa.select(OutcomeImport.id).where(
        OutcomeImport.status == UPLOADING, OutcomeImport.updated_at < now - UPLOAD_EXPIRY)))
    for import_id in stale:
        with transaction() as session:
            session.execute(sa.update(OutcomeImport).where(OutcomeImport.id == import_id).values(
                status=FAILED, message="The upload was not finished within a day.", finished_at=now))
        with contextlib.suppress(FileNotFoundError):
            part_path(import_id).unlink()
    return len(stale)
