"""Billing pages: the patient's payments and invoices, the sandbox checkout, the provider's webhook, reception's
day sheet and patient accounts, the administrator's price list and reports."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy, security
from app.auth.models import Role
from app.billing import forms, money, provider, reports, services, settings
from app.billing.models import KINDS, METHODS, STAFF_METHODS, Invoice
from app.billing.services import BillingError
from app.extensions import csrf
from app.patients import services as patients

bp = Blueprint("billing", __name__, url_prefix="/billing", template_folder="templates")

FRONT_DESK = (Role.RECEPTION, Role.ADMIN)


@bp.record_once
def _check_configuration(state) -> None:
    """Refuse to start with billing settings that cannot work (an unknown policy, a provider without its secret)."""
    with state.app.app_context():
        settings.charge_at()
        settings.payment_policy()
        settings.vat_rates()
        settings.default_vat()
        provider.check_configuration()


@bp.app_template_filter("money")
def _money(value: int | None, sign: bool = False) -> str:
    return money.format_pence(value, sign=sign)


@bp.context_processor
def _helpers() -> dict:
    return {"methods": METHODS, "vat_label": settings.vat_label, "position": services.position,
            "zone": services.clinic_zone()}


# Helpers ---------------------------------------------------------------------------------------

def own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def invoice_or_404(invoice_id: int) -> Invoice:
    invoice = services.get_invoice(invoice_id)
    if invoice is None:
        abort(404)
    if current_user.role is Role.PATIENT:
        mine = patients.for_user(current_user)
        policy.require(mine is not None and mine.id == invoice.patient_id, subject=("invoice", invoice_id),
                       patient_id=invoice.patient_id)
    return invoice


def patient_or_404(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    return patient


def with_pay_csp(response: Response) -> Response:
    """A page whose Pay form ends in a redirect to the provider's checkout: let the form go there (CSP form-action
    covers redirects after a form is sent)."""
    origin = provider.origin()
    if origin:
        response.headers["Content-Security-Policy"] = security.CSP.replace("form-action 'self'",
                                                                           f"form-action 'self' {origin}")
    return response


def refuse(exc: BillingError, back: str) -> Response:
    flash(str(exc), "error")
    return redirect(back)


# The patient's side ---------------------------------------------------------------------------------

@bp.route("")
@policy.signed_in(Role.PATIENT)
def mine():
    patient = own_patient()
    pay_before = settings.payment_policy() == settings.PAY_BEFORE
    from app.scheduling.services import settings as scheduling_settings

    prepay = []
    if pay_before:
        available = services.prepaid_available(patient)
        for key, kind in scheduling_settings.consultation_types().items():
            price = services.price_for(services.consultation_code(key))
            if price is not None:
                prepay.append((key, kind.label, price, available.get(key, False)))
    response = Response(render_template(
        "billing/mine.html", invoices=services.invoices_for(patient), statement=services.statement(patient),
        online=services.online_payments_on(), pay_before=pay_before, prepay=prepay))
    return with_pay_csp(response)


@bp.route("/invoices/<int:invoice_id>")
@policy.signed_in(Role.PATIENT, *FRONT_DESK)
def invoice(invoice_id: int):
    item = invoice_or_404(invoice_id)
    patient = patients.get(item.patient_id)
    if current_user.is_staff:
        patients.record_read(patient, section="billing")
    payments = services.payments_of(item)
    response = Response(render_template(
        "billing/invoice.html", invoice=item, lines=services.lines_of(item), pos=services.position(item),
        notes=services.credit_notes_of(item), payments=payments,
        refunds={p.id: services.refunds_of(p) for p in payments},
        refundable={p.id: services.refundable(p) for p in payments}, patient=patient,
        online=services.online_payments_on(), is_patient=current_user.role is Role.PATIENT,
        staff_methods=STAFF_METHODS))
    return with_pay_csp(response)


@bp.route("/invoices/<int:invoice_id>/pdf")
@policy.signed_in(Role.PATIENT, *FRONT_DESK)
def invoice_pdf(invoice_id: int):
    item = invoice_or_404(invoice_id)
    pdf = reports.pdf("billing/invoice_pdf.html", invoice=item, lines=services.lines_of(item),
                      pos=services.position(item), notes=services.credit_notes_of(item),
                      payments=services.payments_of(item), zone=services.clinic_zone())
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{item.number}.pdf"'
    return response


@bp.route("/invoices/<int:invoice_id>/pay", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def pay(invoice_id: int):
    item = invoice_or_404(invoice_id)
    back = url_for("billing.invoice", invoice_id=item.id)
    try:
        checkout = services.start_checkout(item, by=current_user, urls_for=_done_urls)
    except BillingError as exc:
        return refuse(exc, back)
    return redirect(checkout.url)


def _done_urls(public_id: str) -> tuple[str, str]:
    """Where the provider sends the patient back: after paying, and after giving up."""
    from app.notifications import services as notifications

    done = notifications.link_to("billing.checkout_done", public_id=public_id)
    cancelled = notifications.link_to("billing.checkout_done", public_id=public_id, cancelled=1)
    return notifications.absolute(done), notifications.absolute(cancelled)


@bp.route("/checkouts/<public_id>/done")
@policy.signed_in(Role.PATIENT)
def checkout_done(public_id: str):
    checkout = services.checkout_by_public_id(public_id[:40])
    if checkout is None:
        abort(404)
    item = invoice_or_404(checkout.invoice_id)
    return render_template("billing/checkout_done.html", invoice=item, checkout=checkout,
                           pos=services.position(item), cancelled=bool(request.args.get("cancelled")))


@bp.route("/prepay", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def prepay():
    patient = own_patient()
    from app.scheduling.services import settings as scheduling_settings

    kind = request.form.get("type", "")
    if kind not in scheduling_settings.consultation_types():
        abort(400)
    try:
        item = services.prepay_consultation(patient, kind, by=current_user)
    except BillingError as exc:
        return refuse(exc, url_for("billing.mine"))
    return redirect(url_for("billing.invoice", invoice_id=item.id))


# The sandbox checkout (demo mode and tests: no money moves) ------------------------------------------------

@bp.route("/sandbox/<public_id>", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def sandbox_checkout(public_id: str):
    checkout = services.checkout_by_public_id(public_id[:40])
    if checkout is None or checkout.provider != provider.SANDBOX or provider.configured() is None \
            or provider.configured().name != provider.SANDBOX:
        abort(404)
    item = invoice_or_404(checkout.invoice_id)
    if request.method == "POST":
        if request.form.get("action") == "cancel":
            return redirect(url_for("billing.checkout_done", public_id=checkout.public_id, cancelled=1))
        outcome = services.sandbox_pay(checkout)
        if outcome.status != 200:
            flash("This payment was not taken again: " + ("the invoice is already paid."
                                                         if outcome.status == 409 else outcome.message), "error")
        return redirect(url_for("billing.checkout_done", public_id=checkout.public_id))
    return render_template("billing/sandbox_checkout.html", checkout=checkout, invoice=item)


# The provider's webhook ----------------------------------------------------------------------------

@bp.route("/webhooks/<provider_name>", methods=["POST"])
@csrf.exempt
@policy.public
def webhook(provider_name: str):
    name = provider_name[:20]
    body = request.get_data(cache=True)
    try:
        provider.verify_webhook(name, timestamp=request.headers.get("X-Verity-Timestamp"),
                                signature=request.headers.get("X-Verity-Signature"), body=body, path=request.path)
        event = provider.parse_event(body)
    except provider.WebhookRefused as exc:
        services.record_refusal(name, exc.status, exc.reason)
        return jsonify(error=exc.reason, status=exc.status), exc.status
    outcome = services.apply_event(name, event)
    if outcome.status != 200:
        return jsonify(error=outcome.message, status=outcome.status), outcome.status
    return jsonify(result=outcome.message)


# Reception ---------------------------------------------------------------------------------------

@bp.route("/desk")
@policy.staff(*FRONT_DESK)
def desk():
    today = services.clinic_today()
    try:
        day = dt.date.fromisoformat(request.args.get("day", "")) if request.args.get("day") else today
    except ValueError:
        day = today
    unpaid = services.unpaid_invoices()
    names = {i.patient_id: patients.user_of(patients.get(i.patient_id)).full_name for i in unpaid}
    return render_template("billing/desk.html", day=day, today=today, rows=services.day_sheet(day), unpaid=unpaid,
                           names=names, previous=day - dt.timedelta(days=1), next=day + dt.timedelta(days=1))


@bp.route("/patients/<int:patient_id>")
@policy.staff(*FRONT_DESK)
def account(patient_id: int):
    patient = patient_or_404(patient_id)
    patients.record_read(patient, section="billing")
    return render_template("billing/account.html", patient=patient, name=patients.user_of(patient).full_name,
                           invoices=services.invoices_for(patient), pending=services.pending_charges(patient),
                           statement=services.statement(patient), prices=services.price_list(),
                           arrangements=services.arrangements_for(patient), kinds=KINDS,
                           arrangement_kinds=services.ARRANGEMENT_KINDS, today=services.clinic_today(),
                           can_approve=current_user.role is Role.ADMIN)


@bp.route("/patients/<int:patient_id>/charges", methods=["POST"])
@policy.staff(*FRONT_DESK)
def add_charge(patient_id: int):
    patient = patient_or_404(patient_id)
    back = url_for("billing.account", patient_id=patient.id)
    try:
        services.add_charge(patient, forms.text(request.form, "code", 40), quantity=forms.quantity(request.form),
                            by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash("The charge is added. Issue an invoice when everything is on it.", "success")
    return redirect(back)


@bp.route("/patients/<int:patient_id>/invoices", methods=["POST"])
@policy.staff(*FRONT_DESK)
def issue(patient_id: int):
    patient = patient_or_404(patient_id)
    back = url_for("billing.account", patient_id=patient.id)
    try:
        item = services.issue_invoice(patient, by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash(f"Invoice {item.number} is issued.", "success")
    return redirect(url_for("billing.invoice", invoice_id=item.id))


@bp.route("/invoices/<int:invoice_id>/payments", methods=["POST"])
@policy.staff(*FRONT_DESK)
def record_payment(invoice_id: int):
    item = invoice_or_404(invoice_id)
    back = url_for("billing.invoice", invoice_id=item.id)
    try:
        services.record_payment(item, forms.amount(request.form, what="The payment"),
                                method=forms.text(request.form, "method", 20),
                                reference=forms.text(request.form, "reference", 100), by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash(f"The payment is recorded against {item.number}.", "success")
    return redirect(back)


@bp.route("/payments/<int:payment_id>/refunds", methods=["POST"])
@policy.staff(*FRONT_DESK)
def refund(payment_id: int):
    payment = services.get_payment(payment_id)
    if payment is None:
        abort(404)
    back = url_for("billing.invoice", invoice_id=payment.invoice_id)
    try:
        services.refund(payment, forms.amount(request.form, what="The refund"),
                        reason=forms.text(request.form, "reason"), reference=forms.text(request.form, "reference"),
                        by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash("The refund is recorded.", "success")
    return redirect(back)


@bp.route("/invoices/<int:invoice_id>/credit-notes", methods=["POST"])
@policy.staff(*FRONT_DESK)
def credit(invoice_id: int):
    item = invoice_or_404(invoice_id)
    back = url_for("billing.invoice", invoice_id=item.id)
    try:
        note = services.credit(item, forms.amount(request.form, what="The credit"),
                               reason=forms.text(request.form, "reason"), by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash(f"Credit note {note.number} is issued.", "success")
    return redirect(back)


@bp.route("/patients/<int:patient_id>/arrangements", methods=["POST"])
@policy.staff(Role.ADMIN)
def add_arrangement(patient_id: int):
    patient = patient_or_404(patient_id)
    back = url_for("billing.account", patient_id=patient.id)
    form = request.form
    try:
        kind = forms.text(form, "kind", 20)
        services.add_arrangement(
            patient, kind=kind, name=forms.text(form, "name", 200),
            discount_bp=10000 if kind == "subscription" else forms.percent_bp(form),
            applies_to=forms.text(form, "applies_to", 20) or None,
            valid_from=forms.date(form, "valid_from"), valid_to=forms.date(form, "valid_to", required=False),
            reason=forms.text(form, "reason"), approved_by=current_user)
    except BillingError as exc:
        return refuse(exc, back)
    flash("The arrangement is approved and applies to new charges.", "success")
    return redirect(back)


# The administrator ----------------------------------------------------------------------------------

@bp.route("/prices", methods=["GET", "POST"])
@policy.staff(Role.ADMIN)
def prices():
    error, values = None, {}
    if request.method == "POST":
        form = request.form
        values = {name: forms.text(form, name) for name in ("code", "name", "kind", "amount", "vat_treatment",
                                                            "effective_from")}
        try:
            services.set_price(code=values["code"], name=values["name"], kind=values["kind"],
                               amount_pence=forms.amount(form, what="The price", allow_zero=True),
                               vat_treatment=values["vat_treatment"] or None,
                               effective_from=forms.date(form, "effective_from"), by=current_user)
        except BillingError as exc:
            error = exc
        else:
            flash("The price is saved.", "success")
            return redirect(url_for("billing.prices"))
    return render_template("billing/prices.html", items=services.price_list(), later=services.scheduled_prices(),
                           kinds=KINDS, rates=settings.vat_rates(), default_vat=settings.default_vat(),
                           today=services.clinic_today(), error=error, values=values,
                           charge_at=settings.charge_at(), policy=settings.payment_policy(),
                           provider_name=settings.provider_name()), 400 if error else 200


def _report_day(name: str) -> dt.date:
    today = services.clinic_today()
    try:
        return dt.date.fromisoformat(request.args.get(name, "")) if request.args.get(name) else today
    except ValueError:
        return today


@bp.route("/reports")
@policy.staff(Role.ADMIN)
def reports_page():
    day, as_of = _report_day("day"), _report_day("as_of")
    return render_template("billing/reports.html", takings=reports.takings(day), debt=reports.aged_debt(as_of))


@bp.route("/reports/<any(takings, 'aged-debt'):name>.<any(csv, pdf):fmt>")
@policy.staff(Role.ADMIN)
def report_file(name: str, fmt: str):
    if name == "takings":
        report = reports.takings(_report_day("day"))
        stem = f"takings-{report.day.isoformat()}"
        if fmt == "csv":
            body, mimetype = reports.takings_csv(report), "text/csv"
        else:
            body, mimetype = reports.pdf("billing/report_takings_pdf.html", report=report), "application/pdf"
    else:
        report = reports.aged_debt(_report_day("as_of"))
        stem = f"aged-debt-{report.as_of.isoformat()}"
        if fmt == "csv":
            body, mimetype = reports.aged_debt_csv(report), "text/csv"
        else:
            body, mimetype = reports.pdf("billing/report_debt_pdf.html", report=report), "application/pdf"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{stem}.{fmt}"'
    return response

