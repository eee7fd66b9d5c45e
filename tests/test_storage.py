"""The object store (app/storage.py): one contract, run against local disk and against a real S3 server.

The S3 side talks HTTP to moto's S3-compatible server, started as a process of its own on a free
loopback port (its memory is not ours, so the streaming checks measure only Verity's side). The last
tests take a document through the real upload and viewer routes with VERITY_STORAGE=s3 and look in
the bucket: one object, and it is ciphertext.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from app import create_app, storage
from app.documents import encryption
from app.documents import services as documents
from app.documents.models import Document
from app.extensions import db
from tests.conftest import config_for
from tests.test_documents import CHUNK, signed_in, upload
from tests.test_documents_files import big_pdf

MB = 1024 * 1024
REGION = "eu-west-2"


# A local S3-compatible server -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """moto's server as a separate process; its URL once it answers."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the S3 server exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the S3 server did not answer within 60 s: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def aws_env(monkeypatch, tmp_path) -> None:
    """Credentials as boto3 reads them from the environment; nothing from the machine's own AWS files."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "verity-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "verity-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def bucket(s3_server, aws_env) -> str:
    name = f"verity-test-{uuid.uuid4().hex[:12]}"
    storage.s3_client(s3_server).create_bucket(Bucket=name,
                                               CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def _objects(s3_server: str, bucket: str) -> dict[str, bytes]:
    client = storage.s3_client(s3_server)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {entry["Key"]: client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read() for entry in listed}


# The contract, against both implementations -----------------------------------------------------

@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> storage.ObjectStore:
    if request.param == "local":
        return storage.from_config({}, local_root=tmp_path / "store", area="documents")
    url, name = request.getfixturevalue("s3_server"), request.getfixturevalue("bucket")
    return storage.from_config({"STORAGE": "s3", "S3_BUCKET": name, "S3_ENDPOINT_URL": url,
                                "S3_PREFIX": "/clinic-a/"}, local_root=tmp_path / "unused", area="documents")


def _foreign(store, name: str) -> None:
    """Something in the store's place that is not one of its objects."""
    if isinstance(store, storage.LocalStore):
        folder = store.root / name[:2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".{name}.abcd.tmp").write_bytes(b"a write in progress")
        (store.root / "README").write_bytes(b"not an object")
    else:
        store.client.put_object(Bucket=store.bucket, Key=f"elsewhere/{name[:2]}/{name}", Body=b"other prefix")
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}loose-file", Body=b"not laid out")


def test_the_configuration_chooses_the_implementation(store, tmp_path):
    if isinstance(store, storage.LocalStore):
        assert store.root == tmp_path / "store"
    else:
        assert isinstance(store, storage.S3Store)
        assert store.prefix == "clinic-a/documents/"


def test_put_from_pieces_a_file_or_a_path_reads_back_the_same(store, tmp_path):
    content = os.urandom(200_000)
    path = tmp_path / "source.bin"
    path.write_bytes(content)
    sources = {"aa01": [content[:1], content[1:70_000], b"", content[70_000:]],
               "bb02": io.BytesIO(content), "cc03": path, "dd04": str(path)}
    for key, source in sources.items():
        assert store.put(key, source) == len(content)
    for key in sources:
        assert store.exists(key)
        assert store.size(key) == len(content)
        with store.open(key) as fh:
            assert fh.read() == content
    assert list(store.keys()) == sorted(sources)


def test_reads_are_exact_length_until_the_end(store):
    """The decryption reads whole segments: read(n) must give n bytes unless the object ends."""
    content = os.urandom(3 * encryption.SEGMENT_BYTES + 123)
    store.put("ab12", [content[i:i + 1000] for i in range(0, len(content), 1000)])
    size = encryption.SEGMENT_BYTES + encryption.TAG_BYTES
    with store.open("ab12") as fh:
        got = [fh.read(size) for _ in range(4)]
        assert fh.read(size) == b""
    assert [len(piece) for piece in got] == [size, size, size, len(content) - 3 * size]
    assert b"".join(got) == content


def test_an_empty_object_and_a_replaced_one(store):
    assert store.put("ee00", []) == 0
    assert store.exists("ee00") and store.size("ee00") == 0
    with store.open("ee00") as fh:
        assert fh.read() == b""
    store.put("ee00", [b"first version"])
    store.put("ee00", [b"second"])
    with store.open("ee00") as fh:
        assert fh.read() == b"second"
    assert list(store.keys()) == ["ee00"]


def test_missing_objects_and_delete(store):
    assert not store.exists("ff99")
    with pytest.raises(FileNotFoundError):
        store.open("ff99")
    with pytest.raises(FileNotFoundError):
        store.size("ff99")
    store.delete("ff99")  # nothing there: no error

    store.put("ff99", [b"ciphertext"])
    store.put("ff98", [b"another"])
    store.delete("ff99")
    assert not store.exists("ff99")
    assert store.exists("ff98")
    assert list(store.keys()) == ["ff98"]


def test_keys_lists_only_the_stores_own_objects(store):
    store.put("a1b2c3", [b"one"])
    store.put("0f0f", [b"two"])
    _foreign(store, "a1zzzz")
    assert list(store.keys()) == ["0f0f", "a1b2c3"]


@pytest.mark.parametrize("key", ["", "a", "../etc", "ab/cd", "ab cd", "ab.tmp", "ébc"])
def test_keys_are_letters_and_digits_only(store, key):
    for action in (lambda: store.put(key, [b"x"]), lambda: store.open(key), lambda: store.exists(key),
                   lambda: store.size(key), lambda: store.delete(key)):
        with pytest.raises(ValueError):
            action()


def test_a_failed_put_leaves_nothing_behind(store):
    """Also past the first part of a multipart upload: the upload is aborted, no object appears."""
    store.put("cafe01", [b"the old version"])

    def failing(after: int) -> Iterator[bytes]:
        sent = 0
        while sent < after:
            yield os.urandom(MB)
            sent += MB
        raise RuntimeError("the source failed")

    for key, after in (("cafe01", 1 * MB), ("cafe02", 1 * MB), ("cafe03", 20 * MB)):
        with pytest.raises(RuntimeError, match="the source failed"):
            store.put(key, failing(after))
    assert list(store.keys()) == ["cafe01"]
    with store.open("cafe01") as fh:
        assert fh.read() == b"the old version"
    if isinstance(store, storage.LocalStore):
        assert [p.name for p in store.root.rglob("*") if p.is_file()] == ["cafe01"]
    else:
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def test_a_large_document_streams_in_and_out_in_little_memory(store):
    """40 MiB sealed, stored and read back; this process's peak memory grows by less than the file.

    Peak resident set (VmHWM) is reset to the current one first, as bench/upload_memory.py does. The
    bound is loose (a correctness check that nothing holds the whole file, not a performance figure).
    """
    size = 40 * MB
    data_key, key = os.urandom(32), "b16f00d5"
    written, read_back = hashlib.sha256(), hashlib.sha256()

    def plaintext() -> Iterator[bytes]:
        left = size
        while left:
            piece = os.urandom(min(64 * 1024, left))
            written.update(piece)
            left -= len(piece)
            yield piece

    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kib("VmHWM")
    stored = store.put(key, encryption.seal(data_key, key, plaintext()))
    total = 0
    with store.open(key) as fh:
        for piece in encryption.unseal(data_key, key, fh.read):
            read_back.update(piece)
            total += len(piece)
    growth_mb = (_status_kib("VmHWM") - baseline) / 1024

    assert total == size and read_back.digest() == written.digest()
    assert stored == store.size(key) > size
    assert growth_mb < 30, f"peak memory grew {growth_mb:.1f} MiB for a {size // MB} MiB document"


# Configuration ----------------------------------------------------------------------------------

def test_settings_that_cannot_work_are_refused_when_the_app_starts(tmp_path):
    with pytest.raises(storage.StorageConfigError, match="VERITY_S3_BUCKET"):
        create_app(config_for("sqlite://", tmp_path, STORAGE="s3"))
    with pytest.raises(storage.StorageConfigError, match="VERITY_STORAGE"):
        create_app(config_for("sqlite://", tmp_path, STORAGE="ftp"))
    assert isinstance(storage.from_config({"STORAGE": "LOCAL"}, local_root=tmp_path, area="documents"),
                      storage.LocalStore)


# Documents through the routes, stored in the bucket ---------------------------------------------

@pytest.fixture
def app_config(s3_server, bucket) -> dict:
    return {"STORAGE": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": s3_server, "S3_PREFIX": "verity"}


def test_a_document_uploaded_with_s3_storage_is_ciphertext_in_the_bucket(app, client, personas, s3_server, bucket):
    marker = "VerityS3PlaintextMarker91c2"
    content = big_pdf(2.5, title=marker)
    assert marker.encode() in content and len(content) > 2 * CHUNK
    token = signed_in(client, personas["patient"])

    done = upload(client, token, content)

    assert done.status_code == 201, done.json
    document_id = done.json["document"]["id"]
    shown = client.get(f"/documents/{document_id}/file")
    assert shown.status_code == 200
    assert shown.data == content
    with app.app_context():
        storage_key = documents.get(document_id).storage_key
    objects = _objects(s3_server, bucket)
    assert list(objects) == [f"verity/documents/{storage_key[:2]}/{storage_key}"]
    stored = objects[f"verity/documents/{storage_key[:2]}/{storage_key}"]
    assert stored.startswith(encryption.MAGIC)
    assert marker.encode() not in stored and b"%PDF" not in stored and content[1000:1100] not in stored
    local = Path(app.config["INSTANCE_DIR"]) / "documents"
    assert not (local / "store").exists(), "nothing is stored on local disk"
    assert [p for p in local.rglob("*") if p.is_file()] == [], "no part file or work file is left behind"


def test_a_damaged_object_in_the_bucket_does_not_decrypt(app, personas, s3_server, bucket):
    with app.app_context():
        document = documents.store_file(patient_id=personas["patient"].patient_id, kind="other",
                                        filename="letter.pdf", stream=io.BytesIO(big_pdf(0.3)),
                                        uploaded_by=personas["patient"].user_id)
        name = f"verity/documents/{document.storage_key[:2]}/{document.storage_key}"
        original = b"".join(documents.open_plaintext(document))
        assert hashlib.sha256(original).hexdigest() == document.sha256

        client = storage.s3_client(s3_server)
        sealed = bytearray(client.get_object(Bucket=bucket, Key=name)["Body"].read())
        sealed[-100] ^= 1
        client.put_object(Bucket=bucket, Key=name, Body=bytes(sealed))
        with pytest.raises(encryption.Corrupt):
            b"".join(documents.open_plaintext(document))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_backup_reads_the_bucket_and_restore_puts_every_object_back(app, database_url, world, s3_server, bucket,
                                                                    tmp_path):
    from tests.test_backup_audit import _wipe, cli_env, flask_cli

    alice = world.patient("alice")
    contents = [big_pdf(1.2, title="Bucket backup one"), big_pdf(0.3, title="Bucket backup two")]
    with app.app_context():
        keys = [documents.store_file(patient_id=alice.patient_id, kind="specialist_letter", filename=f"l{i}.pdf",
                                     stream=io.BytesIO(content), uploaded_by=alice.user_id).storage_key
                for i, content in enumerate(contents)]
    before = _objects(s3_server, bucket)
    assert sorted(before) == sorted(f"verity/documents/{key[:2]}/{key}" for key in keys)
    env = cli_env(database_url, tmp_path, VERITY_STORAGE="s3", VERITY_S3_BUCKET=bucket,
                  VERITY_S3_ENDPOINT_URL=s3_server, VERITY_S3_PREFIX="verity")
    assert flask_cli(env, "audit", "checkpoint").returncode == 0

    made = flask_cli(env, "backup", "--to", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    for key in keys:
        copy = tmp_path / "backup" / "files" / "documents" / "store" / key[:2] / key
        assert copy.read_bytes() == before[f"verity/documents/{key[:2]}/{key}"]
        assert manifest["files"][f"files/documents/store/{key[:2]}/{key}"]["sha256"] == \
            hashlib.sha256(copy.read_bytes()).hexdigest()

    client = storage.s3_client(s3_server)
    for name in before:
        client.delete_object(Bucket=bucket, Key=name)
    (tmp_path / "documents").mkdir(exist_ok=True)
    (tmp_path / "outcomes").mkdir(exist_ok=True)
    _wipe(app, database_url, tmp_path)
    restored = flask_cli(env, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    assert "2 encrypted files restored" in restored.stdout
    assert _objects(s3_server, bucket) == before
    assert not (tmp_path / "documents" / "store").exists(), "restored into the bucket, not onto local disk"
    with app.app_context():
        for key, content in zip(keys, contents, strict=True):
            document = db.session.scalar(sa.select(Document).where(Document.storage_key == key))
            assert b"".join(documents.open_plaintext(document)) == content
        db.session.remove()
        db.engine.dispose()
