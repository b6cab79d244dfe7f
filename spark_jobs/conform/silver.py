"""Bronze → silver: every entity from every source, typed, with the EMPI's ``person_id``.

Run after the EMPI (:mod:`spark_jobs.empi`), which links every identity record to a
``person_id`` and writes the direct identifiers (name, ID-card number, phone, address) to
``restricted.person_identity``; the silver tables here carry ``person_id`` instead. What each
entity holds and how its columns are typed: :mod:`spark_jobs.conform.entities`. Records that cannot
be attributed to a person (their resident row was quarantined at bronze) go to
``quarantine.<entity>`` with reason ``unresolved_person``: nothing is dropped silently.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse import delta, ops
from lakehouse.frames import live, union_all
from lakehouse.quarantine import quarantine_rows
from lakehouse.tables import TableSpec, register
from spark_jobs.conform import fhir
from spark_jobs.conform.entities import ENTITIES, Entity, bronze_sources, source_rows
from spark_jobs.empi.match import PERSON_XREF

ORG_UNITS = register(TableSpec("silver.org_units", keys=("org_code",),
                               description="Org-unit tree with township and county of every unit"))
STAFF = register(TableSpec(
    "silver.staff", keys=("staff_id",),
    description="Staff of every institution (role, title, family-doctor team) without their names; "
                "the names stay in bronze"))
POPULATION = register(TableSpec(
    "silver.population", keys=("year", "area_code", "sex", "age_band"),
    description="Resident population (常住人口) per year, township, sex and age band, from the census "
                "reference, with the township's health centre: the denominators of 建档率 and 签约率"))
SILVER = {e.name: register(TableSpec(f"silver.{e.name}", keys=(e.key,), description=e.description))
          for e in ENTITIES}
HTN_PATIENTS = SILVER["hypertension_patients"]
HTN_FOLLOWUPS = SILVER["hypertension_followups"]
UNMAPPED_CODES = register(TableSpec(
    "silver.unmapped_codes", keys=("source", "entity", "code_column", "local_code"),
    description="Local codes a source used that its code map does not map to a national code"))
UNRESOLVED_QUARANTINE_SCHEMA = ("record_key STRING, reason_code STRING, reason_detail STRING, "
                                "raw_payload STRING, _row_hash STRING, _source STRING")


def _quarantine(entity: str) -> TableSpec:
    return register(TableSpec(f"quarantine.{entity}", keys=("record_key", "_row_hash"),
                              description=f"{entity} rows that could not be conformed",
                              schema=UNRESOLVED_QUARANTINE_SCHEMA))


@dataclass
class ConformResult:
    tables: dict[str, dict]                               # silver table → write stats
    unchanged_inputs: list[str] = field(default_factory=list)   # entities skipped: inputs as last run
    held: dict[str, list[str]] = field(default_factory=dict)    # entities held: input → failures


def _bronze(spark, lake_root: str, entity: str):
    return spark.read.format("delta").load(f"{lake_root}/bronze/regional__{entity}")


def conform_org_units(bronze_org):
    """Every org unit with the township and county it belongs to (by walking the tree)."""
    from pyspark.sql import functions as F

    o = live(bronze_org).select("org_code", "org_name", "org_type", "level", "parent_code", "area_code")
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


def conform_staff(bronze_staff, levels):
    """The staff register in silver's shape: typed, with the township and county of the staff
    member's institution, and without the name (a direct identifier)."""
    from pyspark.sql import functions as F

    from spark_jobs.conform.entities import typed

    s = live(bronze_staff).select(
        F.lit("regional").alias("source"), typed("staff_id", "string").alias("staff_id"),
        typed("org_code", "string").alias("org_code"), typed("sex", "string").alias("sex"),
        typed("role", "string").alias("role"), typed("title_zh", "string").alias("title_zh"),
        typed("team_id", "string").alias("team_id"), typed("hired_date", "date").alias("hired_date"),
        typed("created_at", "timestamp").alias("source_created_at"),
        typed("updated_at", "timestamp").alias("source_updated_at"))
    s = s.join(levels, "org_code", "left").select("source", "staff_id", "org_code", "township_org_code",
                                                   "county_org_code", "sex", "role", "title_zh", "team_id",
                                                   "hired_date", "source_created_at", "source_updated_at")
    return delta.with_row_hash(s, exclude=())


def conform_population(bronze_census, orgs):
    """The census reference in silver's shape: typed, with the health centre (``township_org_code``)
    and county of the township whose area code it counts (a township with two centres: the lower
    code, as residence is attributed)."""
    from pyspark.sql import functions as F

    from spark_jobs.conform.entities import typed

    centres = (orgs.where("level = 'township'").groupBy("area_code")
               .agg(F.min("org_code").alias("township_org_code")))
    centres = centres.join(orgs.select(F.col("org_code").alias("township_org_code"), "county_org_code"),
                           "township_org_code")
    c = live(bronze_census).select(
        typed("year", "int").alias("year"), typed("area_code", "string").alias("area_code"),
        typed("sex", "string").alias("sex"), typed("age_band", "string").alias("age_band"),
        typed("population", "int").alias("population"))
    c = c.join(centres, "area_code", "left").select("year", "area_code", "township_org_code", "county_org_code",
                                                    "sex", "age_band", "population")
    return delta.with_row_hash(c, exclude=())


def _attach_person(df, xref, key: str):
    """Split ``df`` (``source``, ``resident_id``) into (rows with ``person_id``, quarantine rows)."""
    from pyspark.sql import functions as F

    x = (xref.where(F.col("source_entity").isin("residents", "patient"))
         .select("source", F.col("source_record_id").alias("resident_id"), "person_id"))
    joined = df.join(x, ["source", "resident_id"], "left")
    unresolved = quarantine_rows(
        joined.where(F.col("person_id").isNull()), key, F.lit("unresolved_person"),
        F.concat(F.lit("resident "), F.coalesce(F.col("resident_id"), F.lit("(none)")),
                 F.lit(" of "), F.col("source"), F.lit(" is not in bronze (see quarantine.<source>__residents)")),
        payload_columns=[c for c in df.columns if not c.startswith("_")], keep=("source",),
    ).withColumnRenamed("source", "_source")
    return joined.where(F.col("person_id").isNotNull()).drop("resident_id"), unresolved


def entity_rows(spark, lake_root: str, entity: Entity):
    """Every source's live rows of ``entity`` in its silver shape (before persons and org levels),
    or None when no source has delivered it yet."""
    frames = [source_rows(spark.read.format("delta").load(path), entity, source)
              for source, path in bronze_sources(lake_root, entity)]
    if entity.fhir:
        hospital = fhir.rows(spark, lake_root, entity)
        if hospital is not None:
            frames.append(hospital)
    return union_all(frames)


def _unmapped(rows, entity: Entity) -> list:
    """Per code column: (source, entity, code column, local code, rows) of the local codes that
    the source's code map does not map to a national code."""
    from pyspark.sql import functions as F

    return [rows.where(F.col(f"{c}_local").isNotNull() & F.col(c).isNull())
            .groupBy("source", F.col(f"{c}_local").alias("local_code")).agg(F.count("*").alias("rows"))
            .select("source", F.lit(entity.name).alias("entity"), F.lit(c).alias("code_column"), "local_code", "rows")
            for c in entity.codes]


def input_tables(lake_root: str, entity: Entity) -> list[str]:
    """The tables a silver entity is built from (``layer.name``), as the lake holds them now."""
    tables = [f"bronze.{Path(path).name}" for _, path in bronze_sources(lake_root, entity)]
    if entity.fhir:
        for kind in ("encounter", "condition", "medication_request"):
            tables += [f"bronze.{source}__{kind}" for source, _ in fhir._tables(lake_root, kind)]
        if (Path(lake_root) / "bronze" / "reference__essential_drugs" / "_delta_log").is_dir():
            tables.append("bronze.reference__essential_drugs")
    tables.append("bronze.regional__org_units")
    if entity.person:
        tables.append(PERSON_XREF.name)
    return tables


def _build_state(spark, lake_root: str, entity: Entity) -> str:
    """The Delta version of every input and of the silver table itself, and a digest of the
    entity's definition and of the conformance code (:func:`lakehouse.ops.code_digest`: this
    module and what it imports), as one string: equal to the state recorded after the last build
    means a rebuild would produce the table as it is."""
    versions = {t: delta.table_version(spark, f"{lake_root}/{t.replace('.', '/', 1)}")
                for t in [*input_tables(lake_root, entity), SILVER[entity.name].name]}
    code = ops.code_digest(sys.modules[__name__])
    logic = hashlib.sha256(f"{entity!r}|{code}".encode()).hexdigest()[:16]
    return json.dumps({"tables": versions, "logic": logic}, sort_keys=True)


def conform_silver(spark, lake_root: str, held: dict[str, list[str]] | None = None,
                   force: bool = False) -> ConformResult:
    """Bring every silver entity up to date with bronze.

    An entity whose inputs (:func:`input_tables`) have the Delta versions of its last build is
    skipped; otherwise it is rebuilt from bronze and MERGEd, so only rows whose content changed
    are rewritten and rows deleted at the source are removed (a rerun changes nothing). An entity
    with an input in ``held`` (a failed critical expectation: :func:`lakehouse.ops.held_tables`)
    keeps its last good silver table. ``force`` rebuilds every entity. Needs the EMPI's
    ``silver.person_xref``.
    """
    held = held or {}
    stats: dict[str, dict] = {}
    result = ConformResult(stats)
    states = {} if force else ops.get_build_states(spark, lake_root)
    done: dict[str, str] = {}

    def write(df, spec):
        stats[spec.name] = delta.upsert(spark, df, spec, lake_root, delete_scope="true").as_dict()

    orgs = conform_org_units(_bronze(spark, lake_root, "org_units")).persist()
    if "bronze.regional__org_units" not in held:
        write(orgs, ORG_UNITS)
    levels = orgs.select("org_code", "township_org_code", "county_org_code")
    census_path = f"{lake_root}/bronze/reference__census_population"
    if delta.table_exists(spark, census_path) and not {"bronze.reference__census_population",
                                                        "bronze.regional__org_units"} & set(held):
        write(conform_population(spark.read.format("delta").load(census_path), orgs), POPULATION)
    staff_path = f"{lake_root}/bronze/regional__staff"
    if delta.table_exists(spark, staff_path) and not {"bronze.regional__staff", "bronze.regional__org_units"} & set(held):
        write(conform_staff(spark.read.format("delta").load(staff_path), levels), STAFF)
    xref = delta.read(spark, PERSON_XREF, lake_root).persist()
    for entity in ENTITIES:
        blocked = {t: held[t] for t in input_tables(lake_root, entity) if t in held}
        if blocked:
            result.held[entity.name] = [f"{t}: {'; '.join(f)}" for t, f in blocked.items()]
            continue
        if states.get(SILVER[entity.name].name) == _build_state(spark, lake_root, entity):
            result.unchanged_inputs.append(entity.name)
            continue
        rows = entity_rows(spark, lake_root, entity)
        if rows is None:    # no source delivered it yet: the table exists, empty, for what reads it
            rows = source_rows(spark.createDataFrame([], "is_deleted INT"), entity, "regional")
        rows = rows.persist()
        if entity.person:
            rows_ok, unresolved = _attach_person(rows, xref, entity.key)
            write(unresolved, _quarantine(entity.name))
        else:
            rows_ok = rows
        unmapped = _unmapped(rows, entity)
        out = rows_ok.join(levels, "org_code", "left")
        lead = ["source", entity.key] + (["person_id"] if entity.person else [])
        out = out.select(*lead, "org_code", "township_org_code", "county_org_code",
                         *[c for c in out.columns if c not in lead and c not in
                           ("org_code", "township_org_code", "county_org_code")])
        write(delta.with_row_hash(out, exclude=()), SILVER[entity.name])
        if unmapped:
            codes = delta.with_row_hash(union_all(unmapped), exclude=())
            stats[f"{UNMAPPED_CODES.name}:{entity.name}"] = delta.upsert(
                spark, codes, UNMAPPED_CODES, lake_root, delete_scope=f"entity = '{entity.name}'").as_dict()
        rows.unpersist()
        done[SILVER[entity.name].name] = _build_state(spark, lake_root, entity)
    if done:   # after the tables: a crash in between means a rebuild next time, which changes nothing
        ops.set_build_states(spark, lake_root, done)
    orgs.unpersist()
    xref.unpersist()
    return result
