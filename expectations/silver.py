"""Suites of the silver entities, generated from their catalogue (:mod:`spark_jobs.conform.entities`).

Every silver entity table gets the same conformance and completeness core — its columns, a unique
non-null key, a known source, ``person_id`` and ``org_code`` present (critical: the pipeline put
them there, so a gap means it is broken) — plus each typed column checked for its Spark type, and
plausibility warnings where a column has a range a living person or a real visit keeps to
(:data:`RANGES`) and where a diagnosis should be an ICD-10 code. The runner finds these suites next
to the hand-written ones in ``expectations/suites`` (:data:`SUITES`).
"""
from __future__ import annotations

from functools import partial

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.builders import (
    COMPLETENESS,
    CONFORMANCE,
    CRITICAL,
    WARNING,
    between,
    check,
    key,
    matches,
    not_null,
    of_type,
)
from spark_jobs.conform.entities import ENTITIES, Entity

SPARK_TYPES = {"string": "StringType", "date": "DateType", "timestamp": "TimestampType", "int": "IntegerType",
               "double": "DoubleType", "bool": "BooleanType"}
SOURCE_REGEX = r"^(regional|legacy_[0-9]{6}|fhir_[A-Z0-9]+)$"
ICD10_REGEX = r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?$"
# (min, max) a value can have for a living person / a real record; outside: a warning
RANGES = {
    "sbp_mmhg": (50, 300), "dbp_mmhg": (20, 200), "heart_rate_bpm": (20, 250), "weight_kg": (0.5, 300),
    "height_cm": (30, 230), "fasting_glucose_mmol": (1, 40), "hemoglobin_g_l": (30, 250),
    "gestational_weeks": (0, 45), "age_months": (0, 84), "fee_yuan": (0, 1_000_000),
    "amount_yuan": (0, 1_000_000), "total_cost_yuan": (0, 10_000_000), "quantity": (0, 100_000),
}


def entity_columns(entity: Entity) -> list[str]:
    """The columns every row of the entity's silver table has."""
    cols = ["source", entity.key] + (["person_id"] if entity.person else [])
    cols += ["org_code", "township_org_code", "county_org_code"]
    for name in entity.columns:
        cols += [name, f"{name}_local"] if name in entity.codes else [name]
    return cols + ["source_created_at", "source_updated_at", "_row_hash"]


def build_entity_suite(entity: Entity) -> gx.ExpectationSuite:
    checks = [
        check(gxe.ExpectTableRowCountToBeBetween, category=COMPLETENESS, severity=WARNING, min_value=1),
        check(gxe.ExpectTableColumnsToMatchSet, category=CONFORMANCE, severity=CRITICAL,
              column_set=entity_columns(entity), exact_match=True),
        *key(entity.key),
        not_null("source"), matches("source", SOURCE_REGEX),
        not_null("org_code"),
        not_null("_row_hash"),
    ]
    if entity.person:
        checks.append(not_null("person_id"))
    if entity.event:
        checks.append(not_null(entity.event, severity=WARNING))
    for name, typ in entity.columns.items():
        checks.append(of_type(name, SPARK_TYPES[typ]))
        if name in RANGES:
            checks.append(between(name, *RANGES[name]))
    for name in entity.codes:
        checks.append(matches(name, ICD10_REGEX, severity=WARNING,
                              description=f"{name} is an ICD-10 code (a legacy code without a mapping is NULL)"))
    return gx.ExpectationSuite(name=f"silver__{entity.name}", expectations=checks)


SUITES = {f"silver__{e.name}": partial(build_entity_suite, e) for e in ENTITIES}


# the jobs that write silver before `validate_silver` runs (conform, the EMPI, ECG): their tables
# are validated there, so a broken one is held before the record flags and indicators read it
SILVER_MODULES = ("spark_jobs.conform.silver", "spark_jobs.empi.match", "spark_jobs.ecg.job",
                  "spark_jobs.imaging.job")


def catalogued_tables() -> dict[str, tuple[str, ...]]:
    """``{silver table: key}`` of every table the modules in :data:`SILVER_MODULES` define that
    is not an entity table (the EMPI's, the org units, unmapped codes, the ECG and imaging tables)."""
    import importlib

    from lakehouse.tables import TableSpec

    out = {}
    for module in SILVER_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, TableSpec) and value.layer == "silver" \
                    and value.name.replace(".", "__", 1) not in SUITES:
                out[value.name] = value.keys
    return out


def build_table_suite(table_name: str) -> gx.ExpectationSuite:
    """The suite of a silver table a job derives (EMPI, org units, unmapped codes, ECG):
    its key and row hash present, the key unique. Warnings only: the job's MERGE already refuses a
    duplicate key, so a failure here is worth a look but holds nothing."""
    keys = list(catalogued_tables()[table_name])
    checks = [
        check(gxe.ExpectTableColumnsToMatchSet, category=CONFORMANCE, severity=WARNING,
              column_set=[*keys, "_row_hash"], exact_match=False),
        *(not_null(k, severity=WARNING) for k in keys),
        not_null("_row_hash", severity=WARNING),
        check(gxe.ExpectCompoundColumnsToBeUnique, category=CONFORMANCE, severity=WARNING, column_list=keys)
        if len(keys) > 1 else
        check(gxe.ExpectColumnValuesToBeUnique, category=CONFORMANCE, severity=WARNING, column=keys[0]),
    ]
    return gx.ExpectationSuite(name=table_name.replace(".", "__", 1), expectations=checks)
