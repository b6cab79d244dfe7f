"""The one runner of the Great Expectations suites in :mod:`expectations.suites`.

:func:`validate` checks one Spark DataFrame against the suite named after its table
(``bronze.regional__residents`` → ``expectations/suites/bronze__regional__residents.py``) through
a GX Checkpoint whose ``UpdateDataDocsAction`` writes the Data Docs site to ``data_docs_dir``;
:func:`validate_many` does the same for several tables in one context and builds Data Docs once.
Both return :class:`ValidationOutcome` objects; :func:`raise_on_critical` turns critical failures
into a :class:`DataQualityError`.

The GX context is built from code each call, never from a ``great_expectations.yml``. Without
``gx_dir`` its stores live in memory, so the Data Docs index lists only the tables of that call
(GX removes pages whose results are not in the store). Pass ``gx_dir`` (``settings.gx_dir``)
for suites and validation results kept on disk, so the site accumulates across tasks.

``ValidationOutcome.results_rows`` holds one row per expectation, without timestamps or GX's
random ids, keyed by ``result_key`` = sha256(table, table version, expectation): validating the
same table version twice yields identical rows, so a MERGE into ``ops.dq_results`` is a no-op;
given those stored rows, :func:`validate_many` does not validate that version again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

# set before GX is imported: GX reads it at import and at context creation
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
from great_expectations.checkpoint import UpdateDataDocsAction  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    FilesystemStoreBackendDefaults,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier,
)

from expectations.builders import CRITICAL  # noqa: E402
from lakehouse.tables import DQ_RESULTS  # noqa: E402

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SUITES_PACKAGE = "expectations.suites"
DATA_DOCS_SITE = "jiceng"
DATASOURCE = "jiceng_spark"
BATCH_DEFINITION = "whole_dataframe"
INDEX_RESULTS_LIMIT = 200
# BASIC has the counts; SUMMARY adds index-list metrics (more Spark jobs). No sample values: GX
# would copy up to 20 failing values per expectation into the results and the Data Docs pages,
# and here those are ID-card numbers, names and phone numbers.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
# kwargs that name the batch or the run, not the check: left out of result_key
_NON_IDENTIFYING_KWARGS = ("batch_id", "result_format", "catch_exceptions")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$")

# the columns of ops.dq_results, where the pipeline stores these rows
RESULT_COLUMNS = DQ_RESULTS.columns


class DataQualityError(RuntimeError):
    """A critical expectation failed: the data must not flow on."""


@dataclass(frozen=True)
class ValidationOutcome:
    """What one table's validation found.

    ``success`` is False only when a *critical* expectation failed (GX's own suite success also
    counts warnings). ``critical_failures`` and ``warnings`` are the failed rows of
    ``results_rows`` (dicts with the keys of :data:`RESULT_COLUMNS`).
    """

    table: str
    suite: str
    success: bool
    critical_failures: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    results_rows: list[dict[str, Any]]
    table_version: int | None = None
    data_docs_index: Path | None = field(default=None, compare=False)
    # rebuilt from results stored by an earlier validation of this version (nothing new to store)
    from_store: bool = field(default=False, compare=False)


def suite_name_for(table_name: str) -> str:
    """``bronze.regional__residents`` → ``bronze__regional__residents``."""
    if not _TABLE_NAME.match(table_name):
        raise ValueError(f"not a table name of the form layer.entity: {table_name!r}")
    return table_name.replace(".", "__", 1)


def _generated() -> dict:
    """Suites built from a catalogue rather than written by hand (the silver entities)."""
    from expectations.silver import SUITES

    return SUITES


def _hand_written() -> set[str]:
    import pkgutil

    package = importlib.import_module(SUITES_PACKAGE)
    return {m.name for m in pkgutil.iter_modules(package.__path__)}


def suite_tables(layer: str, lake_root: str | None = None) -> list[str]:
    """The tables of ``layer`` that have a suite: hand-written
    (``expectations/suites/<layer>__<entity>.py``), generated from the silver catalogue
    (:mod:`expectations.silver`), and, given ``lake_root``, every bronze table there that a
    connector declares (:mod:`expectations.bronze`) and every other silver table a job defines."""
    names = {n.replace("__", ".", 1) for n in _hand_written() | set(_generated())}
    if lake_root is not None and layer in ("bronze", "silver"):
        from expectations.bronze import keys_of
        from expectations.silver import catalogued_tables

        known = (lambda t: keys_of(t) is not None) if layer == "bronze" else catalogued_tables().__contains__
        base = Path(lake_root) / layer
        found = sorted(d.name for d in base.iterdir() if (d / "_delta_log").is_dir()) if base.is_dir() else []
        names |= {f"{layer}.{n}" for n in found if known(f"{layer}.{n}")}
    return sorted(n for n in names if n.startswith(f"{layer}."))


def load_suite(table_name: str, columns: list[str] | None = None) -> gx.ExpectationSuite:
    """The suite of ``table_name``: built by ``expectations/suites/<layer>__<entity>.py``, generated
    from the silver catalogue (:mod:`expectations.silver`), or, for another bronze table with
    ``columns``, generated from its connector's declaration (:mod:`expectations.bronze`)."""
    suite_name = suite_name_for(table_name)
    if suite_name in _generated():
        return _generated()[suite_name]()
    if suite_name not in _hand_written():
        if table_name.startswith("bronze.") and columns is not None:
            from expectations.bronze import build_bronze_suite

            return build_bronze_suite(table_name, list(columns))
        if table_name.startswith("silver."):
            from expectations.silver import build_table_suite, catalogued_tables

            if table_name in catalogued_tables():
                return build_table_suite(table_name)
        raise LookupError(f"no expectation suite for {table_name}: expected {SUITES_PACKAGE}.{suite_name}")
    module = importlib.import_module(f"{SUITES_PACKAGE}.{suite_name}")
    suite = module.build_suite()
    if suite.name != suite_name:
        raise ValueError(f"{module.__name__}.build_suite() returned suite {suite.name!r}")
    return suite


def validate(
    spark: SparkSession,
    table_name: str,
    df: DataFrame,
    data_docs_dir: Path,
    gx_dir: Path | None = None,
    table_version: int | None = None,
) -> ValidationOutcome:
    """Validate ``df`` (the contents of ``table_name``) against its suite.

    Runs a Checkpoint with an ``UpdateDataDocsAction`` (site at ``data_docs_dir/index.html``);
    ``gx_dir`` keeps GX's stores on disk; ``table_version`` (the Delta version read) goes into
    every result row and its key. Returns the :class:`ValidationOutcome`; never raises on failed
    expectations (see :func:`raise_on_critical`).
    """
    context = _context(Path(data_docs_dir), gx_dir)
    return _run(
        spark,
        context,
        table_name,
        df,
        table_version,
        actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE])],
        data_docs_dir=Path(data_docs_dir),
    )


def validate_many(
    spark: SparkSession,
    tables: Mapping[str, DataFrame],
    data_docs_dir: Path,
    gx_dir: Path | None = None,
    table_versions: Mapping[str, int | None] | None = None,
    recorded: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
) -> list[ValidationOutcome]:
    """Validate each ``{table_name: df}`` in one GX context, then build Data Docs once.

    ``recorded`` holds result rows already stored (``ops.dq_results``) for the tables at the
    versions in ``table_versions``: a table version whose every expectation of today's suite has
    a stored result is not validated again, its outcome is rebuilt from those rows (a rerun, or a
    day that left the table as it was, costs no Spark job). A changed suite validates again.
    Returns the outcomes in the order of ``tables``.
    """
    data_docs_dir = Path(data_docs_dir)
    table_versions = table_versions or {}
    recorded = recorded or {}
    context = None
    outcomes, resources = [], []
    for table_name, df in tables.items():
        version = table_versions.get(table_name)
        outcome = None
        if version is not None and recorded.get(table_name):
            outcome = _recorded_outcome(table_name, load_suite(table_name, df.columns), version,
                                        recorded[table_name], data_docs_dir)
        if outcome is None:
            context = context or _context(data_docs_dir, gx_dir)
            outcome = _run(spark, context, table_name, df, version, actions=[],
                           data_docs_dir=data_docs_dir, resources=resources)
        outcomes.append(outcome)
    if resources:
        # what UpdateDataDocsAction does per result, done once: the pages of these results
        # and suites, then the index
        context.build_data_docs(site_names=[DATA_DOCS_SITE], resource_identifiers=resources)
    return outcomes


def raise_on_critical(outcomes: ValidationOutcome | Iterable[ValidationOutcome]) -> None:
    """Raise :class:`DataQualityError` listing every critical failure in ``outcomes``."""
    if isinstance(outcomes, ValidationOutcome):
        outcomes = [outcomes]
    failed = [o for o in outcomes if o.critical_failures]
    if not failed:
        return
    lines = [f"critical data-quality failures in {len(failed)} table(s):"]
    for outcome in failed:
        version = "" if outcome.table_version is None else f", version {outcome.table_version}"
        lines.append(f"  {outcome.table} (suite {outcome.suite}{version}):")
        lines += [f"    - {describe(row)}" for row in outcome.critical_failures]
        if outcome.data_docs_index is not None:
            lines.append(f"    Data Docs: {outcome.data_docs_index}")
    raise DataQualityError("\n".join(lines))


def describe(row: Mapping[str, Any]) -> str:
    """One line for a result row: the expectation, its column and how many rows failed."""
    target = f"({row['column']})" if row.get("column") else ""
    text = f"{row['expectation_type']}{target}"
    if row.get("description"):
        text += f" [{row['description']}]"
    count, total = row.get("unexpected_count"), row.get("element_count")
    if count is not None and total is not None:
        text += f": {count} of {total} rows unexpected ({row.get('unexpected_percent') or 0:.2f}%)"
    elif count is not None:
        text += f": {count} unexpected rows"
    elif row.get("observed_value") is not None:
        observed = row["observed_value"]
        text += f": {observed}" if observed.startswith("error: ") else f": observed {observed}"
    return text


# ----------------------------------------------------------------------------------------------
# internals


def _context(data_docs_dir: Path, gx_dir: Path | None):
    """A GX context configured in code: stores in memory or under ``gx_dir``, one docs site."""
    backend = (
        FilesystemStoreBackendDefaults(root_directory=str(Path(gx_dir).resolve()))
        if gx_dir is not None
        else InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    )
    config = DataContextConfig(
        store_backend_defaults=backend,
        data_docs_sites={
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir.resolve()),
                },
                # pages of older runs stay on disk; the index lists the latest results only
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": INDEX_RESULTS_LIMIT,
                },
            }
        },
        analytics_enabled=False,
        # tqdm bars, three lines per expectation batch, in every task log otherwise
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    # persist=False: the runner caches the DataFrame itself and releases it afterwards; GX
    # would persist it and never unpersist.
    context.data_sources.add_or_update_spark(name=DATASOURCE, persist=False)
    return context


def _run(
    spark: SparkSession,
    context,
    table_name: str,
    df: DataFrame,
    table_version: int | None,
    *,
    actions: list,
    data_docs_dir: Path,
    resources: list | None = None,
) -> ValidationOutcome:
    suite = context.suites.add_or_update(load_suite(table_name, df.columns))
    datasource = context.data_sources.get(DATASOURCE)
    asset = datasource.add_dataframe_asset(name=table_name)
    batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=[definition],
            actions=actions,
            result_format=RESULT_FORMAT,
        )
    )
    version = "" if table_version is None else f"@v{table_version}"
    run_id = RunIdentifier(
        run_name=f"{table_name}{version}", run_time=dt.datetime.now(dt.timezone.utc)
    )
    cached_here = not df.is_cached
    if cached_here:  # every expectation scans the DataFrame: read the Delta files once
        df.persist()
    try:
        result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_id)
    finally:
        # GX registers the batch as the session-wide temp view "tmp_view" for SQL checks
        spark.catalog.dropTempView("tmp_view")
        if cached_here:
            df.unpersist()
    (result_id, suite_result), = result.run_results.items()
    if resources is not None:
        resources += [result_id, ExpectationSuiteIdentifier(name=suite.name)]
    rows, failed = [], []
    for expectation_result in suite_result.results:
        row = _result_row(table_name, suite.name, table_version, expectation_result)
        rows.append(row)
        if not row["success"]:
            # the description is for messages only, not a stored column
            failed.append({**row, "description": expectation_result.expectation_config.description})
    return _outcome(table_name, suite.name, table_version, rows, failed, data_docs_dir)


def _outcome(table_name: str, suite_name: str, table_version: int | None, rows: list[dict[str, Any]],
             failed: list[dict[str, Any]], data_docs_dir: Path, from_store: bool = False) -> ValidationOutcome:
    critical = [r for r in failed if r["severity"] == CRITICAL]
    return ValidationOutcome(
        table=table_name,
        suite=suite_name,
        success=not critical,
        critical_failures=critical,
        warnings=[r for r in failed if r["severity"] != CRITICAL],
        results_rows=rows,
        table_version=table_version,
        data_docs_index=data_docs_dir / "index.html",
        from_store=from_store,
    )


def _identifying(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in _NON_IDENTIFYING_KWARGS}


def _result_key(table_name: str, table_version: int | None, expectation_type: str,
                kwargs: Mapping[str, Any]) -> str:
    """sha256 of what identifies a result: the table, its version and the check."""
    identity = json.dumps([table_name, table_version, expectation_type, kwargs], sort_keys=True, default=str)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _recorded_outcome(table_name: str, suite: gx.ExpectationSuite, table_version: int,
                      recorded: Iterable[Mapping[str, Any]], data_docs_dir: Path) -> ValidationOutcome | None:
    """The outcome of ``suite`` on ``table_version`` rebuilt from stored result rows, or None
    when an expectation of the suite has no stored result for that version."""
    by_key = {r["result_key"]: dict(r) for r in recorded}
    keys = [_result_key(table_name, table_version, e.configuration.type, _identifying(e.configuration.kwargs))
            for e in suite.expectations]
    if not keys or any(k not in by_key for k in keys):
        return None
    rows = [by_key[k] for k in keys]
    return _outcome(table_name, suite.name, table_version, rows, [r for r in rows if not r["success"]],
                    data_docs_dir, from_store=True)


def _result_row(
    table_name: str, suite_name: str, table_version: int | None, result
) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = _identifying(config.kwargs)
    meta = config.meta or {}
    severity = getattr(config, "severity", None)
    severity = getattr(severity, "value", severity) or meta.get("severity") or CRITICAL
    details = result.result or {}
    observed = details.get("observed_value")
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:  # expect_table_columns_to_match_set: say what is missing, not all columns
        observed = mismatched
    error = _error_message(result.exception_info)
    if error:
        observed = f"error: {error}"
    unexpected_count = details.get("unexpected_count")
    if unexpected_count is None and config.type == "unexpected_rows_expectation":
        unexpected_count = observed if isinstance(observed, int) else None
    return {
        "result_key": _result_key(table_name, table_version, config.type, kwargs),
        "table_name": table_name,
        "suite_name": suite_name,
        "table_version": table_version,
        "expectation_type": config.type,
        "column": _column_of(kwargs),
        "category": meta.get("category"),
        "severity": severity,
        "success": bool(result.success),
        "element_count": details.get("element_count"),
        "unexpected_count": unexpected_count,
        "unexpected_percent": details.get("unexpected_percent"),
        "observed_value": None
        if observed is None
        else observed
        if isinstance(observed, str)
        else json.dumps(observed, sort_keys=True, default=str, ensure_ascii=False),
    }


def _error_message(exception_info: Mapping[str, Any] | None) -> str | None:
    """The first line of the error that stopped an expectation, if one did.

    GX 1.x reports an expectation's own error as ``{"raised_exception": True,
    "exception_message": ...}`` but a failed metric (a missing column, bad SQL) as
    ``{metric_id: ExceptionInfo}``.
    """
    if not exception_info:
        return None
    candidates = [exception_info, *exception_info.values()]
    for info in candidates:
        raised = info.get("raised_exception") if isinstance(info, Mapping) else getattr(
            info, "raised_exception", False
        )
        if raised:
            message = (
                info.get("exception_message")
                if isinstance(info, Mapping)
                else getattr(info, "exception_message", "")
            )
            return (str(message or "exception").strip().splitlines() or ["exception"])[0][:300]
    return None


def _column_of(kwargs: Mapping[str, Any]) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return None


__all__ = [
    "DataQualityError",
    "ValidationOutcome",
    "load_suite",
    "raise_on_critical",
    "suite_name_for",
    "validate",
    "validate_many",
]
