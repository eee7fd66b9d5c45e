"""The front door: home page by role, and the health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify, redirect, render_template, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.extensions import db

bp = Blueprint("core", __name__, template_folder="templates")

HOME_BY_ROLE = {
    Role.PATIENT: "patients.dashboard",
    Role.CLINICIAN: "patients.staff_home",
    Role.RECEPTION: "patients.staff_home",
    Role.PHARMACIST: "pharmacy.queue",
    Role.ADMIN: "admin.users",
}


@bp.route("/")
@policy.public
def home():
    if current_user.is_authenticated:
        return redirect(url_for(HOME_BY_ROLE[current_user.role]))
    return render_template("core/landing.html")


@bp.route("/healthz")
@policy.public
def healthz():
    """Liveness with the database state; 503 when the database does not answer."""
    try:
        db.session.execute(sa.text("SELECT 1"))
        database = {"status": "ok", "engine": db.engine.dialect.name}
        healthy = True
    except sa.exc.SQLAlchemyError:
        db.session.rollback()
        database = {"status": "unavailable", "engine": db.engine.dialect.name}
        healthy = False
    body = {"status": "ok" if healthy else "degraded", "database": database}
    return jsonify(body), 200 if healthy else 503
