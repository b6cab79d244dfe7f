"""Bronze resident health archives (居民健康档案): one archive per resident, kept by an org."""
from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    PLAUSIBILITY,
    WARNING,
    bronze_suite,
    check,
    date_column,
    matches,
    not_null,
)
from ingest.simulator import source_schema

KEY = "archive_no"
# the columns the regional system's schema defines; bronze adds the metadata columns
SOURCE_COLUMNS = tuple(column.name for column in source_schema.health_archives.columns)
ARCHIVE_NO_REGEX = r"^[0-9]{17}$"


def build_suite() -> gx.ExpectationSuite:
    """The suite ``bronze__regional__health_archives``."""
    return bronze_suite(
        "bronze__regional__health_archives",
        key_column=KEY,
        source_columns=SOURCE_COLUMNS,
        checks=[
            matches("archive_no", ARCHIVE_NO_REGEX),
            not_null("resident_id"),
            check(
                gxe.ExpectColumnValuesToBeUnique,
                category=PLAUSIBILITY,
                severity=WARNING,
                column="resident_id",
                description="one health archive per resident",
            ),
            not_null("org_code"),
            *date_column("created_date", key_column=KEY),
        ],
    )
