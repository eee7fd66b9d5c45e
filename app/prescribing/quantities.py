"""Quantities: parsing what the prescriber typed, and the total in words and figures (reg. 15).

Each dispensing unit says whether it may be fractional and how much one prescription may
plausibly hold; anything else is refused with a message naming the unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from num2words import num2words


@dataclass(frozen=True)
class Unit:
    key: str
    singular: str
    plural: str
    #: Decimal places allowed (0: whole units only).
    places: int
    #: More than this on one prescription is not a plausible quantity (a typo or a tampered form).
    ceiling: Decimal

    def word(self, quantity: Decimal) -> str:
        return self.singular if quantity == 1 else self.plural


UNITS = {
    "g": Unit("g", "gram", "grams", 1, Decimal(1000)),
    "ml": Unit("ml", "millilitre", "millilitres", 0, Decimal(2000)),
    "capsule": Unit("capsule", "capsule", "capsules", 0, Decimal(2000)),
    "pastille": Unit("pastille", "pastille", "pastilles", 0, Decimal(2000)),
}

_NUMBER = re.compile(r"^[0-9]{1,7}(\.[0-9]{1,6})?$")


class QuantityError(ValueError):
    """The quantity cannot be accepted; the message says why, fit to show the prescriber."""


def parse(raw: str | None, unit_key: str) -> Decimal:
    """A positive quantity of `unit_key`, or QuantityError."""
    unit = UNITS[unit_key]
    text = (raw or "").strip().replace(",", "")
    if not text:
        raise QuantityError("Enter the total quantity.")
    if text.startswith("-"):
        raise QuantityError("The quantity must be more than zero.")
    if not _NUMBER.match(text):
        raise QuantityError(f"Enter the quantity as a number of {unit.plural}, like 30.")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid decimals
        raise QuantityError(f"Enter the quantity as a number of {unit.plural}, like 30.") from exc
    if value <= 0:
        raise QuantityError("The quantity must be more than zero.")
    if value != value.quantize(Decimal(1).scaleb(-unit.places)):
        if unit.places == 0:
            raise QuantityError(f"{unit.plural.capitalize()} are prescribed in whole numbers.")
        raise QuantityError(f"Give {unit.plural} to at most {unit.places} decimal place.")
    if value > unit.ceiling:
        raise QuantityError(f"{figures(value)} {unit.plural} is not a plausible quantity for one prescription "
                            f"(at most {figures(unit.ceiling)}).")
    return normalise(value)


def normalise(value: Decimal) -> Decimal:
    """Drop trailing zeros without going to exponent form (30.00 → 30, 7.50 → 7.5)."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral() else value


def figures(value: Decimal) -> str:
    return format(normalise(value), "f")


def words(value: Decimal) -> str:
    return num2words(normalise(value), lang="en")


def in_words_and_figures(value: Decimal, unit_key: str) -> str:
    """E.g. "30 (thirty) grams", "7.5 (seven point five) grams", "1 (one) capsule"."""
    unit = UNITS[unit_key]
    return f"{figures(value)} ({words(value)}) {unit.word(normalise(value))}"


def plain(value: Decimal, unit_key: str) -> str:
    """E.g. "30 g", "60 capsules" (for quotas and doses)."""
    unit = UNITS[unit_key]
    return f"{figures(value)} {unit.key}" if unit.key in ("g", "ml") else f"{figures(value)} {unit.word(value)}"
