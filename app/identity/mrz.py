"""The machine-readable zone (MRZ) of a passport: the two lines of letters, numbers and `<` at the
foot of the photo page (ICAO Doc 9303 part 4, the TD3 format: 2 lines of 44 characters).

Patients may type the lines when they submit a passport. Checking the check digits catches
typing mistakes (and crude forgeries) before a person looks at the photo, and the parsed date
of birth and expiry let us compare them with the account and with what the patient entered.

Pure functions, no Flask: `parse_td3(text, today=...)` returns an `Mrz` or raises `MrzError`
with a message fit to show the patient.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

LINE_LENGTH = 44
WEIGHTS = (7, 3, 1)
_ALLOWED = re.compile(r"^[A-Z0-9<]+$")


class MrzError(ValueError):
    """The lines cannot be right. `part` names what failed (for tests and the audit), the message
    says what to do."""

    def __init__(self, message: str, part: str):
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class Mrz:
    document_code: str
    issuing_state: str
    surname: str
    given_names: str
    document_number: str
    nationality: str
    birth_date: dt.date
    sex: str
    expiry_date: dt.date
    personal_number: str
    #: The two lines as checked (upper case, no spaces), joined by a newline.
    text: str

    @property
    def name(self) -> str:
        return f"{self.given_names} {self.surname}".strip()


def character_value(char: str) -> int:
    """ICAO 9303 values: digits are themselves, A-Z are 10-35, the filler `<` is 0."""
    if char.isdigit():
        return int(char)
    if "A" <= char <= "Z":
        return ord(char) - ord("A") + 10
    if char == "<":
        return 0
    raise ValueError(f"not an MRZ character: {char!r}")


def check_digit(field: str) -> str:
    """The check digit of a field: the sum of its values weighted 7, 3, 1, ... modulo 10."""
    total = sum(character_value(char) * WEIGHTS[index % 3] for index, char in enumerate(field))
    return str(total % 10)


def normalise(text: str) -> list[str]:
    """Upper-case the typed text, drop spaces, and split it into its lines.

    Two lines typed on one line (88 characters) are split in the middle, as phones' text fields
    sometimes swallow the line break.
    """
    lines = [re.sub(r"\s+", "", line).upper() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) == 1 and len(lines[0]) == 2 * LINE_LENGTH:
        lines = [lines[0][:LINE_LENGTH], lines[0][LINE_LENGTH:]]
    return lines


def parse_td3(text: str, *, today: dt.date | None = None) -> Mrz:
    """Check and read the two lines of a passport's MRZ."""
    today = today or dt.date.today()
    lines = normalise(text)
    if len(lines) != 2:
        raise MrzError("Enter both lines from the bottom of your passport photo page, one under the other.",
                       "lines")
    for number, line in enumerate(lines, start=1):
        if len(line) != LINE_LENGTH:
            raise MrzError(f"Each line has {LINE_LENGTH} characters, but line {number} has {len(line)}. "
                           "Count the < signs carefully: each one matters.", "length")
        if not _ALLOWED.match(line):
            raise MrzError(f"Line {number} can only contain capital letters, numbers and the < sign.",
                           "characters")
    first, second = lines
    if first[0] != "P":
        raise MrzError("The first line of a passport starts with P. Check you are typing the lines from a "
                       "passport photo page.", "document_code")

    _check(second[0:9], second[9], "document_number",
           "The passport number (the start of line 2) does not match its check digit. "
           "Check the first 10 characters of line 2, for example 0 (zero) and O (the letter).")
    _check(second[13:19], second[19], "birth_date",
           "The date of birth in line 2 does not match its check digit. Check characters 14 to 20 of line 2.")
    _check(second[21:27], second[27], "expiry_date",
           "The expiry date in line 2 does not match its check digit. Check characters 22 to 28 of line 2.")
    personal_number = second[28:42]
    if not (second[42] == "<" and set(personal_number) == {"<"}):
        _check(personal_number, second[42], "personal_number",
               "The personal number in line 2 does not match its check digit. Check characters 29 to 43 of line 2.")
    composite = second[0:10] + second[13:20] + second[21:43]
    _check(composite, second[43], "composite",
           "The last character of line 2 does not match the rest of the line. Check the whole of line 2 for a "
           "typing mistake.")

    surname, _, given = first[5:].partition("<<")
    return Mrz(
        document_code=first[0:2].rstrip("<"),
        issuing_state=first[2:5].rstrip("<"),
        surname=surname.replace("<", " ").strip(),
        given_names=given.replace("<", " ").strip(),
        document_number=second[0:9].rstrip("<"),
        nationality=second[10:13].rstrip("<"),
        birth_date=_date(second[13:19], "birth_date", today=today, past=True),
        sex=second[20],
        expiry_date=_date(second[21:27], "expiry_date", today=today, past=False),
        personal_number=personal_number.rstrip("<"),
        text=f"{first}\n{second}",
    )


def _check(field: str, digit: str, part: str, message: str) -> None:
    if not digit.isdigit() or check_digit(field) != digit:
        raise MrzError(message, part)


def _date(yymmdd: str, part: str, *, today: dt.date, past: bool) -> dt.date:
    """YYMMDD to a date. A birth date is in the past, so the century is the latest that keeps it
    there; an expiry date is taken in this century (a passport lasts 10 years at most)."""
    label = "date of birth" if part == "birth_date" else "expiry date"
    if not yymmdd.isdigit():
        raise MrzError(f"The {label} in line 2 must be 6 numbers (year, month, day).", part)
    year, month, day = int(yymmdd[0:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    century = 2000
    if past and century + year > today.year:
        century = 1900
    try:
        return dt.date(century + year, month, day)
    except ValueError:
        raise MrzError(f"The {label} in line 2 is not a real date. Check characters "
                       f"{'14 to 19' if part == 'birth_date' else '22 to 27'} of line 2.", part) from None
