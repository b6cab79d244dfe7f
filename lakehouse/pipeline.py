"""The thin slice of the platform as plain functions, one per pipeline stage.

The CLI, the Airflow DAG and the end-to-end tests all call these; none of them holds logic of its
own. Each step takes optional ``settings`` (default: the environment's) and returns a small
JSON-serialisable summary dict.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from lakehouse.settings import REPO_ROOT, Settings, get_settings

STEPS = (
    "simulate",
    "ingest",
    "validate_bronze",
    "conform",
    "process_ecg",
    "process_imaging",
    "validate_silver",
    "flag_records",
    "score_quality",
    "compute_indicators",
    "build_gold",
    "export_serving",
    "build_reports",
    "provision_dashboards",
)
BI_PYTHON = REPO_ROOT / ".venv-bi" / "bin" / "python"


def _spark(settings: Settings):
    from lakehouse.spark import get_spark

    return get_spark(settings)


def simulate(settings: Settings | None = None, residents: int = 2000, seed: int = 20250101,
             start: str | None = None, days: int | None = None, progress=None, **city_options) -> dict:
    """Write the simulated city as it stands at the end of day ``start + days - 1``: the regional
    source database, the file deliveries in the drop zone and the ground-truth manifests."""
    import datetime as dt

    from ingest.simulator.city import CityConfig, simulate_city

    s = settings or get_settings()
    if start is not None:
        city_options["start"] = dt.date.fromisoformat(str(start))
    if days is not None:
        city_options["days"] = days
    config = CityConfig(residents=residents, seed=seed, **city_options)
    summary = simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, config, progress=progress)
    return asdict(summary)


def ingest(settings: Settings | None = None, full: bool = False, progress=None,
           sources: tuple[str, ...] | None = None, until=None) -> dict:
    """Load what the sources delivered before ``until`` (default: everything) and is not loaded
    yet into bronze; ``full`` re-reads everything; ``sources`` picks source kinds (default all)."""
    from ingest.connectors.sources import ingest_sources

    s = settings or get_settings()
    results = ingest_sources(_spark(s), s, sources, until=interval_day(until), full=full, progress=progress)
    return {"batches": [{"source": kind, **{k: v for k, v in asdict(r).items() if k != "record"}}
                        for kind, rs in results.items() for r in rs if r.batch_id]}


def interval_day(moment):
    """The delivery day that ends a data interval: an Airflow ``data_interval_end`` (aware, any
    zone) as a date in China time, where the sources' days begin; a date or 'YYYY-MM-DD' as is."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    if moment is None or (isinstance(moment, dt.date) and not isinstance(moment, dt.datetime)):
        return moment
    if isinstance(moment, str):
        return dt.date.fromisoformat(moment[:10])
    local = moment.astimezone(ZoneInfo("Asia/Shanghai")) if moment.tzinfo else moment
    if local.time() != dt.time(0):
        raise ValueError(f"a data interval must end at midnight China time, not {local.isoformat()}")
    return local.date()


def validate_bronze(settings: Settings | None = None, tables: list[str] | None = None) -> dict:
    """Run the Great Expectations suites of the bronze tables (or of ``tables``), store the results
    in ``ops.dq_results`` and build Data Docs. A table with a failed critical expectation is
    *held*: the steps that build on it leave what they derive from it as it was, every other table
    flows on (see :func:`lakehouse.ops.held_tables`); the summary lists the held tables."""
    return _validate_layer(settings or get_settings(), "bronze", tables)


def validate_silver(settings: Settings | None = None, tables: list[str] | None = None) -> dict:
    """The same for the silver entity tables (suites generated from their catalogue)."""
    return _validate_layer(settings or get_settings(), "silver", tables)


def _validate_layer(s: Settings, layer: str, only: list[str] | None = None) -> dict:
    import logging

    from expectations.runner import describe, suite_tables, validate_many
    from lakehouse import delta, ops
    from lakehouse.spark import many_small_queries
    from lakehouse.tables import TableSpec

    spark = _spark(s)
    frames, versions = {}, {}
    for name in suite_tables(layer, s.lake_root):
        if only is not None and name not in only:
            continue
        spec = TableSpec(name, keys=())
        version = delta.table_version(spark, spec.path(s.lake_root))
        if version is None:
            continue
        frames[spec.name] = delta.read(spark, spec, s.lake_root, version=version)
        versions[spec.name] = version
    # a table version validated before (a rerun, a source that sent nothing today) is not
    # validated again: its stored results stand
    recorded = ops.dq_results_at(spark, s.lake_root, versions)
    with many_small_queries(spark):
        outcomes = validate_many(spark, frames, s.data_docs_dir, s.gx_dir, versions, recorded)
    ops.record_dq_results(spark, s.lake_root, [row for o in outcomes if not o.from_store for row in o.results_rows])
    held = {o.table: [describe(r) for r in o.critical_failures] for o in outcomes if o.critical_failures}
    for table, failures in held.items():
        logging.getLogger(__name__).error("held %s (downstream steps keep its last good state): %s",
                                          table, "; ".join(failures))
    return {
        "data_docs": str(s.data_docs_dir / "index.html"),
        "tables": {o.table: {"success": o.success, "warnings": len(o.warnings), "validated": not o.from_store}
                   for o in outcomes},
        "held": held,
    }


def conform(settings: Settings | None = None) -> dict:
    """Bronze → silver: the EMPI links every identity record to a pseudonymous person_id (and
    writes restricted.person_identity), then the entities are conformed. A bronze table held by a
    failed critical expectation (:func:`lakehouse.ops.held_tables`) stops only what is built
    from it: the EMPI keeps its last links when an identity table is held, a silver entity its
    last good table when one of its inputs is."""
    from pathlib import Path

    from lakehouse import ops
    from spark_jobs.conform.silver import conform_silver
    from spark_jobs.empi.match import run_empi
    from spark_jobs.empi.records import bronze_tables

    s = settings or get_settings()
    spark = _spark(s)
    held = ops.held_tables(spark, s.lake_root)
    identity = {f"bronze.{Path(path).name}" for _, _, path in bronze_tables(s.lake_root)}
    empi_held = {t: held[t] for t in sorted(identity & set(held))}
    empi = None if empi_held else run_empi(spark, s.lake_root, s.pseudonym_key)
    silver = conform_silver(spark, s.lake_root, held=held)
    tables = silver.tables
    if empi is not None:
        tables = {**empi.tables, **tables}
    return {"empi": {"records": empi.records, "persons": empi.persons, "by_rule": empi.by_rule,
                     "review_pairs": empi.review_pairs} if empi else None,
            "tables": tables, "unchanged_inputs": silver.unchanged_inputs,
            "held": {**({"empi": [f"{t}: {'; '.join(f)}" for t, f in empi_held.items()]} if empi_held else {}),
                     **silver.held}}


def process_ecg(settings: Settings | None = None) -> dict:
    """ECG recordings landed in bronze and not processed yet → silver.ecg_recordings,
    ecg_features, ecg_flags (see :mod:`spark_jobs.ecg.job`)."""
    from spark_jobs.ecg.job import run_ecg

    s = settings or get_settings()
    return asdict(run_ecg(_spark(s), s.lake_root))


def process_imaging(settings: Settings | None = None) -> dict:
    """DICOM files landed in bronze and not catalogued yet → silver.imaging_instances, series,
    studies and thumbnails; de-identified copies for the reading centres (see
    :mod:`spark_jobs.imaging.job`)."""
    from spark_jobs.imaging.job import run_imaging

    s = settings or get_settings()
    return asdict(run_imaging(_spark(s), s.lake_root, deid_key=s.deid_key, exchange_root=str(s.exchange_root / "imaging")))


def flag_records(settings: Settings | None = None) -> dict:
    """Record-authenticity, plausibility and timeliness checks on silver → silver.record_flags."""
    from lakehouse import ops
    from spark_jobs.quality.authenticity import compute_flags

    s = settings or get_settings()
    spark = _spark(s)
    held = {t: f for t, f in ops.held_tables(spark, s.lake_root).items() if t.startswith("silver.")}
    result = compute_flags(spark, s.lake_root, held=frozenset(held))
    return {"flags": result.flags if result else {}, "held": held}


def score_quality(settings: Settings | None = None) -> dict:
    """The data-quality scorecard per institution and month → silver.dq_scorecard (see
    :mod:`spark_jobs.quality.scorecard`)."""
    from spark_jobs.quality.scorecard import compute_scorecard

    s = settings or get_settings()
    return {"scorecard": compute_scorecard(_spark(s), s.lake_root)}


def scorecard(settings: Settings | None = None, month: str | None = None) -> list[dict]:
    """The scorecard's rows, worst score first."""
    from spark_jobs.quality.scorecard import read_scorecard

    s = settings or get_settings()
    return read_scorecard(_spark(s), s.lake_root, month)


def held(settings: Settings | None = None) -> dict[str, list[str]]:
    """Tables held by a failed critical expectation: see :func:`lakehouse.ops.held_tables`."""
    from lakehouse import ops

    s = settings or get_settings()
    return ops.held_tables(_spark(s), s.lake_root)


def reconcile(settings: Settings | None = None) -> list[dict]:
    """Where every row went, per bronze table of a silver entity: see :mod:`spark_jobs.quality.reconcile`."""
    from spark_jobs.quality.reconcile import reconcile as run

    s = settings or get_settings()
    return [r.as_dict() for r in run(_spark(s), s.lake_root)]


def evaluate_flags(settings: Settings | None = None) -> list[dict]:
    """Precision / recall of each record flag against the simulator's injected defects
    (``defects.csv``): see :mod:`spark_jobs.quality.evaluate`."""
    from spark_jobs.quality.evaluate import evaluate

    s = settings or get_settings()
    truth = s.ground_truth_dir / "defects.csv"
    if not truth.is_file():
        raise FileNotFoundError(f"no ground truth at {truth}: flags can be measured on a simulated city only")
    return [c.as_dict() for c in evaluate(_spark(s), s.lake_root, truth)]


def evaluate_empi(settings: Settings | None = None) -> dict:
    """Pairwise precision / recall of the EMPI's links against the simulator's ground truth
    (``duplicate_persons.csv``): see :mod:`spark_jobs.empi.evaluate`."""
    from spark_jobs.empi.evaluate import evaluate

    s = settings or get_settings()
    truth = s.ground_truth_dir / "duplicate_persons.csv"
    if not truth.is_file():
        raise FileNotFoundError(f"no ground truth at {truth}: the EMPI can be measured on a simulated city only")
    return evaluate(_spark(s), s.lake_root, truth).as_dict()


def compute_indicators(settings: Settings | None = None, *, full: bool = False,
                       indicator_ids: list[str] | None = None,
                       interval: tuple | None = None) -> dict:
    """Compute the catalogued indicators with numerator, denominator and members, incrementally
    unless ``full`` (see :func:`spark_jobs.indicators.engine.compute`); with ``interval``
    (``[start, end)``: dates, or an Airflow run's data interval, which
    :func:`interval_day` reads in China time; ``(None, None)`` is no interval), every period a day
    of it falls in (the month of a monthly run: that month, its quarter and year) is recomputed
    from the current data as well. An indicator with a held input (a failed critical
    expectation) keeps its last values. Then the staff work points
    (:mod:`spark_jobs.indicators.workpoints`), whose quality coefficient reads the values."""
    from lakehouse import ops
    from spark_jobs.indicators import workpoints
    from spark_jobs.indicators.engine import compute, interval_periods, write_definitions

    s = settings or get_settings()
    spark = _spark(s)
    held = ops.held_tables(spark, s.lake_root)
    recompute = interval_periods(*map(interval_day, interval)) if interval and interval[0] is not None else None
    return {"definitions": write_definitions(spark, s.lake_root),
            "indicators": compute(spark, s.lake_root, indicator_ids=indicator_ids, full=full, held=held,
                                  recompute=recompute),
            "workpoints": workpoints.compute(spark, s.lake_root, held=held)}


def build_gold(settings: Settings | None = None, *, force: bool = False) -> dict:
    """Run ``dbt build`` (dbt-spark, session method) into the gold marts. Skipped when no silver
    or gold table and no file of the dbt project changed since the last successful build (a
    rerun, a day with nothing new), unless ``force``."""
    from lakehouse import ops
    from lakehouse.dbt_build import GOLD_STATE, gold_state, run_dbt

    s = settings or get_settings()
    spark = _spark(s)
    if not force and ops.get_build_states(spark, s.lake_root).get(GOLD_STATE) == gold_state(spark, s):
        return {"unchanged": True}
    result = run_dbt(spark, s, "build")
    ops.set_build_states(spark, s.lake_root, {GOLD_STATE: gold_state(spark, s)})
    return {"nodes": len(result.results),
            "passed": sum(r["status"] in ("success", "pass") for r in result.results)}


def export_serving(settings: Settings | None = None) -> dict:
    """Gold marts → the serving database (DuckDB file replaced atomically)."""
    from sharing.serving import export

    s = settings or get_settings()
    return asdict(export(s.lake_root, s.serving_db_url))


def build_reports(settings: Settings | None = None) -> dict:
    """The XLSX indicator report per township, from the serving database."""
    from reports.xlsx_report import build_htn_report

    s = settings or get_settings()
    if s.serving_duckdb_path is None:
        raise RuntimeError("reports read the DuckDB serving file; SERVING_DB_URL is not duckdb:///")
    return asdict(build_htn_report(s.serving_duckdb_path, s.reports_dir))


def provision_dashboards(settings: Settings | None = None) -> dict:
    """Import the Superset bundle into the Superset metadata database (runs in .venv-bi)."""
    s = settings or get_settings()
    env = {**os.environ, "JL_HOME": str(s.home), "SERVING_DB_URL": s.serving_db_url, "JL_ENV": s.env}
    proc = subprocess.run([str(BI_PYTHON), str(REPO_ROOT / "dashboards" / "provision.py")],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Superset provisioning failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return {"output": proc.stdout.strip().splitlines()[-5:]}


PIPELINE = ("ingest", "validate_bronze", "conform", "process_ecg", "process_imaging", "validate_silver", "flag_records", "score_quality",
            "compute_indicators",
            "build_gold", "export_serving", "build_reports", "provision_dashboards")


def run_all(settings: Settings | None = None, steps: tuple[str, ...] = PIPELINE, on_step=None) -> dict:
    """Run ``steps`` in order (default: everything after the simulator); returns their summaries."""
    s = settings or get_settings()
    out = {}
    module = sys.modules[__name__]
    for name in steps:
        if on_step:
            on_step(name)
        out[name] = getattr(module, name)(s)
    return out


def paths(settings: Settings | None = None) -> dict[str, Path]:
    """Where a user finds what the pipeline wrote."""
    s = settings or get_settings()
    return {"lake": Path(s.lake_root), "source_db": s.source_sqlite_path or Path(s.source_db_url),
            "serving_db": s.serving_duckdb_path or Path(s.serving_db_url),
            "data_docs": s.data_docs_dir / "index.html", "reports": s.reports_dir}
