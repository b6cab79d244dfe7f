"""Bronze hypertension follow-ups (高血压随访): one visit, home visit or call per row."""
from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    COMPLETENESS,
    PLAUSIBILITY,
    WARNING,
    between,
    bronze_suite,
    check,
    date_column,
    in_set,
    not_null,
    of_type,
    rows_query,
)
from ingest.simulator import source_schema

KEY = "followup_id"
# the columns the regional system's schema defines; bronze adds the metadata columns
SOURCE_COLUMNS = tuple(column.name for column in source_schema.hypertension_followups.columns)
FOLLOWUP_TYPES = ("clinic", "home", "phone")
SBP_PLAUSIBLE_MMHG = (60, 300)
DBP_PLAUSIBLE_MMHG = (30, 200)


def build_suite() -> gx.ExpectationSuite:
    """The suite ``bronze__regional__hypertension_followups``."""
    return bronze_suite(
        "bronze__regional__hypertension_followups",
        key_column=KEY,
        source_columns=SOURCE_COLUMNS,
        checks=[
            not_null("registry_id"),
            not_null("resident_id"),
            not_null("org_code"),
            not_null("doctor_id", severity=WARNING),
            *date_column("followup_date", key_column=KEY),
            not_null("followup_type"),
            in_set("followup_type", FOLLOWUP_TYPES),
            of_type("sbp_mmhg", "IntegerType"),
            of_type("dbp_mmhg", "IntegerType"),
            between("sbp_mmhg", *SBP_PLAUSIBLE_MMHG),
            between("dbp_mmhg", *DBP_PLAUSIBLE_MMHG),
            check(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                category=PLAUSIBILITY,
                severity=WARNING,
                column_A="sbp_mmhg",
                column_B="dbp_mmhg",
                or_equal=False,
                ignore_row_if="either_value_is_missing",
            ),
            # a telephone follow-up may have no measurement; a visit should
            rows_query(
                "clinic and home follow-ups record both blood pressures",
                f"SELECT {KEY}, followup_type FROM {{batch}} "
                "WHERE followup_type IN ('clinic', 'home') "
                "AND (sbp_mmhg IS NULL OR dbp_mmhg IS NULL)",
                category=COMPLETENESS,
                severity=WARNING,
            ),
        ],
    )
