"""Pharmacy pages: the pharmacist's workspace (queue, a prescription and its steps, inventory and the CD
register), the patient's pharmacy and order pages, the prescriber's pharmacy alerts (stock-outs with their
alternatives, queries), the pipeline board with timelines, and the administration of partner pharmacies.
The pharmacy API and the courier webhook are the nested blueprint in api.py."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.patients import services as patients
from app.pharmacy import authenticity, cli, inventory, pipeline, shipping, stockouts, workflow
from app.pharmacy import delivery as _delivery  # noqa: F401  (registers the outbox handler for pharmacy messages)
from app.pharmacy import forms as parse
from app.pharmacy import services as pharmacies
from app.pharmacy.api import api
from app.pharmacy.models import API, PORTAL
from app.pharmacy.settings import setting
from app.prescribing import formulary, states
from app.prescribing import services as prescribing

bp = Blueprint("pharmacy", __name__, template_folder="templates", cli_group=None)
bp.register_blueprint(api)
bp.cli.add_command(cli.pharmacy_group)

S = states.State
CLINIC = (Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
QUEUE_COLUMNS = (
    ("new", "New", (S.SIGNED, S.TRANSMITTED)),
    ("in_progress", "In progress", (S.RECEIVED, S.STOCK_ALLOCATED, S.AWAITING_ORIGINAL, S.CLINICALLY_VERIFIED)),
    ("waiting", "Waiting on the clinic", (S.OUT_OF_STOCK, S.QUERIED)),
    ("ready", "Dispensed, to send", (S.DISPENSED,)),
    ("sent", "On its way", (S.DISPATCHED,)),
)


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


@bp.app_template_global("pharmacy_alert")
def _pharmacy_alert(prescription):
    """For prescribing's pages: the open stock-out or pharmacy query on a prescription (None when there is none)."""
    if prescription is None or prescription.signed_at is None:
        return None
    return stockouts.alert_for_prescription(prescription)


@bp.app_template_global("pharmacy_alerts_for")
def _pharmacy_alerts_for(user):
    return stockouts.alerts_for(user) if user.role is Role.CLINICIAN else []


@bp.app_template_global("tracking_link")
def _tracking_link(carrier: str, number: str):
    return shipping.tracking_link(carrier, number)


# The pharmacist's workspace ---------------------------------------------------------------------

def _my_pharmacy():
    pharmacy = pharmacies.get(current_user.pharmacy_id) if current_user.pharmacy_id else None
    policy.require(pharmacy is not None, subject=("pharmacy", current_user.pharmacy_id))
    return pharmacy


def _held_prescription(prescription_id: int):
    pharmacy = _my_pharmacy()
    prescription = prescribing.get(prescription_id)
    if prescription is None or prescription.signed_at is None:
        abort(404)
    policy.require(workflow.held_by(prescription, pharmacy), subject=("prescription", prescription_id),
                   patient_id=prescription.patient_id)
    return pharmacy, prescription


def _queue_context(pharmacy, page: int = 1):
    """One page of the queue (newest in its state first, so fresh work is on the first page), split into the
    columns; each column's count is the whole queue's."""
    wanted = [s for _key, _label, group in QUEUE_COLUMNS for s in group]
    found = pharmacies.queue_page(pharmacy.id, wanted, page=page)
    columns = []
    for key, label, group in QUEUE_COLUMNS:
        rows = [(p, user) for p, user in found.rows if states.state_of(p) in group]
        columns.append((key, label, rows, sum(found.counts.get(s.value, 0) for s in group)))
    return {"pharmacy": pharmacy, "columns": columns, "poll": int(setting("PHARMACY_QUEUE_POLL_SECONDS")),
            "page": found.page, "pages": found.pages,
            "low": [lv for lv in inventory.levels(pharmacy) if lv.item is not None and lv.low]
            if pharmacy.connection == PORTAL else []}


@bp.route("/pharmacy")
@policy.signed_in(Role.PHARMACIST)
def queue():
    pharmacy = _my_pharmacy()
    context = _queue_context(pharmacy, page=parse.int_or_none(request.args.get("page")) or 1)
    if is_htmx():
        return render_template("pharmacy/_queue.html", **context)
    return render_template("pharmacy/queue.html", **context)


def _prescription_context(pharmacy, prescription, *, errors=None, form=None):
    patient = patients.get(prescription.patient_id)
    return {"pharmacy": pharmacy, "prescription": prescription, "patient": patient, "user": patients.user_of(patient),
            "state": states.state_of(prescription), "report": authenticity.report(prescription),
            "thread": stockouts.thread(prescription), "history": states.history(prescription),
            "held": inventory.allocations_of(prescription), "shipment": shipping.shipment_for(prescription),
            "stock_out": stockouts.latest_stock_out(prescription),
            "carrier_choices": [(c.key, c.name) for c in shipping.CARRIERS.values()],
            "next": states.next_states(prescription, actor_role="pharmacy"), "errors": errors or {},
            "form": form or {}, "products": formulary.products(include_withdrawn=False), "formulary": formulary,
            "levels": {lv.product.id: lv for lv in inventory.levels(pharmacy)} if pharmacy.connection == PORTAL
            else {}, "products_named": stockouts.products_named, "shipping": shipping,
            "prescriber": _user(prescription.prescriber_id)}


def _user(user_id):
    from app.auth.models import User
    from app.extensions import db

    return db.session.get(User, user_id) if user_id else None


@bp.route("/pharmacy/prescriptions/<int:prescription_id>")
@policy.signed_in(Role.PHARMACIST)
def prescription(prescription_id: int):
    pharmacy, found = _held_prescription(prescription_id)
    patients.record_read(patients.get(found.patient_id), section="pharmacy_prescription")
    return render_template("pharmacy/prescription.html", **_prescription_context(pharmacy, found))


ACTIONS = ("receive", "allocate", "out_of_stock", "query", "original", "await_original", "verify", "dispense",
           "dispatch", "delivered", "returned", "failed_attempt", "out_for_delivery", "reject")


@bp.route("/pharmacy/prescriptions/<int:prescription_id>/<action>", methods=["POST"])
@policy.signed_in(Role.PHARMACIST)
def act(prescription_id: int, action: str):
    """One step on a prescription. The form carries the state the pharmacist saw: a step taken on a stale
    page (someone else moved it meanwhile) is refused with what it is now."""
    pharmacy, found = _held_prescription(prescription_id)
    if action not in ACTIONS:
        abort(404)
    seen = request.form.get("seen_state")
    if not seen:
        abort(400)
    if pharmacy.connection != PORTAL:
        flash("Your pharmacy works through its own system (the API): record this step there.", "error")
        return redirect(url_for("pharmacy.prescription", prescription_id=found.id))
    if seen != found.status:
        flash(f"This prescription changed meanwhile: it is now “{states.state_of(found).label}”. Check it and try "
              "again.", "error")
        return redirect(url_for("pharmacy.prescription", prescription_id=found.id))
    form = request.form
    try:
        message = _do(action, pharmacy, found, form)
    except workflow.WorkflowError as exc:
        context = _prescription_context(pharmacy, found, errors=exc.errors or {"form": str(exc)}, form=form)
        context["refusal"] = str(exc)
        return render_template("pharmacy/prescription.html", **context), 409 if exc.status == 409 else 400
    flash(message, "success")
    return redirect(url_for("pharmacy.prescription", prescription_id=found.id))


def _do(action: str, pharmacy, found, form) -> str:
    if action == "receive":
        workflow.receive(found, pharmacy)
        return "Marked as received."
    if action == "allocate":
        workflow.allocate(found, pharmacy, user=current_user)
        return "Stock allocated: the packs are held for this prescription."
    if action == "out_of_stock":
        workflow.out_of_stock(found, pharmacy, products=parse.ints(form.getlist("products")),
                              offered=parse.ints(form.getlist("offered")), note=parse.text(form, "note", 2000))
        return "Reported out of stock. The prescriber has been alerted with your alternatives; the patient is told."
    if action == "query":
        workflow.query(found, pharmacy, parse.text(form, "question"), user=current_user)
        return "Your question was sent to the prescriber. The prescription waits until you go on."
    if action == "original":
        # Not "matches": a form control of that name would hide the form element's own matches() method.
        matches = form.get("paper_matches")
        if matches not in ("yes", "no"):
            raise workflow.WorkflowError("Say whether the paper original matches.", status=400,
                                         errors={"paper_matches": "Choose yes or no"})
        workflow.original_received(found, pharmacy, matches=matches == "yes", note=parse.text(form, "note", 500))
        return "The paper original was recorded." if matches == "yes" else \
            "The prescription was rejected: the paper does not match. The prescriber is told."
    if action == "await_original":
        workflow.await_original(found, pharmacy)
        return "Waiting for the paper original."
    if action == "verify":
        workflow.verify(found, pharmacy)
        return "Clinically verified."
    if action == "dispense":
        workflow.dispense(found, pharmacy, user=current_user)
        return "Dispensed: the controlled-drug register has its entries."
    if action == "dispatch":
        workflow.dispatch(found, pharmacy, carrier=parse.text(form, "carrier", 40),
                          tracking=parse.text(form, "tracking", 60))
        return "Dispatch booked: the patient can follow the parcel."
    if action == "reject":
        workflow.reject(found, pharmacy, parse.text(form, "reason", 2000))
        return "Rejected. The prescriber and the patient are told."
    workflow.delivery_event(found, pharmacy, action, note=parse.text(form, "note", 300))
    return f"Recorded: {shipping.LABELS[action].lower()}."


# Inventory --------------------------------------------------------------------------------------

def _portal_pharmacy():
    pharmacy = _my_pharmacy()
    if pharmacy.connection != PORTAL:
        abort(404)
    return pharmacy


def _inventory_page(pharmacy, *, errors=None, form=None, which=None, status=200):
    levels = inventory.levels(pharmacy)
    products = [("", "Choose a product")] + [(str(p.id), p.name) for p in formulary.products(include_withdrawn=False)]
    batches = [("", "Choose a batch")] + [(str(b.id), f"{lv.product.name} — {b.batch_number} ({b.on_hand} on hand)")
                                          for lv in levels for b in lv.batches]
    return render_template("pharmacy/inventory.html", pharmacy=pharmacy, levels=levels, errors=errors or {},
                           form=form or {}, which=which, formulary=formulary, product_choices=products,
                           batch_choices=batches, today=dt.date.today()), status


@bp.route("/pharmacy/inventory")
@policy.signed_in(Role.PHARMACIST)
def inventory_page():
    return _inventory_page(_portal_pharmacy())


@bp.route("/pharmacy/inventory/<kind>", methods=["POST"])
@policy.signed_in(Role.PHARMACIST)
def inventory_change(kind: str):
    """Goods in, an adjustment with its reason, or a low-stock threshold."""
    pharmacy = _portal_pharmacy()
    form = request.form
    if kind not in ("goods-in", "adjust", "threshold"):
        abort(404)
    try:
        if kind == "goods-in":
            batch = inventory.receive_goods(
                pharmacy, product_id=parse.int_or_none(form.get("product_id")) or 0,
                batch_number=parse.text(form, "batch_number", 60), expires_on=parse.date(form, "expires_on"),
                packs=parse.text(form, "packs", 20), supplier=parse.text(form, "supplier", 300),
                reference=parse.text(form, "reference", 100), user=current_user)
            flash(f"Booked in: batch {batch.batch_number}, now {batch.on_hand} packs.", "success")
        elif kind == "adjust":
            batch = inventory.adjust(pharmacy, batch_id=parse.int_or_none(form.get("batch_id")) or 0,
                                     change=parse.text(form, "change", 20), reason=parse.text(form, "reason", 2000),
                                     user=current_user)
            flash(f"Adjusted: batch {batch.batch_number} now has {batch.on_hand} packs.", "success")
        else:
            inventory.set_threshold(pharmacy, parse.int_or_none(form.get("product_id")) or 0,
                                    parse.text(form, "threshold", 20))
            flash("Low-stock threshold saved.", "success")
    except inventory.InventoryError as exc:
        return _inventory_page(pharmacy, errors=exc.errors or {"form": str(exc)}, form=form, which=kind, status=400)
    return redirect(url_for("pharmacy.inventory_page"))


@bp.route("/pharmacy/inventory/<int:product_id>/register")
@policy.signed_in(Role.PHARMACIST)
def cd_register(product_id: int):
    pharmacy = _my_pharmacy()
    product = formulary.get(product_id)
    if product is None:
        abort(404)
    return render_template("pharmacy/register.html", pharmacy=pharmacy, product=product, formulary=formulary,
                           entries=inventory.register(pharmacy.id, product.id),
                           level=inventory.level(pharmacy.id, product.id))


# The patient's pages ----------------------------------------------------------------------------

def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


@bp.route("/my/pharmacy", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def my_pharmacy():
    """Choose or change the pharmacy prescriptions go to; a new one needs the data-sharing consent first."""
    patient = _own_patient()
    error = None
    if request.method == "POST":
        chosen = parse.int_or_none(request.form.get("pharmacy_id"))
        if chosen is None:
            error = "Choose a pharmacy."
        else:
            try:
                nomination = pharmacies.nominate(patient, chosen)
            except pharmacies.PharmacyError as exc:
                error = str(exc)
            else:
                if nomination.needs_consent:
                    flash(f"Before {nomination.pharmacy.name} can receive your prescriptions, read and agree to "
                          "sharing them.", "info")
                    return redirect(url_for("consent.index", next=url_for("pharmacy.my_pharmacy")))
                flash(f"Your prescriptions will go to {nomination.pharmacy.name}.", "success")
                return redirect(url_for("pharmacy.my_pharmacy"))
    current = pharmacies.get(patient.pharmacy_id) if patient.pharmacy_id else None
    return render_template("pharmacy/my_pharmacy.html", patient=patient, current=current,
                           choices=pharmacies.active_pharmacies(), error=error,
                           consented=bool(current) and pharmacies.patient_may_share_with(patient, current.id)), \
        400 if error else 200


ORDER_STEPS = (
    ("issued", "Prescription issued", (S.SIGNED,)),
    ("pharmacy", "With the pharmacy", (S.TRANSMITTED, S.RECEIVED, S.OUT_OF_STOCK, S.QUERIED, S.AWAITING_ORIGINAL)),
    ("preparing", "Being prepared", (S.STOCK_ALLOCATED, S.CLINICALLY_VERIFIED)),
    ("dispensed", "Dispensed", (S.DISPENSED,)),
    ("on_its_way", "On its way", (S.DISPATCHED,)),
    ("delivered", "Delivered", (S.DELIVERED,)),
)


def order_steps(prescription) -> list[tuple[str, str, str]]:
    """(key, label, done | current | to do) for the patient's order page."""
    state = states.state_of(prescription)
    index = next((i for i, (_k, _l, group) in enumerate(ORDER_STEPS) if state in group), None)
    if index is None:  # an end: what happened is said above the steps
        reached = {t.to_state for t in states.history(prescription)}
        index = max((i for i, (_k, _l, group) in enumerate(ORDER_STEPS) if reached & {s.value for s in group}),
                    default=0)
        return [(k, lbl, "done" if i <= index else "stopped") for i, (k, lbl, _g) in enumerate(ORDER_STEPS)]
    return [(k, lbl, "done" if i < index or state is S.DELIVERED else "current" if i == index else "todo")
            for i, (k, lbl, _g) in enumerate(ORDER_STEPS)]


@bp.route("/my/orders/<int:prescription_id>")
@policy.signed_in(Role.PATIENT)
def my_order(prescription_id: int):
    patient = _own_patient()
    found = prescribing.get(prescription_id)
    if found is None or found.signed_at is None:
        abort(404)
    policy.require(found.patient_id == patient.id, subject=("prescription", prescription_id),
                   patient_id=found.patient_id)
    shipment = shipping.shipment_for(found)
    stock_out = stockouts.open_stock_out(found)
    replacement = _replacement(found)
    return render_template("pharmacy/my_order.html", prescription=found, state=states.state_of(found),
                           steps=order_steps(found), shipment=shipment,
                           events=shipping.events_of(shipment) if shipment else [], shipping=shipping,
                           pharmacy=pharmacies.get(found.pharmacy_id) if found.pharmacy_id else None,
                           stock_out=stock_out, missing=stockouts.products_named(stock_out.products) if stock_out
                           else [], replacement=replacement,
                           link=shipping.tracking_link(shipment.carrier, shipment.tracking_number) if shipment
                           else None)


def _replacement(prescription):
    return next((p for p in prescribing.prescriptions_for_patient(patients.get(prescription.patient_id))
                 if p.supersedes_id == prescription.id and p.signed_at is not None), None)


# The clinic's side: alerts, alternatives, redirecting, the thread --------------------------------

def _clinic_prescription(prescription_id: int):
    found = prescribing.get(prescription_id)
    if found is None or found.signed_at is None:
        abort(404)
    policy.require(prescribing.can_view_prescription(current_user, found), subject=("prescription", prescription_id),
                   patient_id=found.patient_id)
    return found


@bp.route("/pharmacy/alerts")
@policy.staff(Role.CLINICIAN)
def alerts():
    return render_template("pharmacy/alerts.html", alerts=stockouts.alerts_for(current_user))


def _clinic_context(found, *, errors=None, form=None):
    patient = patients.get(found.patient_id)
    draft = prescribing.draft_for(patient, current_user) if current_user.role is Role.CLINICIAN else None
    return {"prescription": found, "patient": patient, "user": patients.user_of(patient),
            "state": states.state_of(found), "pharmacy": pharmacies.get(found.pharmacy_id) if found.pharmacy_id
            else None, "stock_out": stockouts.open_stock_out(found), "shortages": stockouts.shortages(found)
            if stockouts.open_stock_out(found) else [], "elsewhere": stockouts.pharmacies_with_stock(found)
            if stockouts.open_stock_out(found) else [], "thread": stockouts.thread(found),
            "shipment": shipping.shipment_for(found), "shipping": shipping, "errors": errors or {},
            "form": form or {}, "may_act": stockouts.may_act(current_user, found),
            "draft": draft if draft is not None and draft.supersedes_id == found.id else None,
            "products_named": stockouts.products_named}


@bp.route("/prescriptions/<int:prescription_id>/pharmacy")
@policy.staff(*CLINIC)
def clinic_view(prescription_id: int):
    found = _clinic_prescription(prescription_id)
    return render_template("pharmacy/clinic_view.html", **_clinic_context(found))


@bp.route("/prescriptions/<int:prescription_id>/pharmacy/replace", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def replace(prescription_id: int):
    """Click one of two: the superseding draft with the chosen alternative; the signing page (click two) follows."""
    found = _clinic_prescription(prescription_id)
    policy.require(stockouts.may_act(current_user, found), subject=("prescription", prescription_id),
                   patient_id=found.patient_id)
    line, product_id = parse.int_or_none(request.form.get("line")), parse.int_or_none(request.form.get("product_id"))
    if line is None or product_id is None:
        abort(400)
    try:
        draft = stockouts.supersede_with(found, current_user, {line: product_id})
    except stockouts.StockOutError as exc:
        flash(str(exc), "error")
        return redirect(url_for("pharmacy.clinic_view", prescription_id=found.id))
    return redirect(url_for("prescribing.sign_confirm", prescription_id=draft.id))


@bp.route("/prescriptions/<int:prescription_id>/pharmacy/redirect", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def redirect_to(prescription_id: int):
    found = _clinic_prescription(prescription_id)
    policy.require(stockouts.may_act(current_user, found), subject=("prescription", prescription_id),
                   patient_id=found.patient_id)
    target = parse.int_or_none(request.form.get("pharmacy_id"))
    if target is None:
        abort(400)
    try:
        draft = stockouts.redirect(found, current_user, target)
    except stockouts.StockOutError as exc:
        flash(str(exc), "error")
        return redirect(url_for("pharmacy.clinic_view", prescription_id=found.id))
    return redirect(url_for("prescribing.sign_confirm", prescription_id=draft.id))


@bp.route("/prescriptions/<int:prescription_id>/pharmacy/messages", methods=["POST"])
@policy.staff(*CLINIC)
def clinic_message(prescription_id: int):
    """An answer to the pharmacy's query, or a note for the pharmacist."""
    found = _clinic_prescription(prescription_id)
    kind = request.form.get("kind")
    if kind not in ("answer", "note"):
        abort(400)
    try:
        stockouts.add_message(found, kind, "clinic", parse.text(request.form, "body"), user=current_user)
    except stockouts.StockOutError as exc:
        context = _clinic_context(found, errors={"body": str(exc)}, form=request.form)
        return render_template("pharmacy/clinic_view.html", **context), 400
    flash("Sent to the pharmacy.", "success")
    return redirect(url_for("pharmacy.clinic_view", prescription_id=found.id, _anchor="thread"))


# The pipeline board -----------------------------------------------------------------------------

@bp.route("/pipeline")
@policy.staff(Role.RECEPTION, Role.ADMIN)
def pipeline_board():
    args = request.args
    filters = pipeline.Filters(state=args.get("state") or None, pharmacy_id=parse.int_or_none(args.get("pharmacy")),
                               stuck_only=args.get("stuck") == "1")
    context = {"rows": pipeline.rows(filters), "filters": filters, "dead": pipeline.dead_letters(),
               "pharmacies": pharmacies.all_pharmacies(), "states": pipeline.BOARD_STATES,
               "levels": pipeline.Levels.configured(), "humanise": pipeline.humanise,
               "poll": int(setting("PHARMACY_QUEUE_POLL_SECONDS"))}
    if is_htmx():
        return render_template("pharmacy/_board.html", **context)
    return render_template("pharmacy/pipeline.html", **context)


@bp.route("/pipeline/<int:prescription_id>")
@policy.staff(Role.RECEPTION, Role.ADMIN)
def timeline(prescription_id: int):
    found = _clinic_prescription(prescription_id)
    patient = patients.get(found.patient_id)
    patients.record_read(patient, section="prescription_timeline")
    return render_template("pharmacy/timeline.html", prescription=found, user=patients.user_of(patient),
                           state=states.state_of(found), entries=pipeline.timeline(found),
                           pharmacy=pharmacies.get(found.pharmacy_id) if found.pharmacy_id else None,
                           shipment=shipping.shipment_for(found), shipping=shipping)


@bp.route("/pipeline/dead-letters/<int:message_id>/retry", methods=["POST"])
@policy.staff(Role.ADMIN)
def retry_dead_letter(message_id: int):
    try:
        pipeline.retry_dead_letter(message_id)
    except ValueError as exc:
        flash(str(exc), "error")
    else:
        flash("The message will be delivered again now.", "success")
    return redirect(url_for("pharmacy.pipeline_board"))


# Partner pharmacies (administration) ------------------------------------------------------------

@bp.route("/admin/pharmacies")
@policy.staff(Role.ADMIN)
def admin_list():
    return render_template("pharmacy/admin_list.html", rows=pharmacies.all_pharmacies())


@bp.route("/admin/pharmacies/new", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def admin_new():
    errors, values = {}, {"connection": PORTAL}
    if request.method == "POST":
        values = parse.pharmacy_values(request.form)
        try:
            pharmacy = pharmacies.register_partner(values)
        except pharmacies.PharmacyError as exc:
            errors = exc.errors or {"form": str(exc)}
        else:
            flash(f"{pharmacy.name} is now a partner pharmacy.", "success")
            return redirect(url_for("pharmacy.admin_edit", pharmacy_id=pharmacy.id))
    return render_template("pharmacy/admin_form.html", pharmacy=None, values=values, errors=errors), \
        400 if errors else 200


def _admin_pharmacy(pharmacy_id: int):
    pharmacy = pharmacies.get(pharmacy_id)
    if pharmacy is None:
        abort(404)
    return pharmacy


def _admin_page(pharmacy, *, values=None, errors=None, issued=None, secret=None, status=200):
    values = values or {name: getattr(pharmacy, name) or "" for name in parse.PHARMACY_FIELDS}
    return render_template("pharmacy/admin_form.html", pharmacy=pharmacy, values=values, errors=errors or {},
                           keys=pharmacies.api_keys(pharmacy), issued=issued, secret=secret, API=API,
                           has_secret=pharmacy.webhook_secret_enc is not None), status


@bp.route("/admin/pharmacies/<int:pharmacy_id>", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def admin_edit(pharmacy_id: int):
    pharmacy = _admin_pharmacy(pharmacy_id)
    if request.method == "POST":
        values = parse.pharmacy_values(request.form)
        try:
            pharmacies.update(pharmacy, values)
        except pharmacies.PharmacyError as exc:
            return _admin_page(pharmacy, values=values, errors=exc.errors or {"form": str(exc)}, status=400)
        flash("Saved.", "success")
        return redirect(url_for("pharmacy.admin_edit", pharmacy_id=pharmacy.id))
    return _admin_page(pharmacy)


@bp.route("/admin/pharmacies/<int:pharmacy_id>/credentials", methods=["POST"])
@policy.staff(Role.ADMIN, step_up=True)
def admin_credentials(pharmacy_id: int):
    """Issue an API key (the previous one keeps working for the overlap), revoke one, or a new signing secret.
    Secrets are shown once, on this answer, and never again."""
    pharmacy = _admin_pharmacy(pharmacy_id)
    what = request.form.get("what")
    if what == "issue_key":
        return _admin_page(pharmacy, issued=pharmacies.issue_api_key(pharmacy).key)
    if what == "rotate_secret":
        return _admin_page(pharmacy, secret=pharmacies.rotate_signing_secret(pharmacy))
    if what == "revoke_key":
        key_id = parse.int_or_none(request.form.get("key_id"))
        if key_id is not None:
            try:
                pharmacies.revoke_api_key(pharmacy, key_id)
            except pharmacies.PharmacyError as exc:
                flash(str(exc), "error")
            else:
                flash("The key was revoked: requests with it are refused from now.", "success")
            return redirect(url_for("pharmacy.admin_edit", pharmacy_id=pharmacy.id))
    abort(400)
