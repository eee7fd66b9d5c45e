"""Who is acting and from where, bound once per request (or job) so services never see `request`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user_id: int | None = None
    role: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM = Actor(role="system")
_current: contextvars.ContextVar[Actor] = contextvars.ContextVar("verity_actor", default=SYSTEM)


def bind(actor: Actor) -> contextvars.Token:
    return _current.set(actor)


def reset(token: contextvars.Token) -> None:
    _current.reset(token)


def current() -> Actor:
    return _current.get()
