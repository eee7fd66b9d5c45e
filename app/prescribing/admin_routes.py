"""Administration: the formulary (pages and CSV import), the prescribers' details; the prescriber's search."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.extensions import db
from app.patients import services as patients
from app.prescribing import forms as parse
from app.prescribing import formulary, plans, prescribers
from app.prescribing.routes import bp, is_htmx

MAX_CSV_BYTES = 1024 * 1024


@bp.route("/formulary")
@policy.staff(Role.ADMIN)
def formulary_index():
    return render_template("prescribing/formulary.html", products=formulary.products(), formulary=formulary)


def _product_form(product=None):
    errors: dict[str, str] = {}
    values = {key: request.form.get(key, "") for key in parse.PRODUCT_FIELDS}
    values["unlicensed"] = "unlicensed" in request.form
    values["active"] = True if product is None else product.active
    try:
        if product is None:
            product = formulary.create(values)
            flash(f"{product.name} was added to the formulary.", "success")
        else:
            formulary.update(product, values)
            flash(f"{product.name} was updated.", "success")
    except formulary.ProductError as exc:
        errors = exc.errors
    return product, values, errors


def _choices() -> dict:
    return {"form_options": [("", "Choose a form")] + [(key, f.label) for key, f in formulary.FORMS.items()],
            "schedule_options": [(s, f"Schedule {s}") for s in formulary.SCHEDULES]}


@bp.route("/formulary/new", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def formulary_new():
    values: dict = {"schedule": "2", "unlicensed": True}
    errors: dict[str, str] = {}
    if request.method == "POST":
        _, values, errors = _product_form()
        if not errors:
            return redirect(url_for("prescribing.formulary_index"))
    return render_template("prescribing/product_form.html", product=None, values=values, errors=errors,
                           **_choices()), 400 if errors else 200


@bp.route("/formulary/<int:product_id>/edit", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def formulary_edit(product_id: int):
    product = formulary.get(product_id)
    if product is None:
        abort(404)
    errors: dict[str, str] = {}
    values = {"name": product.name, "manufacturer": product.manufacturer, "form": product.form,
              "thc": format(product.thc.normalize(), "f"), "cbd": format(product.cbd.normalize(), "f"),
              "pack_size": format(product.pack_size.normalize(), "f"), "dmd_code": product.dmd_code or "",
              "schedule": product.schedule, "unlicensed": product.unlicensed,
              "price": f"{product.price_pence / 100:.2f}"}
    if request.method == "POST":
        _, values, errors = _product_form(product)
        if not errors:
            return redirect(url_for("prescribing.formulary_index"))
    return render_template("prescribing/product_form.html", product=product, values=values, errors=errors,
                           **_choices()), 400 if errors else 200


@bp.route("/formulary/<int:product_id>/status", methods=["POST"])
@policy.staff(Role.ADMIN)
def formulary_set_status(product_id: int):
    product = formulary.get(product_id)
    if product is None:
        abort(404)
    action = request.form.get("action")
    if action not in ("withdraw", "reinstate"):
        abort(400)
    formulary.set_active(product, action == "reinstate")
    flash(f"{product.name} was {'reinstated' if action == 'reinstate' else 'withdrawn'}.", "success")
    return redirect(url_for("prescribing.formulary_index"))


@bp.route("/formulary/import", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def formulary_import():
    result = None
    status = 200
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            result = formulary.ImportResult(errors=[(0, "Choose a CSV file to import.")])
        else:
            data = upload.read(MAX_CSV_BYTES + 1)
            if len(data) > MAX_CSV_BYTES:
                result = formulary.ImportResult(errors=[(0, "The file is larger than 1 MB: split it.")])
            else:
                result = formulary.import_csv(data)
        if result.ok:
            flash(f"Imported the formulary: {result.created} new, {result.updated} updated.", "success")
            return redirect(url_for("prescribing.formulary_index"))
        status = 400
    return render_template("prescribing/formulary_import.html", result=result, required=formulary.CSV_REQUIRED,
                           optional=formulary.CSV_OPTIONAL, forms=formulary.FORMS), status


@bp.route("/formulary/search")
@policy.staff(Role.CLINICIAN, Role.ADMIN)
def formulary_search():
    """The prescriber's search (consultation side panel): name, form, THC/CBD range, stock at the pharmacy."""
    args = request.args
    filters = formulary.Search(term=args.get("q", "")[:100], form=args.get("form") or None,
                               thc_min=parse.decimal(args.get("thc_min")), thc_max=parse.decimal(args.get("thc_max")),
                               cbd_min=parse.decimal(args.get("cbd_min")), cbd_max=parse.decimal(args.get("cbd_max")))
    patient = None
    patient_id = parse.int_or_none(args.get("patient_id"))
    if patient_id is not None:
        patient = patients.get(patient_id)
        if patient is None:
            abort(404)
        policy.require(policy.can_view_patient(current_user, patient), subject=("patient", patient_id),
                       patient_id=patient_id)
    results = formulary.search(filters)
    stock = formulary.stock_for(patient.pharmacy_id if patient else None, [p.id for p in results])
    version = plans.current(patient) if patient else None
    allowed = plans.allowances(version) if version else {}
    context = {"results": results, "stock": stock, "patient": patient, "allowed": allowed, "filters": filters,
               "formulary": formulary, "forms": formulary.FORMS}
    if is_htmx():
        return render_template("prescribing/_search_results.html", **context)
    return render_template("prescribing/search.html", **context)


@bp.route("/prescribers")
@policy.staff(Role.ADMIN)
def prescribers_index():
    return render_template("prescribing/prescribers.html", rows=prescribers.clinicians())


@bp.route("/prescribers/<int:user_id>", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def prescriber_edit(user_id: int):
    from app.auth.models import User

    user = db.session.get(User, user_id)
    if user is None or user.role is not Role.CLINICIAN:
        abort(404)
    profile = prescribers.get(user)
    values = {"gmc_number": profile.gmc_number if profile else "",
              "cd_prescriber_code": profile.cd_prescriber_code if profile else "",
              "specialist": profile.specialist if profile else False}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {"gmc_number": parse.text(request.form, "gmc_number", 20),
                  "cd_prescriber_code": parse.text(request.form, "cd_prescriber_code", 20),
                  "specialist": "specialist" in request.form}
        try:
            prescribers.save(user, **values)
        except prescribers.PrescriberError as exc:
            errors = exc.errors
        else:
            flash(f"Prescribing details saved for {user.full_name}.", "success")
            return redirect(url_for("prescribing.prescribers_index"))
    return render_template("prescribing/prescriber_form.html", user=user, values=values,
                           errors=errors), 400 if errors else 200
