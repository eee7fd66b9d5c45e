"""The consultation's configuration: ICE servers for the browsers, join-token life, the echo peer.

Each key is read from the app config, else from the environment variable of the same name, else the
default here (see the README table).

| key | default | meaning |
| --- | --- | --- |
| STUN_URLS | (none) | comma-separated STUN URLs for the browsers, e.g. `stun:turn.clinic.example:3478` |
| TURN_URLS | (none) | comma-separated TURN URLs (coturn with `use-auth-secret`), e.g.
|           |        | `turn:turn.clinic.example:3478?transport=udp,turns:turn.clinic.example:5349` |
| TURN_SECRET | (none) | coturn's `static-auth-secret`: the server mints time-limited TURN credentials with it |
| TURN_TTL_SECONDS | 14400 | life of minted TURN credentials (longer than the longest call) |
| CONSULT_JOIN_TOKEN_SECONDS | 120 | life of a join token (used once, at connect) |
| CONSULT_OVERRUN_MINUTES | 60 | how long after the booked end a call can still be joined |
| CONSULT_ECHO_SECONDS | 30 | life of a pre-call echo peer |
| CONSULT_ECHO_LIMIT | 4 | echo peers at once per signaling process (each costs CPU: aiortc re-encodes) |
| CONSULT_ECHO_ADDRESSES | (none) | the echo peer's host addresses (comma-separated); unset: every interface |

With neither STUN nor TURN configured the browsers get `iceServers: []` (host candidates only), which
is what loopback tests and a single-network clinic need.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    "STUN_URLS": "",
    "TURN_URLS": "",
    "TURN_SECRET": "",
    "TURN_TTL_SECONDS": 14400,
    "CONSULT_JOIN_TOKEN_SECONDS": 120,
    "CONSULT_OVERRUN_MINUTES": 60,
    "CONSULT_ECHO_SECONDS": 30,
    "CONSULT_ECHO_LIMIT": 4,
    "CONSULT_ECHO_ADDRESSES": "",
}


def get(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    if value is None:
        value = os.environ.get(key)
    if value is None or value == "":
        return DEFAULTS[key]
    default = DEFAULTS[key]
    return int(value) if isinstance(default, int) else str(value)


def url_list(config: Mapping[str, Any], key: str) -> list[str]:
    return [part.strip() for part in str(get(config, key)).split(",") if part.strip()]


def turn_credentials(secret: str, user: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """coturn's REST API scheme (`use-auth-secret`): username "<expiry>:<user>", password
    base64(HMAC-SHA1(secret, username)). coturn refuses the pair once the expiry has passed."""
    username = f"{int((now if now is not None else time.time()) + ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(config: Mapping[str, Any], user: str, now: float | None = None) -> list[dict[str, Any]]:
    """RTCPeerConnection's `iceServers`: STUN as configured, TURN with freshly minted credentials."""
    servers: list[dict[str, Any]] = []
    stun = url_list(config, "STUN_URLS")
    if stun:
        servers.append({"urls": stun})
    turn = url_list(config, "TURN_URLS")
    secret = str(get(config, "TURN_SECRET"))
    if turn and secret:
        username, credential = turn_credentials(secret, user, int(get(config, "TURN_TTL_SECONDS")), now)
        servers.append({"urls": turn, "username": username, "credential": credential})
    return servers
