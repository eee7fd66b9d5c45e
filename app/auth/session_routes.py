"""Sessions in the request: starting one at sign-in, checking it before every view, the idle-warning
endpoints behind app/static/js/session-timeout.js, and the person's own sessions and password page.

The views join the auth blueprint (imported at the end of app/auth/routes.py); `enforce` runs before
every request (app/__init__.py).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from app import policy
from app.auth import services as accounts
from app.auth import sessions
from app.auth.forms import PasswordChangeForm
from app.auth.models import User, UserSession
from app.auth.routes import _safe_next, bp
from app.extensions import db, limiter

#: The key of the session token in the Flask session cookie.
TOKEN_KEY = "sid"  # noqa: S105 (the name of a session key)
#: Requests that are not the person at work: the page asking how long is left must not extend the session,
#: and "Stay signed in" extends it itself.
PASSIVE_ENDPOINTS = frozenset({"auth.session_status", "auth.session_extend"})


def begin(user: User) -> None:
    """Sign `user` in on this browser: a fresh Flask session (nothing carried over from before, so a
    planted cookie gains nothing) and a new server-side session with a new token."""
    sessions.end_token(session.get(TOKEN_KEY), "replaced")
    session.clear()
    login_user(user)
    token = sessions.start(user, user_agent=request.headers.get("User-Agent"))
    session[TOKEN_KEY] = token
    g.user_session = sessions.find(token)


def current_session() -> UserSession | None:
    """This request's live session row (set by `enforce`)."""
    return g.get("user_session")


def _user_id_in_cookie() -> int | None:
    raw = str(session.get("_user_id") or "").partition(":")[0]
    return int(raw) if raw.isdigit() else None


def enforce() -> Any:
    """Before every request: a signed-in cookie must name a live session, or the person is signed out
    and told why. A request that is the person at work moves the idle expiry on (at most once a minute);
    a page refreshing itself (X-Verity-Poll) and the time-left check do not."""
    if request.endpoint == "static" or "_user_id" not in session:
        return None
    verdict = sessions.check(session.get(TOKEN_KEY), _user_id_in_cookie())
    if verdict.live:
        g.user_session = verdict.row
        if request.endpoint not in PASSIVE_ENDPOINTS and request.headers.get("X-Verity-Poll") != "1":
            sessions.touch(verdict.row)
        return None
    message = sessions.end_message(verdict.reason, verdict.row)
    logout_user()
    session.clear()
    flash(message, "info")
    return _to_sign_in(message)


def _to_sign_in(message: str):
    from app.errors import wants_json

    target = url_for("auth.login")
    if request.headers.get("HX-Request"):  # a fragment request: send the whole page to the sign-in form
        response = current_app.response_class(status=401)
        response.headers["HX-Redirect"] = target
        return response
    if wants_json() or request.endpoint in PASSIVE_ENDPOINTS:
        return jsonify(error="Signed out", detail=message, status=401, sign_in=target), 401
    return redirect(target)


# The idle warning (app/static/js/session-timeout.js) ----------------------------------------------------

@bp.app_context_processor
def _session_timeout() -> dict[str, Any]:
    """Pages of a signed-in person carry the seconds left (base.html's dialog reads them)."""
    row = current_session()
    return {"session_remaining": sessions.remaining_seconds(row) if row is not None else None}


def _status() -> dict[str, Any]:
    row = current_session()
    return {"remaining_seconds": sessions.remaining_seconds(row),
            "warning_seconds": current_app.config["SESSION_WARNING_SECONDS"]}


@bp.route("/auth/session")
@policy.signed_in(second_factor=False)
def session_status():
    """Seconds left before this session ends; asking does not extend it."""
    return jsonify(_status())


@bp.route("/auth/session/extend", methods=["POST"])
@policy.signed_in(second_factor=False)
def session_extend():
    """ "Stay signed in": the person answered the warning, so the idle time starts again."""
    sessions.touch(current_session(), force=True)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(_status())
    return redirect(_safe_next())


# The person's own account: sessions, password ------------------------------------------------------------

@bp.route("/account")
@policy.signed_in()
def account():
    # Staff manage passkeys on their security page, where that feature is installed (app/auth/passkey_routes.py).
    security = current_user.is_staff and "auth.security" in current_app.view_functions
    return render_template("auth/account.html", sessions=sessions.live_sessions(current_user),
                           this_session=current_session(), security_url=url_for("auth.security") if security else None)


@bp.route("/account/sessions/<int:session_id>/end", methods=["POST"])
@policy.signed_in()
def end_session(session_id: int):
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != current_user.id:
        policy.deny("object", subject=("user_session", session_id))
    if row.id == current_session().id:
        flash("That is this session: use Sign out to end it.", "info")
    elif sessions.end(row, "ended_by_user"):
        _audit_ended(1)
        flash("That session has ended.", "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/sessions/end-others", methods=["POST"])
@policy.signed_in()
def end_other_sessions():
    ended = sessions.end_all(current_user, "ended_by_user", keep=current_session())
    _audit_ended(ended)
    flash("Your other sessions have ended." if ended else "You had no other sessions.", "success")
    return redirect(url_for("auth.account"))


def _audit_ended(count: int) -> None:
    from app.audit import services as audit

    audit.record("auth.sessions_ended", subject=("user", current_user.id),
                 detail={"sessions_ended": count, "kept": current_session().id})


@bp.route("/account/password", methods=["GET", "POST"])
@policy.signed_in()
@limiter.limit(policy.STEP_UP_ATTEMPTS, methods=["POST"], key_func=policy.attempts_key,
               deduct_when=policy.attempt_failed, scope="password-change")
def change_password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current.data, form.password.data)
        except accounts.AccountError as exc:
            wrong_password = str(exc) == accounts.WRONG_CURRENT_PASSWORD
            g.attempt_failed = wrong_password  # only guesses count towards the limit
            field = form.current if wrong_password else form.password
            field.errors = [*field.errors, str(exc)]
        else:
            # Every session ended, this one too: this browser carries on in a new one, second factor kept.
            second_factor_at = session.get("mfa_at")
            begin(db.session.get(User, current_user.id))
            if second_factor_at:
                session["mfa_at"] = second_factor_at
            flash("Your password has been changed. Any other device you were signed in on has been signed out.",
                  "success")
            return redirect(url_for("auth.account"))
    return render_template("auth/change_password.html", form=form), 400 if form.errors else 200
