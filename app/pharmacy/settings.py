"""The pharmacy domain's configuration: the app config first, then `VERITY_<NAME>` in the environment,
then the default here. The README's configuration table lists the same keys.

| key | default | meaning |
| --- | --- | --- |
| PHARMACY_WEBHOOK_TIMEOUT_SECONDS | 10 | how long a push to a pharmacy's webhook may take before it is retried |
| PHARMACY_SIGNATURE_TOLERANCE_SECONDS | 300 | signed requests older (or newer) than this are refused |
| PHARMACY_API_RATE_LIMIT | 600 per minute | requests per pharmacy API key (Flask-Limiter syntax) |
| PHARMACY_API_KEY_DAYS | 365 | lifetime of a new API key |
| PHARMACY_API_KEY_OVERLAP_DAYS | 7 | how long the previous key keeps working after a rotation |
| PHARMACY_MTLS_HEADER | (none) | header in which the TLS proxy passes the client certificate's SHA-256 |
| PHARMACY_SLA_RECEIVE_MINUTES | 15 | signed but not received by the pharmacy after this: stuck |
| PHARMACY_SLA_DISPENSE_WORKING_DAYS | 2 | signed but not dispensed after this many working days: stuck |
| PHARMACY_SLA_DELIVER_WORKING_DAYS | 5 | signed but not delivered after this many working days: stuck |
| PHARMACY_HOLIDAYS | (none) | extra non-working days, comma-separated ISO dates (bank holidays) |
| PHARMACY_DIGEST_HOUR | 7 | local hour (clinic time zone) after which the daily stuck-prescription digest goes |
| PHARMACY_DIGEST_TO | admins and reception | comma-separated addresses for the digest |
| PHARMACY_QUEUE_POLL_SECONDS | 5 | how often the workspace queue and the pipeline board refresh |
| COURIER_WEBHOOK_SECRET | (none) | HMAC secret couriers sign tracking webhooks with; none refuses them all |
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from flask import current_app

DEFAULTS: dict[str, Any] = {
    "PHARMACY_WEBHOOK_TIMEOUT_SECONDS": 10.0,
    "PHARMACY_SIGNATURE_TOLERANCE_SECONDS": 300,
    "PHARMACY_API_RATE_LIMIT": "600 per minute",
    "PHARMACY_API_KEY_DAYS": 365,
    "PHARMACY_API_KEY_OVERLAP_DAYS": 7,
    "PHARMACY_MTLS_HEADER": None,
    "PHARMACY_SLA_RECEIVE_MINUTES": 15,
    "PHARMACY_SLA_DISPENSE_WORKING_DAYS": 2,
    "PHARMACY_SLA_DELIVER_WORKING_DAYS": 5,
    "PHARMACY_HOLIDAYS": "",
    "PHARMACY_DIGEST_HOUR": 7,
    "PHARMACY_DIGEST_TO": None,
    "PHARMACY_QUEUE_POLL_SECONDS": 5,
    "COURIER_WEBHOOK_SECRET": None,
}


def setting(name: str) -> Any:
    config = current_app.config
    if name in config:
        return config[name]
    raw = os.environ.get(f"VERITY_{name}")
    default = DEFAULTS[name]
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def holidays() -> frozenset[dt.date]:
    raw = setting("PHARMACY_HOLIDAYS") or ""
    days = set()
    for part in str(raw).split(","):
        part = part.strip()
        if part:
            days.add(dt.date.fromisoformat(part))
    return frozenset(days)
