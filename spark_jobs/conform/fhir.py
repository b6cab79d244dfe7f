"""The city hospital's FHIR resources as rows of the silver entities they feed.

- ``Encounter`` of class ``AMB`` → ``outpatient_visits``; of class ``IMP`` → ``inpatient_stays``
  (the first ``Condition`` recorded for the encounter gives the ICD-10 diagnosis);
- ``MedicationRequest`` → ``prescriptions`` (``is_essential_drug`` from the national essential-drug
  list in ``bronze.reference__essential_drugs``; the hospital does not send the other flags).

The rows come out in the shape of :func:`spark_jobs.conform.entities.source_rows`: ``resident_id``
holds the Patient id, which the EMPI's ``silver.person_xref`` resolves like a resident id.
"""
from __future__ import annotations

from pathlib import Path

from lakehouse.frames import live, union_all
from spark_jobs.conform.entities import Entity, typed


def _tables(lake_root: str, entity: str) -> list[tuple[str, str]]:
    bronze = Path(lake_root) / "bronze"
    if not bronze.is_dir():
        return []
    return [(d.name.split("__", 1)[0], str(d)) for d in sorted(bronze.glob(f"fhir_*__{entity}"))
            if (d / "_delta_log").is_dir()]


def _live(spark, path: str):
    return live(spark.read.format("delta").load(path))


def _first_diagnosis(spark, lake_root: str, source: str):
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    path = dict(_tables(lake_root, "condition")).get(source)
    if path is None:
        return spark.createDataFrame([], "encounter_id STRING, dx_code STRING, dx_name STRING")
    w = Window.partitionBy("encounter_id").orderBy(F.col("recorded_date").asc_nulls_last(), "condition_id")
    return (_live(spark, path).where(F.col("encounter_id").isNotNull())
            .withColumn("__rn", F.row_number().over(w)).where("__rn = 1")
            .select("encounter_id", F.col("icd10_code").alias("dx_code"), F.col("display").alias("dx_name")))


def _essential_drugs(spark, lake_root: str):
    path = Path(lake_root) / "bronze" / "reference__essential_drugs"
    if not (path / "_delta_log").is_dir():
        return None
    return _live(spark, str(path)).select("drug_code").distinct()


def rows(spark, lake_root: str, entity: Entity):
    """The FHIR rows of ``entity`` from every hospital, or None when there are none."""
    from pyspark.sql import functions as F

    frames = []
    for source, path in _tables(lake_root, "encounter"):
        enc = _live(spark, path)
        common = [F.lit(source).alias("source")]
        if entity.name in ("outpatient_visits", "inpatient_stays"):
            cls = "AMB" if entity.name == "outpatient_visits" else "IMP"
            dx = _first_diagnosis(spark, lake_root, source)
            e = enc.where(F.col("class_code") == cls).join(dx, "encounter_id", "left")
            cols = {
                entity.key: F.col("encounter_id"), "resident_id": F.col("patient_id"),
                "org_code": F.col("service_provider_id"), "doctor_id": F.lit(None).cast("string"),
                "diagnosis_code": F.col("dx_code"), "diagnosis_name": F.col("dx_name"),
                "diagnosis_code_local": F.lit(None).cast("string"),
            }
            if cls == "AMB":
                cols |= {"visit_date": typed("period_start_at", "timestamp").cast("date"),
                         "fee_yuan": F.lit(None).cast("double")}
            else:
                cols |= {"admission_date": typed("period_start_at", "timestamp").cast("date"),
                         "discharge_date": typed("period_end_at", "timestamp").cast("date"),
                         "total_cost_yuan": F.lit(None).cast("double")}
            cols["source_created_at"] = F.lit(None).cast("timestamp")      # FHIR sends no entry time
            cols["source_updated_at"] = typed("updated_at", "timestamp")
            frames.append(e.select(*common, *[c.alias(n) for n, c in cols.items()]))
        elif entity.name == "prescriptions":
            mr_path = dict(_tables(lake_root, "medication_request")).get(source)
            if mr_path is None:
                continue
            mr = _live(spark, mr_path).join(
                enc.select("encounter_id", F.col("service_provider_id").alias("__org")), "encounter_id", "left")
            drugs = _essential_drugs(spark, lake_root)
            if drugs is not None:
                mr = mr.join(drugs.withColumn("__essential", F.lit(True)), "drug_code", "left")
                essential = F.coalesce(F.col("__essential"), F.lit(False))
            else:
                essential = F.lit(None).cast("boolean")
            none = {"double": F.lit(None).cast("double"), "bool": F.lit(None).cast("boolean")}
            cols = {
                entity.key: F.col("medication_request_id"), "resident_id": F.col("patient_id"),
                "org_code": F.col("__org"), "visit_id": F.col("encounter_id"), "doctor_id": F.lit(None).cast("string"),
                "prescribed_date": typed("authored_at", "timestamp").cast("date"),
                "drug_code": F.col("drug_code"), "drug_name": F.col("drug_name"), "is_essential_drug": essential,
                "is_antibiotic": none["bool"], "is_iv_infusion": none["bool"],
                "quantity": typed("quantity", "double"), "amount_yuan": none["double"],
                "source_created_at": F.lit(None).cast("timestamp"),
                "source_updated_at": typed("updated_at", "timestamp"),
            }
            frames.append(mr.select(*common, *[c.alias(n) for n, c in cols.items()]))
    return union_all(frames)
