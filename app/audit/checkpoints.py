"""Signed checkpoints of the audit chain, kept outside the database.

The hash chain shows that no entry was changed in place. It cannot show that the newest entries were
cut off, or the whole chain rebuilt, by someone who can write the database as its owner (who can
switch the triggers off and move the chain head back). So the worker signs the chain head — entry
number, hash and time — every `AUDIT_CHECKPOINT_MINUTES` with an Ed25519 key that lives in a file
(`AUDIT_CHECKPOINT_KEY`), never in the database, and appends the signed line to a JSON-lines file
(`AUDIT_CHECKPOINT_FILE`). `flask audit verify` checks the chain against every line: an entry missing
after a checkpointed number is a truncated tail, a different hash at a checkpointed number is a
rewritten chain.

Each line also carries the SHA-256 of the line before it, so a line removed or edited in the middle of
the file breaks the file's own chain. The file is only as independent as where it lives: copy it
somewhere the database's owner cannot write (another host, an object store with retention, or
`chattr +a`).

Before signing, the worker checks the chain from the previous checkpoint to the head, so it never puts
its signature on a chain that no longer matches what it signed before. That costs milliseconds an hour;
the very first checkpoint checks the whole chain once (about 15,000 entries a second: minutes for a
clinic group's millions, on the one worker that holds the lock while the others carry on).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app

from app.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from app.audit.services import _COLUMNS, HEAD_ID, entry_hash
from app.database import utcnow
from app.extensions import db

log = logging.getLogger(__name__)

#: Signed bytes start with a label, so a checkpoint signature can never pass for another kind of signature.
CHECKPOINT_LABEL = b"verity audit checkpoint v1\n"
#: Advisory lock that lets one worker at a time write a checkpoint (PostgreSQL).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"verity.audit.checkpoint").digest()[:8], "big", signed=True)
BATCH = 5000


class CheckpointError(RuntimeError):
    """The checkpoint file or key cannot be trusted or used; the message says where and why."""


@dataclass(frozen=True)
class Checkpoint:
    #: Line number in the checkpoint file (1-based).
    line: int
    seq: int
    hash: str
    at: dt.datetime
    #: Which key signed it (the first 16 hex digits of the SHA-256 of its public key).
    key: str


# Where things live ------------------------------------------------------------------------------

def _instance_audit_dir() -> Path:
    return Path(current_app.config["INSTANCE_DIR"]) / "audit"


def key_path() -> Path:
    configured = current_app.config.get("AUDIT_CHECKPOINT_KEY")
    return Path(configured) if configured else _instance_audit_dir() / "checkpoint-key.pem"


def file_path() -> Path:
    configured = current_app.config.get("AUDIT_CHECKPOINT_FILE")
    return Path(configured) if configured else _instance_audit_dir() / "checkpoints.jsonl"


# The signing key --------------------------------------------------------------------------------

def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_key(*, create: bool = False) -> Ed25519PrivateKey | None:
    """The signing key from its file; made (0600, in a 0700 folder) when `create` and there is none."""
    path = key_path()
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        return _create_key(path)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def _create_key(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_key()  # type: ignore[return-value]
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    log.info("audit checkpoint key created (key %s)", key_id(key.public_key()))
    return key


def sign(label: bytes, payload: bytes, *, create: bool = True) -> tuple[str, str]:
    """(key id, base64 signature) of `label + payload` with the checkpoint key."""
    key = load_key(create=create)
    if key is None:
        raise CheckpointError(f"no checkpoint key at {key_path()}")
    return key_id(key.public_key()), base64.b64encode(key.sign(label + payload)).decode()


def public_key() -> Ed25519PublicKey | None:
    key = load_key()
    return key.public_key() if key is not None else None


def signature_problem(label: bytes, payload: bytes, signed_by: str, signature: str,
                      public: Ed25519PublicKey | None = None) -> str | None:
    """None when the signature verifies with the configured key; otherwise why not."""
    public = public or public_key()
    if public is None:
        return f"the checkpoint key is not at {key_path()} (restore it from where the secrets are kept)"
    if signed_by != key_id(public):
        return f"it was signed by key {signed_by}, not by the configured key {key_id(public)}"
    try:
        public.verify(base64.b64decode(signature, validate=True), label + payload)
    except (InvalidSignature, ValueError):
        return "its signature does not verify: it was changed after it was signed"
    return None


# The file ---------------------------------------------------------------------------------------

def _canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _line_digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def read_checkpoints(path: Path | None = None) -> list[Checkpoint]:
    """Every checkpoint in the file, each signature and link checked; raise CheckpointError at the first bad line."""
    path = path or file_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1]:
        raise CheckpointError(f"{path}, line {len(lines)}: the last line is incomplete")
    result: list[Checkpoint] = []
    previous = GENESIS_HASH
    public = public_key()
    for number, line in enumerate(lines[:-1], start=1):
        where = f"{path}, line {number}"
        try:
            fields = json.loads(line)
            signature = fields.pop("sig")
            checkpoint = Checkpoint(number, int(fields["seq"]), str(fields["hash"]),
                                    dt.datetime.fromisoformat(fields["at"]), str(fields["key"]))
            prev = fields["prev"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{where}: not a checkpoint ({exc.__class__.__name__})") from exc
        if fields.get("v") != 1:
            raise CheckpointError(f"{where}: unknown checkpoint version {fields.get('v')!r}")
        problem = signature_problem(CHECKPOINT_LABEL, _canonical(fields), checkpoint.key, signature, public)
        if problem:
            raise CheckpointError(f"{where}: {problem}")
        if prev != previous:
            raise CheckpointError(f"{where}: it does not follow the line before it (a line was removed or changed)")
        if result and checkpoint.seq < result[-1].seq:
            raise CheckpointError(f"{where}: it signs entry {checkpoint.seq}, before the previous line's "
                                  f"{result[-1].seq}")
        result.append(checkpoint)
        previous = _line_digest(line)
    return result


def _last_line_digest(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return GENESIS_HASH
    lines = data.rstrip(b"\n").split(b"\n")
    return _line_digest(lines[-1]) if lines[-1] else GENESIS_HASH


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[int | None]:
    """The checkpoint file open for appending, with an exclusive lock; None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


# Writing ----------------------------------------------------------------------------------------

def _chain_problem(conn: sa.Connection, base: Checkpoint | None, head_seq: int, head_hash: str) -> str | None:
    """Recompute the chain from the last checkpoint to the head; None when it all matches."""
    after, prev_hash = (base.seq, base.hash) if base else (0, GENESIS_HASH)
    if head_seq < after:
        return f"the chain head is entry {head_seq}, behind the last checkpoint's entry {after}"
    if base is not None:
        stored = conn.scalar(sa.select(AuditEvent.hash).where(AuditEvent.seq == base.seq))
        if stored != base.hash:
            return f"entry {base.seq} no longer matches the checkpoint of {base.at.isoformat()}"
    expected = after + 1
    while expected <= head_seq:
        rows = conn.execute(sa.select(*_COLUMNS).where(AuditEvent.seq >= expected, AuditEvent.seq <= head_seq)
                            .order_by(AuditEvent.seq).limit(BATCH)).all()
        if not rows:
            return f"entry {expected} is missing"
        for row in rows:
            if row.seq != expected:
                return f"entry {expected} is missing"
            digest = entry_hash(prev_hash, row.seq, row.at, row.actor_id, row.actor_role, row.action,
                                row.subject_type, row.subject_id, row.patient_id, row.ip, row.user_agent,
                                row.detail)
            if row.prev_hash != prev_hash or digest != row.hash:
                return f"entry {row.seq} does not match its hash"
            prev_hash = row.hash
            expected += 1
    if prev_hash != head_hash:
        return "the chain head's hash is not the newest entry's"
    return None


def write_checkpoint(*, force: bool = False, now: dt.datetime | None = None) -> Checkpoint | None:
    """Sign the chain head and append it to the file, when one is due (or `force`).

    Returns None when nothing was written: not due, the chain is empty, or another worker holds the
    lock (then that worker writes it). Raises CheckpointError when the chain or the file does not
    match what was signed before: nothing is signed then.
    """
    now = now or utcnow()
    path = file_path()
    with _file_lock(path) as fd, db.engine.connect() as conn, conn.begin():
        if fd is None:
            return None
        if conn.dialect.name == "postgresql" and not conn.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(LOCK_KEY))):
            return None
        existing = read_checkpoints(path)
        last = existing[-1] if existing else None
        interval = dt.timedelta(minutes=current_app.config["AUDIT_CHECKPOINT_MINUTES"])
        if not force and last is not None and now - last.at < interval:
            return None
        head = conn.execute(sa.select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).one()
        if head.seq == 0:
            return None
        problem = _chain_problem(conn, last, head.seq, head.hash)
        if problem:
            raise CheckpointError(f"not signing the audit chain: {problem}")
        fields = {"v": 1, "seq": head.seq, "hash": head.hash, "at": now.astimezone(dt.UTC).isoformat(),
                  "prev": _last_line_digest(path)}
        key = load_key(create=True)
        assert key is not None
        fields["key"] = key_id(key.public_key())
        fields["sig"] = base64.b64encode(key.sign(CHECKPOINT_LABEL + _canonical(fields))).decode()
        os.write(fd, _canonical(fields) + b"\n")
        os.fsync(fd)
    log.info("audit checkpoint written at entry %s", head.seq)
    return Checkpoint(len(existing) + 1, head.seq, head.hash, now, fields["key"])


def run_due() -> None:
    """The worker's periodic job: a checkpoint when the interval has passed (0 minutes: never)."""
    if current_app.config["AUDIT_CHECKPOINT_MINUTES"] <= 0:
        return
    try:
        write_checkpoint()
    except (CheckpointError, OSError) as exc:  # an alarm for whoever reads the logs; carries no personal data
        log.error("audit checkpoint not written: %s", exc)


# Checking ---------------------------------------------------------------------------------------

@dataclass
class CheckpointReport:
    ok: bool
    count: int = 0
    newest: Checkpoint | None = None
    problem: str | None = None


def check() -> CheckpointReport:
    """Compare the chain with every checkpoint: report a truncated tail or a rewritten entry."""
    try:
        checkpoints = read_checkpoints()
    except CheckpointError as exc:
        return CheckpointReport(False, problem=f"Checkpoint file {exc}.")
    if not checkpoints:
        return CheckpointReport(True)
    newest = checkpoints[-1]
    last_seq = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq))) or 0
    wanted = sorted({c.seq for c in checkpoints})
    stored: dict[int, str] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start:start + 1000]
        stored.update(db.session.execute(sa.select(AuditEvent.seq, AuditEvent.hash)
                                         .where(AuditEvent.seq.in_(chunk))).tuples().all())
    beyond = [c for c in checkpoints if c.seq > last_seq]
    if beyond:
        c = max(beyond, key=lambda c: c.seq)
        return CheckpointReport(False, len(checkpoints), newest, (
            f"Audit chain truncated: the checkpoint signed at {when(c)} covers entry {c.seq}, but the chain ends "
            f"at entry {last_seq} (at least {c.seq - last_seq} entries removed)."))
    for c in checkpoints:
        if c.seq not in stored:
            return CheckpointReport(False, len(checkpoints), newest, (
                f"Audit chain broken: entry {c.seq}, signed at {when(c)}, is missing."))
        if stored[c.seq] != c.hash:
            return CheckpointReport(False, len(checkpoints), newest, (
                f"Audit chain rewritten: entry {c.seq} does not match the checkpoint signed at {when(c)}."))
    return CheckpointReport(True, len(checkpoints), newest)


def summary(report: CheckpointReport) -> str:
    assert report.newest is not None
    many = report.count != 1
    return (f"Checkpoints: {report.count} signed checkpoint{'s' if many else ''} agree{'' if many else 's'} with the "
            f"chain (newest: entry {report.newest.seq}, signed {when(report.newest)}).")


def when(checkpoint: Checkpoint) -> str:
    return checkpoint.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _register_worker_jobs() -> None:
    from app.worker import periodic

    # Looks every minute; writes when AUDIT_CHECKPOINT_MINUTES have passed since the file's last line,
    # so restarts and several workers still give one checkpoint per interval.
    periodic("audit.checkpoint", 60)(run_due)


_register_worker_jobs()
