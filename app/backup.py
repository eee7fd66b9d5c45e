"""Backup and restore: the database, the encrypted file stores and the audit checkpoints, with a signed manifest.

`flask backup [--to DIR]` writes one folder:

    manifest.json              engine, schema revision, tool versions, SHA-256 and size of every file; signed
    database.dump              PostgreSQL: pg_dump --format=custom
    database.sqlite3           SQLite: a consistent copy made with SQLite's online backup API
    checkpoints.jsonl          the signed audit checkpoints (app/audit/checkpoints.py)
    files/documents/store/     the encrypted document store (local disk or the S3 bucket, read through the
                               store's interface, so a bucket is backed up too; restored into the store
                               configured at restore time)
    files/documents/incoming/  uploads in flight (encrypted records)
    files/outcomes/incoming/   health-data imports in flight (encrypted)

The order gives a consistent whole without stopping the service: the checkpoints first (so every one
signs an entry the database copy holds), then the database, then the files (a document's file is stored
before its row is committed and is never removed, so every row in the copy finds its file).

No key goes into a backup. The files are ciphertext under VERITY_DATA_KEY and the manifest is signed with
the audit checkpoint key: keep those two (and SECRET_KEY) with the secrets, apart from the backups. The
plaintext work folder, the mail drop and the secrets file are left out.

`flask restore DIR` checks the manifest's signature and every file's hash before it touches anything,
refuses a database that is not empty unless --force, restores it (pg_restore, or a file copy), puts the
files back, sets the checkpoint file in place aside instead of overwriting it, grants the app role again,
and verifies the audit chain against the checkpoints. Stop the web, signaling and worker processes first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from app.audit import checkpoints
from app.database import utcnow
from app.extensions import db
from app.storage import ObjectStore, check_key

FORMAT = "verity-backup"
VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_LABEL = b"verity backup manifest v1\n"
CHECKPOINTS = "checkpoints.jsonl"
DATABASE = {"postgresql": "database.dump", "sqlite": "database.sqlite3"}
#: Encrypted files under the instance folder, copied as they are.
FILE_AREAS = ("documents/store", "documents/incoming", "outcomes/incoming")
#: The document store's area: its objects are read and written through app/storage.py's interface, whether
#: they live on local disk or in an S3-compatible bucket. Laid out in the backup as LocalStore lays them out.
DOCUMENT_STORE = "documents/store"
PIECE = 1024 * 1024


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why and what to do."""


@dataclass
class Outcome:
    path: Path
    lines: list[str] = field(default_factory=list)
    ok: bool = True


# Files ------------------------------------------------------------------------------------------

def _instance() -> Path:
    return Path(current_app.config["INSTANCE_DIR"])


def _copy(source: Path | BinaryIO, target: Path) -> dict:
    """Copy a file (or read an open stream to its end) through a temporary name, fsync, rename; return the
    copy's SHA-256 and size."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with (open(source, "rb") if isinstance(source, Path) else source) as src, open(temporary, "xb") as out:
            os.chmod(temporary, 0o600)
            while piece := src.read(PIECE):
                digest.update(piece)
                size += len(piece)
                out.write(piece)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _hash(path: Path) -> dict:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while piece := fh.read(PIECE):
            digest.update(piece)
            size += len(piece)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _document_store() -> ObjectStore:
    from app.documents.storage import store

    return store()


def _store_path(key: str) -> PurePosixPath:
    return PurePosixPath("files", DOCUMENT_STORE, key[:2], key)


def _area_files(area: str) -> list[Path]:
    root = _instance() / area
    if not root.is_dir():
        return []
    # Names starting with a dot are writes in progress (LocalStore's temporary files).
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


# PostgreSQL tools -------------------------------------------------------------------------------

def pg_tool(name: str) -> str:
    folder = current_app.config.get("PG_BIN")
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not Path(found).exists():
        raise BackupError(f"{name} is not installed: install the PostgreSQL client tools of the server's version "
                          "(Debian: postgresql-client), or point VERITY_PG_BIN at their folder")
    return found


def tool_version(tool: str) -> str:
    text = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True,  # noqa: S603 (our tool)
                          timeout=30).stdout
    match = re.search(r"\)\s*(\d+(?:\.\d+)?)", text)
    if not match:
        raise BackupError(f"cannot read the version of {tool} from {text.strip()!r}")
    return match.group(1)


def major(version: str) -> int:
    return int(version.split(".")[0])


def version_notes(dump_version: str, server_major: int) -> list[str]:
    """pg_dump reads servers of its own major version and older only; say so plainly."""
    if major(dump_version) < server_major:
        raise BackupError(
            f"pg_dump {dump_version} cannot dump a PostgreSQL {server_major} server (pg_dump must be the server's "
            f"major version or newer): install the PostgreSQL {server_major} client tools (Debian: "
            f"postgresql-client-{server_major}) and point VERITY_PG_BIN at their bin folder")
    if major(dump_version) > server_major:
        return [f"Note: pg_dump {dump_version} is newer than the PostgreSQL {server_major} server; restore with "
                f"pg_restore {major(dump_version)} or newer."]
    return []


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, which goes in the environment instead of argv."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603 (pg tools, no shell)
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


# Backup -----------------------------------------------------------------------------------------

def _target(to: Path | None) -> Path:
    if to is None:
        base = Path(current_app.config.get("BACKUP_DIR") or _instance() / "backups")
        to = base / f"verity-{utcnow().strftime('%Y%m%dT%H%M%SZ')}"
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise BackupError(f"{to} is not an empty folder: back up into a new one")
    to.mkdir(parents=True, exist_ok=True, mode=0o700)
    return to


def _revision(conn: sa.Connection) -> str | None:
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def backup(to: Path | None = None) -> Outcome:
    engine = db.engine
    name = engine.dialect.name
    if name not in DATABASE:
        raise BackupError(f"cannot back up a {name} database")
    target = _target(to)
    outcome = Outcome(target)
    files: dict[str, dict] = {}
    tools: dict[str, str] = {}

    checkpoint_file = checkpoints.file_path()
    if checkpoint_file.exists():
        files[CHECKPOINTS] = _copy(checkpoint_file, target / CHECKPOINTS)

    database = target / DATABASE[name]
    if name == "postgresql":
        dump = pg_tool("pg_dump")
        tools["pg_dump"] = tool_version(dump)
        with engine.connect() as conn:
            server_major = int(conn.scalar(sa.text("SHOW server_version_num"))) // 10000
            revision = _revision(conn)
        outcome.lines += version_notes(tools["pg_dump"], server_major)
        dsn, env = _libpq(engine.url)
        _run([dump, "--format=custom", "--no-password", f"--file={database}", f"--dbname={dsn}"], env, "pg_dump")
    else:
        source = sqlite3.connect(_sqlite_path(engine.url))
        copy = sqlite3.connect(database)
        try:
            source.backup(copy)
            revision = copy.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        finally:
            copy.close()
            source.close()
    os.chmod(database, 0o600)
    files[DATABASE[name]] = _hash(database)

    documents = _document_store()
    for key in documents.keys():  # noqa: SIM118 (an ObjectStore, not a dict)
        files[str(_store_path(key))] = _copy(documents.open(key), target / _store_path(key))
    for area in FILE_AREAS:
        if area == DOCUMENT_STORE:
            continue
        for path in _area_files(area):
            relative = PurePosixPath("files", *path.relative_to(_instance()).parts)
            files[str(relative)] = _copy(path, target / relative)

    manifest = {"format": FORMAT, "version": VERSION, "created_at": utcnow().isoformat(), "engine": name,
                "database": DATABASE[name], "revision": revision, "tools": tools, "files": dict(sorted(files.items()))}
    manifest["key"], manifest["signature"] = checkpoints.sign(MANIFEST_LABEL, _canonical(manifest))
    temporary = target / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, target / MANIFEST)
    total = sum(entry["bytes"] for entry in files.values())
    outcome.lines.append(f"Backup written to {target}: the {name} database and {len(files) - 1} other files, "
                         f"{total / 1e6:.1f} MB; manifest signed with key {manifest['key']}.")
    return outcome


def _canonical(manifest: dict) -> bytes:
    unsigned = {k: v for k, v in manifest.items() if k not in ("key", "signature")}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _sqlite_path(url: sa.URL) -> str:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return url.database


# Restore ----------------------------------------------------------------------------------------

def read_manifest(source: Path) -> dict:
    """The manifest, once its signature and every file's hash check out; BackupError otherwise."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise BackupError(f"{source} has no {MANIFEST}: not a backup, or one that did not finish") from exc
    except ValueError as exc:
        raise BackupError(f"{source / MANIFEST} is not valid JSON: it was damaged or altered") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError(f"{source / MANIFEST} is not a Verity backup manifest (version {VERSION})")
    try:
        problem = checkpoints.signature_problem(MANIFEST_LABEL, _canonical(manifest), str(manifest["key"]),
                                                str(manifest["signature"]))
    except KeyError:
        problem = "it is not signed"
    if problem:
        raise BackupError(f"the manifest cannot be trusted: {problem}")
    listed = manifest["files"]
    if manifest.get("database") not in listed:
        raise BackupError("the manifest lists no database file")
    for relative, expected in listed.items():
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts:
            raise BackupError(f"the manifest names a file outside the backup: {relative}")
        if not (source / path).is_file():
            raise BackupError(f"{relative} is listed in the manifest but missing from the backup")
        if _hash(source / path) != expected:
            raise BackupError(f"{relative} does not match the manifest's SHA-256: the backup was damaged or altered")
    extra = [str(p.relative_to(source)) for p in source.rglob("*")
             if p.is_file() and p.name != MANIFEST and p.relative_to(source).as_posix() not in listed]
    if extra:
        raise BackupError(f"files not in the manifest are in the backup (e.g. {sorted(extra)[0]}): it was altered")
    return manifest


def database_is_empty() -> bool:
    engine = db.engine
    if engine.dialect.name == "sqlite" and not Path(_sqlite_path(engine.url)).exists():
        return True
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            count = conn.scalar(sa.text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"))
        else:
            count = conn.scalar(sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'table'"))
    return count == 0


def _known_revision(revision: str | None) -> bool:
    from alembic.script import ScriptDirectory

    migrate = current_app.extensions["migrate"]
    scripts = ScriptDirectory.from_config(migrate.migrate.get_config(migrate.directory))
    try:
        return revision is not None and scripts.get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown id
        return False


def restore(source: Path, *, force: bool = False) -> Outcome:
    manifest = read_manifest(source)
    engine = db.engine
    name = engine.dialect.name
    if manifest["engine"] != name:
        raise BackupError(f"this is a backup of a {manifest['engine']} database; DATABASE_URL points at {name}")
    if not _known_revision(manifest["revision"]):
        raise BackupError(f"the backup's schema is at revision {manifest['revision']}, which this version of Verity "
                          "does not know: restore it with the version that made it")
    if not database_is_empty() and not force:
        raise BackupError("the database is not empty: restore into an empty database, or pass --force to replace "
                          "its contents")
    outcome = Outcome(source)
    db.session.remove()
    engine.dispose()  # no pooled connection may hold the old file (SQLite) or a lock (PostgreSQL)
    database = source / manifest["database"]
    if name == "postgresql":
        tool = pg_tool("pg_restore")
        dumped_with = manifest.get("tools", {}).get("pg_dump")
        restore_version = tool_version(tool)
        if dumped_with and major(restore_version) < major(dumped_with):
            raise BackupError(f"the backup was made by pg_dump {dumped_with}; pg_restore {restore_version} cannot "
                              f"read it: install the PostgreSQL {major(dumped_with)} client tools")
        dsn, env = _libpq(engine.url)
        command = [tool, "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error", "--no-password",
                   f"--dbname={dsn}"]
        if force:
            command += ["--clean", "--if-exists"]
        _run([*command, str(database)], env, "pg_restore")
    else:
        target = Path(_sqlite_path(engine.url))
        temporary = target.with_name(f".{target.name}.restore")
        _copy(database, temporary)
        for suffix in ("-wal", "-shm", "-journal"):  # the old file's log must not be replayed into the new one
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(temporary, target)
    outcome.lines.append(f"Database restored from {manifest['database']} (made {manifest['created_at']}, schema "
                         f"{manifest['revision']}).")

    restored = 0
    documents = _document_store()
    for relative in manifest["files"]:
        path = PurePosixPath(relative)
        if path.parts[0] != "files":
            continue
        inside = PurePosixPath(*path.parts[1:])
        if not any(inside.is_relative_to(area) for area in FILE_AREAS):
            raise BackupError(f"the manifest names a file outside the file stores: {relative}")
        if inside.is_relative_to(DOCUMENT_STORE):
            documents.put(check_key(inside.name), source / path)
        else:
            _copy(source / path, _instance() / inside)
        restored += 1
    outcome.lines.append(f"{restored} encrypted files restored under {_instance()}.")
    outcome.lines += _restore_checkpoints(source, manifest)

    role = current_app.config.get("DB_APP_ROLE")
    if name == "postgresql" and role:
        from app.db_roles import RoleError, grant_app_role

        try:
            with engine.begin() as conn:
                grant_app_role(conn, role)
            outcome.lines.append(f"Role {role} granted again (SELECT and INSERT only on the audit trail).")
        except RoleError as exc:
            outcome.lines.append(f"Warning: the app role was not granted: {exc}. Run `flask db roles`.")
    elif name == "postgresql":
        outcome.lines.append("Note: VERITY_DB_APP_ROLE is not set, so no role was granted (a restore leaves out "
                             "grants): run `flask --app wsgi db roles --app-role NAME` if the app uses its own role.")
    if not _is_head(manifest["revision"]):
        outcome.lines.append("The schema is older than this version's: run `flask --app wsgi db upgrade`.")
    outcome.lines += _verify(outcome)
    return outcome


def _is_head(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    migrate = current_app.extensions["migrate"]
    scripts = ScriptDirectory.from_config(migrate.migrate.get_config(migrate.directory))
    return revision in scripts.get_heads()


def _restore_checkpoints(source: Path, manifest: dict) -> list[str]:
    lines = []
    current = checkpoints.file_path()
    backed_up = source / CHECKPOINTS if CHECKPOINTS in manifest["files"] else None
    if current.exists() and not (backed_up and _hash(current) == _hash(backed_up)):
        aside = current.with_name(f"{current.name}.before-restore-{utcnow().strftime('%Y%m%dT%H%M%SZ')}")
        os.replace(current, aside)
        lines.append(f"The checkpoint file in place was set aside as {aside} (it may sign entries made after the "
                     "backup, which the restored chain does not hold).")
    if backed_up:
        _copy(backed_up, current)
        lines.append(f"Audit checkpoints restored to {current}.")
    return lines


def _verify(outcome: Outcome) -> list[str]:
    from app.audit import services as audit

    result = audit.verify_chain()
    report = checkpoints.check()
    lines = []
    if result.ok:
        lines.append(f"Audit chain intact: {result.checked} entries checked.")
    else:
        lines.append(f"Audit chain broken at entry {result.bad_seq}: {result.reason}.")
    if report.problem:
        lines.append(report.problem)
    elif report.count:
        lines.append(checkpoints.summary(report))
    outcome.ok = result.ok and report.ok
    return lines


# Commands ---------------------------------------------------------------------------------------

@click.command("backup", help="Back up the database, the encrypted file stores and the audit checkpoints into a "
                              "new folder, with a signed manifest of SHA-256 hashes.")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A new or empty folder (default: VERITY_BACKUP_DIR or instance/backups, then verity-<time>).")
@with_appcontext
def backup_command(to: Path | None) -> None:
    try:
        outcome = backup(to)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in outcome.lines:
        click.echo(line)


@click.command("restore", help="Restore a backup made by `flask backup` (stop the app and workers first). Refuses "
                               "when the manifest's signature or a hash does not match, or the database is not empty.")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the contents of a database that is not empty.")
@with_appcontext
def restore_command(source: Path, force: bool) -> None:
    try:
        outcome = restore(source, force=force)
    except BackupError as exc:
        raise click.ClickException(f"Restore refused: {exc}") from exc
    for line in outcome.lines:
        click.echo(line)
    if not outcome.ok:
        raise SystemExit(1)
