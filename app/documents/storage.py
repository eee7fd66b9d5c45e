"""Where document files live: one small interface, with local disk as the embedded default.

The store holds only ciphertext (see encryption.py) under opaque keys; it knows nothing of
patients. An S3-compatible store implements the same three methods (a multipart upload for
`put`, a streaming GET body for `open`), so the services never change.

Besides the store, the documents folder has two working areas on local disk:

    <INSTANCE_DIR>/documents/store/ab/<key>     encrypted files (LocalStore)
    <INSTANCE_DIR>/documents/incoming/<id>.part  uploads in flight, encrypted as they arrive
    <INSTANCE_DIR>/documents/work/               the plaintext of one file while it is checked
                                                 (seconds), then deleted

With several web servers, `incoming` must be a shared folder (or uploads pinned to one server).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from flask import current_app

READ_BYTES = 64 * 1024


class Store(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write the file under `key` from the chunks, all or nothing; return its size."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the stored bytes (the caller closes it)."""

    def delete(self, key: str) -> None:
        """Remove the file (used only to undo a write whose record could not be saved)."""


class LocalStore:
    """Files on local disk, two-character fan-out folders, written to a temporary name then renamed."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError("storage keys are letters and digits only")
        return self.root / key[:2] / key

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{key}.{secrets.token_hex(4)}.tmp")
        written = 0
        try:
            with open(temporary, "xb") as out:
                os.chmod(temporary, 0o600)
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return written

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")  # the caller closes it

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def documents_dir() -> Path:
    return Path(current_app.config["INSTANCE_DIR"]) / "documents"


def store() -> Store:
    """The app's document store (local disk under the instance folder)."""
    existing = current_app.extensions.get("verity_document_store")
    if existing is None:
        existing = LocalStore(documents_dir() / "store")
        current_app.extensions["verity_document_store"] = existing
    return existing


def incoming_path(upload_id: str) -> Path:
    if not upload_id.isalnum():
        raise ValueError("upload ids are letters and digits only")
    folder = documents_dir() / "incoming"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / f"{upload_id}.part"


def work_dir() -> Path:
    folder = documents_dir() / "work"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def read_pieces(stream: BinaryIO, size: int = READ_BYTES) -> Iterable[bytes]:
    while piece := stream.read(size):
        yield piece
