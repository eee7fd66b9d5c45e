"""HMAC-SHA256 request signatures, the same both ways (Verity -> pharmacy webhooks, pharmacy -> Verity
API, courier -> Verity webhooks):

    X-Verity-Timestamp: <unix seconds>
    X-Verity-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + METHOD + " " + path + "." + body)>
    Idempotency-Key: <the sender's unique key for this request>

A receiver checks the signature first, then the timestamp (within the tolerance, 5 minutes by
default), then that neither the key nor the signature was seen before. Signing the timestamp with the
body stops a captured request being replayed later; remembering keys and signatures stops it being
replayed within the window. The request line (method and path) is signed too because the API's URLs
name the prescription while a status report's body does not: without it, a captured "received" for one
prescription could be replayed, unchanged, against another.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Verity-Signature"
TIMESTAMP_HEADER = "X-Verity-Timestamp"
KEY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 100


class SignatureRefused(Exception):
    """A request we will not act on; `status` and `reason` go back to the sender."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(secret: str | bytes, timestamp: str, body: bytes, *, method: str, path: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    message = f"{timestamp}.{method.upper()} {path}.".encode() + body
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def headers(secret: str | bytes, body: bytes, *, key: str, method: str, path: str,
            now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body, method=method, path=path),
            KEY_HEADER: key}


def verify(secret: str | bytes, *, timestamp: str | None, signature: str | None, body: bytes, method: str,
           path: str, tolerance: int, now: float | None = None) -> None:
    """Authenticate (401), then refuse what is too old or too new to be this delivery (401 as well:
    a stale signature is no signature)."""
    if not timestamp or not signature:
        raise SignatureRefused(401, f"the {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers are required")
    if not hmac.compare_digest(sign(secret, timestamp.strip(), body, method=method, path=path), signature.strip()):
        raise SignatureRefused(401, "the signature does not match the timestamp, request line and body")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureRefused(401, "the timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise SignatureRefused(401, f"the request is more than {tolerance // 60} minutes old (or from the future): "
                                    "sign it again with the current time")


def clean_key(raw: str | None) -> str:
    key = (raw or "").strip()
    if not key:
        raise SignatureRefused(400, f"the {KEY_HEADER} header is required: a unique value for each request")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise SignatureRefused(400, f"the {KEY_HEADER} header must be at most {MAX_KEY_LENGTH} printable characters")
    return key
