"""Bronze (regional source) → silver: typed, soft deletes honoured, pseudonymous ``person_id``.

Every resident record has its ``person_id`` from the EMPI (:mod:`spark_jobs.empi`, run first),
which also writes the direct identifiers (name, ID-card number, phone, address) to
``restricted.person_identity``; every silver table here carries ``person_id`` instead. Records that
cannot be attributed to a person (their resident row was quarantined at bronze) go to
``quarantine.<entity>`` with reason ``unresolved_person``: nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass

from lakehouse import delta
from lakehouse.quarantine import quarantine_rows
from lakehouse.tables import TableSpec, register
from spark_jobs.empi.match import PERSON_XREF

SOURCE = "regional"

ORG_UNITS = register(TableSpec("silver.org_units", keys=("org_code",),
                               description="Org-unit tree with township and county of every unit"))
HTN_PATIENTS = register(TableSpec("silver.hypertension_patients", keys=("registry_id",),
                                  description="Hypertensive patients under management (register)"))
HTN_FOLLOWUPS = register(TableSpec("silver.hypertension_followups", keys=("followup_id",),
                                   description="Hypertension follow-ups, typed, with person_id"))
HEALTH_ARCHIVES = register(TableSpec("silver.health_archives", keys=("archive_no",),
                                     description="Electronic health archives with person_id"))
UNRESOLVED_QUARANTINE_SCHEMA = ("record_key STRING, reason_code STRING, reason_detail STRING, "
                                "raw_payload STRING, _row_hash STRING, _source STRING")


def _quarantine(entity: str) -> TableSpec:
    return register(TableSpec(f"quarantine.{entity}", keys=("record_key", "_row_hash"),
                              description=f"{entity} rows that could not be conformed",
                              schema=UNRESOLVED_QUARANTINE_SCHEMA))


@dataclass
class ConformResult:
    tables: dict[str, dict]


def _bronze(spark, lake_root: str, entity: str):
    return spark.read.format("delta").load(f"{lake_root}/bronze/{SOURCE}__{entity}")


def _live(df):
    """Rows not soft-deleted at the source."""
    return df.where("is_deleted = 0")


def conform_org_units(bronze_org):
    """Every org unit with the township and county it belongs to (by walking the tree)."""
    from pyspark.sql import functions as F

    o = _live(bronze_org).select("org_code", "org_name", "org_type", "level", "parent_code", "area_code")
    parent = o.select(F.col("org_code").alias("p_code"), F.col("level").alias("p_level"),
                      F.col("parent_code").alias("p_parent"))
    o = o.join(parent, o.parent_code == parent.p_code, "left")
    township = (F.when(F.col("level") == "township", F.col("org_code"))
                .when(F.col("level") == "village", F.col("parent_code")))
    county_bureau = (F.when(F.col("level") == "county", F.when(F.col("org_type") == "county_bureau", F.col("org_code"))
                            .otherwise(F.col("parent_code")))
                     .when(F.col("level") == "township", F.col("parent_code"))
                     .when(F.col("level") == "village", F.col("p_parent")))
    o = o.select("org_code", "org_name", "org_type", "level", "parent_code", "area_code",
                 township.alias("township_org_code"), county_bureau.alias("county_org_code"),
                 F.substring("area_code", 1, 6).alias("county_area_code"))
    names = o.select(F.col("org_code").alias("k"), F.col("org_name").alias("n"))
    county_names = o.where("org_type = 'county_bureau'").select(
        F.col("org_code").alias("ck"), F.regexp_replace("org_name", "卫生健康局$", "").alias("county_name"))
    o = (o.join(names.withColumnRenamed("n", "township_org_name"), o.township_org_code == F.col("k"), "left").drop("k")
         .join(county_names, o.county_org_code == F.col("ck"), "left").drop("ck"))
    return delta.with_row_hash(o, exclude=())


def _attach_person(df, xref):
    """Split ``df`` (with resident_id) into (resolved rows with person_id, unresolved quarantine rows)."""
    from pyspark.sql import functions as F

    x = (xref.where((F.col("source") == SOURCE) & (F.col("source_entity") == "residents"))
         .select(F.col("source_record_id").alias("resident_id"), "person_id"))
    joined = df.join(x, "resident_id", "left")
    unresolved = quarantine_rows(
        joined.where(F.col("person_id").isNull()), df.columns[0], F.lit("unresolved_person"),
        F.concat(F.lit("resident_id "), F.col("resident_id"),
                 F.lit(" is not in bronze (see quarantine.regional__residents)")),
        payload_columns=[c for c in df.columns if not c.startswith("_")],
    ).withColumn("_source", F.lit(SOURCE))
    return joined.where(F.col("person_id").isNotNull()), unresolved


def conform_regional(spark, lake_root: str) -> ConformResult:
    """Rebuild the regional silver tables from bronze (idempotent: unchanged rows are not
    rewritten; rows deleted at the source are removed). Needs the EMPI's ``silver.person_xref``."""
    from pyspark.sql import functions as F

    stats: dict[str, dict] = {}

    def write(df, spec):
        stats[spec.name] = delta.upsert(spark, df, spec, lake_root, delete_scope="true").as_dict()

    orgs = conform_org_units(_bronze(spark, lake_root, "org_units")).persist()
    write(orgs, ORG_UNITS)
    township_of = orgs.select(F.col("org_code"), "township_org_code")

    xref = delta.read(spark, PERSON_XREF, lake_root).persist()

    archives, q_arch = _attach_person(_live(_bronze(spark, lake_root, "health_archives")), xref)
    archives = archives.join(township_of, "org_code", "left").select(
        "archive_no", "person_id", "org_code", "township_org_code",
        F.to_date("created_date").alias("created_date"))
    write(delta.with_row_hash(archives, exclude=()), HEALTH_ARCHIVES)

    reg, q_reg = _attach_person(_live(_bronze(spark, lake_root, "hypertension_registry")), xref)
    reg = reg.join(township_of, "org_code", "left").select(
        "registry_id", "person_id", "org_code", "township_org_code", "doctor_id",
        F.to_date("diagnosed_date").alias("diagnosed_date"), F.to_date("registered_date").alias("registered_date"))
    write(delta.with_row_hash(reg, exclude=()), HTN_PATIENTS)

    fu, q_fu = _attach_person(_live(_bronze(spark, lake_root, "hypertension_followups")), xref)
    fu = fu.join(township_of, "org_code", "left").select(
        "followup_id", "registry_id", "person_id", "org_code", "township_org_code", "doctor_id",
        F.to_date("followup_date").alias("followup_date"), "followup_type",
        F.col("followup_type").isin("clinic", "home").alias("is_face_to_face"),
        F.col("sbp_mmhg").cast("int").alias("sbp_mmhg"), F.col("dbp_mmhg").cast("int").alias("dbp_mmhg"))
    write(delta.with_row_hash(fu, exclude=()), HTN_FOLLOWUPS)

    for entity, q in (("health_archives", q_arch), ("hypertension_patients", q_reg),
                      ("hypertension_followups", q_fu)):
        write(q, _quarantine(entity))
    orgs.unpersist()
    xref.unpersist()
    return ConformResult(stats)
