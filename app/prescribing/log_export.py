"""The controlled-drug prescription log as CSV and as PDF."""

from __future__ import annotations

import csv
import datetime as dt
import io

from flask import current_app

from app.prescribing import pdf, states
from app.prescribing.quantities import figures

COLUMNS = ("Signed (UTC)", "Prescription", "Status", "Patient", "Product", "Form", "Strength", "Quantity",
           "Unit", "Quantity in words and figures", "Days", "Dose", "Prescriber")


def _cells(row) -> list[str]:
    prescription, item, patient_name, prescriber = row
    return [prescription.signed_at.strftime("%Y-%m-%d %H:%M"), prescription.public_id,
            states.state_of(prescription).label, patient_name, item.product_name, item.form_label, item.strength,
            figures(item.quantity), item.unit, item.quantity_text, str(item.days_supply), item.dose,
            prescriber.full_name]


def _safe(cell: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them (CSV injection)."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def csv_text(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_safe(cell) for cell in _cells(row)])
    return out.getvalue()


def pdf_bytes(rows, start: dt.date, end: dt.date, prescriber) -> bytes:
    return pdf.render("prescribing/pdf/log.html", rows=[_cells(r) for r in rows], columns=COLUMNS, start=start,
                      end=end, prescriber=prescriber, clinic_name=current_app.config["CLINIC_NAME"],
                      generated=dt.datetime.now(dt.UTC))
