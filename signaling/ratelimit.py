"""Per-connection rate limiting: a token bucket per client, in the process that holds the connection.

A connection lives on one signaling process (sticky sessions), so its bucket does too; nothing needs
sharing through Redis. The defaults let a browser send its burst of ICE candidates and renegotiate,
and stop a client that floods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    #: Most messages at once.
    capacity: float = 60.0
    #: Messages per second refilled.
    rate: float = 20.0
    tokens: float = field(default=-1.0)
    stamp: float = field(default_factory=time.monotonic)
    #: Messages refused so far; a client that keeps flooding is disconnected.
    refused: int = 0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False
