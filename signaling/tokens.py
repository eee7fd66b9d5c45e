"""Join tokens: minted by the Flask side for one appointment, one user, one role; short-lived.

Signed with the app's SECRET_KEY (itsdangerous, HMAC-SHA256 under a salt of their own), so
the signaling server can check them without a database round trip. A token for a call also
carries a random nonce, which the server spends at connect (app.consult.services), so a token
cannot be used twice; a guest's token carries the key of their invitation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "verity.signaling.join"
LINK_SALT = "verity.consult.guest-link"


@dataclass(frozen=True)
class JoinGrant:
    room: str
    user_id: int
    role: str
    expires_at: float
    nonce: str | None = None
    key: str | None = None


def _serializer(secret_key: str, salt: str = SALT) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=salt)


def mint(secret_key: str, *, room: str, user_id: int, role: str, expires_at: float, nonce: str | None = None,
         key: str | None = None) -> str:
    data: dict[str, Any] = {"r": room, "u": user_id, "o": role, "x": int(expires_at)}
    if nonce is not None:
        data["n"] = nonce
    if key is not None:
        data["k"] = key
    return _serializer(secret_key).dumps(data)


class InvalidToken(Exception):
    pass


def check(secret_key: str, token: object, *, now: float | None = None) -> JoinGrant:
    if not isinstance(token, str) or not token or len(token) > 1000:
        raise InvalidToken("no join token")
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise InvalidToken("join token is not valid") from exc
    if not isinstance(data, dict) or not {"r", "u", "o", "x"} <= data.keys():
        raise InvalidToken("join token is not valid")
    if (now or time.time()) > data["x"]:
        raise InvalidToken("join token has expired")
    nonce, key = data.get("n"), data.get("k")
    return JoinGrant(room=str(data["r"]), user_id=int(data["u"]), role=str(data["o"]), expires_at=float(data["x"]),
                     nonce=str(nonce) if nonce is not None else None, key=str(key) if key is not None else None)


def sign_value(secret_key: str, value: Any) -> str:
    """A signed, URL-safe value for a link (a guest's invitation)."""
    return _serializer(secret_key, LINK_SALT).dumps(value)


def read_value(secret_key: str, signed: str) -> Any:
    """The value of `sign_value`, or None when it was tampered with."""
    if not isinstance(signed, str) or len(signed) > 500:
        return None
    try:
        return _serializer(secret_key, LINK_SALT).loads(signed)
    except BadSignature:
        return None
