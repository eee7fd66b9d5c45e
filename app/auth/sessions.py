"""Server-side sessions: one row per signed-in browser, so a user's sessions can all be ended at once.

The Flask session cookie (signed, HttpOnly) carries a random 256-bit token; `user_sessions` keeps only
its SHA-256, so a copy of the table signs nobody in. A signed-in request counts only while its row is
live: not ended, not idle past its idle expiry, not past its absolute expiry (app/auth/session_routes.py
checks before any view runs). Logout, a password change, a role change, disablement and a second-factor
reset end every live row of the user (`end_all`), so every browser is signed out on its next request.

The database is the store on both engines: one indexed read per signed-in request, and a write at most
once a minute per session (`TOUCH_SECONDS`), so a busy page does not write on every click.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from app.audit import services as audit
from app.audit.context import Actor
from app.auth.models import User, UserSession
from app.database import transaction, utcnow
from app.extensions import db

#: A session's last-seen time is written at most this often: its idle expiry may be up to a minute early.
TOUCH_SECONDS = 60

#: Why a session ended, as told to the person on the sign-in page. {minutes} and {hours} are their limits
#: ("15 minutes", "12 hours").
END_MESSAGES = {
    "idle": "Your session ended: you were inactive for {minutes}. Sign in again to continue.",
    "absolute": "Your session ended: you had been signed in for {hours}, the longest a session lasts. "
                "Sign in again to continue.",
    "logout": "Your session ended: you signed out on another device. Sign in again to continue.",
    "ended_by_user": "Your session ended: you signed it out from another device. Sign in again to continue.",
    "password_changed": "Your session ended because your password was changed. Sign in with your new password.",
    "role_changed": "Your session ended because your role was changed. Sign in again to continue.",
    "disabled": "Your session ended because your account has been disabled. Contact the clinic if you think "
                "this is wrong.",
    "second_factor_reset": "Your session ended because your two-factor authentication was reset. Sign in again "
                           "to set it up.",
}
GENERIC_END = "Your session ended. Sign in again to continue."


@dataclass(frozen=True)
class Check:
    """What a request's session token is worth: live (reason None), or why not."""

    row: UserSession | None
    reason: str | None = None

    @property
    def live(self) -> bool:
        return self.reason is None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def idle_limit(user: User) -> dt.timedelta:
    config = current_app.config
    return dt.timedelta(minutes=config["IDLE_TIMEOUT_STAFF"] if user.is_staff else config["IDLE_TIMEOUT_PATIENT"])


def absolute_limit(user: User) -> dt.timedelta:
    config = current_app.config
    key = "SESSION_ABSOLUTE_HOURS_STAFF" if user.is_staff else "SESSION_ABSOLUTE_HOURS_PATIENT"
    return dt.timedelta(hours=config[key])


def start(user: User, *, user_agent: str | None = None) -> str:
    """A new session for `user`; returns the token for the cookie (never stored, only its hash)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with transaction() as session:
        session.add(UserSession(token_hash=hash_token(token), user_id=user.id, created_at=now, last_seen_at=now,
                                idle_expires_at=now + idle_limit(user),
                                absolute_expires_at=now + absolute_limit(user),
                                user_agent=describe_user_agent(user_agent)))
    return token


def find(token: str | None) -> UserSession | None:
    if not token or not isinstance(token, str):
        return None
    return db.session.scalar(sa.select(UserSession).where(UserSession.token_hash == hash_token(token)))


def check(token: str | None, user_id: int | None) -> Check:
    """Is this token a live session of this user? An expired one is ended (and audited) on the way."""
    row = find(token)
    if row is None or row.user_id != user_id:
        return Check(None, "missing")
    if row.ended_at is not None:
        return Check(row, row.end_reason or "missing")
    now = utcnow()
    if now >= row.absolute_expires_at:
        _expire(row, "absolute", now)
        return Check(row, "absolute")
    if now >= row.idle_expires_at:
        _expire(row, "idle", now)
        return Check(row, "idle")
    return Check(row)


def _expire(row: UserSession, reason: str, now: dt.datetime) -> None:
    user = db.session.get(User, row.user_id)
    with transaction() as session:
        claimed = session.execute(
            sa.update(UserSession).where(UserSession.id == row.id, UserSession.ended_at.is_(None))
            .values(ended_at=now, end_reason=reason)
        ).rowcount
        if claimed:
            audit.record("auth.session_expired", subject=("user", row.user_id),
                         detail={"session": row.id, "reason": reason},
                         actor=Actor(user_id=row.user_id, role=user.role.value if user else None))
    db.session.refresh(row)


def touch(row: UserSession, *, force: bool = False) -> bool:
    """The person is at work: move the idle expiry on. Written at most once a minute unless `force`d
    ("Stay signed in"). Never revives an ended session. Returns whether a write happened."""
    now = utcnow()
    if not force and (now - row.last_seen_at).total_seconds() < TOUCH_SECONDS:
        return False
    user = db.session.get(User, row.user_id)
    with transaction() as session:
        moved = session.execute(
            sa.update(UserSession).where(UserSession.id == row.id, UserSession.ended_at.is_(None))
            .values(last_seen_at=now, idle_expires_at=now + idle_limit(user))
        ).rowcount
    db.session.refresh(row)
    return bool(moved)


def remaining_seconds(row: UserSession) -> int:
    """Seconds until this session ends if nothing happens (the idle or the absolute limit, whichever is first)."""
    ends = min(row.idle_expires_at, row.absolute_expires_at)
    return max(0, int((ends - utcnow()).total_seconds()))


def end(row: UserSession, reason: str) -> bool:
    """End one session (e.g. from the person's own sessions page). False if it had already ended."""
    with transaction() as session:
        return bool(session.execute(
            sa.update(UserSession).where(UserSession.id == row.id, UserSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        ).rowcount)


def end_token(token: str | None, reason: str) -> None:
    row = find(token)
    if row is not None:
        end(row, reason)


def end_all(user: User, reason: str, *, keep: UserSession | None = None) -> int:
    """End every live session of `user` (but `keep`), in the caller's transaction. Returns how many ended."""
    with transaction() as session:
        query = sa.update(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        if keep is not None:
            query = query.where(UserSession.id != keep.id)
        return session.execute(query.values(ended_at=utcnow(), end_reason=reason)).rowcount


def live_sessions(user: User) -> list[UserSession]:
    now = utcnow()
    query = (sa.select(UserSession)
             .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None),
                    UserSession.idle_expires_at > now, UserSession.absolute_expires_at > now)
             .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()))
    return list(db.session.scalars(query))


def end_message(reason: str | None, row: UserSession | None) -> str:
    template = END_MESSAGES.get(reason or "")
    if template is None:
        return GENERIC_END
    user = db.session.get(User, row.user_id) if row is not None else None
    if user is None:
        return GENERIC_END if "{" in template else template
    minutes = int(idle_limit(user).total_seconds() // 60)
    hours = int(absolute_limit(user).total_seconds() // 3600)
    return template.format(minutes=_count(minutes, "minute"), hours=_count(hours, "hour"))


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"))
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def describe_user_agent(user_agent: str | None) -> str | None:
    """A short label a person recognises ("Firefox on Windows"); the full header is not kept."""
    if not user_agent:
        return None
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    if "HeadlessChrome/" in user_agent:
        browser = "Chrome"
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    label = browser or system or re.split(r"[/ ;(]", user_agent.strip(), maxsplit=1)[0]
    return label[:100] or None
