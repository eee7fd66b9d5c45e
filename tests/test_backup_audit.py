"""Audit protection and backups: the app role's narrow grants, signed checkpoints that catch a truncated or
rewritten chain, and backup → wipe → restore through the real `flask` command line."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import backup as backups
from app import create_app
from app.audit import checkpoints
from app.audit import services as audit
from app.audit.models import AuditEvent
from app.documents import services as documents
from app.documents.models import Document
from app.extensions import db
from tests.conftest import PG_URL, config_for
from tests.test_documents_files import pdf_bytes

REPO = Path(__file__).resolve().parent.parent
DATA_KEY = "00" * 32  # the test configuration's, so the in-process app reads what the commands write
AUDIT_TRIGGERS = {"audit_events": ("audit_events_no_update", "audit_events_no_delete", "audit_events_no_truncate"),
                  "audit_head": ("audit_head_forward_only", "audit_head_no_delete", "audit_head_no_truncate")}


def cli_env(database_url: str, instance: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "backup-test", "VERITY_DATA_KEY": DATA_KEY,
            "VERITY_INSTANCE_DIR": str(instance), "VERITY_BASE_URL": "http://localhost", **extra}


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _entries(app, n: int) -> None:
    with app.app_context():
        for i in range(n):
            audit.record("test.event", subject=("thing", i), detail={"i": i})


def _as_owner(app, *statements: str) -> None:
    """Change the audit tables the way someone with the owner's rights would: triggers off, then back on."""
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            for table in AUDIT_TRIGGERS:
                if postgres:
                    conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
                else:
                    for name in AUDIT_TRIGGERS[table]:
                        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            for statement in statements:
                conn.exec_driver_sql(statement)
            if postgres:
                for table, names in AUDIT_TRIGGERS.items():
                    for name in names:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def _rows(app) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
        db.session.expunge_all()
        return rows


def _rewrite_from(app, seq: int, action: str) -> None:
    """Change entry `seq` and recompute every hash after it and the head: the chain alone verifies again."""
    rows = _rows(app)
    statements, prev = [], rows[seq - 2].hash if seq > 1 else "0" * 64
    for row in rows[seq - 1:]:
        new_action = action if row.seq == seq else row.action
        digest = audit.entry_hash(prev, row.seq, row.at, row.actor_id, row.actor_role, new_action, row.subject_type,
                                  row.subject_id, row.patient_id, row.ip, row.user_agent, row.detail)
        statements.append(f"UPDATE audit_events SET action = '{new_action}', prev_hash = '{prev}', "  # noqa: S608
                          f"hash = '{digest}' WHERE seq = {row.seq}")  # (test values: a verb and hex digests)
        prev = digest
    statements.append(f"UPDATE audit_head SET hash = '{prev}' WHERE id = 1")  # noqa: S608
    _as_owner(app, *statements)


# Checkpoints ------------------------------------------------------------------------------------

def test_owner_deleting_the_newest_entries_is_caught_by_the_checkpoint(app, database_url, tmp_path):
    _entries(app, 8)
    env = cli_env(database_url, tmp_path)
    signed = flask_cli(env, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    assert "entry 8" in signed.stdout
    _entries(app, 2)
    kept = _rows(app)[4]
    _as_owner(app, "DELETE FROM audit_events WHERE seq > 5",
              f"UPDATE audit_head SET seq = 5, hash = '{kept.hash}' WHERE id = 1")  # noqa: S608 (a hex digest)
    with app.app_context():
        assert audit.verify_chain().ok, "the cut chain is consistent on its own: only the checkpoint can tell"

    verify = flask_cli(env, "audit", "verify")
    assert verify.returncode == 1
    assert "Audit chain intact: 5 entries checked." in verify.stdout
    assert ("Audit chain truncated: the checkpoint signed at" in verify.stderr
            and "covers entry 8, but the chain ends at entry 5 (at least 3 entries removed)" in verify.stderr)


def test_rewritten_chain_is_caught_at_the_checkpointed_entry(app, ctx):
    _entries(app, 6)
    assert checkpoints.write_checkpoint(force=True).seq == 6
    _entries(app, 2)
    _rewrite_from(app, 3, "forged")
    assert audit.verify_chain().ok
    report = checkpoints.check()
    assert not report.ok
    assert report.problem.startswith("Audit chain rewritten: entry 6 does not match the checkpoint signed at")
    # The worker will not sign the rewritten chain either.
    with pytest.raises(checkpoints.CheckpointError, match="entry 6 no longer matches the checkpoint"):
        checkpoints.write_checkpoint(force=True)
    assert len(checkpoints.read_checkpoints()) == 1


def test_checkpoints_are_written_when_due_and_the_file_is_tamper_evident(app, ctx):
    start = dt.datetime(2027, 1, 4, 9, 0, tzinfo=dt.UTC)
    assert checkpoints.write_checkpoint(now=start) is None, "an empty chain has nothing to sign"
    for hour in range(3):
        _entries(app, 2)
        assert checkpoints.write_checkpoint(now=start + dt.timedelta(hours=hour)).seq == 2 * (hour + 1)
    assert checkpoints.write_checkpoint(now=start + dt.timedelta(hours=2, minutes=59)) is None, "not due yet"
    assert checkpoints.check().ok
    key_file, path = checkpoints.key_path(), checkpoints.file_path()
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o777 == 0o700
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)

    path.write_bytes(b"".join([lines[0], lines[1].replace(b'"seq":4', b'"seq":3'), lines[2]]))
    assert "line 2: its signature does not verify" in checkpoints.check().problem
    path.write_bytes(lines[0] + lines[2])
    assert "line 2: it does not follow the line before it" in checkpoints.check().problem
    path.write_bytes(original + b'{"seq": 9')
    assert "line 4: the last line is incomplete" in checkpoints.check().problem
    path.write_bytes(original)
    key_file.rename(key_file.with_suffix(".gone"))
    assert "the checkpoint key is not at" in checkpoints.check().problem
    key_file.with_suffix(".gone").rename(key_file)
    assert checkpoints.check().ok


def test_one_writer_at_a_time(app, ctx, database_url):
    """Two workers never write the same checkpoint: the second finds the lock taken (PostgreSQL's advisory
    lock across hosts, the file lock on one host) and writes nothing."""
    _entries(app, 3)
    path = checkpoints.file_path()
    if database_url.startswith("postgresql"):
        with db.engine.connect() as other:
            other.execute(sa.select(sa.func.pg_advisory_lock(checkpoints.LOCK_KEY)))
            assert checkpoints.write_checkpoint(force=True) is None
            other.execute(sa.select(sa.func.pg_advisory_unlock(checkpoints.LOCK_KEY)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert checkpoints.write_checkpoint(force=True) is None
    assert checkpoints.read_checkpoints() == []
    assert checkpoints.write_checkpoint(force=True).seq == 3


def test_the_worker_signs_the_chain_head(app, database_url, tmp_path):
    _entries(app, 4)
    env = cli_env(database_url, tmp_path, VERITY_WORKER_POLL_SECONDS="0.2", VERITY_AUDIT_CHECKPOINT_MINUTES="60")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        path = tmp_path / "audit" / "checkpoints.jsonl"
        deadline = time.monotonic() + 120
        while not (path.exists() and path.read_bytes().endswith(b"\n")):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker wrote no checkpoint"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    with app.app_context():
        written = checkpoints.read_checkpoints()
        assert [(c.seq, c.hash) for c in written] == [(4, _rows(app)[-1].hash)]
        assert checkpoints.check().ok


# Backup and restore -----------------------------------------------------------------------------

def _wipe(app, database_url: str, instance: Path) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if database_url.startswith("postgresql"):
        engine = sa.create_engine(database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()
    else:
        database = Path(sa.make_url(database_url).database)
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
    shutil.rmtree(instance / "documents")
    shutil.rmtree(instance / "outcomes")
    (instance / "audit" / "checkpoints.jsonl").unlink()


def test_backup_wipe_restore_then_the_chain_verifies_and_every_document_decrypts(app, database_url, world, tmp_path):
    alice = world.patient("alice")
    contents = [pdf_bytes(1, title="Alice Example referral"), pdf_bytes(3)]
    with app.app_context():
        for i, content in enumerate(contents):
            documents.store_file(patient_id=alice.patient_id, kind="specialist_letter", filename=f"letter{i}.pdf",
                                 stream=io.BytesIO(content), uploaded_by=alice.user_id)
    in_flight = tmp_path / "outcomes" / "incoming" / f"{uuid.uuid4().hex}.part"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(os.urandom(5000))  # an import's encrypted upload, part-way through
    env = cli_env(database_url, tmp_path)
    assert flask_cli(env, "audit", "checkpoint").returncode == 0
    _entries(app, 3)  # entries after the newest checkpoint are backed up too

    made = flask_cli(env, "backup", "--to", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    assert "Backup written to" in made.stdout
    folder = tmp_path / "backup"
    manifest = json.loads((folder / "manifest.json").read_text())
    stored = [name for name in manifest["files"] if name.startswith("files/documents/store/")]
    assert len(stored) == 2
    assert f"files/outcomes/incoming/{in_flight.name}" in manifest["files"]
    assert {"checkpoints.jsonl", manifest["database"]} <= set(manifest["files"])
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        assert b"Alice Example" not in data or name == manifest["database"], f"{name} holds plaintext"
        assert b"PRIVATE KEY" not in data, f"{name} holds a key"
    with app.app_context():
        chain_before = [(r.seq, r.hash) for r in _rows(app)]

    _wipe(app, database_url, tmp_path)
    restored = flask_cli(env, "restore", str(folder))
    assert restored.returncode == 0, restored.stderr
    assert f"Audit chain intact: {len(chain_before)} entries checked." in restored.stdout
    assert "3 encrypted files restored" in restored.stdout  # two documents and the import
    verify = flask_cli(env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert "signed checkpoint agrees with the chain" in verify.stdout
    assert in_flight.read_bytes() == (folder / "files" / "outcomes" / "incoming" / in_flight.name).read_bytes()
    with app.app_context():
        assert [(r.seq, r.hash) for r in _rows(app)] == chain_before
        restored_documents = list(db.session.scalars(sa.select(Document).order_by(Document.id)))
        assert len(restored_documents) == 2
        for document, content in zip(restored_documents, contents, strict=True):
            plaintext = b"".join(documents.open_plaintext(document))
            assert plaintext == content
            assert hashlib.sha256(plaintext).hexdigest() == document.sha256
        db.session.remove()
        db.engine.dispose()

    refused = flask_cli(env, "restore", str(folder))
    assert refused.returncode == 1
    assert "Restore refused: the database is not empty" in refused.stderr
    _entries(app, 1)  # an entry made after the backup: --force replaces it with the backup's chain
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    forced = flask_cli(env, "restore", "--force", str(folder))
    assert forced.returncode == 0, forced.stderr
    assert f"Audit chain intact: {len(chain_before)} entries checked." in forced.stdout
    with app.app_context():
        assert [(r.seq, r.hash) for r in _rows(app)] == chain_before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_damaged_or_altered_backup_is_refused_before_anything_is_touched(app, world, tmp_path):
    alice = world.patient("alice")
    with app.app_context():
        documents.store_file(patient_id=alice.patient_id, kind="specialist_letter", filename="letter.pdf",
                             stream=io.BytesIO(pdf_bytes(2)), uploaded_by=alice.user_id)
        backups.backup(tmp_path / "backup")
    folder = tmp_path / "backup"
    manifest_path = folder / "manifest.json"
    signed_manifest = manifest_path.read_text()
    manifest = json.loads(signed_manifest)
    document = next(folder / name for name in manifest["files"] if name.startswith("files/documents/store/"))
    original = document.read_bytes()
    with app.app_context():
        backups.read_manifest(folder)  # intact: accepted
        entries_before = len(_rows(app))

    document.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    env = cli_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path)
    damaged = flask_cli(env, "restore", "--force", str(folder))
    assert damaged.returncode == 1
    assert "does not match the manifest's SHA-256" in damaged.stderr

    relative = document.relative_to(folder).as_posix()
    manifest["files"][relative]["sha256"] = hashlib.sha256(document.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    altered = flask_cli(env, "restore", "--force", str(folder))
    assert altered.returncode == 1
    assert "the manifest cannot be trusted: its signature does not verify" in altered.stderr

    with app.app_context():
        assert len(_rows(app)) == entries_before, "the database was not touched"
        document.write_bytes(original)
        manifest_path.write_text(signed_manifest)
        backups.read_manifest(folder)
        (folder / "files" / "documents" / "store" / "extra").write_bytes(b"planted")
        with pytest.raises(backups.BackupError, match="files not in the manifest"):
            backups.read_manifest(folder)
        (folder / "manifest.json").unlink()
        with pytest.raises(backups.BackupError, match=r"has no manifest\.json"):
            backups.read_manifest(folder)


def test_pg_dump_older_than_the_server_is_named_plainly():
    with pytest.raises(backups.BackupError, match=r"pg_dump 15\.20 cannot dump a PostgreSQL 16 server .* "
                                                  r"postgresql-client-16"):
        backups.version_notes("15.20", 16)
    assert backups.version_notes("15.20", 15) == []
    assert "restore with pg_restore 17 or newer" in backups.version_notes("17.2", 15)[0]


# PostgreSQL roles -------------------------------------------------------------------------------

@pytest.fixture
def role_separated(pg_admin, tmp_path):
    """A database owned by a migration role, migrated by it with VERITY_DB_APP_ROLE set: the deployed shape."""
    suffix = uuid.uuid4().hex[:8]
    owner, app_role, name = f"verity_owner_{suffix}", f"verity_app_{suffix}", f"verity_roles_{suffix}"
    with pg_admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {owner} LOGIN")
        conn.exec_driver_sql(f"CREATE ROLE {app_role} LOGIN")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {owner}")
    url = sa.make_url(PG_URL).set(database=name)
    urls = {who: url.set(username=who).render_as_string(hide_password=False) for who in (owner, app_role)}
    try:
        migrated = flask_cli(cli_env(urls[owner], tmp_path, VERITY_DB_APP_ROLE=app_role), "db", "upgrade", "heads")
        assert migrated.returncode == 0, migrated.stderr
        yield {"owner": owner, "app": app_role, "owner_url": urls[owner], "app_url": urls[app_role]}
    finally:
        with pg_admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {app_role}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {owner}")


def _refused(statement: str, match: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match):
        db.session.execute(sa.text(statement))
        db.session.commit()
    db.session.rollback()


def test_the_app_role_can_only_append_to_the_audit_trail(role_separated, tmp_path):
    from app.auth import services as accounts
    from app.auth.models import Role

    app = create_app(config_for(role_separated["app_url"], tmp_path))
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT current_user")) == role_separated["app"]
        user = accounts.create_user(email="admin@clinic.example", password="correct-horse-battery",
                                    full_name="Admin Person", role=Role.ADMIN)
        for i in range(3):
            audit.record("test.event", subject=("user", user.id), detail={"i": i})
        assert audit.verify_chain().ok

        _refused("UPDATE audit_events SET action = 'forged' WHERE seq = 2", "permission denied for table audit_events")
        _refused("DELETE FROM audit_events WHERE seq > 1", "permission denied for table audit_events")
        _refused("TRUNCATE audit_events", "permission denied for table audit_events")
        _refused("ALTER TABLE audit_events DISABLE TRIGGER USER", "must be owner of table audit_events")
        _refused("UPDATE audit_head SET seq = 1", "the audit chain head only moves forward")
        _refused("UPDATE audit_head SET id = 2", "permission denied for table audit_head")
        _refused("DELETE FROM audit_head", "permission denied for table audit_head")
        _refused("UPDATE alembic_version SET version_num = 'x'", "permission denied for table alembic_version")
        assert audit.verify_chain().checked == 4  # the account's entry and three more
        db.session.remove()
        db.engine.dispose()

    # The app role can take a backup (pg_dump reads every table); the owner can grant again at any time.
    env = cli_env(role_separated["app_url"], tmp_path)
    dumped = flask_cli(env, "backup", "--to", str(tmp_path / "backup"))
    assert dumped.returncode == 0, dumped.stderr
    again = flask_cli(cli_env(role_separated["owner_url"], tmp_path), "db", "roles", "--app-role",
                      role_separated["app"])
    assert again.returncode == 0, again.stderr
    assert f"GRANT SELECT, INSERT ON audit_events TO {role_separated['app']}" in again.stdout
    as_app = flask_cli(env, "db", "roles", "--app-role", role_separated["owner"])
    assert as_app.returncode == 1
    assert f"run this as the tables' owner ({role_separated['owner']})" in as_app.stderr
