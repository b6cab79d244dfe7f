"""Bronze organisation units (机构): the city's health bureaus, centres, clinics and hospitals."""
from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    AREA_CODE_REGEX,
    CONFORMANCE,
    CRITICAL,
    PLAUSIBILITY,
    WARNING,
    bronze_suite,
    check,
    in_set,
    matches,
    not_null,
    rows_query,
)
from ingest.simulator import source_schema

KEY = "org_code"
# the columns the regional system's schema defines; bronze adds the metadata columns
SOURCE_COLUMNS = tuple(column.name for column in source_schema.org_units.columns)

# the administrative level each organisation type sits at (community centres sit at the
# sub-district, i.e. township, level)
LEVEL_OF_ORG_TYPE = {
    "city_bureau": "city",
    "city_hospital": "city",
    "county_bureau": "county",
    "county_hospital": "county",
    "township_hc": "township",
    "community_hc": "township",
    "village_clinic": "village",
}
LEVELS = ("city", "county", "township", "village")


def build_suite() -> gx.ExpectationSuite:
    """The suite ``bronze__regional__org_units``."""
    return bronze_suite(
        "bronze__regional__org_units",
        key_column=KEY,
        source_columns=SOURCE_COLUMNS,
        checks=[
            not_null("org_name", severity=WARNING),
            not_null("org_type"),
            in_set("org_type", LEVEL_OF_ORG_TYPE),
            not_null("level"),
            in_set("level", LEVELS),
            check(
                gxe.ExpectColumnPairValuesToBeInSet,
                category=PLAUSIBILITY,
                severity=WARNING,
                column_A="org_type",
                column_B="level",
                value_pairs_set=sorted(LEVEL_OF_ORG_TYPE.items()),
                ignore_row_if="either_value_is_missing",
                description="level matches org_type",
            ),
            rows_query(
                "parent_code is empty for the city bureau and only for it",
                f"SELECT {KEY}, org_type FROM {{batch}} "
                "WHERE (parent_code IS NULL) <> (org_type = 'city_bureau')",
                category=CONFORMANCE,
                severity=CRITICAL,
            ),
            not_null("area_code"),
            matches("area_code", AREA_CODE_REGEX),
        ],
    )
