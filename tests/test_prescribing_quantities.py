"""The total quantity in words and figures: the two always say the same number (property-based)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.prescribing.quantities import UNITS, QuantityError, figures, in_words_and_figures, parse

ONES = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}
TENS = {w: 10 * i for i, w in enumerate(("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
                                         "eighty", "ninety")) if i > 1}
SCALES = {"thousand": 1000, "million": 1_000_000}


def read_words(text: str) -> Decimal:
    """An independent reader of English cardinal numbers ("one thousand, two hundred and five point five")."""
    whole, _, fraction = text.replace(",", "").partition(" point ")
    total = current = 0
    for word in whole.replace("-", " ").split():
        if word == "and":
            continue
        if word in ONES:
            current += ONES[word]
        elif word in TENS:
            current += TENS[word]
        elif word == "hundred":
            current *= 100
        elif word in SCALES:
            total += current * SCALES[word]
            current = 0
        else:
            raise ValueError(f"not a number word: {word}")
    digits = "".join(str(ONES[w]) for w in fraction.split()) if fraction else ""
    return Decimal(f"{total + current}.{digits}" if digits else total + current)


def split(text: str) -> tuple[str, str, str]:
    figures_part, rest = text.split(" (", 1)
    words_part, unit = rest.split(") ", 1)
    return figures_part, words_part, unit


quantities = st.one_of(
    st.integers(min_value=1, max_value=1000).map(lambda n: ("capsule", str(n))),
    st.integers(min_value=1, max_value=2000).map(lambda n: ("ml", str(n))),
    st.integers(min_value=1, max_value=10000).map(lambda n: ("g", str(Decimal(n) / 10))),
)


@given(quantities)
def test_words_and_figures_always_agree(case):
    unit, typed = case
    value = parse(typed, unit)
    figures_part, words_part, unit_word = split(in_words_and_figures(value, unit))
    assert Decimal(figures_part) == Decimal(typed)
    assert read_words(words_part) == Decimal(figures_part)
    assert unit_word == (UNITS[unit].singular if value == 1 else UNITS[unit].plural)


@given(st.decimals(min_value=Decimal("0.1"), max_value=Decimal(1000), places=1, allow_nan=False))
def test_figures_never_carry_trailing_zeros_or_exponents(value):
    text = figures(value)
    assert "E" not in text and not (("." in text) and text.endswith("0"))
    assert Decimal(text) == value


@pytest.mark.parametrize(("typed", "unit", "expected"), [
    ("30", "g", "30 (thirty) grams"), ("7.5", "g", "7.5 (seven point five) grams"), ("1", "capsule",
                                                                                   "1 (one) capsule"),
    ("1250", "ml", "1250 (one thousand, two hundred and fifty) millilitres"), ("30.0", "g", "30 (thirty) grams"),
])
def test_examples_read_as_a_pharmacist_expects(typed, unit, expected):
    assert in_words_and_figures(parse(typed, unit), unit) == expected


@given(st.text(max_size=12))
def test_any_typed_text_is_a_quantity_or_a_clear_refusal(text):
    try:
        value = parse(text, "g")
    except QuantityError as exc:
        assert str(exc)
    else:
        assert Decimal(0) < value <= UNITS["g"].ceiling
