"""Serving export: gold marts → the serving database that dashboards, reports and APIs read.

The embedded default is a DuckDB file. It is written next to the live file under a temporary
name and then moved over it with an atomic rename, so a reader (Superset, the report builder)
sees either the old file or the new one, never a half-written one. Gold tables are read with
delta-rs (the ``deltalake`` package), so the export needs no Spark.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
from deltalake import DeltaTable

GOLD_EXPORTS = ("mart_hypertension_management", "mart_ecg_worklist", "mart_ecg_turnaround",
                "mart_imaging_worklist", "mart_imaging_turnaround",
                "mart_institution_scorecards", "mart_city_overview", "mart_chronic_disease_management",
                "mart_data_quality", "fct_indicator_values", "dim_org_units", "dim_dates",
                "mart_staff_workpoints", "dim_staff", "dim_indicators", "fct_indicator_disaggregations")


class ServingExportError(RuntimeError):
    pass


@dataclass
class ExportResult:
    target: str
    tables: dict[str, int]          # table → rows
    gold_versions: dict[str, int]   # table → Delta version exported


def _connect_offline(path: str) -> duckdb.DuckDBPyConnection:
    # never download extensions at run time
    return duckdb.connect(path, config={"autoinstall_known_extensions": False,
                                        "autoload_known_extensions": False})


def export_duckdb(lake_root: str, duckdb_path: Path, tables: tuple[str, ...] = GOLD_EXPORTS) -> ExportResult:
    """Write ``tables`` from ``LAKE_ROOT/gold`` into a fresh DuckDB file and swap it in atomically."""
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{duckdb_path.name}.", suffix=".tmp", dir=duckdb_path.parent)
    os.close(fd)
    os.unlink(tmp)  # DuckDB wants to create the file itself
    counts, versions = {}, {}
    try:
        con = _connect_offline(tmp)
        try:
            con.execute("CREATE TABLE _export_manifest (table_name VARCHAR, gold_version BIGINT, row_count BIGINT)")
            for name in tables:
                path = f"{lake_root.rstrip('/')}/gold/{name}"
                try:
                    dt = DeltaTable(path)
                except Exception as exc:  # noqa: BLE001 - turned into a clear message
                    raise ServingExportError(f"gold table {name} not found at {path}: {exc}") from exc
                arrow = dt.to_pyarrow_table()
                con.register("__src", arrow)
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM __src')
                con.unregister("__src")
                counts[name], versions[name] = arrow.num_rows, dt.version()
                con.execute("INSERT INTO _export_manifest VALUES (?, ?, ?)", [name, versions[name], counts[name]])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, duckdb_path)
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return ExportResult(str(duckdb_path), counts, versions)


def export(lake_root: str, serving_db_url: str) -> ExportResult:
    """Export gold to the serving database named by ``SERVING_DB_URL``."""
    if serving_db_url.startswith("duckdb:///"):
        return export_duckdb(lake_root, Path(serving_db_url.removeprefix("duckdb:///")))
    raise ServingExportError(
        f"serving database {serving_db_url.split(':', 1)[0]!r} is not supported yet; use duckdb:///path")
