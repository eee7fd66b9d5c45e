"""Billing's configuration: the app config first, then `VERITY_<NAME>` in the environment, then the default here.
The README's configuration table lists the same keys.

- BILLING_CHARGE_AT (booking): when a consultation is charged: `booking` (invoiced at booking) or `consult`
  (invoiced once it is completed).
- BILLING_PAYMENT_POLICY (pay_after): `pay_after`, the invoice is payable any time; `pay_before`, a patient pays for
  a consultation before they can book it online (staff can still book and take payment at the desk).
- BILLING_VAT_RATES (exempt=0,zero=0,reduced=5,standard=20): VAT treatments and their rates in percent.
- BILLING_DEFAULT_VAT (exempt): the treatment a new price gets unless one is chosen (medical services are usually
  exempt).
- BILLING_VAT_NUMBER (none): the clinic's VAT registration number, printed on invoices when set.
- BILLING_PAYMENT_DAYS (14): days from issue to the invoice's due date.
- BILLING_MAX_AMOUNT_PENCE (1000000): the largest single price, charge or payment (£10,000); more is refused as a
  typing slip.
- BILLING_PROVIDER (sandbox; none in production): online payments, `sandbox`, `http` or `none` (provider.py).
- BILLING_PROVIDER_URL, BILLING_PROVIDER_API_KEY, BILLING_WEBHOOK_SECRET: the `http` provider's API and webhooks.
- BILLING_WEBHOOK_TOLERANCE_SECONDS (300): webhooks signed further than this from our clock are refused.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app

BOOKING, CONSULT = "booking", "consult"
PAY_AFTER, PAY_BEFORE = "pay_after", "pay_before"

DEFAULTS: dict[str, Any] = {
    "BILLING_CHARGE_AT": BOOKING,
    "BILLING_PAYMENT_POLICY": PAY_AFTER,
    "BILLING_VAT_RATES": "exempt=0,zero=0,reduced=5,standard=20",
    "BILLING_DEFAULT_VAT": "exempt",
    "BILLING_VAT_NUMBER": None,
    "BILLING_PAYMENT_DAYS": 14,
    "BILLING_MAX_AMOUNT_PENCE": 1_000_000,
    "BILLING_PROVIDER": None,
    "BILLING_PROVIDER_URL": None,
    "BILLING_PROVIDER_API_KEY": None,
    "BILLING_WEBHOOK_SECRET": None,
    "BILLING_WEBHOOK_TOLERANCE_SECONDS": 300,
}

VAT_LABELS = {"exempt": "Exempt", "zero": "Zero-rated", "reduced": "Reduced rate", "standard": "Standard rate"}


class ConfigurationError(RuntimeError):
    pass


def setting(name: str) -> Any:
    config = current_app.config
    if name in config:
        return config[name]
    raw = os.environ.get(f"VERITY_{name}")
    default = DEFAULTS[name]
    if raw is None:
        return default
    if isinstance(default, int):
        return int(raw)
    return raw


def charge_at() -> str:
    value = setting("BILLING_CHARGE_AT")
    if value not in (BOOKING, CONSULT):
        raise ConfigurationError(f"BILLING_CHARGE_AT must be '{BOOKING}' or '{CONSULT}', not {value!r}")
    return value


def payment_policy() -> str:
    value = setting("BILLING_PAYMENT_POLICY")
    if value not in (PAY_AFTER, PAY_BEFORE):
        raise ConfigurationError(f"BILLING_PAYMENT_POLICY must be '{PAY_AFTER}' or '{PAY_BEFORE}', not {value!r}")
    return value


def vat_rates() -> dict[str, int]:
    """Treatment -> rate in basis points (20% -> 2000), from "name=percent,..."."""
    rates: dict[str, int] = {}
    for part in str(setting("BILLING_VAT_RATES") or "").split(","):
        name, _, percent = part.partition("=")
        if not name.strip():
            continue
        try:
            value = Decimal(percent.strip())
        except InvalidOperation:
            raise ConfigurationError(f"BILLING_VAT_RATES: {part!r} is not name=percent") from None
        if not Decimal(0) <= value <= Decimal(100) or (value * 100) != (value * 100).to_integral_value():
            raise ConfigurationError(f"BILLING_VAT_RATES: {part!r} must be a percent from 0 to 100, to 2 places")
        rates[name.strip()] = int(value * 100)
    if "exempt" not in rates:
        rates["exempt"] = 0
    return rates


def default_vat() -> str:
    value = setting("BILLING_DEFAULT_VAT") or "exempt"
    if value not in vat_rates():
        raise ConfigurationError(f"BILLING_DEFAULT_VAT {value!r} is not one of BILLING_VAT_RATES")
    return value


def vat_label(treatment: str) -> str:
    rate = vat_rates().get(treatment, 0)
    label = VAT_LABELS.get(treatment, treatment.replace("_", " ").capitalize())
    return label if treatment == "exempt" else f"{label} ({Decimal(rate) / 100:g}%)"


def max_amount() -> int:
    return int(setting("BILLING_MAX_AMOUNT_PENCE"))


def provider_name() -> str:
    value = setting("BILLING_PROVIDER")
    if value:
        return str(value)
    # The sandbox takes no money, so it is the default wherever no money should move: demo mode, tests, and
    # development. In production a real provider (or `none`) must be chosen on purpose.
    config = current_app.config
    if config.get("DEMO_MODE") or config.get("TESTING") or os.environ.get("VERITY_ENV", "development") != "production":
        return "sandbox"
    return "none"
