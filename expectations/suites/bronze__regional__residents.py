"""Bronze residents (居民) as received from the regional EHR database."""
from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    AREA_CODE_REGEX,
    CONFORMANCE,
    DATE_FORMAT,
    PLAUSIBILITY,
    WARNING,
    bronze_suite,
    check,
    date_column,
    in_set,
    matches,
    not_null,
    rows_query,
    sql_literal,
)
from ingest.simulator import source_schema
from lakehouse import idcard

KEY = "resident_id"
# the columns the regional system's schema defines; bronze adds the metadata columns
SOURCE_COLUMNS = tuple(column.name for column in source_schema.residents.columns)

# GB 11643-1999: 6-digit area code, 8-digit birth date, 3-digit sequence (odd = male), check char
ID_CARD_REGEX = r"^[0-9]{17}[0-9X]$"
SEX_CODES = ("1", "2")  # GB/T 2261.1: 1 male, 2 female
PHONE_REGEX = r"^[0-9]{11}$"


def _check_char_sql(column: str) -> str:
    """Spark SQL for the check character of ``column`` (the rule of :mod:`lakehouse.idcard`)."""
    weighted = " + ".join(
        f"CAST(substr({column}, {i + 1}, 1) AS INT) * {w}" for i, w in enumerate(idcard.WEIGHTS)
    )
    return f"substr('{idcard.CHECK_CHARS}', (({weighted}) % 11) + 1, 1)"


_WELL_FORMED_ID = f"id_card_no RLIKE {sql_literal(ID_CARD_REGEX)}"


def build_suite() -> gx.ExpectationSuite:
    """The suite ``bronze__regional__residents``."""
    return bronze_suite(
        "bronze__regional__residents",
        key_column=KEY,
        source_columns=SOURCE_COLUMNS,
        checks=[
            # identity document: bronze keeps it as received; a missing or invalid one is watched,
            # not fatal (children, newcomers, a clerk's typo): the EMPI links such records on
            # their other attributes and records the number's status in silver.person_xref
            not_null("id_card_no", severity=WARNING),
            matches("id_card_no", ID_CARD_REGEX, severity=WARNING),
            rows_query(
                "id_card_no has a valid GB 11643 check character",
                f"SELECT {KEY} FROM {{batch}} WHERE {_WELL_FORMED_ID} "
                f"AND substr(id_card_no, 18, 1) <> {_check_char_sql('id_card_no')}",
                category=CONFORMANCE,
                severity=WARNING,
            ),
            check(
                gxe.ExpectColumnValuesToBeUnique,
                category=PLAUSIBILITY,
                severity=WARNING,
                column="id_card_no",
                description="one resident per ID card (a duplicate is one person twice)",
            ),
            # demographics
            not_null("name", severity=WARNING),
            not_null("sex"),
            in_set("sex", SEX_CODES),
            *date_column("birth_date", key_column=KEY, not_in_future=False),
            rows_query(
                "birth_date is between 1900-01-01 and today",
                f"SELECT {KEY}, birth_date FROM {{batch}} "
                f"WHERE try_to_date(birth_date, '{DATE_FORMAT}') "
                "NOT BETWEEN DATE'1900-01-01' AND current_date()",
                category=PLAUSIBILITY,
                severity=WARNING,
            ),
            rows_query(
                "sex and birth_date agree with the ID card (birth date digits 7-14; "
                "17th digit odd = male)",
                f"SELECT {KEY} FROM {{batch}} WHERE {_WELL_FORMED_ID} AND ("
                "substr(id_card_no, 7, 8) <> replace(birth_date, '-', '') "
                "OR CASE WHEN CAST(substr(id_card_no, 17, 1) AS INT) % 2 = 1 THEN '1' ELSE '2' END"
                " <> sex)",
                category=PLAUSIBILITY,
                severity=WARNING,
            ),
            # contact and residence
            matches("phone", PHONE_REGEX, severity=WARNING),
            not_null("area_code", severity=WARNING),
            matches("area_code", AREA_CODE_REGEX, severity=WARNING),
        ],
    )
