"""Staff accounts, managed by admins. Changing a role or disabling needs a fresh second factor."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from app import policy
from app.admin.forms import ActiveForm, RoleForm, StaffUserForm
from app.auth import services as accounts
from app.auth.models import Role, User
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
    return render_template("admin/users.html", users=accounts.staff_users())


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
    return render_template("admin/edit_user.html", user=user, role_form=role_form, active_form=active_form), status
