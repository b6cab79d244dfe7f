"""The table catalogue: every lake table by ``layer.entity``, with its keys and storage path.

Names, keys and schemas are defined here once; jobs import the :class:`TableSpec` instead of
spelling paths. On storage a table lives at ``LAKE_ROOT/<layer>/<entity>``; in the Spark catalogue
it is registered as ``<layer>.<entity>`` (see :func:`register_all`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

LAYERS = ("bronze", "quarantine", "silver", "restricted", "gold", "ops")

BRONZE_META_COLUMNS = ("_batch_id", "_source", "_ingested_at", "_source_file", "_row_hash")


@dataclass(frozen=True)
class TableSpec:
    name: str                      # "silver.hypertension_followups"
    keys: tuple[str, ...]          # business key (unique per row)
    description: str = ""
    schema: str | None = None      # Spark DDL for tables the platform shapes; None: as received
    partition_by: tuple[str, ...] = field(default=())
    # columns Delta keeps min/max statistics of for data skipping (set when the table is created);
    # empty: Delta's default, the first 32 columns, which is wasted work on a wide catalogue table
    stats_columns: tuple[str, ...] = field(default=())

    def __post_init__(self):
        layer = self.name.split(".", 1)[0]
        if layer not in LAYERS or "." not in self.name:
            raise ValueError(f"table name must be <layer>.<entity> with layer in {LAYERS}: {self.name}")

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def entity(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names of ``schema`` (empty for tables kept as received)."""
        return tuple(f.strip().split(" ", 1)[0] for f in self.schema.split(",")) if self.schema else ()

    @property
    def change_feed(self) -> bool:
        """Whether Delta keeps the table's change data feed: the silver tables, whose changed rows
        between two versions the indicator engine reads to find the periods a new day touches."""
        return self.layer == "silver"

    def path(self, lake_root: str) -> str:
        return f"{lake_root.rstrip('/')}/{self.layer}/{self.entity}"


_REGISTRY: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    """Add ``spec`` to the catalogue (idempotent for an identical spec)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"table {spec.name} is already defined differently")
    _REGISTRY[spec.name] = spec
    return spec


def table(name: str) -> TableSpec:
    """The spec of ``layer.entity``; raises KeyError with the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(_REGISTRY)}") from None


def all_tables() -> list[TableSpec]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


# ---- ops -----------------------------------------------------------------------------------------
INGEST_BATCHES = register(TableSpec(
    "ops.ingest_batches", keys=("batch_id",),
    description="One row per ingested batch: rows read = loaded + quarantined.",
    schema=(
        "batch_id STRING, source STRING, entity STRING, target_table STRING, "
        "watermark_from STRING, watermark_to STRING, rows_read BIGINT, rows_loaded BIGINT, "
        "rows_quarantined BIGINT, rows_inserted BIGINT, rows_updated BIGINT, "
        "rows_unchanged BIGINT, rows_superseded_in_batch BIGINT, status STRING, "
        "started_at TIMESTAMP, finished_at TIMESTAMP"
    ),
))
BUILD_STATES = register(TableSpec(
    "ops.build_states", keys=("table_name",),
    description="What each derived table was last built from (input Delta versions, logic digest).",
    schema="table_name STRING, state STRING",
))
WATERMARKS = register(TableSpec(
    "ops.watermarks", keys=("source", "entity"),
    description="Highest source updated_at (and key) loaded per source entity.",
    schema="source STRING, entity STRING, watermark STRING, batch_id STRING",
))
SCHEMA_CHANGES = register(TableSpec(
    "ops.schema_changes", keys=("table_name", "column_name"),
    description="Schema drift: a source column seen for the first time, and the batch that brought it.",
    schema="table_name STRING, column_name STRING, data_type STRING, change STRING, first_batch_id STRING",
))
LANDED_FILES = register(TableSpec(
    "ops.landed_files", keys=("source", "rel_path", "sha256"),
    description="Every delivered file: where it was dropped, its landing copy, and how it was loaded.",
    schema=(
        "source STRING, rel_path STRING, sha256 STRING, delivery_day STRING, size_bytes BIGINT, "
        "landing_path STRING, entity STRING, batch_id STRING, rows_read BIGINT, rows_loaded BIGINT, "
        "rows_quarantined BIGINT, status STRING, reason STRING"
    ),
))
DQ_RESULTS = register(TableSpec(
    "ops.dq_results", keys=("result_key",),
    description="Great Expectations results, one row per expectation and validated table version.",
    schema=(
        "result_key STRING, table_name STRING, suite_name STRING, expectation_type STRING, "
        "column STRING, category STRING, severity STRING, success BOOLEAN, element_count BIGINT, "
        "unexpected_count BIGINT, unexpected_percent DOUBLE, observed_value STRING, "
        "table_version BIGINT"
    ),
))


def lake_tables(spark, lake_root: str, layer: str) -> dict[str, str]:
    """``{layer.entity: location}`` of every Delta table under ``lake_root/layer`` (any file
    system Spark reads: a local folder, HDFS, object storage)."""
    from lakehouse.delta import table_exists

    root = spark._jvm.org.apache.hadoop.fs.Path(f"{lake_root.rstrip('/')}/{layer}")
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return {}
    found = {}
    for status in fs.listStatus(root):
        location = status.getPath().toString()
        if status.isDirectory() and table_exists(spark, location):
            found[f"{layer}.{status.getPath().getName()}"] = location
    return dict(sorted(found.items()))


def _registered_location(spark, name: str) -> str:
    """Where the catalogue's table ``layer.entity`` points, from its metadata (``DESCRIBE
    DETAIL`` would load the Delta table: about 1.5 s a table)."""
    layer, entity = name.split(".", 1)
    ident = spark._jvm.org.apache.spark.sql.catalyst.TableIdentifier.apply(entity, spark._jvm.scala.Some(layer))
    return spark._jsparkSession.sessionState().catalog().getTableMetadata(ident).location().toString()


def register_all(spark, lake_root: str, layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Register every Delta table found under ``lake_root`` in the Spark catalogue as
    ``layer.entity`` (external tables, so dropping a registration never deletes data). A name
    registered at another location (another lake root) is re-pointed. Returns the names."""
    names = []
    for layer in layers:
        tables = lake_tables(spark, lake_root, layer)
        if not tables:
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        for name, location in tables.items():
            if spark.catalog.tableExists(name) and _registered_location(spark, name).rstrip("/") != location.rstrip("/"):
                spark.sql(f"DROP TABLE {name}")
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{location}'")
            names.append(name)
    return names
