"""Documents: the contract other domains rely on (implementation in progress).

store_file(...) -> Document       check, normalise, encrypt and store one file; raise DocumentRejected
open_plaintext(document) -> Iterator[bytes]   stream the decrypted content (for authorised viewers)
get(document_id) -> Document | None
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO


class DocumentRejected(ValueError):
    """The file cannot be accepted; the message tells the person what to do."""


def store_file(*, patient_id: int, kind: str, filename: str, stream: IO[bytes], uploaded_by: int | None):
    raise NotImplementedError


def open_plaintext(document) -> Iterator[bytes]:
    raise NotImplementedError


def get(document_id: int):
    raise NotImplementedError
