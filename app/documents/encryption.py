"""Files at rest: AES-256-GCM in fixed-size segments, so files of any size stream in and out.

Stored files follow the STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
authenticated-encryption and its nonce-reuse misuse-resistance", 2015), as in Tink's
AES-GCM-HKDF streaming AEAD:

    header   = MAGIC (8) | salt (32) | nonce prefix (7)
    key      = HKDF-SHA256(data key, salt, info = "verity document v1:" + file id)
    segment i = AES-GCM(key, nonce = prefix | i (4, big-endian) | final (1),
                        plaintext = up to SEGMENT_BYTES, associated data = header | file id | i | final)

Each file has its own key (derived from the configured data key, which never touches a file),
each segment its own nonce, and each segment is authenticated with its index, its file's id and
whether it is the last: segments cannot be reordered, swapped between files, or cut off at a
segment boundary without decryption failing.

Uploads in flight are kept encrypted too, as a sequence of records that can be appended one
request at a time (the final segment is not known until the upload ends):

    record   = length (4) | nonce (12) | AES-GCM(upload key, plaintext, associated data = upload id | offset (8))
    upload key = HKDF-SHA256(data key, info = "verity upload v1:" + upload id)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"VRTYDOC\x01"
SALT_BYTES = 32
PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + SALT_BYTES + PREFIX_BYTES
TAG_BYTES = 16
#: Plaintext per segment: small enough to keep memory flat, large enough that the 16-byte tag is noise.
SEGMENT_BYTES = 64 * 1024
RECORD_NONCE_BYTES = 12
#: Longest record the reader accepts: a record is written per piece of a request body.
MAX_RECORD_BYTES = 4 * 1024 * 1024

Reader = Callable[[int], bytes]


class Corrupt(ValueError):
    """The ciphertext does not decrypt: damaged, truncated, tampered with, or another key."""


def _derive(data_key: bytes, info: bytes, salt: bytes | None = None) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(data_key)
    return AESGCM(key)


def _segment_nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _segment_aad(header: bytes, file_id: bytes, index: int, final: bool) -> bytes:
    return header + file_id + struct.pack(">QB", index, 1 if final else 0)


def seal(data_key: bytes, file_id: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encrypt a stream of plaintext pieces of any sizes; yield the header, then one segment at a time."""
    salt, prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
    header = MAGIC + salt + prefix
    fid = file_id.encode()
    aead = _derive(data_key, b"verity document v1:" + fid, salt)
    yield header
    buffer = bytearray()
    index = 0
    for chunk in chunks:
        buffer += chunk
        # Keep at least one byte back: only the end of the input says which segment is the last.
        while len(buffer) > SEGMENT_BYTES:
            piece = bytes(buffer[:SEGMENT_BYTES])
            del buffer[:SEGMENT_BYTES]
            yield aead.encrypt(_segment_nonce(prefix, index, False), piece, _segment_aad(header, fid, index, False))
            index += 1
    yield aead.encrypt(_segment_nonce(prefix, index, True), bytes(buffer), _segment_aad(header, fid, index, True))


def unseal(data_key: bytes, file_id: str, read: Reader) -> Iterator[bytes]:
    """Decrypt what `seal` wrote, one segment at a time; raise Corrupt at the first bad segment."""
    header = read(HEADER_BYTES)
    if len(header) != HEADER_BYTES or not header.startswith(MAGIC):
        raise Corrupt("not an encrypted document, or its header is damaged")
    salt, prefix = header[len(MAGIC):len(MAGIC) + SALT_BYTES], header[len(MAGIC) + SALT_BYTES:]
    fid = file_id.encode()
    aead = _derive(data_key, b"verity document v1:" + fid, salt)
    size = SEGMENT_BYTES + TAG_BYTES
    current = read(size)
    if not current:
        raise Corrupt("the file ends before its first segment")
    index = 0
    while True:
        following = read(size) if len(current) == size else b""
        final = not following
        try:
            yield aead.decrypt(_segment_nonce(prefix, index, final), current, _segment_aad(header, fid, index, final))
        except InvalidTag as exc:
            raise Corrupt(f"segment {index} does not decrypt (damaged, truncated or tampered with)") from exc
        if final:
            return
        current, index = following, index + 1


def _upload_aead(data_key: bytes, upload_id: str) -> AESGCM:
    return _derive(data_key, b"verity upload v1:" + upload_id.encode())


def seal_records(data_key: bytes, upload_id: str, offset: int, pieces: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """Encrypt pieces of an upload that start at plaintext `offset`; yield (record, plaintext length)."""
    aead = _upload_aead(data_key, upload_id)
    for piece in pieces:
        if not piece:
            continue
        nonce = os.urandom(RECORD_NONCE_BYTES)
        body = nonce + aead.encrypt(nonce, piece, upload_id.encode() + struct.pack(">Q", offset))
        yield struct.pack(">I", len(body)) + body, len(piece)
        offset += len(piece)


def open_records(data_key: bytes, upload_id: str, read: Reader, total: int) -> Iterator[bytes]:
    """Decrypt an upload's records in order, checking each starts where the previous ended."""
    aead = _upload_aead(data_key, upload_id)
    offset = 0
    while offset < total:
        head = read(4)
        if len(head) != 4:
            raise Corrupt("the upload ends before all its bytes")
        (length,) = struct.unpack(">I", head)
        if not RECORD_NONCE_BYTES + TAG_BYTES < length <= MAX_RECORD_BYTES:
            raise Corrupt("an upload record has an impossible length")
        body = read(length)
        if len(body) != length:
            raise Corrupt("an upload record is cut off")
        try:
            piece = aead.decrypt(body[:RECORD_NONCE_BYTES], body[RECORD_NONCE_BYTES:],
                                 upload_id.encode() + struct.pack(">Q", offset))
        except InvalidTag as exc:
            raise Corrupt("an upload record does not decrypt") from exc
        offset += len(piece)
        yield piece
    if offset != total:
        raise Corrupt("the upload holds more bytes than it should")
