"""Object storage: where Verity keeps whole files, on local disk or in an S3-compatible store.

One small interface (`ObjectStore`) with two implementations, chosen by configuration:

    VERITY_STORAGE=local   files under a folder of the instance directory (the default): on one machine,
                           or on a shared volume mounted at the same path on every machine
    VERITY_STORAGE=s3      objects in a bucket of S3 or an S3-compatible server (VERITY_S3_BUCKET,
                           VERITY_S3_ENDPOINT_URL, VERITY_S3_PREFIX); credentials and region come from
                           boto3's usual sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
                           AWS_DEFAULT_REGION, a profile, or the machine's role)

The store is given ciphertext only: callers encrypt before `put` and decrypt after `open` (see
app/documents/encryption.py), so neither a disk nor a bucket ever holds plaintext. Keys are opaque
letters and digits; both implementations lay them out as `<first two characters>/<key>`, so the files
of a local store can be copied into a bucket as they are (`aws s3 sync <folder> s3://<bucket>/<prefix>`).

Nothing is held whole in memory: `put` reads its source a piece at a time (S3: a multipart upload
with a few parts in flight) and `open` returns a stream (S3: the body of a GET, read as it arrives).
A `put` is all or nothing: a reader never sees half a file, and a failed `put` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

READ_BYTES = 64 * 1024
#: Parts of a multipart upload to S3: the smallest S3 accepts (all but the last), as memory matters more
#: than request count for documents of at most 50 MB (boto3's default is 8 MiB).
S3_PART_BYTES = 5 * 1024 * 1024
#: Parts uploaded at once, and parts read ahead of them: together they bound an upload's memory
#: (about (concurrency + read-ahead) x part size, whatever the size of the file).
S3_CONCURRENCY = 2
S3_READ_AHEAD = 2
KINDS = ("local", "s3")

#: What `put` takes: an iterable of byte strings, a readable binary file object, or a path.
Source = Iterable[bytes] | BinaryIO | str | os.PathLike


class StorageConfigError(RuntimeError):
    """The storage settings do not work together; the message says what to set."""


class ObjectStore(Protocol):
    def put(self, key: str, source: Source) -> int:
        """Store the bytes of `source` under `key` (replacing any), all or nothing; return their number."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the stored bytes; FileNotFoundError if there is none. The caller
        closes it. `read(n)` returns n bytes unless the end comes first."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    def size(self, key: str) -> int:
        """The stored object's size in bytes; FileNotFoundError if there is none."""

    def delete(self, key: str) -> None:
        """Remove the object; nothing happens if there is none."""

    def keys(self) -> Iterator[str]:
        """Every stored key, in sorted order (writes in progress are not listed)."""


def check_key(key: str) -> str:
    if not (isinstance(key, str) and key.isascii() and key.isalnum() and len(key) >= 2):
        raise ValueError("storage keys are at least two letters and digits, nothing else")
    return key


def pieces(source: Source, size: int = READ_BYTES) -> Iterator[bytes]:
    """The bytes of any `Source`, a piece at a time."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            yield from pieces(fh, size)
    elif hasattr(source, "read"):
        while piece := source.read(size):
            yield piece
    elif isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError("pass a file, a path or an iterable of byte strings, not one byte string")
    else:
        for piece in source:
            if piece:
                yield bytes(piece)


class _ChunkReader(io.RawIOBase):
    """An iterable of byte strings as a readable file, for APIs that want a file object; counts the bytes."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._pending = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        view = memoryview(buffer).cast("B")
        taken = self._pending[:len(view)]
        view[:len(taken)] = taken
        self._pending = self._pending[len(taken):]
        self.count += len(taken)
        return len(taken)


# Local disk -----------------------------------------------------------------------------------------

class LocalStore:
    """Files on local disk (or a shared volume): two-character fan-out folders, written to a temporary
    name starting with a dot, fsynced, then renamed into place."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    def put(self, key: str, source: Source) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{key}.{secrets.token_hex(4)}.tmp")
        written = 0
        try:
            with open(temporary, "xb") as out:
                os.chmod(temporary, 0o600)
                for piece in pieces(source):
                    out.write(piece)
                    written += len(piece)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return written

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and len(p.name) == 2):
            for path in sorted(folder.iterdir()):
                name = path.name
                if name.isascii() and name.isalnum() and name[:2] == folder.name and path.is_file():
                    yield name


# S3 and S3-compatible servers ------------------------------------------------------------------------

class _Body(io.RawIOBase):
    """The streaming body of a GET as a raw file, so io.BufferedReader can give exact-length reads."""

    def __init__(self, body: Any):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Store:
    """Objects in an S3 bucket (or an S3-compatible server's), named `<prefix><first two>/<key>`."""

    def __init__(self, bucket: str, *, prefix: str = "", client: Any = None, endpoint_url: str | None = None,
                 part_bytes: int = S3_PART_BYTES, concurrency: int = S3_CONCURRENCY,
                 read_ahead: int = S3_READ_AHEAD):
        from boto3.s3.transfer import TransferConfig

        if not bucket:
            raise StorageConfigError("VERITY_STORAGE=s3 needs VERITY_S3_BUCKET: the bucket the documents go in")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client if client is not None else s3_client(endpoint_url)
        # The source (the encrypting generator) is read a part at a time into memory: at most `read_ahead`
        # parts are held (s3transfer's default is 10) while up to `concurrency` of them are sent.
        self.transfer = TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes,
                                       max_concurrency=concurrency)
        self.transfer.max_in_memory_upload_chunks = read_ahead  # s3transfer's setting, not in boto3's arguments

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}{key[:2]}/{key}"

    def put(self, key: str, source: Source) -> int:
        name = self._name(key)
        counted = _ChunkReader(pieces(source))
        # upload_fileobj sends one PUT, or a multipart upload that it aborts if anything fails: the object
        # appears whole when the upload completes, or not at all. It takes each part in one read, which
        # the buffered reader fills from as many pieces as it takes.
        with io.BufferedReader(counted, buffer_size=READ_BYTES) as reader:
            self.client.upload_fileobj(reader, self.bucket, name, Config=self.transfer)
        return counted.count

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"no object {name} in bucket {self.bucket}") from exc
        return io.BufferedReader(_Body(response["Body"]), buffer_size=READ_BYTES)  # type: ignore[return-value]

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"no object {self._name(key)} in bucket {self.bucket}")
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for entry in page.get("Contents", ()):
                fan, _, name = entry["Key"][len(self.prefix):].partition("/")
                if name.isascii() and name.isalnum() and len(name) >= 2 and fan == name[:2]:
                    found.append(name)
        # S3 lists in UTF-8 byte order, which for letters and digits is sorted order already.
        yield from sorted(found)


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client: AWS, or the S3-compatible server at `endpoint_url` (path-style addressing,
    which every such server understands). Credentials and region come from boto3's usual sources."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        # Every object is AES-GCM ciphertext that fails to decrypt if a byte changes, so the extra
        # checksums (which some S3-compatible servers refuse with streamed bodies) are sent only when required.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=Config(**options))


# Configuration ---------------------------------------------------------------------------------------

def check_config(config: Mapping[str, Any]) -> None:
    """Refuse settings that cannot work, before anything is stored (no network is used)."""
    kind = (config.get("STORAGE") or "local").strip().lower()
    if kind not in KINDS:
        raise StorageConfigError(f"VERITY_STORAGE is {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "s3" and not config.get("S3_BUCKET"):
        raise StorageConfigError("VERITY_STORAGE=s3 needs VERITY_S3_BUCKET: the bucket the documents go in")


def from_config(config: Mapping[str, Any], *, local_root: Path, area: str) -> ObjectStore:
    """The configured store for one area of files (e.g. "documents"): `local_root` on local disk, or the
    bucket under `<VERITY_S3_PREFIX><area>/`."""
    check_config(config)
    if (config.get("STORAGE") or "local").strip().lower() == "s3":
        prefix = "/".join(part for part in ((config.get("S3_PREFIX") or "").strip("/"), area) if part)
        return S3Store(config["S3_BUCKET"], prefix=prefix, endpoint_url=config.get("S3_ENDPOINT_URL"))
    return LocalStore(local_root)
