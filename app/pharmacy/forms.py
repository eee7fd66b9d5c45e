"""Reading the pharmacy pages' forms: plain functions over request.form (validation lives in the services)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def text(form: Mapping[str, Any], name: str, limit: int = 4000) -> str:
    return str(form.get(name) or "")[:limit]


def int_or_none(raw: Any) -> int | None:
    text_value = str(raw or "").strip()
    return int(text_value) if text_value.isdigit() and len(text_value) < 10 else None


def ints(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit() and len(v) < 10]


def date(form: Mapping[str, Any], prefix: str) -> dt.date | None:
    """A date from the design system's three boxes (prefix-day, -month, -year), or an ISO date in `prefix`."""
    if form.get(prefix):
        try:
            return dt.date.fromisoformat(str(form[prefix]).strip())
        except ValueError:
            return None
    try:
        return dt.date(int(form.get(f"{prefix}-year") or 0), int(form.get(f"{prefix}-month") or 0),
                       int(form.get(f"{prefix}-day") or 0))
    except (TypeError, ValueError):
        return None


PHARMACY_FIELDS = ("name", "gphc_number", "address", "contact_name", "contact_email", "contact_phone", "connection",
                   "webhook_url", "client_cert_sha256")


def pharmacy_values(form: Mapping[str, Any]) -> dict[str, str]:
    return {name: text(form, name, 600) for name in PHARMACY_FIELDS}
