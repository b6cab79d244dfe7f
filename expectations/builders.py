"""Building blocks shared by the suites in :mod:`expectations.suites`.

Every expectation carries its OHDSI Data Quality Dashboard category (conformance, completeness,
plausibility) and a severity, both in ``meta`` (what the runner and ``ops.dq_results`` read) and
in GX's own ``severity`` field (what GX actions and Data Docs read). :func:`check` sets the two
together so they cannot disagree.

Severity rule: ``critical`` when the rule is part of the source contract or is already enforced
before bronze (impossible dates are quarantined on ingest, so finding one in bronze means the
pipeline is broken); ``warning`` when the value is merely implausible or is judged later (an
invalid ID-card number is kept in bronze as received: the EMPI links the record on its other
attributes).

Cost matters: GX bundles the column checks of a suite into a few Spark aggregations, but each
SQL check (``UnexpectedRowsExpectation``) is two more Spark jobs. So dates are checked with a
calendar-aware regex (leap years included) rather than a ``try_to_date`` query, event order with
a column-pair expectation on the ISO strings, and SQL is kept for what columns cannot express.
In SQL checks ``{batch}`` stands for the validated DataFrame and any other brace must be doubled;
they select the key, not personal data (the runner's BASIC result format keeps only counts
anyway, so Data Docs never show names or ID-card numbers).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import great_expectations as gx
import great_expectations.expectations as gxe

from lakehouse.tables import BRONZE_META_COLUMNS

CONFORMANCE = "conformance"
COMPLETENESS = "completeness"
PLAUSIBILITY = "plausibility"
CATEGORIES = (CONFORMANCE, COMPLETENESS, PLAUSIBILITY)

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)

# written by ingest on every bronze row
METADATA_COLUMNS = BRONZE_META_COLUMNS

# 'YYYY-MM-DD' that is a real Gregorian date: month lengths, and 29 February only in leap years
# (divisible by 4; centuries only when divisible by 400)
_MONTH_DAY = (
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"
    "|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    "|02-(0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_DATE = f"([0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
DATE_REGEX = f"^{_DATE}$"
DATETIME_REGEX = f"^{_DATE} ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
DATE_FORMAT = "yyyy-MM-dd"
# GB/T 2260 county-level code, or the 9-digit township code built on it
AREA_CODE_REGEX = r"^[0-9]{6}([0-9]{3})?$"


def check(
    expectation_class: type[gxe.Expectation],
    *,
    category: str,
    severity: str,
    description: str | None = None,
    **kwargs: Any,
) -> gxe.Expectation:
    """An expectation of ``expectation_class`` tagged with its DQD category and severity."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if description is not None:
        kwargs["description"] = description
    return expectation_class(
        meta={"category": category, "severity": severity}, severity=severity, **kwargs
    )


def rows_query(
    description: str, sql: str, *, category: str, severity: str
) -> gxe.Expectation:
    """A SQL check: ``sql`` selects the offending rows of ``{batch}`` (none means success)."""
    return check(
        gxe.UnexpectedRowsExpectation,
        category=category,
        severity=severity,
        description=description,
        unexpected_rows_query=sql,
    )


def sql_literal(regex: str) -> str:
    """``regex`` as a Spark SQL string literal inside a GX query template (braces doubled)."""
    return "'" + regex.replace("{", "{{").replace("}", "}}") + "'"


# ----------------------------------------------------------------------------------------------
# column blocks


def not_null(column: str, *, severity: str = CRITICAL) -> gxe.Expectation:
    return check(
        gxe.ExpectColumnValuesToNotBeNull, category=COMPLETENESS, severity=severity, column=column
    )


def in_set(column: str, values: Iterable[Any], *, severity: str = CRITICAL) -> gxe.Expectation:
    return check(
        gxe.ExpectColumnValuesToBeInSet,
        category=CONFORMANCE,
        severity=severity,
        column=column,
        value_set=sorted(values),
    )


def matches(
    column: str, regex: str, *, severity: str = CRITICAL, description: str | None = None
) -> gxe.Expectation:
    return check(
        gxe.ExpectColumnValuesToMatchRegex,
        category=CONFORMANCE,
        severity=severity,
        description=description,
        column=column,
        regex=regex,
    )


def of_type(column: str, spark_type: str, *, severity: str = CRITICAL) -> gxe.Expectation:
    return check(
        gxe.ExpectColumnValuesToBeOfType,
        category=CONFORMANCE,
        severity=severity,
        column=column,
        type_=spark_type,
    )


def between(
    column: str,
    min_value: float | None,
    max_value: float | None,
    *,
    severity: str = WARNING,
) -> gxe.Expectation:
    return check(
        gxe.ExpectColumnValuesToBeBetween,
        category=PLAUSIBILITY,
        severity=severity,
        column=column,
        min_value=min_value,
        max_value=max_value,
    )


def key(column: str) -> list[gxe.Expectation]:
    """The table's business key: present and unique *within the validated DataFrame*.

    If a bronze table keeps every extracted version of a row, validate the batch just written
    (filter on ``_batch_id``), not the whole table.
    """
    return [
        not_null(column),
        check(
            gxe.ExpectColumnValuesToBeUnique, category=CONFORMANCE, severity=CRITICAL, column=column
        ),
    ]


def date_column(
    column: str,
    *,
    key_column: str,
    required: bool = True,
    not_in_future: bool = True,
) -> list[gxe.Expectation]:
    """A 'YYYY-MM-DD' string column: a real calendar date (critical), not in the future (warning).

    ``required`` makes a missing value critical; otherwise it is a completeness warning.
    """
    checks = [
        not_null(column, severity=CRITICAL if required else WARNING),
        matches(column, DATE_REGEX, description=f"{column} is a real calendar date 'YYYY-MM-DD'"),
    ]
    if not_in_future:
        checks.append(
            rows_query(
                f"{column} is not in the future",
                f"SELECT {key_column}, {column} FROM {{batch}} "
                f"WHERE try_to_date({column}, '{DATE_FORMAT}') > current_date()",
                category=PLAUSIBILITY,
                severity=WARNING,
            )
        )
    return checks


def timestamp_column(column: str) -> list[gxe.Expectation]:
    """A 'YYYY-MM-DD HH:MM:SS' string column: present and a real date and time (critical)."""
    return [
        not_null(column),
        matches(
            column,
            DATETIME_REGEX,
            description=f"{column} is a real date and time 'YYYY-MM-DD HH:MM:SS'",
        ),
    ]


def not_before(later: str, earlier: str) -> gxe.Expectation:
    """Plausible event order: ``later`` >= ``earlier`` where both are present.

    Compares the strings: for the zero-padded ISO formats checked above that is date order.
    """
    return check(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB,
        category=PLAUSIBILITY,
        severity=WARNING,
        column_A=later,
        column_B=earlier,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )


# ----------------------------------------------------------------------------------------------
# suites


def bronze_suite(
    name: str,
    *,
    key_column: str,
    source_columns: Sequence[str],
    checks: Iterable[gxe.Expectation],
) -> gx.ExpectationSuite:
    """A bronze suite: the checks every bronze table shares, then the table's own ``checks``.

    Shared: the table has rows, has its source and metadata columns, a unique non-null key,
    non-null metadata, well-formed audit timestamps and a 0/1 ``is_deleted``.
    """
    shared = [
        check(
            gxe.ExpectTableRowCountToBeBetween,
            category=COMPLETENESS,
            severity=CRITICAL,
            min_value=1,
        ),
        # exact_match=False: a column the source adds later is kept in bronze, not a failure
        check(
            gxe.ExpectTableColumnsToMatchSet,
            category=CONFORMANCE,
            severity=CRITICAL,
            column_set=[*source_columns, *METADATA_COLUMNS],
            exact_match=False,
        ),
        *key(key_column),
        *(not_null(column) for column in METADATA_COLUMNS),
        of_type("_ingested_at", "TimestampType"),
        *timestamp_column("created_at"),
        *timestamp_column("updated_at"),
        not_before("updated_at", "created_at"),
        not_null("is_deleted"),
        of_type("is_deleted", "IntegerType"),
        in_set("is_deleted", [0, 1]),
    ]
    # passed to the constructor: ExpectationSuite.add_expectation needs an active Data Context,
    # and building a suite must not
    return gx.ExpectationSuite(name=name, expectations=[*shared, *checks])
