"""The one SparkSession factory, with Delta Lake configured.

Jobs receive ``spark`` as an argument; only drivers (the CLI, DAG tasks, test fixtures) call
:func:`get_spark`.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from lakehouse.settings import REPO_ROOT, Settings, get_settings

LOG4J2_CONF = REPO_ROOT / "infra" / "spark" / "log4j2.properties"


class SparkSetupError(RuntimeError):
    """Spark cannot start as configured (for example, the Delta jars were never fetched)."""


def _delta_jars(settings: Settings) -> list[str]:
    jars = sorted(str(p) for p in Path(settings.jars_dir).glob("*.jar"))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise SparkSetupError(
            f"no Delta jars in {settings.jars_dir}: run `make setup` (infra/setup.sh) once with network"
        )
    return jars


def spark_conf(settings: Settings, app_name: str = "jiceng") -> dict[str, str]:
    """The Spark configuration for ``settings`` (a dict, so tests can inspect it)."""
    conf = {
        "spark.app.name": app_name,
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(_delta_jars(settings)),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": settings.spark_catalog,
        "spark.sql.warehouse.dir": f"{settings.lake_root}/_warehouse",
        "spark.sql.session.timeZone": "Asia/Shanghai",
        "spark.driver.memory": settings.spark_driver_memory,
        # small data on a laptop: few shuffle partitions; AQE coalesces further
        "spark.sql.shuffle.partitions": "4" if settings.spark_master.startswith("local") else "200",
        "spark.sql.adaptive.enabled": "true",
        # Delta rebuilds table state with 50 tasks by default: far too many for small local tables
        "spark.databricks.delta.snapshotPartitions": "2" if settings.spark_master.startswith("local") else "50",
        # small tables join faster broadcast than shuffled
        "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # bronze keeps what a source sent: a VARCHAR(n) read over JDBC must not become a Delta
        # length constraint that rejects a longer value the source accepts tomorrow
        "spark.sql.legacy.charVarcharAsString": "true",
        # legacy county systems export GBK; Spark 4 reads only UTF-8/16/32 and Latin-1 without it
        "spark.sql.legacy.javaCharsets": "true",
        # deterministic, quiet Delta: no usage reports, small logs
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }
    if settings.env == "CI":
        conf["spark.ui.enabled"] = "false"
    java_opts = [f"-Dlog4j2.configurationFile={LOG4J2_CONF}"]
    if settings.spark_catalog == "hive":
        metastore = Path(settings.lake_root) / "_metastore"
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true"
        )
        java_opts.append(f"-Dderby.system.home={metastore}")
    conf["spark.driver.extraJavaOptions"] = " ".join(java_opts)
    return conf


def get_spark(settings: Settings | None = None, app_name: str = "jiceng"):
    """Return the active SparkSession or start one configured for ``settings``."""
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(settings, app_name).items():
        builder = builder.config(key, value)
    if settings.spark_catalog == "hive":
        Path(settings.lake_root, "_metastore").mkdir(parents=True, exist_ok=True)
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextmanager
def many_small_queries(spark):
    """For a stretch of many small aggregate queries (Great Expectations runs dozens per table) on
    a local master: one shuffle partition and no adaptive re-planning, each query's fixed cost
    being most of its time. On a cluster, and after the block, the session's settings stand."""
    tuned = {"spark.sql.shuffle.partitions": "1", "spark.sql.adaptive.enabled": "false"}
    if not spark.sparkContext.master.startswith("local"):
        yield spark
        return
    before = {key: spark.conf.get(key) for key in tuned}
    for key, value in tuned.items():
        spark.conf.set(key, value)
    try:
        yield spark
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)
