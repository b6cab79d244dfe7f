"""Idempotent Delta writes.

Every write in the platform goes through :func:`upsert`: a MERGE on the table's business key that
only touches rows whose content hash changed, optionally deleting rows of a scope that the new
data no longer contains. When nothing changed, no commit is made at all, so running any step twice
leaves every table at the same version with the same content.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lakehouse.tables import BRONZE_META_COLUMNS, TableSpec

HASH_NULL = "\u2400"  # stands for NULL inside the row hash, so NULL and "" differ
CHANGE_FEED = "delta.enableChangeDataFeed"


@dataclass(frozen=True)
class WriteStats:
    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    version: int | None = None  # Delta version after the write (None: table absent)

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)

    def as_dict(self) -> dict:
        return asdict(self)


def table_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def table_version(spark, path: str) -> int | None:
    """Current Delta version of the table at ``path`` (None if there is none).

    Read from the table's log brought up to date (``DeltaLog.update``), in the driver: the public
    ``DeltaTable.history(1)`` runs a Spark job per call, about half a second, and the pipeline
    asks for the versions of dozens of tables at every step. Falls back to it should the
    internal API change."""
    from delta.tables import DeltaTable
    from py4j.protocol import Py4JError

    if not table_exists(spark, path):
        return None
    try:
        log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        return int(log.update(False, getattr(log, "update$default$2")(), getattr(log, "update$default$3")()).version())
    except Py4JError:
        return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def enable_change_feed(spark, path: str) -> bool:
    """Turn on the change data feed of a table made before its spec asked for one (a lake from an
    older release); True if it was off. Called just before a write that commits anyway, so an
    unchanged table keeps its version. The feed covers the versions from that one on; readers of
    older ranges fall back (see :func:`changed_values`)."""
    from delta.tables import DeltaTable

    props = DeltaTable.forPath(spark, path).detail().select("properties").first().properties or {}
    if props.get(CHANGE_FEED) == "true":
        return False
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{CHANGE_FEED}' = 'true')")
    return True


def changed_values(spark, spec: TableSpec, lake_root: str, before: int, now: int, column) -> set:
    """The distinct values of ``column`` (a Column over the table) in the rows that differ between
    versions ``before`` and ``now`` of a table: old and new images both.

    Read from Delta's change data feed when it covers ``(before, now]``: only the changed rows of
    those commits, however big the table. Otherwise (no feed then, or a version no longer kept)
    both versions are read whole and subtracted by ``_row_hash``. Every platform write is an
    :func:`upsert`, which rewrites only rows whose hash changed, so for one commit both ways find
    the same rows; over several, the feed also has the values in between (a row changed and
    changed back): more, never fewer."""
    import logging

    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException

    path = spec.path(lake_root)
    if spec.change_feed and before < now:
        try:
            feed = (spark.read.format("delta").option("readChangeFeed", "true")
                    .option("startingVersion", before + 1).option("endingVersion", now).load(path))
            return {r[0] for r in feed.select(column).distinct().collect()}
        except (AnalysisException, Py4JJavaError) as e:   # DELTA_MISSING_CHANGE_DATA, files gone
            logging.getLogger(__name__).info("%s: no change feed for versions %s-%s, comparing both (%s)",
                                             spec.name, before + 1, now, str(e).splitlines()[0][:200])
    old, new = (read(spark, spec, lake_root, version=v).select("_row_hash", column.alias("__v"))
                for v in (before, now))
    return {r[0] for r in old.subtract(new).unionByName(new.subtract(old)).select("__v").distinct().collect()}


def read(spark, spec: TableSpec, lake_root: str, version: int | None = None):
    """The table as a DataFrame, optionally as of a Delta ``version`` (time travel)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(spec.path(lake_root))


def row_hash(df, exclude: tuple[str, ...] = BRONZE_META_COLUMNS):
    """Column: SHA-256 over every column not in ``exclude``, in name order, with a NULL marker."""
    from pyspark.sql import functions as F

    cols = sorted(c for c in df.columns if c not in exclude)
    parts = [F.coalesce(F.col(f"`{c}`").cast("string"), F.lit(HASH_NULL)) for c in cols]
    return F.sha2(F.concat_ws("\u241f", *parts), 256)


def with_row_hash(df, exclude: tuple[str, ...] = BRONZE_META_COLUMNS):
    """``df`` plus its ``_row_hash`` column (over every column not in ``exclude``)."""
    return df.withColumn("_row_hash", row_hash(df.drop("_row_hash"), exclude=exclude))


def upsert(spark, df, spec: TableSpec, lake_root: str, *, delete_scope: str | None = None,
           check_unique: bool = True, newer_only: str | None = None) -> WriteStats:
    """Make the table at ``spec`` agree with ``df`` on ``spec.keys``.

    - keys in ``df`` but not in the table are inserted; keys whose ``_row_hash`` differs are
      updated (all columns); identical rows are left alone (no rewrite, no new version);
    - with ``delete_scope`` (a SQL predicate over the table's columns, e.g. ``"period = '2025'"``),
      rows in that scope whose key is absent from ``df`` are deleted;
    - ``df`` must carry ``_row_hash`` (see :func:`with_row_hash`) and be unique on the keys (a
      duplicate key raises ValueError: deduplicate before writing, keeping the evidence);
      ``check_unique=False`` skips that check for data deduplicated by construction;
    - with ``newer_only`` (a column such as ``updated_at``), a row is only replaced by one whose
      value there is not older: re-loading an old delivery never undoes a later correction.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    keys = list(spec.keys)
    missing = [k for k in keys + ["_row_hash"] if k not in df.columns]
    if missing:
        raise ValueError(f"{spec.name}: columns {missing} missing from the data to write")
    df = cached = df.persist()
    try:
        dup = check_unique and df.groupBy(*keys).count().where("count > 1").limit(3).collect()
        if dup:
            raise ValueError(f"{spec.name}: duplicate keys in the data to write, e.g. {dup}")
        path = spec.path(lake_root)
        if not table_exists(spark, path):
            writer = df.write.format("delta").mode("errorifexists")
            if spec.partition_by:
                writer = writer.partitionBy(*spec.partition_by)
            if spec.stats_columns:
                writer = writer.option("delta.dataSkippingStatsColumns", ",".join(spec.stats_columns))
            if spec.change_feed:
                writer = writer.option(CHANGE_FEED, "true")
            writer.save(path)
            # the commit's own metrics: no second pass over the data to count it
            last = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
            return WriteStats(spec.name, inserted=int((last.operationMetrics or {}).get("numOutputRows", 0)),
                              version=last.version)

        target = spark.read.format("delta").load(path)
        # a column the table has and this data lacks (a source dropped it) is written as NULL
        absent = [f for f in target.schema.fields if f.name not in df.columns]
        if absent:
            df = df.withColumns({f.name: F.lit(None).cast(f.dataType) for f in absent})
        drift = bool(set(df.columns) - set(target.columns))   # new source columns are added
        same = F.col("s_h") == F.col("t_h")
        if newer_only:  # an older version than the table's counts as unchanged: it is not applied
            same = same | (F.col("s_v") < F.col("t_v"))
        # keys compared as the MERGE compares them (<=>: a NULL key matches a NULL key)
        t_keys = target.select(*[F.col(k).alias(f"__key_{k}") for k in keys], F.col("_row_hash").alias("t_h"),
                               *([F.col(newer_only).alias("t_v")] if newer_only else []))
        joined = df.select(*keys, F.col("_row_hash").alias("s_h"), *([F.col(newer_only).alias("s_v")] if newer_only else [])) \
            .join(t_keys, _null_safe(keys), "left") \
            .withColumn("__write", F.col("t_h").isNull() | ~same).persist()
        gone = None
        try:
            counts = joined.select(
                F.count("*").alias("n"),
                F.sum(F.when(F.col("t_h").isNull(), 1).otherwise(0)).alias("ins"),
                F.sum(F.when(F.col("t_h").isNotNull() & same, 1).otherwise(0)).alias("same"),
            ).first()
            inserted, unchanged = int(counts.ins or 0), int(counts.same or 0)
            updated = int(counts.n) - inserted - unchanged
            if delete_scope:
                gone = target.where(delete_scope).join(df.select(*[F.col(k).alias(f"__key_{k}") for k in keys]),
                                                       _null_safe(keys), "left_anti").select(*keys).persist()
            deleted = gone.count() if gone is not None else 0
            if not (inserted or updated or deleted):
                return WriteStats(spec.name, unchanged=unchanged, version=table_version(spark, path))

            if spec.change_feed:
                enable_change_feed(spark, path)
            cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
            changed = "t._row_hash <> s._row_hash"
            if newer_only:
                changed += f" AND NOT (s.`{newer_only}` < t.`{newer_only}`)"
            if "_row_hash" in keys or drift:
                # the whole data, deleting what the scope no longer has: the marker below would
                # overwrite a key, or become a column of the table
                merge = (DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), cond)
                         .whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll())
                if deleted:
                    merge = merge.whenNotMatchedBySourceDelete(condition=delete_scope)
                if drift:
                    merge = merge.withSchemaEvolution()
            else:
                # only the rows to write and the keys to delete (marked by a NULL _row_hash), not
                # the whole data: a day that changes a few rows of a big table rewrites only their
                # files and never compares the rest again
                source = df
                if unchanged:
                    to_write = joined.where("__write").select(*[F.col(k).alias(f"__key_{k}") for k in keys])
                    source = df.join(to_write, _null_safe(keys), "left_semi")
                if deleted:
                    source = source.unionByName(gone.withColumn("_row_hash", F.lit(None).cast("string")),
                                                allowMissingColumns=True)
                merge = (DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), cond)
                         .whenMatchedDelete(condition="s._row_hash IS NULL")
                         .whenMatchedUpdateAll(condition=f"s._row_hash IS NOT NULL AND {changed}")
                         .whenNotMatchedInsertAll(condition="s._row_hash IS NOT NULL"))
            merge.execute()
        finally:
            joined.unpersist()
            if gone is not None:
                gone.unpersist()
        return WriteStats(spec.name, inserted=inserted, updated=updated, deleted=deleted,
                          unchanged=unchanged, version=table_version(spark, path))
    finally:
        cached.unpersist()


def _null_safe(keys):
    """``k <=> __key_k`` for every key: the join of data with the keys of other rows renamed
    ``__key_<k>``, matching as the MERGE condition does (a NULL key matches a NULL key)."""
    from functools import reduce

    from pyspark.sql import functions as F

    return reduce(lambda a, b: a & b, [F.col(k).eqNullSafe(F.col(f"__key_{k}")) for k in keys])


def content_hash(spark, path: str) -> tuple[int, str]:
    """(row count, order-independent SHA-256 of all rows) of the Delta table at ``path``; used to
    prove that a rerun changed nothing."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(path)
    h = df.select(row_hash(df, exclude=()).alias("h"))
    row = h.agg(F.count("*").alias("n"), F.sort_array(F.collect_list("h")).alias("hs")).first()
    import hashlib

    digest = hashlib.sha256("\n".join(row.hs).encode()).hexdigest()
    return int(row.n), digest
