"""Resident ID-card numbers (GB 11643-1999): check digit, validation, normalisation.

Pure Python for the simulator and unit tests, plus Spark column expressions that apply the same
rules to millions of rows without a Python UDF.
"""
from __future__ import annotations

import datetime as dt
import re

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # indexed by (sum of digit × weight) mod 11
_FULLWIDTH = str.maketrans("０１２３４５６７８９ＸｘX", "0123456789XXX")
_SHAPE = re.compile(r"^\d{17}[\dX]$")


def check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalise(raw: str | None) -> str | None:
    """Strip, fold full-width digits and a lowercase x, and upgrade a 15-digit (1st generation)
    number to 18 digits. Returns None for an empty value; does not validate."""
    if raw is None:
        return None
    s = raw.strip().translate(_FULLWIDTH).upper().replace(" ", "")
    if not s:
        return None
    if len(s) == 15 and s.isdigit():  # GB 11643-1989: YYMMDD birth date, no check digit
        first17 = s[:6] + "19" + s[6:]
        return first17 + check_char(first17)
    return s


def invalid_reason(number: str | None) -> str | None:
    """None when ``number`` is a valid 18-digit ID-card number, else a reason code."""
    if not number:
        return "id_card_missing"
    if not _SHAPE.match(number):
        return "id_card_bad_format"
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "id_card_bad_birth_date"
    if check_char(number[:17]) != number[17]:
        return "id_card_bad_check_digit"
    return None


def is_valid(number: str | None) -> bool:
    return invalid_reason(number) is None


def make(area_code: str, birth: dt.date, sequence: int, female: bool) -> str:
    """A valid number: 6-digit area, birth date, 3-digit sequence whose last digit's parity is the
    sex (odd = male), and the check character."""
    seq = sequence % 1000
    if (seq % 2 == 1) == female:  # odd sequence means male
        seq = (seq + 1) % 1000
    first17 = f"{area_code[:6]}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_char(first17)


# ---- Spark expressions -------------------------------------------------------------------------

def spark_invalid_reason(col):
    """Column expression: null when ``col`` is a valid 18-digit number, else the reason code
    (same codes as :func:`invalid_reason`)."""
    from pyspark.sql import functions as F

    total = sum(
        (F.substring(col, i + 1, 1).cast("int") * F.lit(w) for i, w in enumerate(WEIGHTS)),
        F.lit(0),
    )
    expected = F.substring(F.lit(CHECK_CHARS), (total % 11 + 1).cast("int"), 1)
    birth = F.try_to_date(F.substring(col, 7, 8), "yyyyMMdd")
    return (
        F.when(col.isNull() | (F.trim(col) == ""), F.lit("id_card_missing"))
        .when(~col.rlike(r"^\d{17}[\dX]$"), F.lit("id_card_bad_format"))
        .when(birth.isNull(), F.lit("id_card_bad_birth_date"))
        .when(expected != F.substring(col, 18, 1), F.lit("id_card_bad_check_digit"))
    )
