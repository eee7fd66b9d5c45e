"""Passkey pages and the JSON halves of the WebAuthn ceremonies (services in app/auth/passkeys.py).

The staff member's security page lists their passkeys, adds one (app/static/js/passkeys.js runs
navigator.credentials.create() between the two JSON requests) and removes one (a form, behind a
step-up). Assertions are not posted here: the page asking for the second factor posts the browser's
answer in its own form as `passkey_assertion` (auth.two_factor, auth.step_up, and prescribing's
signing in the consultation panel), so each counts against that page's attempt limit, as a code does.
"""

from __future__ import annotations

from flask import abort, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth import passkeys
from app.auth.models import STAFF_ROLES
from app.auth.routes import bp
from app.extensions import limiter

STAFF = tuple(STAFF_ROLES)


def _refusal(exc: passkeys.PasskeyError):
    return jsonify(error=str(exc), reason=exc.reason), exc.status


def _needs_fresh_factor():
    """JSON answer for a ceremony that changes the account while the second factor is stale: the script
    sends the person to the step-up page, which brings them back to the security page."""
    return jsonify(error="Confirm it is you first: adding a passkey needs a fresh security check.",
                   location=url_for("auth.step_up", next=url_for("auth.security"))), 401


@bp.route("/account/security")
@policy.staff()
def security():
    rp = passkeys.relying_party()
    return render_template("auth/security.html", passkeys=passkeys.for_user(current_user),
                           limit=passkeys.MAX_PASSKEYS, available=bool(rp.id and rp.origins))


@bp.route("/account/passkeys/options", methods=["POST"])
@policy.staff()
@limiter.limit("20 per 5 minutes", key_func=policy.attempts_key, scope="passkey-options")
def passkey_register_options():
    if not policy.second_factor_fresh():
        return _needs_fresh_factor()
    try:
        options = passkeys.begin_registration(current_user)
    except passkeys.PasskeyError as exc:
        return _refusal(exc)
    return _options(options)


@bp.route("/account/passkeys", methods=["POST"])
@policy.staff()
@limiter.limit("10 per 5 minutes", key_func=policy.attempts_key, deduct_when=policy.attempt_failed,
               scope="passkey-registration")
def passkey_register():
    if not request.is_json:  # the add form posted without its script: nothing to register
        flash("Adding a passkey needs JavaScript in your browser. Turn it on, or use another browser.", "warning")
        return redirect(url_for("auth.security"))
    if not policy.second_factor_fresh():
        return _needs_fresh_factor()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("credential"), (dict, str)):
        g.attempt_failed = True
        return jsonify(error="The passkey response could not be read.", reason="malformed request"), 400
    try:
        passkey = passkeys.finish_registration(current_user, body["credential"], body.get("name"))
    except passkeys.PasskeyError as exc:
        g.attempt_failed = True
        return _refusal(exc)
    flash(f"Passkey “{passkey.name}” added. Next time you sign in, use it instead of a code.", "success")
    return jsonify(ok=True, location=url_for("auth.security")), 201


@bp.route("/account/passkeys/<int:passkey_id>/remove", methods=["POST"])
@policy.staff(step_up=True)
def passkey_remove(passkey_id: int):
    passkey = passkeys.get(current_user, passkey_id)
    if passkey is None:
        abort(404)
    name = passkey.name
    passkeys.remove(current_user, passkey)
    flash(f"Passkey “{name}” removed. Remove it from the device too, in its password or passkey settings.",
          "success")
    return redirect(url_for("auth.security"))


@bp.route("/auth/passkey/options", methods=["POST"])
@policy.signed_in(*STAFF, second_factor=False)
@limiter.limit("20 per 5 minutes", key_func=policy.attempts_key, scope="passkey-options")
def passkey_options():
    """Options for navigator.credentials.get(): at sign-in (after the password) or for a step-up."""
    body = request.get_json(silent=True)
    purpose = body.get("purpose") if isinstance(body, dict) else None
    if purpose == passkeys.STEP_UP and not policy.second_factor_passed():
        purpose = None  # a step-up is for someone already past the second factor
    if purpose not in passkeys.PURPOSES:
        return jsonify(error="Unknown passkey request.", reason="unknown purpose"), 400
    try:
        options = passkeys.begin_authentication(current_user, purpose)
    except passkeys.PasskeyError as exc:
        return _refusal(exc)
    return _options(options)


def _options(text: str):
    """py_webauthn's options_to_json() output as it is (bytes already base64url)."""
    return current_app.response_class(text, mimetype="application/json")


# For the views that take an assertion in their own form -------------------------------------

def offers_passkey() -> bool:
    return current_user.is_authenticated and current_user.is_staff and passkeys.has_passkeys(current_user)


def check_assertion(purpose: str) -> tuple[str, int] | None:
    """The posted `passkey_assertion` checked for `purpose`: None when accepted, else (message, status).
    A refusal counts against the view's attempt limit."""
    try:
        passkeys.finish_authentication(current_user, request.form.get("passkey_assertion", ""), purpose)
    except passkeys.PasskeyError as exc:
        g.attempt_failed = True
        unreadable = exc.reason.startswith("malformed") or exc.reason == "response too large"
        return str(exc), 400 if unreadable else 401
    return None
