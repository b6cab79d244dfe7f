"""Bronze hypertension registry (高血压患者管理): residents enrolled in hypertension management."""
from __future__ import annotations

import great_expectations as gx

from expectations.builders import (
    PLAUSIBILITY,
    WARNING,
    bronze_suite,
    date_column,
    not_before,
    not_null,
    rows_query,
)
from ingest.simulator import source_schema

KEY = "registry_id"
# the columns the regional system's schema defines; bronze adds the metadata columns
SOURCE_COLUMNS = tuple(column.name for column in source_schema.hypertension_registry.columns)


def build_suite() -> gx.ExpectationSuite:
    """The suite ``bronze__regional__hypertension_registry``."""
    return bronze_suite(
        "bronze__regional__hypertension_registry",
        key_column=KEY,
        source_columns=SOURCE_COLUMNS,
        checks=[
            not_null("resident_id"),
            not_null("org_code"),
            not_null("doctor_id", severity=WARNING),
            # diagnosis may predate the registry and be unknown; not after registration
            *date_column("diagnosed_date", key_column=KEY, required=False, not_in_future=False),
            *date_column("registered_date", key_column=KEY),
            not_before("registered_date", "diagnosed_date"),
            rows_query(
                "a resident has at most one active registration",
                "SELECT resident_id, count(*) AS registrations FROM {batch} "
                "WHERE is_deleted = 0 GROUP BY resident_id HAVING count(*) > 1",
                category=PLAUSIBILITY,
                severity=WARNING,
            ),
        ],
    )
