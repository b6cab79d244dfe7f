"""Operational tables: ingest batches, watermarks and data-quality results (``ops.*``).

All writes are MERGEs keyed on the batch / watermark / result identity, with a content hash that
leaves out timestamps, so re-running the same batch records nothing new.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import asdict, dataclass

from lakehouse import delta
from lakehouse.tables import BUILD_STATES, DQ_RESULTS, INGEST_BATCHES, WATERMARKS


def batch_id(source: str, entity: str, *parts: str) -> str:
    """A deterministic batch id: the same source slice always gets the same id."""
    digest = hashlib.sha256("|".join((source, entity, *parts)).encode()).hexdigest()[:16]
    return f"{source}.{entity}.{digest}"


@dataclass
class BatchRecord:
    batch_id: str
    source: str
    entity: str
    target_table: str
    watermark_from: str | None
    watermark_to: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_superseded_in_batch: int
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime

    def __post_init__(self):
        if self.rows_read != self.rows_loaded + self.rows_quarantined:
            raise AssertionError(
                f"batch {self.batch_id}: read {self.rows_read} != loaded {self.rows_loaded} "
                f"+ quarantined {self.rows_quarantined}")


# what a rerun of the same batch may legitimately change: when and how it wrote, not what it read
_BATCH_VOLATILE = ("started_at", "finished_at", "rows_inserted", "rows_updated", "rows_unchanged")


def record_batches(spark, lake_root: str, records: list[BatchRecord]) -> None:
    df = spark.createDataFrame([asdict(r) for r in records], INGEST_BATCHES.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=_BATCH_VOLATILE), INGEST_BATCHES, lake_root)


def get_watermark(spark, lake_root: str, source: str, entity: str) -> str | None:
    path = WATERMARKS.path(lake_root)
    if not delta.table_exists(spark, path):
        return None
    row = (spark.read.format("delta").load(path)
           .where(f"source = '{source}' AND entity = '{entity}'").select("watermark").first())
    return row[0] if row else None


def get_watermarks(spark, lake_root: str, source: str) -> dict[str, str]:
    """Every entity's watermark of ``source``, in one read."""
    path = WATERMARKS.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).where(f"source = '{source}'").select("entity", "watermark").collect()
    return {r.entity: r.watermark for r in rows}


def set_watermarks(spark, lake_root: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Upsert (source, entity, watermark, batch_id) rows."""
    df = spark.createDataFrame(rows, WATERMARKS.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=()), WATERMARKS, lake_root)


def get_build_states(spark, lake_root: str) -> dict[str, str]:
    """``{table: state}`` recorded after each derived table's last build."""
    path = BUILD_STATES.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    return {r.table_name: r.state for r in spark.read.format("delta").load(path).collect()}


def set_build_states(spark, lake_root: str, states: dict[str, str]) -> None:
    df = spark.createDataFrame(sorted(states.items()), BUILD_STATES.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=()), BUILD_STATES, lake_root)


def build_state(spark, paths: list[str], logic: str) -> str:
    """The Delta version of the table at each of ``paths`` (inputs and outputs alike; None for
    a missing one) and ``logic`` (what builds the outputs: a :func:`code_digest`, a parameter) as
    one string. A derived table whose state equals the one recorded after its last build
    (:func:`get_build_states`) would be rebuilt exactly as it is: the build can be skipped."""
    import json

    return json.dumps({"tables": {p: delta.table_version(spark, p) for p in sorted(set(paths))}, "logic": logic},
                      sort_keys=True)


# the platform's own packages (pyproject.toml): a job's code is its module and what it imports of these
PROJECT_PACKAGES = ("lakehouse", "ingest", "spark_jobs", "expectations", "sharing", "reports")


def code_digest(*modules, packages: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """sha256 (16 hex digits) of the source files of ``modules`` and of every module of
    ``packages`` they import, at any depth, including the imports inside functions: a change to
    the job or to a helper it uses is a new state. Computed once per process (the code that runs
    is the code imported)."""
    return _digest(tuple(m.__name__ for m in modules), packages)


@functools.lru_cache(maxsize=None)
def _digest(names: tuple[str, ...], packages: tuple[str, ...]) -> str:
    import sys

    digest = hashlib.sha256()
    for name, path in sorted(_imported_sources([sys.modules[n] for n in names], packages).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _imported_sources(modules, packages: tuple[str, ...]) -> dict:
    """module name → source file, for ``modules`` and the project modules they import."""
    import ast
    import importlib.util
    from pathlib import Path

    def source(name: str):
        if name.split(".")[0] not in packages:
            return None
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None

    found = {m.__name__: Path(m.__file__) for m in modules}
    todo = list(found.items())
    while todo:
        name, path = todo.pop()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:   # relative: from the importing module's package up
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]   # a name may be a submodule
            else:
                continue
            for imported in names:
                if imported not in found and (file := source(imported)) is not None:
                    found[imported] = file
                    todo.append((imported, file))
    return found


def record_dq_results(spark, lake_root: str, rows: list[dict]) -> delta.WriteStats | None:
    """Store Great Expectations result rows (one per expectation and table version)."""
    if not rows:
        return None
    df = spark.createDataFrame([{c: r.get(c) for c in DQ_RESULTS.columns} for r in rows], DQ_RESULTS.schema)
    df = df.dropDuplicates(["result_key"])
    return delta.upsert(spark, delta.with_row_hash(df, exclude=()), DQ_RESULTS, lake_root)


def dq_results_at(spark, lake_root: str, versions: dict[str, int]) -> dict[str, list[dict]]:
    """The stored result rows of each table at the version given: ``{table: [row, ...]}``."""
    from functools import reduce

    from pyspark.sql import functions as F

    path = DQ_RESULTS.path(lake_root)
    if not versions or not delta.table_exists(spark, path):
        return {}
    at = reduce(lambda a, b: a | b, [(F.col("table_name") == t) & (F.col("table_version") == v)
                                     for t, v in versions.items()])
    out: dict[str, list[dict]] = {}
    for row in spark.read.format("delta").load(path).where(at).collect():
        out.setdefault(row.table_name, []).append(row.asDict())
    return out


def held_tables(spark, lake_root: str) -> dict[str, list[str]]:
    """Tables held back by a failed critical expectation: ``{table: [failure, ...]}``.

    A table is held when the results of its latest validated Delta version (in ``ops.dq_results``)
    include a failed critical expectation. Steps downstream of a held table leave what they derive
    from it as it was (the last good state) and report it; every other table flows on. Validating
    a repaired version releases it.
    """
    from pyspark.sql import functions as F

    path = DQ_RESULTS.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    results = spark.read.format("delta").load(path)
    latest = results.groupBy("table_name").agg(F.max("table_version").alias("table_version"))
    failed = (results.join(latest, ["table_name", "table_version"])
              .where((F.col("severity") == "critical") & ~F.col("success")).collect())
    held: dict[str, list[str]] = {}
    for row in failed:
        target = f"({row.column})" if row.column else ""
        count = f": {row.unexpected_count} unexpected rows" if row.unexpected_count is not None else (
            f": observed {row.observed_value}" if row.observed_value is not None else "")
        held.setdefault(row.table_name, []).append(f"v{row.table_version} {row.expectation_type}{target}{count}")
    return held
