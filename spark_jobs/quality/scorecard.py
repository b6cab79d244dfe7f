"""The data-quality scorecard: per institution and month, how far its records can be trusted.

One row per (``org_code``, ``month``) in ``silver.dq_scorecard``, over every record of every
silver entity the institution is responsible for (its ``org_code``; a remote-diagnosis report
belongs to the reading centre), the month being that of the recorded event (of the upload when
the event day is missing). Four rates, each the share of the month's records that pass:

| rate | a record passes when |
|---|---|
| ``completeness`` | it names its event day, its doctor (``doctor_id`` / ``staff_id`` / ``reader_id``) and, where it has one, a national diagnosis code |
| ``timeliness`` | it was uploaded within a week of the event and not dated in the future (``late_upload`` / ``future_date`` flags); only for records uploaded on their own |
| ``conformance`` | no conformance or plausibility flag (``impossible_vitals`` …) |
| ``authenticity`` | no authenticity flag (``followup_after_death``, ``copied_vitals``, ``implausible_daily_workload``, ``dormant_archive``) |

``score`` is the mean of the rates that apply, × 100. Flags are :mod:`spark_jobs.quality.authenticity`'s
(``silver.record_flags``), so run that first. The scorecard is what an evaluator weighs a
performance score with: an institution whose records are incomplete, late or suspect gets a
lower quality score, and every number can be followed down to the flagged records.
"""
from __future__ import annotations

import sys

from lakehouse import delta, ops
from lakehouse.frames import union_all
from lakehouse.tables import TableSpec, register
from spark_jobs.conform.entities import ENTITIES, Entity
from spark_jobs.quality.authenticity import RECORD_FLAGS

DQ_SCORECARD = register(TableSpec(
    "silver.dq_scorecard", keys=("org_code", "month"),
    description="Data-quality scorecard per institution and month: completeness, timeliness, conformance, "
                "authenticity and their mean score"))
DOCTOR_COLUMNS = ("doctor_id", "staff_id", "reader_id")
TIMELINESS_FLAGS = ("late_upload", "future_date")
CONFORMANCE_CATEGORIES = ("conformance", "plausibility")
RATES = ("completeness", "timeliness", "conformance", "authenticity")


def _records(spark, lake_root: str, entity: Entity):
    """The entity's silver records: key, institution, month and whether they are complete."""
    from pyspark.sql import functions as F

    path = f"{lake_root}/silver/{entity.name}"
    if not delta.table_exists(spark, path):
        return None
    df = spark.read.format("delta").load(path)
    required = [entity.event, *[c for c in DOCTOR_COLUMNS if c in entity.columns], *entity.codes]
    complete = F.lit(True)
    for c in required:
        complete = complete & F.col(c).isNotNull()
    month = F.date_format(F.coalesce(F.col(entity.event).cast("date"), F.col("source_created_at").cast("date")),
                          "yyyy-MM")
    return df.select("source", F.lit(entity.bronze).alias("entity"),
                     F.col(entity.key).cast("string").alias("record_id"), "org_code",
                     F.coalesce(month, F.lit("unknown")).alias("month"), complete.alias("complete"),
                     F.lit(entity.timely).alias("timely_applies"))


STATE_KEY = DQ_SCORECARD.name


def _state(spark, lake_root: str) -> str:
    paths = [f"{lake_root}/silver/{e.name}" for e in ENTITIES]
    paths += [RECORD_FLAGS.path(lake_root), f"{lake_root}/silver/org_units", DQ_SCORECARD.path(lake_root)]
    return ops.build_state(spark, paths, ops.code_digest(sys.modules[__name__]))


def compute_scorecard(spark, lake_root: str, force: bool = False) -> dict | None:
    """Build ``silver.dq_scorecard`` from silver and its record flags (MERGEd: a rerun changes
    nothing); returns the write stats, ``{"unchanged": True}`` when the silver entities, the
    flags, the institutions and the scorecard are as after the last build (unless ``force``), or
    None before silver exists."""
    from pyspark.sql import functions as F

    records = union_all([r for r in (_records(spark, lake_root, e) for e in ENTITIES) if r is not None])
    if records is None:
        return None
    state = _state(spark, lake_root)
    if not force and ops.get_build_states(spark, lake_root).get(STATE_KEY) == state:
        return {"unchanged": True}
    if delta.table_exists(spark, RECORD_FLAGS.path(lake_root)):
        flags = delta.read(spark, RECORD_FLAGS, lake_root).groupBy("source", "entity", "record_id").agg(
            F.max(F.col("flag").isin(*TIMELINESS_FLAGS)).alias("late"),
            F.max(F.col("category").isin(*CONFORMANCE_CATEGORIES)).alias("nonconformant"),
            F.sum((F.col("category") == "authenticity").cast("int")).alias("authenticity_flags"))
        records = records.join(flags, ["source", "entity", "record_id"], "left")
    else:
        records = records.select("*", F.lit(None).cast("boolean").alias("late"),
                                 F.lit(None).cast("boolean").alias("nonconformant"),
                                 F.lit(None).cast("int").alias("authenticity_flags"))
    late = F.coalesce("late", F.lit(False))
    auth = F.coalesce("authenticity_flags", F.lit(0))
    card = records.groupBy("org_code", "month").agg(
        F.count("*").alias("records"),
        F.sum(F.col("complete").cast("long")).alias("complete_records"),
        F.sum(F.col("timely_applies").cast("long")).alias("timeliness_records"),
        F.sum((F.col("timely_applies") & ~late).cast("long")).alias("timely_records"),
        F.sum((~F.coalesce("nonconformant", F.lit(False))).cast("long")).alias("conformant_records"),
        F.sum((auth == 0).cast("long")).alias("authentic_records"),
        F.sum(auth.cast("long")).alias("authenticity_flags"))
    card = card.select(
        "*",
        (F.col("complete_records") / F.col("records")).alias("completeness"),
        F.when(F.col("timeliness_records") > 0, F.col("timely_records") / F.col("timeliness_records"))
        .alias("timeliness"),
        (F.col("conformant_records") / F.col("records")).alias("conformance"),
        (F.col("authentic_records") / F.col("records")).alias("authenticity"))
    rates = [F.col(r) for r in RATES]
    present = sum((r.isNotNull().cast("int") for r in rates), F.lit(0))
    total = sum((F.coalesce(r, F.lit(0.0)) for r in rates), F.lit(0.0))
    card = card.withColumn("score", F.round(F.lit(100.0) * total / present, 1))
    orgs_path = f"{lake_root}/silver/org_units"
    if delta.table_exists(spark, orgs_path):
        orgs = spark.read.format("delta").load(orgs_path).select(
            "org_code", "org_name", "org_type", "township_org_code", "county_org_code")
        card = card.join(orgs, "org_code", "left")
    stats = delta.upsert(spark, delta.with_row_hash(card, exclude=()), DQ_SCORECARD, lake_root,
                         delete_scope="true")
    ops.set_build_states(spark, lake_root, {STATE_KEY: _state(spark, lake_root)})
    return stats.as_dict()


def read_scorecard(spark, lake_root: str, month: str | None = None) -> list[dict]:
    """The scorecard's rows (of ``month``, default: every month), worst score first."""
    if not delta.table_exists(spark, DQ_SCORECARD.path(lake_root)):
        return []
    df = delta.read(spark, DQ_SCORECARD, lake_root)
    if month:
        df = df.where(df.month == month)
    return [r.asDict() for r in df.orderBy("score", "org_code", "month").drop("_row_hash").collect()]
