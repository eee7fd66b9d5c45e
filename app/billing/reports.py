"""The administrator's reports: a day's takings and the aged debt, as rows for a page, CSV or PDF."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import render_template

from app.billing import money
from app.billing.models import METHODS, OPEN, Invoice, Payment, Refund
from app.billing.services import clinic_zone, position
from app.extensions import db
from app.patients import services as patients

AGE_BANDS = (("0-30 days", 0, 30), ("31-60 days", 31, 60), ("61-90 days", 61, 90), ("Over 90 days", 91, None))


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    zone = clinic_zone()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    return start, end


@dataclass(frozen=True)
class TakingsLine:
    at: dt.datetime
    kind: str
    method: str
    invoice: str
    reference: str
    amount: int


@dataclass(frozen=True)
class Takings:
    day: dt.date
    lines: list[TakingsLine]

    @property
    def by_method(self) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for line in self.lines:
            totals[line.method] = totals.get(line.method, 0) + line.amount
        return sorted(totals.items())

    @property
    def received(self) -> int:
        return sum(line.amount for line in self.lines if line.kind == "Payment")

    @property
    def refunded(self) -> int:
        return -sum(line.amount for line in self.lines if line.kind == "Refund")

    @property
    def net(self) -> int:
        return sum(line.amount for line in self.lines)


def takings(day: dt.date) -> Takings:
    """Payments received and refunds given on a clinic day (refunds as negative amounts)."""
    start, end = _day_bounds(day)
    session = db.session
    numbers = {}
    lines: list[TakingsLine] = []
    for payment in session.scalars(sa.select(Payment).where(Payment.received_at >= start, Payment.received_at < end)):
        numbers.setdefault(payment.invoice_id, session.get(Invoice, payment.invoice_id).number)
        lines.append(TakingsLine(payment.received_at, "Payment", METHODS[payment.method],
                                 numbers[payment.invoice_id], payment.reference or payment.provider_reference or "",
                                 payment.amount_pence))
    for item in session.scalars(sa.select(Refund).where(Refund.created_at >= start, Refund.created_at < end)):
        payment = session.get(Payment, item.payment_id)
        numbers.setdefault(item.invoice_id, session.get(Invoice, item.invoice_id).number)
        lines.append(TakingsLine(item.created_at, "Refund", METHODS[payment.method], numbers[item.invoice_id],
                                 item.reference or "", -item.amount_pence))
    lines.sort(key=lambda line: line.at)
    return Takings(day, lines)


@dataclass(frozen=True)
class DebtLine:
    invoice: str
    patient: str
    issued: dt.date
    days: int
    band: str
    outstanding: int


@dataclass(frozen=True)
class AgedDebt:
    as_of: dt.date
    lines: list[DebtLine]

    @property
    def bands(self) -> list[tuple[str, int]]:
        return [(label, sum(line.outstanding for line in self.lines if line.band == label))
                for label, _, _ in AGE_BANDS]

    @property
    def total(self) -> int:
        return sum(line.outstanding for line in self.lines)


def band_of(days: int) -> str:
    for label, low, high in AGE_BANDS:
        if days >= low and (high is None or days <= high):
            return label
    return AGE_BANDS[0][0]


def aged_debt(as_of: dt.date) -> AgedDebt:
    """Open invoices issued on or before `as_of`, by age since issue (0-30, 31-60, 61-90, over 90 days)."""
    _, end = _day_bounds(as_of)
    zone = clinic_zone()
    lines: list[DebtLine] = []
    for invoice in db.session.scalars(sa.select(Invoice).where(Invoice.status == OPEN, Invoice.issued_at < end)
                                      .order_by(Invoice.issued_at, Invoice.id)):
        outstanding = position(invoice).outstanding
        if outstanding <= 0:
            continue
        issued = invoice.issued_at.astimezone(zone).date()
        days = (as_of - issued).days
        name = patients.user_of(patients.get(invoice.patient_id)).full_name
        lines.append(DebtLine(invoice.number, name, issued, days, band_of(days), outstanding))
    return AgedDebt(as_of, lines)


def takings_csv(report: Takings) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", "kind", "method", "invoice", "reference", "amount_gbp"])
    zone = clinic_zone()
    for line in report.lines:
        writer.writerow([line.at.astimezone(zone).strftime("%Y-%m-%d %H:%M"), line.kind, line.method, line.invoice,
                         _safe(line.reference), money.plain(line.amount)])
    writer.writerow([])
    writer.writerow(["received", "", "", "", "", money.plain(report.received)])
    writer.writerow(["refunded", "", "", "", "", money.plain(report.refunded)])
    writer.writerow(["net", "", "", "", "", money.plain(report.net)])
    return out.getvalue()


def aged_debt_csv(report: AgedDebt) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["invoice", "patient", "issued", "days", "band", "outstanding_gbp"])
    for line in report.lines:
        writer.writerow([line.invoice, _safe(line.patient), line.issued.isoformat(), line.days, line.band,
                         money.plain(line.outstanding)])
    writer.writerow([])
    for label, amount in report.bands:
        writer.writerow([label, "", "", "", "", money.plain(amount)])
    writer.writerow(["total", "", "", "", "", money.plain(report.total)])
    return out.getvalue()


def _safe(text: str) -> str:
    """No spreadsheet formulas from typed text (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def pdf(template: str, **context: Any) -> bytes:
    """An HTML template rendered to PDF by WeasyPrint (imported when needed: it is heavy)."""
    import weasyprint

    html = render_template(template, **context)
    stylesheet = Path(__file__).parent / "pdf.css"
    return weasyprint.HTML(string=html, base_url=str(Path(__file__).parent)).write_pdf(
        stylesheets=[weasyprint.CSS(filename=str(stylesheet))])
