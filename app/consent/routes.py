"""Consent pages: the patient reads and agrees (or withdraws); admins publish new versions."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.consent import services as consents
from app.consent.forms import PublishForm
from app.patients import services as patients

bp = Blueprint("consent", __name__, template_folder="templates", cli_group="consent")


@bp.cli.command("load-defaults", help="Publish version 1 of each consent text that has none (idempotent).")
def load_defaults_command() -> None:
    import click

    created = consents.load_defaults()
    click.echo(f"Published {len(created)} consent document(s).")


def _patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _next_or(default: str) -> str:
    target = request.values.get("next") or ""
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and not parts.netloc:
        return target
    return url_for(default)


@bp.route("/consents", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def index():
    patient = _patient()
    error = None
    if request.method == "POST":
        chosen = [int(v) for v in request.form.getlist("document") if v.isdigit()]
        if not chosen:
            error = "Tick the box for each document you agree to."
        else:
            try:
                consents.accept(patient, chosen)
            except consents.ConsentError as exc:
                error = str(exc)
            else:
                left = consents.outstanding(patient)
                if not left:
                    flash("Thank you. Your choices are saved; you can change them here at any time.", "success")
                    return redirect(_next_or("patients.dashboard"))
                flash("Saved. There is still something to agree to below.", "info")
                return redirect(url_for("consent.index", next=request.values.get("next")))
    return render_template("consent/index.html", statuses=consents.statuses(patient),
                           history=consents.history(patient), error=error,
                           next=request.values.get("next")), 400 if error else 200


@bp.route("/consents/<int:document_id>/withdraw", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def withdraw(document_id: int):
    patient = _patient()
    try:
        consents.withdraw(patient, document_id)
    except consents.ConsentError as exc:
        flash(str(exc), "error")
        return redirect(url_for("consent.index"))
    flash("Your consent is withdrawn. The clinic has been told, and will contact you about what this means for "
          "your care.", "success")
    return redirect(url_for("consent.index"))


@bp.route("/admin/consents", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def manage():
    form = PublishForm()
    if form.validate_on_submit():
        try:
            document = consents.publish(form.kind.data, form.title.data, form.body.data)
        except consents.ConsentError as exc:
            form.body.errors.append(str(exc))
        else:
            flash(f"Published version {document.version}. Patients will be asked to agree at their next sign-in.",
                  "success")
            return redirect(url_for("consent.manage"))
    return render_template("consent/manage.html", form=form, documents=consents.published()), \
        400 if form.errors else 200
