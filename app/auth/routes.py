"""Sign-in, registration, and the second factor."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from app import policy
from app.auth import services as accounts
from app.auth.forms import CodeForm, LoginForm, RecoveryForm, RegisterForm
from app.auth.models import Role
from app.extensions import limiter
from app.patients import services as patients

bp = Blueprint("auth", __name__, template_folder="templates")


def _safe_next(default: str = "core.home") -> str:
    """Only same-site paths: an open redirect after login is a phishing tool."""
    target = request.values.get("next") or ""
    parts = urlsplit(target)
    # Browsers read "/\\host" as "//host": refuse backslashes and control characters outright.
    unsafe = "\\" in target or any(ord(c) < 32 for c in target)
    if target.startswith("/") and not target.startswith("//") and not unsafe and not parts.scheme and not parts.netloc:
        return target
    return url_for(default)


def _login_email_key() -> str:
    return "login:" + accounts.normalise_email(request.form.get("email", ""))[:254]


def _start_session(user) -> None:
    from app.auth.session_routes import begin

    begin(user)  # a fresh session and a new server-side session token: nothing carried over from before


@bp.route("/login", methods=["GET", "POST"])
@policy.public
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"],
               deduct_when=policy.attempt_failed, scope="login-address")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"], key_func=_login_email_key,
               deduct_when=policy.attempt_failed, scope="login-account")
def login():
    if current_user.is_authenticated and (
            policy.second_factor_passed() or not policy.needs_second_factor(current_user)):
        return redirect(_safe_next())
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        result = accounts.authenticate(form.email.data, form.password.data)
        if result.user is None:
            g.attempt_failed = True
            error = ("This account has been disabled. Contact the clinic." if result.reason == "disabled"
                     else "The email address or password is not right. Check them and try again.")
        else:
            user = result.user
            _start_session(user)
            if not policy.needs_second_factor(user):
                accounts.record_login(user, second_factor=None)
                return _after_sign_in(user)
            if not user.has_totp:
                flash("Staff accounts need two-factor authentication. Set it up now: it takes a minute.", "info")
                return redirect(url_for("auth.totp_setup"))
            return redirect(url_for("auth.two_factor", next=_safe_next()))
    status = 401 if error else (400 if form.errors else 200)
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
@policy.signed_in(second_factor=False)
def logout():
    accounts.record_logout(current_user)
    logout_user()
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
@policy.public
@limiter.limit("20 per hour", methods=["POST"], scope="register")
def register():
    if current_user.is_authenticated:
        return redirect(url_for("core.home"))
    form = RegisterForm()
    if form.validate_on_submit():
        born = form.date_of_birth()
        if born is None:
            form.dob_day.errors.append("Date of birth must be a real date")
        else:
            try:
                patient = patients.register(email=form.email.data, password=form.password.data,
                                            full_name=form.full_name.data, date_of_birth=born)
            except patients.RegistrationError as exc:
                field = form.dob_day if exc.field == "date_of_birth" else getattr(form, exc.field or "email")
                field.errors = [*field.errors, str(exc)]
            else:
                user = patients.user_of(patient)
                _start_session(user)
                accounts.record_login(user, second_factor=None)
                flash("Your account is ready. Start with the first step below.", "success")
                return redirect(url_for("core.home"))
    return render_template("auth/register.html", form=form), 400 if form.errors else 200


@bp.route("/auth/two-factor", methods=["GET", "POST"])
@policy.signed_in(second_factor=False)
@limiter.limit("5 per 5 minutes", methods=["POST"], key_func=policy.attempts_key, deduct_when=policy.attempt_failed,
               scope="second-factor")
def two_factor():
    if not current_user.has_totp:
        return redirect(url_for("auth.totp_setup"))
    form, recovery = CodeForm(prefix="totp"), RecoveryForm(prefix="recovery")
    error, status = None, None
    if request.method == "POST":
        if request.form.get("passkey_assertion"):
            refused = passkey_routes.check_assertion(passkeys.LOGIN)
            if refused is None:
                return _second_factor_passed("passkey")
            error, status = refused
        elif "recovery-recovery_code" in request.form and recovery.validate_on_submit():
            if accounts.use_recovery_code(current_user, recovery.recovery_code.data):
                return _second_factor_passed("recovery code")
            error = "That recovery code is not right or has been used. Each code works once."
        elif form.validate_on_submit():
            if accounts.verify_totp(current_user, form.code.data):
                return _second_factor_passed("totp")
            error = ("That code is not right or has already been used. Wait for the next code in your "
                     "authenticator app and enter it.")
        g.attempt_failed = True
    status = status or (401 if error else (400 if form.errors or recovery.errors else 200))
    # Staff with a passkey are offered it first; the code form stays a link away (and is what a posted code,
    # or ?method=code, comes back to).
    use_passkey = (passkey_routes.offers_passkey() and request.args.get("method") != "code"
                   and (request.method == "GET" or "passkey_assertion" in request.form))
    return render_template("auth/two_factor.html", form=form, recovery=recovery, error=error,
                           use_passkey=use_passkey), status


def _second_factor_passed(method: str):
    policy.second_factor_given()
    accounts.record_login(current_user, second_factor=method)
    if method == "recovery code":
        left = accounts.recovery_codes_left(current_user)
        flash(f"You signed in with a recovery code. You have {left} left.", "warning")
    return _after_sign_in(current_user)


def _after_sign_in(user):
    """Where a completed sign-in goes: a patient first re-reads any consent that has a new version."""
    from app.consent import services as consents

    if user.role is Role.PATIENT:
        patient = patients.for_user(user)
        if patient is not None and consents.needs_reacceptance(patient):
            flash("Some of the documents you agreed to have changed. Please read and agree to the new versions.",
                  "info")
            return redirect(url_for("consent.index", next=_safe_next()))
    return redirect(_safe_next())


@bp.route("/auth/two-factor/setup", methods=["GET", "POST"])
@policy.signed_in(second_factor=False)
@limiter.limit("10 per 5 minutes", methods=["POST"], key_func=policy.attempts_key, deduct_when=policy.attempt_failed,
               scope="totp-setup")
def totp_setup():
    if current_user.has_totp:
        return redirect(url_for("core.home"))
    secret = accounts.begin_totp_enrolment(current_user)
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        codes = accounts.confirm_totp_enrolment(current_user, form.code.data)
        if codes is not None:
            policy.second_factor_given()
            accounts.record_login(current_user, second_factor="totp")
            return render_template("auth/recovery_codes.html", codes=codes)
        g.attempt_failed = True
        error = "That code is not right. Check the time on your phone is set automatically, then try the newest code."
    uri = accounts.provisioning_uri(current_user, secret)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    status = 400 if error or form.errors else 200
    return render_template("auth/totp_setup.html", form=form, error=error, qr=accounts.qr_svg(uri), secret=secret,
                           grouped_secret=grouped), status


@bp.route("/auth/step-up", methods=["GET", "POST"])
@policy.signed_in(second_factor=True)
@limiter.limit(policy.STEP_UP_ATTEMPTS, methods=["POST"], key_func=policy.attempts_key,
               deduct_when=policy.attempt_failed, scope="step-up")
def step_up():
    if not current_user.has_totp:
        return redirect(url_for("auth.totp_setup"))
    form = CodeForm()
    error, status = None, None
    if request.form.get("passkey_assertion"):
        refused = passkey_routes.check_assertion(passkeys.STEP_UP)
        if refused is None:
            policy.second_factor_given()
            return redirect(_safe_next())
        error, status = refused
    elif form.validate_on_submit():
        if accounts.verify_totp(current_user, form.code.data, step_up=True):
            policy.second_factor_given()
            return redirect(_safe_next())
        g.attempt_failed = True
        error = "That code is not right or has already been used. Wait for the next code and try again."
    return render_template("auth/step_up.html", form=form, error=error, passkey=passkey_routes.offers_passkey()), \
        status or (401 if error else 200)


# The passkey and session views join this blueprint (session_routes is imported for that alone).
from app.auth import passkey_routes, passkeys, session_routes  # noqa: E402, F401
