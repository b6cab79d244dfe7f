"""The Great Expectations layer on bronze tables: suites, runner, Data Docs, rerun stability."""
from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import re

import pytest

from expectations import builders, suites
from expectations.runner import (
    RESULT_COLUMNS,
    DataQualityError,
    load_suite,
    raise_on_critical,
    validate,
    validate_many,
)
from lakehouse import idcard

RESIDENTS = "bronze.regional__residents"
FOLLOWUPS = "bronze.regional__hypertension_followups"
ORG_UNITS = "bronze.regional__org_units"
ARCHIVES = "bronze.regional__health_archives"
REGISTRY = "bronze.regional__hypertension_registry"

METADATA_SCHEMA = (
    "_batch_id string, _source string, _ingested_at timestamp, _source_file string, "
    "_row_hash string"
)
AUDIT_SCHEMA = "created_at string, updated_at string, is_deleted int"
AUDIT = ("2024-01-01 08:00:00", "2024-06-01 09:30:00", 0)
_INGESTED_AT = dt.datetime(2025, 1, 2, 3, 4, 5)

SCHEMAS = {
    ORG_UNITS: "org_code string, org_name string, org_type string, level string, "
    "parent_code string, area_code string",
    RESIDENTS: "resident_id string, id_card_no string, name string, sex string, "
    "birth_date string, phone string, address string, area_code string",
    ARCHIVES: "archive_no string, resident_id string, org_code string, created_date string",
    REGISTRY: "registry_id string, resident_id string, org_code string, doctor_id string, "
    "diagnosed_date string, registered_date string",
    FOLLOWUPS: "followup_id string, registry_id string, resident_id string, org_code string, "
    "doctor_id string, followup_date string, followup_type string, sbp_mmhg int, dbp_mmhg int",
}

def id_card(area: str, birth_date: str, sequence: int) -> str:
    """A GB 11643 ID-card number with a correct check character."""
    body = f"{area}{birth_date.replace('-', '')}{sequence:03d}"
    return body + idcard.check_char(body)


def bronze_df(spark, table: str, rows: list[tuple]):
    """A bronze DataFrame of ``table``: ``rows`` are the source columns before the audit ones;
    the source system's other columns (which no check here is about) are NULL."""
    from pyspark.sql import functions as F

    from ingest.simulator import source_schema

    full = [
        (*row, *AUDIT, "batch-0001", "regional", _INGESTED_AT, "regional/extract-0001", f"h{i}")
        for i, row in enumerate(rows)
    ]
    df = spark.createDataFrame(full, f"{SCHEMAS[table]}, {AUDIT_SCHEMA}, {METADATA_SCHEMA}")
    source = source_schema.metadata.tables[table.split("__", 1)[1]]
    return df.withColumns({c.name: F.lit(None).cast("string") for c in source.columns if c.name not in df.columns})


def resident(i: int, sex: str = "1", birth_date: str = "1960-03-15") -> tuple:
    sequence = 11 + 2 * i if sex == "1" else 12 + 2 * i  # odd sequence digit = male
    return (
        f"R{i:05d}", id_card("330102", birth_date, sequence), f"居民{i}", sex, birth_date,
        "13800000000", "某街道1号", "330102001",
    )


CLEAN_RESIDENTS = [
    resident(0, "1", "1960-03-15"),
    resident(1, "2", "1975-12-01"),
    resident(2, "1", "2000-02-29"),  # leap day
    resident(3, "2", "1948-07-07"),
]


def followup(i: int, followup_type: str = "clinic", sbp: int | None = 150, dbp: int | None = 90):
    return (
        f"F{i:05d}", "G00001", "R00000", "330102001", "D001", "2025-03-01", followup_type, sbp, dbp
    )


CLEAN_TABLES = {
    ORG_UNITS: [
        ("3301", "杭州市卫生健康委员会", "city_bureau", "city", None, "330100"),
        ("330102", "上城区卫生健康局", "county_bureau", "county", "3301", "330102"),
        ("330102001", "小营街道社区卫生服务中心", "community_hc", "township", "330102", "330102001"),
        ("330102001001", "某村卫生室", "village_clinic", "village", "330102001", "330102001"),
    ],
    RESIDENTS: CLEAN_RESIDENTS,
    ARCHIVES: [
        ("33010200100000001", "R00000", "330102001", "2020-05-06"),
        ("33010200100000002", "R00001", "330102001", "2021-01-31"),
    ],
    REGISTRY: [
        ("G00001", "R00000", "330102001", "D001", "2019-11-30", "2020-01-02"),
        ("G00002", "R00001", "330102001", "D002", "2021-03-04", "2021-03-04"),
    ],
    FOLLOWUPS: [followup(0), followup(1, "home", 132, 84), followup(2, "phone", None, None)],
}


@pytest.fixture(scope="module")
def spark(spark):
    """The shared session of tests/conftest.py (CI, local[2], temporary JL_HOME), tuned as the
    pipeline's validation steps tune it (:func:`lakehouse.spark.many_small_queries`: about 40 %
    off this file's time). Restored for the other test modules."""
    from lakehouse.spark import many_small_queries

    with many_small_queries(spark):
        yield spark


@pytest.fixture(scope="module")
def clean_run(spark, tmp_path_factory):
    """All five bronze tables, clean, validated together (one context, Data Docs built once)."""
    root = tmp_path_factory.mktemp("clean_run")
    tables = {table: bronze_df(spark, table, rows) for table, rows in CLEAN_TABLES.items()}
    versions = {table: 7 for table in tables}
    outcomes = validate_many(spark, tables, root / "data_docs", table_versions=versions)
    return root, tables, {o.table: o for o in outcomes}


# ---------------------------------------------------------------------------------------------
# suites (no Spark)


def test_every_suite_tags_category_and_severity_consistently():
    names = [m.name for m in pkgutil.iter_modules(suites.__path__) if not m.name.startswith("_")]
    assert sorted(names) == sorted(t.replace(".", "__") for t in CLEAN_TABLES)
    for name in names:
        suite = importlib.import_module(f"{suites.__name__}.{name}").build_suite()
        assert suite.name == name
        categories = set()
        for expectation in suite.expectations:
            meta = expectation.meta or {}
            assert meta.get("category") in builders.CATEGORIES, expectation
            assert meta.get("severity") in builders.SEVERITIES, expectation
            assert expectation.severity.value == meta["severity"], expectation
            categories.add(meta["category"])
        assert categories == set(builders.CATEGORIES), name


def test_date_regex_accepts_real_dates_only():
    regex = re.compile(builders.DATE_REGEX)
    day, checked = dt.date(1896, 1, 1), 0
    while day < dt.date(2104, 12, 31):
        assert regex.match(day.isoformat()), day
        day += dt.timedelta(days=1)
        checked += 1
    for impossible in ("2023-02-29", "1900-02-29", "2100-02-29", "2023-04-31", "2023-13-01",
                       "2023-00-10", "2023-01-00", "2023-1-5", "20230105", " 2023-01-05"):
        assert not regex.match(impossible), impossible
    assert checked > 75_000


def test_unknown_table_has_no_suite():
    with pytest.raises(LookupError, match="no expectation suite for bronze.regional__unknown"):
        load_suite("bronze.regional__unknown")


# ---------------------------------------------------------------------------------------------
# validation on Spark


@pytest.mark.spark
def test_clean_bronze_tables_pass_without_warnings(clean_run):
    _, _, outcomes = clean_run
    assert set(outcomes) == set(CLEAN_TABLES)
    for table, outcome in outcomes.items():
        assert outcome.success, (table, outcome.critical_failures)
        assert outcome.critical_failures == [] and outcome.warnings == [], table
        assert len(outcome.results_rows) == len(load_suite(table).expectations)
        for row in outcome.results_rows:
            assert set(row) == set(RESULT_COLUMNS)
            assert row["table_version"] == 7 and row["table_name"] == table
            assert row["category"] in builders.CATEGORIES
        assert len({row["result_key"] for row in outcome.results_rows}) == len(outcome.results_rows)


@pytest.mark.spark
def test_data_docs_index_lists_every_suite(clean_run):
    root, _, outcomes = clean_run
    index = root / "data_docs" / "index.html"
    assert index.is_file()
    html = index.read_text(encoding="utf-8")
    for outcome in outcomes.values():
        assert outcome.data_docs_index == index
        assert outcome.suite in html


@pytest.mark.spark
def test_revalidating_the_same_table_version_gives_identical_rows(spark, clean_run, tmp_path):
    _, tables, outcomes = clean_run
    again = validate(spark, RESIDENTS, tables[RESIDENTS], tmp_path / "docs", table_version=7)
    assert again.results_rows == outcomes[RESIDENTS].results_rows
    # a single validation writes Data Docs through the checkpoint's UpdateDataDocsAction
    assert "bronze__regional__residents" in (tmp_path / "docs" / "index.html").read_text("utf-8")


@pytest.mark.spark
def test_a_table_version_validated_before_is_not_validated_again(spark, clean_run, tmp_path):
    """A rerun (or a day a source sent nothing) finds the table at a version whose results are
    stored: those results stand, a held table stays held, and no expectation runs on the data.
    A suite with an expectation that has no stored result validates the version again."""
    _, tables, outcomes = clean_run
    bad = validate(spark, RESIDENTS, bronze_df(spark, RESIDENTS, [*CLEAN_RESIDENTS, (None, *resident(9)[1:])]),
                   tmp_path / "docs", table_version=8)
    assert not bad.success
    # given the stored rows, the clean tables' data is never looked at: broken frames pass as before
    broken = bronze_df(spark, RESIDENTS, [(None, *resident(9)[1:])])
    recorded = {RESIDENTS: outcomes[RESIDENTS].results_rows, FOLLOWUPS: bad.results_rows}
    again = validate_many(spark, {RESIDENTS: broken, FOLLOWUPS: tables[FOLLOWUPS]}, tmp_path / "docs",
                          table_versions={RESIDENTS: 7, FOLLOWUPS: 8}, recorded=recorded)
    by_table = {o.table: o for o in again}
    by_key = lambda o: sorted(o.results_rows, key=lambda r: r["result_key"])  # noqa: E731
    assert by_table[RESIDENTS].from_store and by_table[RESIDENTS].success
    assert by_key(by_table[RESIDENTS]) == by_key(outcomes[RESIDENTS])
    # FOLLOWUPS at version 8 has no stored results of its own suite (those rows are another
    # table's): validated, and clean
    assert not by_table[FOLLOWUPS].from_store and by_table[FOLLOWUPS].success
    # the held version stays held, with the same failures
    held = validate_many(spark, {RESIDENTS: tables[RESIDENTS]}, tmp_path / "docs",
                         table_versions={RESIDENTS: 8}, recorded={RESIDENTS: bad.results_rows})
    failures = lambda o: [(r["expectation_type"], r["column"], r["unexpected_count"]) for r in o.critical_failures]  # noqa: E731
    assert held[0].from_store and failures(held[0]) == failures(bad) != []
    # one stored result missing (an expectation added to the suite since): validated again
    partial = validate_many(spark, {RESIDENTS: tables[RESIDENTS]}, tmp_path / "docs",
                            table_versions={RESIDENTS: 8}, recorded={RESIDENTS: bad.results_rows[1:]})
    assert not partial[0].from_store and partial[0].success


@pytest.mark.spark
def test_with_gx_dir_data_docs_accumulate_across_calls(spark, tmp_path):
    gx_dir, docs = tmp_path / "gx", tmp_path / "docs"
    for table in (ORG_UNITS, ARCHIVES):
        df = bronze_df(spark, table, CLEAN_TABLES[table])
        assert validate(spark, table, df, docs, gx_dir=gx_dir, table_version=1).success
    html = (docs / "index.html").read_text("utf-8")
    assert "bronze__regional__org_units" in html and "bronze__regional__health_archives" in html
    assert list((gx_dir / "uncommitted" / "validations").rglob("*.json"))


@pytest.mark.spark
def test_bad_sex_null_key_and_duplicate_key_fail_critically(spark, tmp_path):
    rows = [
        *CLEAN_RESIDENTS,
        (*resident(0)[:3], "3", *resident(0)[4:]),  # duplicate key R00000, sex code 3
        (None, *resident(9)[1:]),  # no key
    ]
    outcome = validate(spark, RESIDENTS, bronze_df(spark, RESIDENTS, rows), tmp_path / "docs",
                       table_version=3)
    assert not outcome.success
    failed = {(r["expectation_type"], r["column"]): r for r in outcome.critical_failures}
    assert failed.keys() == {
        ("expect_column_values_to_not_be_null", "resident_id"),
        ("expect_column_values_to_be_unique", "resident_id"),
        ("expect_column_values_to_be_in_set", "sex"),
    }
    assert failed[("expect_column_values_to_be_in_set", "sex")]["unexpected_count"] == 1
    assert failed[("expect_column_values_to_be_unique", "resident_id")]["unexpected_count"] == 2
    assert all(r["category"] and r["severity"] == "critical" for r in failed.values())

    with pytest.raises(DataQualityError) as excinfo:
        raise_on_critical([outcome])
    message = str(excinfo.value)
    assert "bronze.regional__residents" in message and "version 3" in message
    assert "expect_column_values_to_be_in_set(sex): 1 of 6 rows unexpected" in message
    assert "expect_column_values_to_be_unique(resident_id): 2 of 6 rows unexpected" in message
    assert "expect_column_values_to_not_be_null(resident_id)" in message
    assert "13800000000" not in message and "居民" not in message  # no personal data
    pages = "".join(p.read_text("utf-8") for p in (tmp_path / "docs").rglob("*.html"))
    assert "bronze__regional__residents" in pages
    assert not any(row[1] in pages for row in rows if row[1]), "ID-card numbers in Data Docs"


@pytest.mark.spark
def test_implausible_blood_pressure_is_only_a_warning(spark, tmp_path):
    rows = [*CLEAN_TABLES[FOLLOWUPS], followup(3, "clinic", 320, 90), followup(4, "home", 80, 95)]
    outcome = validate(spark, FOLLOWUPS, bronze_df(spark, FOLLOWUPS, rows), tmp_path / "docs")
    assert outcome.success and outcome.critical_failures == []
    raise_on_critical(outcome)  # does not raise
    warned = {(r["expectation_type"], r["column"]): r for r in outcome.warnings}
    assert warned.keys() == {
        ("expect_column_values_to_be_between", "sbp_mmhg"),
        ("expect_column_pair_values_a_to_be_greater_than_b", "sbp_mmhg,dbp_mmhg"),
    }
    assert warned[("expect_column_values_to_be_between", "sbp_mmhg")]["unexpected_count"] == 1
    assert all(r["category"] == "plausibility" for r in warned.values())
