"""Where document files live: the app's object store (app/storage.py), and two work areas on local disk.

The store holds only ciphertext (see encryption.py) under opaque keys; it knows nothing of
patients. It is local disk under the instance folder by default, or an S3-compatible bucket
(VERITY_STORAGE=s3): the services call the same `put`, `open` and `delete` either way.

    <INSTANCE_DIR>/documents/store/ab/<key>      encrypted files (VERITY_STORAGE=local, the default)
    <S3_PREFIX>/documents/ab/<key> in the bucket  encrypted files (VERITY_STORAGE=s3)
    <INSTANCE_DIR>/documents/incoming/<id>.part  uploads in flight, encrypted as they arrive
    <INSTANCE_DIR>/documents/work/               the plaintext of one file while it is checked
                                                 (seconds), then deleted

`incoming` and `work` stay on local disk whatever the store is: they are a node's work areas, not
storage. A chunk is appended to its part file under a lock and a cut-off tail is truncated away, which
an object store cannot do (its objects are written whole, and a multipart upload's parts must be 5 MB,
not the 1 MiB chunks a phone sends); the part file lives only until "complete" seals the file into
the store. With several web machines, a chunk may reach any of them, so `incoming` must be a folder
they share (or an upload's requests pinned to one machine); `work` is private to each process's
request and is never shared.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from app.storage import LocalStore, ObjectStore, from_config

__all__ = ["LocalStore", "ObjectStore", "Store", "documents_dir", "incoming_path", "read_pieces", "store",
           "work_dir"]

READ_BYTES = 64 * 1024
#: The documents' name for the interface (app/storage.py's ObjectStore).
Store = ObjectStore


def documents_dir() -> Path:
    return Path(current_app.config["INSTANCE_DIR"]) / "documents"


def store() -> ObjectStore:
    """The app's document store: local disk under the instance folder, or the configured bucket."""
    existing = current_app.extensions.get("verity_document_store")
    if existing is None:
        existing = from_config(current_app.config, local_root=documents_dir() / "store", area="documents")
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
