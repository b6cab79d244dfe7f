"""The indicator engine: catalogued indicators per org unit and period, with their members.

For every value it keeps the member records (who is in the denominator, who in the numerator,
and why a person is not) and the Delta versions of the input tables it read, so a published
number can be audited down to the person and recomputed from the same table versions later.
"""
from __future__ import annotations

import json
from typing import Callable

from lakehouse import delta
from lakehouse.tables import TableSpec, register
from spark_jobs.conform.silver import HTN_FOLLOWUPS, HTN_PATIENTS, ORG_UNITS
from spark_jobs.indicators.catalog import Catalog, Indicator, load_catalog

VALUES = register(TableSpec(
    "silver.indicator_values", keys=("indicator_id", "period", "org_level", "org_code"),
    description="Indicator values per org unit and period: numerator, denominator, value, score"))
MEMBERS = register(TableSpec(
    "silver.indicator_members", keys=("indicator_id", "period", "member_id"),
    description="The records behind every numerator and denominator, with the reason"))

LEVEL_COLUMNS = {"township": "township_org_code", "county": "county_org_code", "city": "city_org_code"}


def _read_inputs(spark, lake_root: str, specs: list[TableSpec], versions: dict[str, int] | None):
    """Read ``specs`` at pinned versions (the given ones, else the current ones)."""
    versions = dict(versions or {})
    frames = {}
    for spec in specs:
        v = versions.get(spec.name)
        if v is None:
            v = delta.table_version(spark, spec.path(lake_root))
            versions[spec.name] = v
        frames[spec.name] = delta.read(spark, spec, lake_root, version=v)
    return frames, versions


def _org_levels(orgs):
    """org_code → township, county and city org codes (the city bureau is the root)."""
    from pyspark.sql import functions as F

    city = orgs.where("org_type = 'city_bureau'").select(F.col("org_code").alias("city_org_code"))
    return orgs.select("org_code", "township_org_code", "county_org_code").crossJoin(city)


def htn_standard_management(spark, ind: Indicator, frames: dict):
    """高血压患者规范管理率 members: one row per managed patient and year."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    patients = frames[HTN_PATIENTS.name]
    followups = frames[HTN_FOLLOWUPS.name]
    p = ind.params
    years = followups.select(F.year("followup_date").alias("year")).distinct()
    # the managing registration of each person: the latest one registered by the year end
    reg = patients.crossJoin(years).where(F.col("registered_date") <= F.make_date("year", F.lit(12), F.lit(31)))
    w = Window.partitionBy("person_id", "year").orderBy(F.col("registered_date").desc(), F.col("registry_id").desc())
    reg = reg.withColumn("__rn", F.row_number().over(w)).where("__rn = 1").drop("__rn")
    f2f = (followups.where(F.col("followup_type").isin(*p["face_to_face_types"]))
           .groupBy("person_id", F.year("followup_date").alias("year"))
           .agg(F.count("*").alias("face_to_face_followups")))
    m = (reg.join(f2f, ["person_id", "year"], "left")
         .withColumn("face_to_face_followups", F.coalesce("face_to_face_followups", F.lit(0))))
    need = int(p["min_face_to_face_followups"])
    in_num = F.col("face_to_face_followups") >= need
    reason = F.when(in_num, F.format_string(f"规范管理：年内面对面随访%d次（≥{need}次）", "face_to_face_followups")) \
              .otherwise(F.format_string(f"未达规范：年内面对面随访仅%d次（需≥{need}次）", "face_to_face_followups"))
    return m.select(
        F.col("year").cast("string").alias("period"), F.col("person_id").alias("member_id"),
        F.lit("person").alias("member_type"), "person_id", F.col("org_code").alias("member_org_code"),
        F.lit(True).alias("in_denominator"), in_num.alias("in_numerator"), reason.alias("reason"),
        F.to_json(F.struct("registry_id", "registered_date", "face_to_face_followups")).alias("evidence"))


# indicator id → (member function, input tables)
RULES: dict[str, tuple[Callable, list[TableSpec]]] = {
    "htn_standard_mgmt_rate": (htn_standard_management, [HTN_PATIENTS, HTN_FOLLOWUPS, ORG_UNITS]),
}


def score_column(ind: Indicator, value):
    """Column twin of :func:`spark_jobs.indicators.catalog.score` (a unit test compares them)."""
    from pyspark.sql import functions as F

    w, t = F.lit(float(ind.weight)), F.lit(float(ind.target))
    if ind.scoring == "at_or_above_target":
        s = F.when(value >= t, w).otherwise(w * value / t)
    elif ind.scoring == "at_or_below_target":
        s = F.when(value <= t, w).when(value == 0, w).otherwise(w * t / value)
    else:
        s = F.when(value != 0, w).otherwise(F.lit(0.0))
    return F.when(value.isNotNull(), s)


def aggregate(spark, ind: Indicator, members, orgs, catalog_version: str, input_versions: dict):
    """Sum members into values per level and period, with target, score and weight."""
    from pyspark.sql import functions as F

    levels = _org_levels(orgs)
    names = orgs.select(F.col("org_code").alias("__o"), F.col("org_name"), F.col("county_org_code").alias("__c"))
    m = members.join(levels, members.member_org_code == levels.org_code, "left").drop("org_code")
    frames = []
    for level in ind.levels:
        col = LEVEL_COLUMNS[level]
        frames.append(m.where(F.col(col).isNotNull()).groupBy("period", F.col(col).alias("org_code")).agg(
            F.sum(F.col("in_numerator").cast("long")).alias("numerator"),
            F.sum(F.col("in_denominator").cast("long")).alias("denominator"),
        ).withColumn("org_level", F.lit(level)))
    values = frames[0]
    for f in frames[1:]:
        values = values.unionByName(f)
    values = (values.join(names, values.org_code == names.__o, "left").drop("__o")
              .withColumnRenamed("__c", "county_org_code")
              .withColumn("value", F.when(F.col("denominator") > 0, F.col("numerator") / F.col("denominator")))
              .withColumn("score", score_column(ind, F.col("value")))
              .select(F.lit(ind.id).alias("indicator_id"), F.lit(ind.name_zh).alias("indicator_name_zh"),
                      "period", "org_level", "org_code", "org_name", "county_org_code",
                      "numerator", "denominator", "value",
                      F.lit(float(ind.target)).alias("target"), "score",
                      F.lit(float(ind.weight)).alias("weight"), F.lit(ind.scoring).alias("scoring"),
                      F.lit(catalog_version).alias("catalog_version"),
                      F.lit(json.dumps(input_versions, sort_keys=True)).alias("input_versions")))
    return values


def compute(spark, lake_root: str, catalog: Catalog | None = None, indicator_ids: list[str] | None = None,
            input_versions: dict[str, int] | None = None, write: bool = True,
            held: dict[str, list[str]] | None = None) -> dict:
    """Compute the indicators (all catalogued ones by default). With ``input_versions`` the inputs
    are read at those Delta versions (reproducing a past computation). Returns per indicator the
    write stats (or, with ``write=False``, the values and members DataFrames). An indicator with
    an input in ``held`` (a failed critical expectation) is not recomputed: its published values
    stay as they were, and the result says why."""
    from pyspark.sql import functions as F

    catalog = catalog or load_catalog()
    out = {}
    for ind_id in indicator_ids or list(catalog.indicators):
        ind = catalog[ind_id]
        member_fn, inputs = RULES[ind_id]
        blocked = {t.name: (held or {})[t.name] for t in inputs if t.name in (held or {})}
        if blocked:
            out[ind_id] = {"held": blocked}
            continue
        frames, versions = _read_inputs(spark, lake_root, inputs, input_versions)
        members = member_fn(spark, ind, frames).withColumn("indicator_id", F.lit(ind.id))
        values = aggregate(spark, ind, members, frames[ORG_UNITS.name], catalog.version, versions)
        if not write:
            out[ind_id] = {"values": values, "members": members, "input_versions": versions}
            continue
        scope = f"indicator_id = '{ind.id}'"
        out[ind_id] = {
            "values": delta.upsert(spark, delta.with_row_hash(values, exclude=()), VALUES, lake_root,
                                   delete_scope=scope).as_dict(),
            "members": delta.upsert(spark, delta.with_row_hash(members, exclude=()), MEMBERS, lake_root,
                                    delete_scope=scope).as_dict(),
            "input_versions": versions,
        }
    return out
