"""Reading the billing pages' forms: plain functions over request.form (validation lives in the services, which
name the field that is wrong)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from app.billing import money, settings
from app.billing.services import BillingError


def text(form: Mapping[str, Any], name: str, limit: int = 300) -> str:
    return str(form.get(name) or "").strip()[:limit]


def amount(form: Mapping[str, Any], name: str = "amount", *, what: str = "The amount", allow_zero: bool = False) -> int:
    try:
        return money.parse_pence(form.get(name), maximum=settings.max_amount(), allow_zero=allow_zero, what=what)
    except money.AmountError as exc:
        raise BillingError(str(exc), field=name) from None


def quantity(form: Mapping[str, Any], name: str = "quantity") -> int:
    raw = text(form, name, 10) or "1"
    if not raw.isdigit():
        raise BillingError("The quantity must be a whole number from 1 to 1000.", field=name)
    return int(raw)


def date(form: Mapping[str, Any], name: str, *, required: bool = True) -> dt.date | None:
    raw = text(form, name, 20)
    if not raw:
        if required:
            raise BillingError("Give the date as YYYY-MM-DD.", field=name)
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BillingError("Give the date as YYYY-MM-DD.", field=name) from None


def percent_bp(form: Mapping[str, Any], name: str = "discount") -> int:
    """A percentage typed as "10" or "12.5" -> basis points."""
    raw = text(form, name, 10).rstrip("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BillingError("The discount must be a percentage, e.g. 10 or 12.5.", field=name) from None
    basis_points = value * 100
    if basis_points != basis_points.to_integral_value() or not 0 < basis_points <= 10000:
        raise BillingError("The discount must be more than 0% and at most 100%, to 2 decimal places.", field=name)
    return int(basis_points)
