"""Relational connector: the regional EHR/HIS database → bronze Delta tables.

Reads each table of the source contract (``contracts/regional.yaml``) through Spark's JDBC source
(SQLite by default, PostgreSQL when ``SOURCE_DB_URL`` says so), incrementally: the rows with
``watermark < updated_at < until``, where the watermark is the highest ``updated_at`` loaded
before (``ops.watermarks``) and ``until`` the end of the data interval (Airflow's, for a daily
run; none for "everything up to now"). Soft deletes arrive as updates with ``is_deleted = 1`` and
stay in bronze as tombstones. Rows that break a hard rule (missing key, bad ``updated_at``,
impossible date) go to ``quarantine.regional__<table>``; see :mod:`ingest.connectors.common` for
how a batch is loaded and why a crash is harmless. An ID-card number is kept as received, valid or
not: the EMPI (:mod:`spark_jobs.empi`) judges it and still finds the person.

A row corrected twice between two runs is read once, in its latest state. Rows are keyed by the
table's primary key; a re-read of rows already loaded (``full=True``) changes nothing.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

import yaml

from ingest.connectors.common import REASON, BatchResult, bronze_table, load_batch, quarantine_table, record_ops
from lakehouse import ops

SOURCE = "regional"
CONTRACT = Path(__file__).parent / "contracts" / "regional.yaml"
TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss"


@dataclass(frozen=True)
class EntityConfig:
    name: str
    key: str
    date_columns: tuple[str, ...] = ()
    id_card_column: str | None = None     # kept as received; the EMPI checks it in silver
    timestamp_columns: tuple[str, ...] = ()


@lru_cache(maxsize=None)
def load_contract(path: Path = CONTRACT) -> tuple[EntityConfig, ...]:
    """The source tables, parents first, from the contract YAML."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return tuple(EntityConfig(t["name"], t["key"], tuple(t.get("date_columns") or ()), t.get("id_card_column"),
                              tuple(t.get("timestamp_columns") or ()))
                 for t in doc["tables"])


def entities() -> tuple[EntityConfig, ...]:
    return load_contract(CONTRACT)


def register_tables() -> None:
    for e in entities():
        bronze_table(SOURCE, e.name, e.key)
        quarantine_table(SOURCE, e.name)


register_tables()


def jdbc_options(source_db_url: str) -> dict[str, str]:
    """Spark JDBC options for a SQLAlchemy-style URL (sqlite:///path or postgresql://...)."""
    if source_db_url.startswith("sqlite:///"):
        return {"url": "jdbc:sqlite:" + source_db_url.removeprefix("sqlite:///"),
                "driver": "org.sqlite.JDBC"}
    u = urlparse(source_db_url)
    if u.scheme.split("+")[0] in ("postgresql", "postgres"):
        opts = {"url": f"jdbc:postgresql://{u.hostname}:{u.port or 5432}{u.path}",
                "driver": "org.postgresql.Driver"}
        if u.username:
            opts["user"] = unquote(u.username)
        if u.password:
            opts["password"] = unquote(u.password)
        return opts
    raise ValueError(f"unsupported source database URL scheme: {u.scheme!r}")


def _impossible_date(col):
    from pyspark.sql import functions as F

    d = F.try_to_date(col, "yyyy-MM-dd")
    return d.isNull() | (d < F.lit("1900-01-01")) | (d > F.current_date() + F.expr("INTERVAL 366 DAYS"))


def reject_reason(df, entity: EntityConfig):
    """Column: the first hard rule a row breaks (reason code, optionally ``code:detail``), or NULL."""
    from pyspark.sql import functions as F

    checks = [(F.col(entity.key).isNull() | (F.trim(F.col(entity.key).cast("string")) == ""), F.lit("missing_key")),
              (F.try_to_timestamp(F.col("updated_at"), F.lit(TIMESTAMP_FORMAT)).isNull(),
               F.lit("bad_updated_at"))]
    for c in entity.date_columns:
        checks.append((F.col(c).isNotNull() & _impossible_date(F.col(c)), F.lit(f"impossible_date:{c}")))
    for c in entity.timestamp_columns:
        ts = F.try_to_timestamp(F.col(c), F.lit(TIMESTAMP_FORMAT))
        checks.append((F.col(c).isNotNull() & (ts.isNull() | (ts < F.lit("1900-01-01").cast("timestamp"))),
                       F.lit(f"impossible_timestamp:{c}")))
    expr = None
    for cond, reason in checks:
        expr = F.when(cond, reason) if expr is None else expr.when(cond, reason)
    return expr


def _until_text(until) -> str | None:
    """The exclusive upper bound of ``updated_at`` for a data interval ending at ``until``."""
    if until is None:
        return None
    if isinstance(until, dt.datetime):
        return f"{until:%Y-%m-%d %H:%M:%S}"
    return f"{dt.date.fromisoformat(str(until)[:10]):%Y-%m-%d} 00:00:00"


def _slice_conditions(wm_from: str | None, until) -> list[str]:
    upper = _until_text(until)
    return ([f"updated_at > '{wm_from}'"] if wm_from else []) + ([f"updated_at < '{upper}'"] if upper else [])


def changed_tables(spark, source_db_url: str, slices: dict[str, list[str]]) -> dict[str, tuple[int, str | None]]:
    """Rows and highest ``updated_at`` of each table's slice, in one query to the source (a day
    with nothing new in most tables then costs one round trip, not one Spark job per table)."""
    parts = [f"SELECT '{name}' AS table_name, COUNT(*) AS n, MAX(updated_at) AS hi FROM {name}"
             + (f" WHERE {' AND '.join(conds)}" if conds else "") for name, conds in slices.items()]
    rows = (spark.read.format("jdbc").options(**jdbc_options(source_db_url))
            .option("dbtable", f"({' UNION ALL '.join(parts)}) probe")
            # SQLite reports no reliable types for computed columns
            .option("customSchema", "table_name STRING, n LONG, hi STRING").load().collect())
    return {r.table_name: (int(r.n), r.hi) for r in rows}


def ingest_entity(spark, lake_root: str, source_db_url: str, entity: EntityConfig, *,
                  full: bool = False, until=None, now: dt.datetime | None = None,
                  probe: tuple[int, str | None] | None = None, watermark: str | None = None) -> BatchResult:
    """Load the rows of ``entity`` changed since the watermark (all rows with ``full``) and
    before ``until``: the slice (watermark, highest updated_at in it]. The caller records the
    batch and moves the watermark (:func:`ingest_all`). ``probe`` is the slice's (rows, highest
    updated_at) and ``watermark`` the current one, when already known."""
    wm_from = None if full else (watermark or ops.get_watermark(spark, lake_root, SOURCE, entity.name))
    conds = _slice_conditions(wm_from, until)
    if probe is None:
        probe = changed_tables(spark, source_db_url, {entity.name: conds})[entity.name]
    n, hi = probe
    if not n:
        return BatchResult(f"bronze.{SOURCE}__{entity.name}", None, 0, 0, 0)
    # the batch is exactly the slice (from, hi]: the same slice always gets the same id
    conds = conds + [f"updated_at <= '{hi}'"]
    reader = (spark.read.format("jdbc").options(**jdbc_options(source_db_url))
              .option("dbtable", f"(SELECT * FROM {entity.name} WHERE {' AND '.join(conds)}) src")
              .option("fetchsize", "10000"))
    raw = reader.load()
    # a driver that reports FLOAT columns (SQLite's, for REAL) makes Spark read them as 32-bit
    # floats: 4068.73 yuan would land as 4068.72998. Read them as the doubles the database holds.
    floats = [f.name for f in raw.schema.fields if f.dataType.typeName() == "float"]
    if floats:
        raw = reader.option("customSchema", ", ".join(f"`{c}` DOUBLE" for c in floats)).load()
    checked = raw.withColumn(REASON, reject_reason(raw, entity))
    bid = ops.batch_id(SOURCE, entity.name, wm_from or "", hi)
    result = load_batch(spark, lake_root, checked, source=SOURCE, entity=entity.name, keys=entity.key,
                        batch_id=bid, source_file=f"{SOURCE}:{entity.name}", watermark_from=wm_from,
                        started=now)
    # quarantined rows move the watermark too: they were read, and are kept in quarantine
    result.watermark = hi
    return result


def ingest(spark, settings, *, until=None, full: bool = False,
           progress: Callable[[str], None] | None = None) -> list[BatchResult]:
    """Ingest every table of the regional source, parents first; then the batch records and,
    last, the watermarks (never moved backwards by a full re-read)."""
    return ingest_all(spark, settings.lake_root, settings.source_db_url, until=until, full=full,
                      progress=progress)


def ingest_all(spark, lake_root: str, source_db_url: str, *, until=None, full: bool = False,
               progress: Callable[[str], None] | None = None) -> list[BatchResult]:
    marks_before = ops.get_watermarks(spark, lake_root, SOURCE)
    slices = {e.name: _slice_conditions(None if full else marks_before.get(e.name), until) for e in entities()}
    probes = changed_tables(spark, source_db_url, slices)
    results, marks = [], []
    for entity in entities():
        if progress:
            progress(entity.name)
        r = ingest_entity(spark, lake_root, source_db_url, entity, full=full, until=until,
                          probe=probes[entity.name], watermark=marks_before.get(entity.name))
        results.append(r)
        if r.batch_id:
            current = marks_before.get(entity.name)
            marks.append((SOURCE, entity.name, max(r.watermark, current or ""), r.batch_id))
    record_ops(spark, lake_root, results, marks)
    return results
