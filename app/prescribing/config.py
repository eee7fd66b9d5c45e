"""Prescribing's settings. Read from the app config when the integrator adds them to app/config.py,
otherwise from the environment, with England's defaults.

- VERITY_PAPER_ORIGINAL (default 1): the paper FP10PCD is the legal original (England, private Schedule 2
  and 3). 0 makes the signed electronic prescription the original, where the law allows it.
- VERITY_CLINIC_ADDRESS (default: the demo address): the prescriber's UK address printed on every
  prescription (reg. 15).
"""

from __future__ import annotations

import os

from flask import current_app

DEFAULT_ADDRESS = "Verity Clinic, 1 Example Street, Bristol BS1 6AA"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def paper_original() -> bool:
    configured = current_app.config.get("PAPER_ORIGINAL")
    return bool(configured) if configured is not None else _env_bool("VERITY_PAPER_ORIGINAL", True)


def clinic_address() -> str:
    return (current_app.config.get("CLINIC_ADDRESS") or os.environ.get("VERITY_CLINIC_ADDRESS")
            or DEFAULT_ADDRESS).strip()
