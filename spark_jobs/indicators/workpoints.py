"""Staff work points (工分): points per service record, per staff member and month, with a
quality coefficient (质量系数) from the indicators' scores.

The scheme is the catalogue's ``workpoints`` section (``catalog/indicators.yaml``): each service
item names its silver table, the column of the staff member who did the work, the column of the
service day and its points. Two tables:

- ``silver.staff_workpoint_records``: every service record of every item with the points it earns
  and, when it earns none, why (a void authenticity flag, no staff member recorded, dated after the
  day it was recorded): the drill-down behind a staff member's points;
- ``silver.staff_workpoints``: per staff member and month the records, the credited and voided
  ones, raw points, the quality unit and its score rate, the coefficient and the corrected points,
  with the catalogue version and the Delta version of every input table (read at those versions,
  the same points come out).

A rerun with unchanged inputs is skipped (build state), and the MERGE rewrites only rows whose
content changed.
"""
from __future__ import annotations

import json
import sys

from lakehouse import delta, ops
from lakehouse.frames import union_all
from lakehouse.tables import TableSpec, register
from spark_jobs.conform.entities import BY_NAME
from spark_jobs.conform.silver import ORG_UNITS, STAFF
from spark_jobs.indicators.catalog import Catalog, Workpoints, load_catalog
from spark_jobs.indicators.engine import VALUES, _read_inputs
from spark_jobs.quality.authenticity import RECORD_FLAGS

RECORDS = register(TableSpec(
    "silver.staff_workpoint_records", keys=("item_id", "record_id"),
    description="Every service record of the work-point items: the staff member, month and points it "
                "earns, or why it earns none"))
WORKPOINTS = register(TableSpec(
    "silver.staff_workpoints", keys=("period", "staff_id"),
    description="Staff work points (工分) per staff member and month: raw points, quality coefficient, "
                "corrected points, with the catalogue and input versions"))
OPTIONAL_INPUTS = (RECORD_FLAGS.name, VALUES.name, STAFF.name)   # absent: nothing voided, default coefficient
STATE_KEY = WORKPOINTS.name


def inputs_of(scheme: Workpoints) -> list[str]:
    """The tables the work points read: every item's silver table, the org units, the staff
    register, the record flags and the indicator values (for the quality coefficient)."""
    tables = list(dict.fromkeys(f"silver.{i.table}" for i in scheme.items))
    return [*tables, ORG_UNITS.name, *OPTIONAL_INPUTS]


def records(scheme: Workpoints, frames: dict):
    """One row per service record of every item: ``item_id``, ``record_id``, ``period`` (the
    service month), ``staff_id``, ``org_code``, ``person_id``, ``service_date``, the item's
    ``points``, ``credited``, ``credited_points``, ``void_flags`` and the ``reason`` in Chinese."""
    from pyspark.sql import functions as F

    flags = frames.get(RECORD_FLAGS.name)
    if flags is not None:
        flags = (flags.where(F.col("flag").isin(list(scheme.void_flags)))
                 .groupBy("entity", "record_id").agg(F.concat_ws(",", F.sort_array(F.collect_set("flag"))).alias("void_flags")))
    out = []
    for item in scheme.items:
        entity = BY_NAME[item.table]
        df = frames[f"silver.{item.table}"]
        recorded_at = F.coalesce("source_created_at", "source_updated_at")
        day = F.to_date(item.date_column)
        rows = df.select(
            F.lit(item.id).alias("item_id"), F.col(entity.key).cast("string").alias("record_id"),
            F.date_format(day, "yyyy-MM").alias("period"), F.col(item.staff_column).alias("staff_id"),
            "org_code", (F.col("person_id") if entity.person else F.lit(None).cast("string")).alias("person_id"),
            day.alias("service_date"), F.lit(item.points).alias("points"),
            (recorded_at.isNotNull() & (day > F.to_date(recorded_at))).alias("__future"),
        ).where(F.col("service_date").isNotNull())
        if flags is not None:
            rows = rows.join(flags.where(F.col("entity") == entity.bronze).drop("entity"), "record_id", "left")
        else:
            rows = rows.withColumn("void_flags", F.lit(None).cast("string"))
        out.append(rows.withColumn("item_name_zh", F.lit(item.name_zh)))
    rows = union_all(out)
    reason = (F.when(F.col("staff_id").isNull(), F.lit("不计分：未记录服务人员"))
              .when(F.col("__future"), F.lit("不计分：服务日期晚于录入日期（时间矛盾）"))
              .when(F.col("void_flags").isNotNull(), F.concat(F.lit("不计分：真实性存疑（"), F.col("void_flags"), F.lit("）")))
              .otherwise(F.concat(F.lit("计分："), F.col("item_name_zh"))))
    credited = F.col("staff_id").isNotNull() & ~F.col("__future") & F.col("void_flags").isNull()
    return rows.select("item_id", "record_id", "period", "staff_id", "org_code", "person_id", "service_date", "points",
                       credited.alias("credited"), F.when(credited, F.col("points")).otherwise(0.0).alias("credited_points"),
                       "void_flags", reason.alias("reason"))


def quality(scheme: Workpoints, frames: dict):
    """Per period and quality unit (``org_level``, ``org_code``): the score rate Σ adjusted_score
    ÷ Σ weight over the scored indicators of the scheme's period type; None without values."""
    from pyspark.sql import functions as F

    values = frames.get(VALUES.name)
    if values is None:
        return None
    return (values.where((F.col("period_type") == scheme.quality_period_type) & (F.col("scoring") != "none")
                         & F.col("adjusted_score").isNotNull())
            .groupBy("period", "org_level", "org_code")
            .agg((F.sum("adjusted_score") / F.sum("weight")).alias("quality_score_rate"),
                 F.count("*").alias("quality_indicators")))


def staff_months(scheme: Workpoints, recs, frames: dict, catalog_version: str, input_versions: dict[str, int]):
    """Sum the records into one row per staff member and month, with the quality coefficient."""
    from pyspark.sql import functions as F

    orgs = frames[ORG_UNITS.name].select("org_code", "level", "township_org_code", "county_org_code")
    per = (recs.where(F.col("staff_id").isNotNull())
           .groupBy("period", "staff_id")
           .agg(F.count("*").alias("services"), F.sum(F.col("credited").cast("int")).alias("credited_services"),
                F.sum(F.col("void_flags").isNotNull().cast("int")).alias("voided_services"),
                F.round(F.sum("credited_points"), 6).alias("raw_points"),
                F.min("org_code").alias("__record_org")))
    staff = frames.get(STAFF.name)
    if staff is not None:
        per = per.join(staff.select("staff_id", F.col("org_code").alias("__staff_org"), "role"), "staff_id", "left")
    else:
        per = per.withColumn("__staff_org", F.lit(None).cast("string")).withColumn("role", F.lit(None).cast("string"))
    # a staff member not in the register (the legacy county delivers none) counts at the
    # institution of their records
    per = (per.withColumn("staff_known", F.col("__staff_org").isNotNull())
           .withColumn("org_code", F.coalesce("__staff_org", "__record_org"))
           .join(orgs, "org_code", "left"))
    per = (per.withColumn("quality_org_level", F.when(F.col("township_org_code").isNotNull(), F.lit("township"))
                          .otherwise(F.lit("institution")))
           .withColumn("quality_org_code", F.coalesce("township_org_code", "org_code")))
    q = quality(scheme, frames)
    if q is not None:
        per = per.join(q.withColumnRenamed("org_level", "quality_org_level").withColumnRenamed("org_code", "quality_org_code"),
                       ["period", "quality_org_level", "quality_org_code"], "left")
    else:
        per = (per.withColumn("quality_score_rate", F.lit(None).cast("double"))
               .withColumn("quality_indicators", F.lit(None).cast("long")))
    coefficient = F.round(F.coalesce(F.least(F.lit(1.0), F.greatest(F.lit(scheme.quality_floor), "quality_score_rate")),
                                     F.lit(scheme.quality_default)), 6)
    return per.select(
        "period", "staff_id", "staff_known", "role", "org_code", "township_org_code", "county_org_code",
        "services", "credited_services", "voided_services", "raw_points", "quality_org_level", "quality_org_code",
        F.round("quality_score_rate", 6).alias("quality_score_rate"),
        F.coalesce("quality_indicators", F.lit(0)).cast("long").alias("quality_indicators"),
        coefficient.alias("quality_coefficient"),
        F.round(F.col("raw_points") * coefficient, 6).alias("corrected_points"),
        F.lit(catalog_version).alias("catalog_version"),
        F.lit(json.dumps(input_versions, sort_keys=True)).alias("input_versions"))


def compute(spark, lake_root: str, catalog: Catalog | None = None, input_versions: dict[str, int] | None = None,
            write: bool = True, held: dict[str, list[str]] | None = None) -> dict:
    """Compute the staff work points of every month from the current inputs (or, with
    ``input_versions``, from those Delta versions). Skipped when the inputs and the catalogue are
    as at the last computation; not computed while an input is held (a failed critical
    expectation). With ``write=False`` returns the frames instead of writing them."""
    catalog = catalog or load_catalog()
    scheme = catalog.workpoints
    if scheme is None:
        return {"skipped": "the catalogue has no workpoints section"}
    inputs = inputs_of(scheme)
    blocked = {t: (held or {})[t] for t in inputs if t in (held or {})}
    if blocked:
        return {"held": blocked}
    present = [t for t in inputs if t not in OPTIONAL_INPUTS or input_versions and t in input_versions
               or not input_versions and delta.table_exists(spark, f"{lake_root}/{t.replace('.', '/', 1)}")]
    frames, versions = _read_inputs(spark, lake_root, present, input_versions)
    state = json.dumps({"catalog_version": catalog.version, "inputs": versions,
                        "code": ops.code_digest(sys.modules[__name__])}, sort_keys=True)
    if write and not input_versions and ops.get_build_states(spark, lake_root).get(STATE_KEY) == state:
        return {"unchanged": True, "input_versions": versions}
    recs = records(scheme, frames).persist()
    try:
        months = staff_months(scheme, recs, frames, catalog.version, versions)
        if not write:
            return {"input_versions": versions, "records": recs, "workpoints": months}
        stats = {
            RECORDS.name: delta.upsert(spark, delta.with_row_hash(recs, exclude=()), RECORDS, lake_root,
                                       delete_scope="true").as_dict(),
            # as for indicator values: equal points keep the input versions they were published with
            WORKPOINTS.name: delta.upsert(spark, delta.with_row_hash(months, exclude=("input_versions",)), WORKPOINTS,
                                          lake_root, delete_scope="true").as_dict()}
    finally:
        if write:
            recs.unpersist()
    ops.set_build_states(spark, lake_root, {STATE_KEY: state})
    return {"input_versions": versions, "_tables": stats}
