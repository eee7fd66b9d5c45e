"""Passport MRZ (ICAO 9303 TD3): check digits, lengths, dates. Pure functions, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from app.identity.mrz import MrzError, check_digit, normalise, parse_td3

LINE1 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<"
LINE2 = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"
SPECIMEN = f"{LINE1}\n{LINE2}"
TODAY = dt.date(2026, 11, 24)


def _with(line: str, index: int, char: str) -> str:
    return line[:index] + char + line[index + 1:]


def _wrong_digit(digit: str) -> str:
    return str((int(digit) + 1) % 10)


def test_icao_specimen_is_valid_and_read():
    mrz = parse_td3(SPECIMEN, today=TODAY)
    assert (mrz.surname, mrz.given_names) == ("ERIKSSON", "ANNA MARIA")
    assert (mrz.issuing_state, mrz.nationality, mrz.sex) == ("UTO", "UTO", "F")
    assert mrz.document_number == "L898902C3"
    assert mrz.birth_date == dt.date(1974, 8, 12)
    assert mrz.expiry_date == dt.date(2012, 4, 15)
    assert mrz.personal_number == "ZE184226B"


@pytest.mark.parametrize(("field", "expected"), [
    ("L898902C3", "6"), ("740812", "2"), ("120415", "9"), ("ZE184226B<<<<<", "1"),
    ("L898902C36" + "7408122" + "1204159ZE184226B<<<<<1", "0"),
])
def test_check_digits_of_the_specimen(field, expected):
    assert check_digit(field) == expected


@pytest.mark.parametrize(("index", "part"), [
    (9, "document_number"), (19, "birth_date"), (27, "expiry_date"), (42, "personal_number"), (43, "composite"),
])
def test_each_wrong_check_digit_is_named(index, part):
    line2 = _with(LINE2, index, _wrong_digit(LINE2[index]))
    with pytest.raises(MrzError) as refused:
        parse_td3(f"{LINE1}\n{line2}", today=TODAY)
    assert refused.value.part == part


def test_a_typing_mistake_in_a_field_fails_its_check_digit():
    line2 = _with(LINE2, 1, "0")  # L898902C3 typed as L098902C3
    with pytest.raises(MrzError, match="passport number") as refused:
        parse_td3(f"{LINE1}\n{line2}", today=TODAY)
    assert refused.value.part == "document_number"


@pytest.mark.parametrize("text", [
    f"{LINE1}\n{LINE2[:-1]}",          # 43 characters
    f"{LINE1}<\n{LINE2}",              # 45 characters
])
def test_wrong_length_is_refused(text):
    with pytest.raises(MrzError, match="44 characters") as refused:
        parse_td3(text, today=TODAY)
    assert refused.value.part == "length"


def test_one_line_only_is_refused():
    with pytest.raises(MrzError) as refused:
        parse_td3(LINE2, today=TODAY)
    assert refused.value.part == "lines"


def test_forbidden_characters_are_refused():
    with pytest.raises(MrzError) as refused:
        parse_td3(f"{LINE1}\n{_with(LINE2, 30, '-')}", today=TODAY)
    assert refused.value.part == "characters"


def test_a_non_passport_first_line_is_refused():
    with pytest.raises(MrzError) as refused:
        parse_td3(f"{_with(LINE1, 0, 'I')}\n{LINE2}", today=TODAY)
    assert refused.value.part == "document_code"


def test_lower_case_spaces_and_a_missing_line_break_are_forgiven():
    typed = f"  {LINE1.lower()}{LINE2[:20]} {LINE2[20:]}  "
    assert normalise(typed) == [LINE1, LINE2]
    assert parse_td3(typed, today=TODAY).document_number == "L898902C3"


def test_an_impossible_date_is_refused_even_with_a_matching_check_digit():
    field = "741312"  # month 13
    line2 = LINE2[:13] + field + check_digit(field) + LINE2[20:43]
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    with pytest.raises(MrzError, match="not a real date") as refused:
        parse_td3(f"{LINE1}\n{line2}", today=TODAY)
    assert refused.value.part == "birth_date"


def test_birth_century_is_the_latest_in_the_past():
    field = "050101"
    line2 = LINE2[:13] + field + check_digit(field) + LINE2[20:43]
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    assert parse_td3(f"{LINE1}\n{line2}", today=TODAY).birth_date == dt.date(2005, 1, 1)
    field = "300101"
    line2 = LINE2[:13] + field + check_digit(field) + LINE2[20:43]
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    assert parse_td3(f"{LINE1}\n{line2}", today=TODAY).birth_date == dt.date(1930, 1, 1)


def test_empty_personal_number_may_have_a_filler_check_digit():
    line2 = LINE2[:28] + "<" * 15
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    assert parse_td3(f"{LINE1}\n{line2}", today=TODAY).personal_number == ""
