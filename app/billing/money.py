"""Money as integer pence: parsing what staff type, formatting for people, VAT and discounts in whole pence.

No float ever holds money. Rounding is half-up to the penny, once per line (HMRC accepts line-level rounding).
"""

from __future__ import annotations

import re

#: What a typed amount may look like: "12", "12.5", "12.50", "£1,250.00".
_AMOUNT = re.compile(r"£?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")


class AmountError(ValueError):
    """An amount that cannot be accepted; the message is fit to show."""


def parse_pence(raw: str | None, *, maximum: int, allow_zero: bool = False, what: str = "The amount") -> int:
    """Pence from a typed amount in pounds, refusing negatives, fractions of a penny and absurd sizes."""
    text = (raw or "").strip()
    if not text:
        raise AmountError(f"{what} is required, in pounds and pence, e.g. 85.00.")
    if text.startswith("-") or text.startswith("£-"):
        raise AmountError(f"{what} cannot be negative.")
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise AmountError(f"{what} must be in pounds and pence, e.g. 85.00 (no more than 2 decimal places).")
    pounds = int(match.group(1).replace(",", ""))
    pence = int((match.group(2) or "0").ljust(2, "0"))
    return check_pence(pounds * 100 + pence, maximum=maximum, allow_zero=allow_zero, what=what)


def check_pence(value: int, *, maximum: int, allow_zero: bool = False, what: str = "The amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmountError(f"{what} must be a whole number of pence.")
    if value < 0:
        raise AmountError(f"{what} cannot be negative.")
    if value == 0 and not allow_zero:
        raise AmountError(f"{what} must be more than £0.00.")
    if value > maximum:
        raise AmountError(f"{what} is more than {format_pence(maximum)}, the most the clinic takes in one go: "
                          "check it for a typing slip.")
    return value


def format_pence(value: int | None, *, sign: bool = False) -> str:
    """1234 -> "£12.34"; -500 -> "-£5.00"; with sign, 500 -> "+£5.00"."""
    if value is None:
        return ""
    prefix = "-" if value < 0 else ("+" if sign and value > 0 else "")
    pounds, pence = divmod(abs(int(value)), 100)
    return f"{prefix}£{pounds:,}.{pence:02d}"


def plain(value: int) -> str:
    """1234 -> "12.34" (CSV: no symbol, no thousands separator)."""
    pounds, pence = divmod(abs(int(value)), 100)
    return f"{'-' if value < 0 else ''}{pounds}.{pence:02d}"


def share(amount: int, basis_points: int) -> int:
    """amount x basis_points / 10000, rounded half-up to the penny (amounts are never negative here)."""
    return (amount * basis_points + 5000) // 10000
