"""Run the consultation's services from the event loop: in a worker thread, in a fresh context, inside
an app context with the acting person bound for the audit trail.

The services use the Flask-SQLAlchemy session and blocking database drivers, so they must not run
on the event loop; `asyncio.to_thread` gives each call a thread from the loop's pool. Each call runs
in an empty contextvars context (nothing leaks in from the loop's task or out to the next call) and
ends with the session removed, so no connection is held between calls.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

from app.audit import context as audit_context
from app.extensions import db

T = TypeVar("T")


class Bridge:
    def __init__(self, flask_app: Flask) -> None:
        self.app = flask_app

    async def run(self, fn: Callable[..., T], *args: Any, actor: audit_context.Actor | None = None,
                  **kwargs: Any) -> T:
        def call() -> T:
            with self.app.app_context():
                if actor is not None:
                    audit_context.bind(actor)
                try:
                    return fn(*args, **kwargs)
                finally:
                    db.session.remove()

        return await asyncio.to_thread(contextvars.Context().run, call)


def actor_of(environ: dict[str, Any], *, user_id: int | None, role: str | None) -> audit_context.Actor:
    """Who is acting, from the connect's WSGI-style environ (the ASGI scope's client and headers)."""
    return audit_context.Actor(user_id=user_id or None, role=role, ip=environ.get("REMOTE_ADDR"),
                               user_agent=(environ.get("HTTP_USER_AGENT") or "")[:300] or None)
