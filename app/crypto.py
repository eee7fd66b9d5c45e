"""Encryption at rest for small secrets (TOTP seeds, later signing keys): AES-256-GCM.

Each value gets its own 96-bit nonce; the stored form is nonce || ciphertext+tag. The key comes
from configuration (VERITY_DATA_KEY) and never from the database. `purpose` is bound in as
associated data, so a value copied into another column does not decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

NONCE_BYTES = 12


def parse_key(raw: str) -> bytes:
    raw = raw.strip()
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        try:
            key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("VERITY_DATA_KEY must be 32 bytes as hex or urlsafe base64") from exc
    if len(key) != 32:
        raise ValueError("VERITY_DATA_KEY must be 32 bytes (64 hex characters)")
    return key


def _aead() -> AESGCM:
    return AESGCM(current_app.extensions["verity_data_key"])


def encrypt(plaintext: bytes, purpose: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead().encrypt(nonce, plaintext, purpose.encode())


def decrypt(blob: bytes, purpose: str) -> bytes:
    return _aead().decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], purpose.encode())
