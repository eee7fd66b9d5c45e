"""Join tokens: minted by the Flask side for one appointment, one user, one role; short-lived.

Signed with the app's SECRET_KEY (itsdangerous, HMAC-SHA256 under a salt of their own), so
the signaling server can check them without a database round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "verity.signaling.join"


@dataclass(frozen=True)
class JoinGrant:
    room: str
    user_id: int
    role: str
    expires_at: float


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)


def mint(secret_key: str, *, room: str, user_id: int, role: str, expires_at: float) -> str:
    return _serializer(secret_key).dumps({"r": room, "u": user_id, "o": role, "x": int(expires_at)})


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
    return JoinGrant(room=str(data["r"]), user_id=int(data["u"]), role=str(data["o"]), expires_at=float(data["x"]))
