"""The admin's audit view: filter by person, patient, action and date; page with htmx."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from wtforms.fields.choices import SelectChoice

from app import policy
from app.audit import checkpoints  # noqa: F401  (registers the worker's checkpoint job)
from app.audit import services as audit
from app.audit.forms import AuditFilterForm
from app.auth import services as accounts
from app.auth.models import Role

bp = Blueprint("audit", __name__, url_prefix="/admin/audit", template_folder="templates")
PAGE = 50


@bp.route("")
@policy.staff(Role.ADMIN)
def index():
    form = AuditFilterForm(request.args)
    form.action.choices = [SelectChoice("", "Any action")] + [SelectChoice(a, a) for a in audit.actions()]
    filters = audit.AuditFilter()
    unknown_person = False
    if form.validate():
        if form.person.data:
            person = accounts.find_by_email(form.person.data)
            unknown_person = person is None
            filters.actor_id = person.id if person else -1
        filters.patient_id = form.patient.data
        filters.action = form.action.data or None
        filters.date_from, filters.date_to = form.date_from.data, form.date_to.data
    entries = audit.search(filters, before_seq=form.before.data, limit=PAGE + 1)
    more, entries = len(entries) > PAGE, entries[:PAGE]
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    context = dict(form=form, entries=entries, more=more, args=args, unknown_person=unknown_person)
    if request.headers.get("HX-Request") and form.before.data:
        return render_template("audit/_rows.html", **context)
    return render_template("audit/index.html", **context), 200 if not form.errors else 400
