"""How well the record flags find the simulator's injected defects: precision and recall per class.

A defect class of the ground truth (``defects.csv``: source, entity, record key, defect) is caught
by one flag of :mod:`spark_jobs.quality.authenticity` (:data:`DEFECT_FLAGS`). Over the records of
the regional database and the legacy systems that reached bronze (a record quarantined on ingest is
counted there, not here; a record deleted at the source counts only for ``deleted``; the hospital's
FHIR export carries no entry time, so its timeliness and correction defects are out of reach), per
class: precision = flagged defects / flags, recall =
flagged defects / defects.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from lakehouse import delta
from lakehouse.frames import deleted_column, union_all
from spark_jobs.conform.entities import ENTITIES
from spark_jobs.quality.authenticity import RECORD_FLAGS

DEFECT_FLAGS = {
    "followup_after_death": "followup_after_death",
    "implausible_daily_workload": "implausible_daily_workload",
    "copied_followup": "copied_vitals",
    "impossible_vitals": "impossible_vitals",
    "future_date": "future_date",
    "late_arriving": "late_upload",
    "corrected": "corrected",
    "deleted": "deleted",
    "duplicate_person_name_variant": "duplicate_registration",
    "bad_id_check_digit": "invalid_id_card",
}
KEYS = {**{e.bronze: e.key for e in ENTITIES}, "residents": "resident_id"}


@dataclass
class ClassScore:
    defect: str
    flag: str
    defects: int
    flags: int
    caught: int
    precision: float
    recall: float

    def as_dict(self) -> dict:
        return asdict(self)


def _in_bronze(spark, lake_root: str):
    """(source, entity, record_key, deleted) of every record in a regional or legacy bronze table."""
    from pyspark.sql import functions as F

    frames = []
    for d in sorted((Path(lake_root) / "bronze").iterdir()):
        source, _, entity = d.name.partition("__")
        if entity in KEYS and (source == "regional" or source.startswith("legacy_")) and (d / "_delta_log").is_dir():
            frames.append(spark.read.format("delta").load(str(d)).select(
                F.lit(source).alias("source"), F.lit(entity).alias("entity"),
                F.col(KEYS[entity]).cast("string").alias("record_key"),
                deleted_column().alias("deleted")))
    return union_all(frames)


def evaluate(spark, lake_root: str, defects_csv: Path) -> list[ClassScore]:
    from pyspark.sql import functions as F

    truth = (spark.read.option("header", True).csv(str(defects_csv))
             .where(F.col("defect").isin(*DEFECT_FLAGS)).select("source", "entity", "record_key", "defect"))
    present = _in_bronze(spark, lake_root)
    # a record deleted at the source is out of silver's checks: only its deletion is flagged
    truth = (truth.join(present, ["source", "entity", "record_key"])
             .where(~F.col("deleted") | (F.col("defect") == "deleted")).drop("deleted").distinct().persist())
    flags = (delta.read(spark, RECORD_FLAGS, lake_root)
             .where((F.col("source") == "regional") | F.col("source").startswith("legacy_"))
             .select("source", "entity", F.col("record_id").alias("record_key"), "flag").persist())
    try:
        n_truth = {r.defect: r["count"] for r in truth.groupBy("defect").count().collect()}
        n_flags = {r.flag: r["count"] for r in flags.groupBy("flag").count().collect()}
        mapping = spark.createDataFrame(list(DEFECT_FLAGS.items()), "defect STRING, flag STRING")
        caught = {r.defect: r["count"] for r in truth.join(mapping, "defect")
                  .join(flags, ["source", "entity", "record_key", "flag"]).groupBy("defect").count().collect()}
    finally:
        truth.unpersist()
        flags.unpersist()
    out = []
    for defect, flag in DEFECT_FLAGS.items():
        d, f, c = n_truth.get(defect, 0), n_flags.get(flag, 0), caught.get(defect, 0)
        out.append(ClassScore(defect, flag, d, f, c, round(c / f, 4) if f else 1.0, round(c / d, 4) if d else 1.0))
    return out
