"""Parsing the prescribing forms. Validation itself lives in the services (the CSV import and the
htmx checks share it), so these helpers only turn submitted text into typed values, never failing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.datastructures import MultiDict

ITEM_FIELDS = ("product_id", "quantity", "unit", "days_supply", "dose", "justification")
PRODUCT_FIELDS = ("name", "manufacturer", "form", "thc", "cbd", "pack_size", "dmd_code", "schedule", "price")


def text(form: MultiDict, name: str, limit: int = 2000) -> str:
    return (form.get(name) or "")[:limit]


def values(form: MultiDict, names: tuple[str, ...], limit: int = 2000) -> dict[str, str]:
    return {name: text(form, name, limit) for name in names}


def date(form: MultiDict, prefix: str) -> dt.date | None:
    """A date from the design system's three boxes (prefix-day, -month, -year), or an ISO field."""
    raw = (form.get(prefix) or "").strip()
    if raw:
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return None
    parts = [(form.get(f"{prefix}-{p}") or "").strip() for p in ("day", "month", "year")]
    if not all(p.isdigit() and len(p) <= 4 for p in parts):
        return None
    try:
        return dt.date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        return None


def decimal(raw: str | None) -> Decimal | None:
    text_value = (raw or "").strip()
    if not text_value or len(text_value) > 12:
        return None
    try:
        value = Decimal(text_value)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def plan_values(form: MultiDict) -> dict[str, Any]:
    """The plan form: a checkbox per product (product-<id>), its dose range, a quota per unit."""
    products = {}
    for key in form:
        if key.startswith("product-") and key[8:].isdigit():
            product_id = key[8:]
            products[product_id] = (text(form, f"dose_min-{product_id}", 20), text(form, f"dose_max-{product_id}", 20))
    quotas = {key[6:]: text(form, key, 20) for key in form if key.startswith("quota-")}
    return {"snomed_code": text(form, "snomed_code", 20), "indication": text(form, "indication", 400),
            "products": products, "quotas": quotas, "review_date": date(form, "review_date"),
            "goals": text(form, "goals", 5000)}


def int_or_none(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 10 else None
