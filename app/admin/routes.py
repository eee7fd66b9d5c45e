"""Staff accounts, managed by admins. Changing a role or disabling needs a fresh second factor."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from app import policy
from app.admin.forms import ActiveForm, ResetDecisionForm, ResetRequestForm, RoleForm, StaffUserForm
from app.auth import services as accounts
from app.auth.models import Role, SecondFactorReset, User
from app.extensions import db
from app.pharmacy import services as pharmacies

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")


def _pharmacy_choices() -> list[SelectChoice]:
    return [SelectChoice(0, "Not a pharmacist")] + [SelectChoice(p.id, p.name) for p in pharmacies.active_pharmacies()]


def _staff_member(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or not user.is_staff:
        abort(404)
    return user


@bp.route("/users")
@policy.staff(Role.ADMIN)
def users():
    waiting = sum(1 for reset in accounts.second_factor_resets() if reset.status == "pending")
    return render_template("admin/users.html", users=accounts.staff_users(), resets_waiting=waiting)


@bp.route("/users/new", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def new_user():
    form = StaffUserForm()
    form.pharmacy_id.choices = _pharmacy_choices()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(email=form.email.data, password=form.password.data,
                                        full_name=form.full_name.data, role=Role(form.role.data),
                                        pharmacy_id=form.pharmacy_id.data or None)
        except accounts.AccountError as exc:
            form.email.errors.append(str(exc))
        else:
            flash(f"Account created. {user.full_name} will set up two-factor authentication at first sign-in.",
                  "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/new_user.html", form=form), 400 if form.errors else 200


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def edit_user(user_id: int):
    user = _staff_member(user_id)
    role_form = RoleForm(obj=None, prefix="role", role=user.role.value, pharmacy_id=user.pharmacy_id or 0)
    role_form.pharmacy_id.choices = _pharmacy_choices()
    active_form = ActiveForm(prefix="active")
    if role_form.save_role.data and role_form.validate_on_submit():
        if user.id == current_user.id:
            flash("You cannot change your own role. Ask another admin.", "error")
        else:
            try:
                accounts.change_role(user, Role(role_form.role.data), pharmacy_id=role_form.pharmacy_id.data or None)
            except accounts.AccountError as exc:
                role_form.role.errors.append(str(exc))
            else:
                flash("Role changed. Their open sessions have ended.", "success")
                return redirect(url_for("admin.edit_user", user_id=user.id))
    elif active_form.toggle.data and active_form.validate_on_submit():
        if user.id == current_user.id:
            flash("You cannot disable your own account.", "error")
        else:
            accounts.set_active(user, not user.active)
            flash("Account enabled." if user.active else "Account disabled. Their open sessions have ended.",
                  "success")
            return redirect(url_for("admin.edit_user", user_id=user.id))
    status = 400 if role_form.errors else 200
    return render_template("admin/edit_user.html", user=user, role_form=role_form, active_form=active_form,
                           pending_reset=accounts.pending_reset_for(user)), status


# Second-factor resets: one admin asks, another approves (app/auth/services.py) --------------------------

def _reset(reset_id: int) -> SecondFactorReset:
    reset = accounts.second_factor_reset(reset_id)
    if reset is None:
        abort(404)
    return reset


@bp.route("/second-factor-resets")
@policy.staff(Role.ADMIN)
def second_factor_resets():
    return render_template("admin/second_factor_resets.html", resets=accounts.second_factor_resets())


@bp.route("/users/<int:user_id>/second-factor-reset", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def request_second_factor_reset(user_id: int):
    user = _staff_member(user_id)
    form = ResetRequestForm()
    pending = accounts.pending_reset_for(user)
    if pending is None and form.validate_on_submit():
        try:
            reset = accounts.request_second_factor_reset(user, by=current_user, reason=form.reason.data)
        except accounts.AccountError as exc:
            form.reason.errors.append(str(exc))
        else:
            flash("Reset requested. Another admin must approve it within 24 hours; until then nothing changes.",
                  "success")
            return redirect(url_for("admin.second_factor_reset", reset_id=reset.id))
    status = 400 if form.errors else (409 if pending is not None and request.method == "POST" else 200)
    return render_template("admin/request_second_factor_reset.html", user=user, form=form, pending=pending), status


@bp.route("/second-factor-resets/<int:reset_id>", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def second_factor_reset(reset_id: int):
    reset = _reset(reset_id)
    form = ResetDecisionForm()
    error, status = None, 200
    if form.validate_on_submit():
        try:
            if form.approve.data:
                accounts.approve_second_factor_reset(reset, by=current_user)
                flash(f"Approved. {reset.user.full_name}'s second factor is cleared and their sessions have ended: "
                      "they will set it up again when they next sign in.", "success")
            elif form.decline.data:
                accounts.decline_second_factor_reset(reset, by=current_user, note=form.note.data or "")
                flash("Declined. Nothing about their account has changed.", "success")
            else:
                raise accounts.AccountError("Choose Approve or Decline.")
        except accounts.ResetRefused as exc:
            error, status = str(exc), exc.status
        except accounts.AccountError as exc:
            error, status = str(exc), 400
        else:
            return redirect(url_for("admin.second_factor_reset", reset_id=reset.id))
    elif form.errors:
        status = 400
    return render_template("admin/second_factor_reset.html", reset=reset, form=form, error=error,
                           refusal=accounts.reset_refusal(reset, current_user)), status
