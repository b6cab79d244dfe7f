"""Record-authenticity checks (档案真实性): signals that a record may not be what it claims.

Every check reads silver (and, for what silver no longer holds, bronze or the EMPI's xref) and
yields flags: one row per (source, entity, record, flag) in ``silver.record_flags``, with the
person, institution, doctor and day it concerns, a reason in Chinese for the evaluators who read it,
and the evidence as JSON. ``entity`` is the source entity's name (``hypertension_followups``,
``residents``, …), so a flag points at the record a source system can look up.

| flag | category | signal |
|---|---|---|
| ``followup_after_death`` | authenticity | a follow-up dated after the person's death reported by civil affairs |
| ``implausible_daily_workload`` | authenticity | a doctor recorded far more follow-ups on one day than their county's doctors do |
| ``copied_vitals`` | authenticity | a follow-up's vitals identical to an earlier follow-up of the same patient |
| ``duplicate_registration`` | authenticity | a resident registered again (the EMPI links it to an earlier registration) |
| ``dormant_archive`` | authenticity | a health archive with no service record in the last 365 days (死档) |
| ``impossible_vitals`` | plausibility | blood pressure or glucose outside what a living person can have |
| ``invalid_id_card`` | conformance | an ID-card number that fails GB 11643 |
| ``future_date`` | timeliness | an event dated after the day it was recorded |
| ``late_upload`` | timeliness | recorded more than :data:`LATE_DAYS` days after the event |
| ``corrected`` | history | changed after it was first recorded |
| ``deleted`` | history | deleted at the source (a tombstone in bronze) |

The thresholds are constants here, each with its reason; :mod:`spark_jobs.quality.evaluate`
measures every flag against the simulator's ground truth.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from lakehouse import delta, ops
from lakehouse.frames import deleted_column, live, union_all
from lakehouse.tables import TableSpec, register
from spark_jobs.conform.entities import BY_NAME, ENTITIES, bronze_sources
from spark_jobs.empi.match import PERSON_XREF, PERSONS

RECORD_FLAGS = register(TableSpec(
    "silver.record_flags", keys=("source", "entity", "record_id", "flag"),
    description="Record-authenticity, plausibility and timeliness flags with reason and evidence"))

LATE_DAYS = 7                 # the service specification asks for entry within a week of the visit
WORKLOAD_MIN = 10             # follow-ups of one doctor on one day below this are never flagged
WORKLOAD_MADS = 8             # ... above the county's median doctor-day plus this many MADs are
DORMANT_DAYS = 365            # an archive is dormant when nothing happened for a year
SBP_RANGE, DBP_RANGE, GLUCOSE_RANGE = (50, 300), (20, 200), (1.0, 40.0)
FOLLOWUPS = ("hypertension_followups", "diabetes_followups")
VITALS = ("sbp_mmhg", "dbp_mmhg", "weight_kg", "heart_rate_bpm", "fasting_glucose_mmol",
          "medication_adherence", "classification")
SERVICE_ENTITIES = ("hypertension_followups", "diabetes_followups", "elderly_checkups", "child_health_checks",
                    "prenatal_visits", "postpartum_visits", "immunizations", "outpatient_visits",
                    "family_doctor_contracts")
FLAG_COLUMNS = ("source", "entity", "record_id", "flag", "category", "person_id", "org_code", "township_org_code",
                "doctor_id", "event_date", "reason", "evidence")


@dataclass
class FlagResult:
    flags: dict[str, int]
    table: dict


def _silver(spark, lake_root: str, name: str, held: frozenset[str] = frozenset()):
    """``silver.<name>``, or None when it does not exist or is held (see :func:`compute_flags`)."""
    path = f"{lake_root}/silver/{name}"
    if f"silver.{name}" in held or not delta.table_exists(spark, path):
        return None
    return spark.read.format("delta").load(path)


def _flags(df, entity: str, key: str, flag: str, category: str, reason, evidence, event: str | None):
    """``df``'s rows as flag rows (``reason`` a Column with the Chinese text, ``evidence`` a struct)."""
    from pyspark.sql import functions as F

    def opt(c: str, typ: str = "string"):
        return F.col(c) if c in df.columns else F.lit(None).cast(typ).alias(c)

    return df.select(
        "source", F.lit(entity).alias("entity"), F.col(key).cast("string").alias("record_id"),
        F.lit(flag).alias("flag"), F.lit(category).alias("category"), opt("person_id"), opt("org_code"),
        opt("township_org_code"), opt("doctor_id"),
        (F.col(event).cast("date") if event else F.lit(None).cast("date")).alias("event_date"),
        reason.alias("reason"), F.to_json(evidence).alias("evidence"))


def _followups(spark, lake_root: str, held: frozenset[str] = frozenset()):
    """Hypertension and diabetes follow-ups in one frame, with their source entity name."""
    from pyspark.sql import functions as F

    frames = []
    for name in FOLLOWUPS:
        df = _silver(spark, lake_root, name, held)
        if df is not None:
            cols = [F.col(c) if c in df.columns else F.lit(None).cast("double").alias(c) for c in VITALS]
            frames.append(df.select("source", F.lit(name).alias("entity"), "followup_id", "registry_id", "person_id",
                                    "org_code", "township_org_code", "county_org_code", "doctor_id", "followup_date",
                                    *cols))
    return union_all(frames)


# ---- the checks ------------------------------------------------------------------------------------

def after_death(followups, persons):
    from pyspark.sql import functions as F

    df = followups.join(persons.select("person_id", "death_date").where("death_date IS NOT NULL"), "person_id")
    df = df.where(F.col("followup_date") > F.col("death_date"))
    return df, F.format_string("随访日期%s晚于民政报告的死亡日期%s", F.col("followup_date").cast("string"),
                               F.col("death_date").cast("string")), F.struct("followup_date", "death_date")


def daily_workload(followups):
    from pyspark.sql import functions as F

    per_day = (followups.where(F.col("doctor_id").isNotNull())
               .groupBy("county_org_code", "doctor_id", "followup_date").agg(F.count("*").alias("n")))
    stats = per_day.groupBy("county_org_code").agg(F.percentile_approx("n", 0.5).alias("median"))
    dev = per_day.join(stats, "county_org_code").withColumn("dev", F.abs(F.col("n") - F.col("median")))
    mad = dev.groupBy("county_org_code").agg(F.percentile_approx("dev", 0.5).alias("mad"))
    limit = F.greatest(F.lit(WORKLOAD_MIN), F.col("median") + F.lit(WORKLOAD_MADS) * F.greatest(F.col("mad"), F.lit(1)))
    busy = (per_day.join(stats, "county_org_code").join(mad, "county_org_code")
            .where(F.col("n") >= limit).select("county_org_code", "doctor_id", "followup_date", "n", "median"))
    df = followups.join(busy, ["county_org_code", "doctor_id", "followup_date"])
    return df, F.format_string("医生%s在%s录入随访%d次（本县医生日中位数%d次），超出合理工作量", F.col("doctor_id"),
                               F.col("followup_date").cast("string"), F.col("n"), F.col("median")), \
        F.struct(F.col("n").alias("followups_that_day"), F.col("median").alias("county_median"))


def copied_vitals(followups):
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    sig = F.sha2(F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("∅")) for c in VITALS]), 256)
    complete = F.col("sbp_mmhg").isNotNull() & F.col("dbp_mmhg").isNotNull() & F.col("weight_kg").isNotNull()
    w = Window.partitionBy("source", "entity", "registry_id", "__sig").orderBy("followup_date", "followup_id")
    df = (followups.where(complete).withColumn("__sig", sig)
          .withColumn("__first", F.first("followup_id").over(w))
          .withColumn("__first_date", F.first("followup_date").over(w))
          .where(F.col("followup_id") != F.col("__first")))
    return df, F.format_string("体征与%s的随访（%s）完全相同，疑似复制", F.col("__first_date").cast("string"),
                               F.col("__first")), F.struct(F.col("__first").alias("same_as"), *VITALS)


def impossible_vitals(df):
    from pyspark.sql import functions as F

    conds = []
    if "sbp_mmhg" in df.columns:
        conds.append(~F.col("sbp_mmhg").between(*SBP_RANGE))
    if "dbp_mmhg" in df.columns:
        conds.append(~F.col("dbp_mmhg").between(*DBP_RANGE))
        if "sbp_mmhg" in df.columns:
            conds.append(F.col("dbp_mmhg") >= F.col("sbp_mmhg"))
    if "fasting_glucose_mmol" in df.columns:
        conds.append(~F.col("fasting_glucose_mmol").between(*GLUCOSE_RANGE))
    if not conds:
        return None
    bad = conds[0]
    for c in conds[1:]:
        bad = bad | c
    vit = [c for c in ("sbp_mmhg", "dbp_mmhg", "fasting_glucose_mmol") if c in df.columns]
    return (df.where(F.coalesce(bad, F.lit(False))),
            F.concat(F.lit("不可能的体征值："), F.to_json(F.struct(*vit))), F.struct(*vit))


def timeliness(df, event: str):
    """(future_date rows, late_upload rows) of one entity, each with reason and evidence."""
    from pyspark.sql import functions as F

    day = F.col(event).cast("date")
    recorded = F.to_date("source_created_at")
    lag = F.datediff(recorded, day)
    ev = F.struct(day.alias("event_date"), recorded.alias("recorded_date"), lag.alias("days"))
    future = (df.where(day > recorded), F.format_string("事件日期%s晚于录入日期%s", day.cast("string"),
                                                        recorded.cast("string")), ev)
    late = (df.where(lag > LATE_DAYS), F.format_string("事件后%d天才录入（应在%d天内）", lag, F.lit(LATE_DAYS)), ev)
    return future, late


def corrected(df):
    from pyspark.sql import functions as F

    return (df.where(F.col("source_updated_at") > F.col("source_created_at")),
            F.format_string("录入后于%s被修改", F.col("source_updated_at").cast("string")),
            F.struct("source_created_at", "source_updated_at"))


# ---- the job ---------------------------------------------------------------------------------------

STATE_KEY = RECORD_FLAGS.name


def _state(spark, lake_root: str) -> str:
    """Versions of every table the checks read (the silver entities, persons and links, the
    bronze tables of tombstones and of residents) and of the flags, and the code of the checks."""
    paths = [f"{lake_root}/silver/{e.name}" for e in ENTITIES]
    paths += [p for e in ENTITIES for _, p in bronze_sources(lake_root, e)]
    paths += [str(d) for d in sorted((Path(lake_root) / "bronze").glob("*__residents"))]
    paths += [PERSONS.path(lake_root), PERSON_XREF.path(lake_root), RECORD_FLAGS.path(lake_root)]
    return ops.build_state(spark, paths, ops.code_digest(sys.modules[__name__]))


def _counts(spark, lake_root: str) -> dict[str, int]:
    return {r.flag: r["count"] for r in delta.read(spark, RECORD_FLAGS, lake_root).groupBy("flag").count().collect()}


def compute_flags(spark, lake_root: str, held: frozenset[str] | set[str] = frozenset(),
                  force: bool = False) -> FlagResult | None:
    """Run every check and write ``silver.record_flags`` (rebuilt, MERGEd: a rerun changes nothing).

    Skipped, the flags counted as they are, when every table the checks read and the flags
    themselves are as after the last run and nothing is held (unless ``force``). A silver table in
    ``held`` (a failed critical expectation) is not read: the flags of its records stay as they
    were, and so do the dormant-archive flags when the archives or a service table are held (a
    missing service table would make every archive look dormant).
    """
    from pyspark.sql import functions as F

    held = frozenset(held)
    state = None if held else _state(spark, lake_root)
    if state and not force and ops.get_build_states(spark, lake_root).get(STATE_KEY) == state:
        return FlagResult(_counts(spark, lake_root), {})
    kept = sorted({BY_NAME[t.split(".", 1)[1]].bronze for t in held if t.split(".", 1)[1] in BY_NAME})
    dormant_held = bool({f"silver.{n}" for n in ("health_archives", *SERVICE_ENTITIES)} & held)
    frames = []
    followups = _followups(spark, lake_root, held)
    persons = (delta.read(spark, PERSONS, lake_root) if delta.table_exists(spark, PERSONS.path(lake_root))
               else None)
    if followups is not None:
        followups = followups.persist()
        checks = [("implausible_daily_workload", "authenticity", daily_workload(followups)),
                  ("copied_vitals", "authenticity", copied_vitals(followups))]
        if persons is not None:
            checks.append(("followup_after_death", "authenticity", after_death(followups, persons)))
        for flag, category, (df, reason, evidence) in checks:
            for name in FOLLOWUPS:
                frames.append(_flags(df.where(F.col("entity") == name), name, "followup_id", flag, category,
                                     reason, evidence, "followup_date"))

    for entity in ENTITIES:
        df = _silver(spark, lake_root, entity.name, held)
        if df is None:
            continue
        vit = impossible_vitals(df)
        out = [("impossible_vitals", "plausibility", vit)] if vit else []
        future, late = timeliness(df, entity.event)
        out += [("future_date", "timeliness", future), ("corrected", "history", corrected(df))]
        if entity.timely:   # a prescription line is uploaded with its visit: the visit carries the flag
            out.append(("late_upload", "timeliness", late))
        for flag, category, (rows, reason, evidence) in out:
            frames.append(_flags(rows, entity.bronze, entity.key, flag, category, reason, evidence, entity.event))
        for source, path in bronze_sources(lake_root, entity):
            tomb = (spark.read.format("delta").load(path).where(deleted_column())
                    .withColumn("source", F.lit(source)))
            frames.append(_flags(tomb, entity.bronze, entity.key, "deleted", "history",
                                 F.format_string("源系统已删除（%s）", F.col("updated_at")),
                                 F.struct(F.col("updated_at").alias("deleted_at")), None))

    frames += _identity_flags(spark, lake_root)
    if not dormant_held:
        frames += _dormant_archives(spark, lake_root)
    if not frames:
        return None
    flags = union_all([f.select(*FLAG_COLUMNS) for f in frames]).dropDuplicates(["source", "entity", "record_id", "flag"])
    keep = [f"entity IN ({', '.join(repr(e) for e in kept)})"] if kept else []
    keep += ["flag = 'dormant_archive'"] if dormant_held else []
    scope = f"NOT ({' OR '.join(keep)})" if keep else "true"
    stats = delta.upsert(spark, delta.with_row_hash(flags, exclude=()), RECORD_FLAGS, lake_root,
                         delete_scope=scope).as_dict()
    if followups is not None:
        followups.unpersist()
    if state:   # after the flags are written: a crash in between means checking again next time
        ops.set_build_states(spark, lake_root, {STATE_KEY: _state(spark, lake_root)})
    return FlagResult(_counts(spark, lake_root), stats)


def _identity_flags(spark, lake_root: str) -> list:
    """``invalid_id_card`` from the EMPI's ID status; ``duplicate_registration`` on every resident
    registration of a person but the first one recorded; ``corrected`` for resident registrations
    (not a silver entity: identities live in the EMPI)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    if not delta.table_exists(spark, PERSON_XREF.path(lake_root)):
        return []
    xref = delta.read(spark, PERSON_XREF, lake_root)
    residents = xref.where(F.col("source_entity") == "residents")
    invalid = residents.where(~F.col("id_card_status").isin("valid", "id_card_missing"))
    out = [_flags(invalid.withColumnRenamed("source_record_id", "resident_id"), "residents", "resident_id",
                  "invalid_id_card", "conformance",
                  F.format_string("身份证号不合规（%s），按姓名、出生日期等匹配到人", F.col("id_card_status")),
                  F.struct("id_card_status", "match_rule"), None)]
    created = union_all([
        live(spark.read.format("delta").load(str(d))).select(
            F.lit(d.name.split("__", 1)[0]).alias("source"), F.col("resident_id").alias("source_record_id"),
            F.col("created_at").alias("registered_at"), F.col("updated_at").alias("changed_at"))
        for d in sorted((Path(lake_root) / "bronze").glob("*__residents")) if (d / "_delta_log").is_dir()])
    if created is not None:
        r = residents.join(created, ["source", "source_record_id"])
        changed = r.where(F.col("changed_at") > F.col("registered_at"))
        out.append(_flags(changed.withColumnRenamed("source_record_id", "resident_id"), "residents", "resident_id",
                          "corrected", "history", F.format_string("录入后于%s被修改", F.col("changed_at")),
                          F.struct(F.col("registered_at").alias("source_created_at"),
                                   F.col("changed_at").alias("source_updated_at")), None))
        w = Window.partitionBy("person_id").orderBy("registered_at", "source", "source_record_id")
        r = (r.withColumn("__first", F.first(F.concat_ws("|", "source", "source_record_id")).over(w))
             .withColumn("__rn", F.row_number().over(w)).where("__rn > 1"))
        out.append(_flags(r.withColumnRenamed("source_record_id", "resident_id"), "residents", "resident_id",
                          "duplicate_registration", "authenticity",
                          F.format_string("同一居民的重复建档（先前已建档：%s）", F.col("__first")),
                          F.struct(F.col("__first").alias("first_registration"), "match_rule", "match_score"), None))
    return out


def _dormant_archives(spark, lake_root: str) -> list:
    """Archives of persons with no service record in the :data:`DORMANT_DAYS` before the latest
    event day in silver (the data's own 'today')."""
    from pyspark.sql import functions as F

    archives = _silver(spark, lake_root, "health_archives")
    if archives is None:
        return []
    tables = {n: _silver(spark, lake_root, n) for n in SERVICE_ENTITIES}
    services = union_all([df.select("person_id", F.col(BY_NAME[n].event).cast("date").alias("day"))
                          for n, df in tables.items() if df is not None])
    if services is None:
        return []
    as_of = services.agg(F.max("day")).first()[0]
    if as_of is None:
        return []
    last = services.groupBy("person_id").agg(F.max("day").alias("last_service"))
    df = (archives.join(last, "person_id", "left")
          .where(F.col("created_date") <= F.date_sub(F.lit(as_of), DORMANT_DAYS))
          .where(F.col("last_service").isNull() | (F.col("last_service") < F.date_sub(F.lit(as_of), DORMANT_DAYS))))
    return [_flags(df, "health_archives", "archive_no", "dormant_archive", "authenticity",
                   F.format_string("截至%s已%d天无任何服务记录（死档）", F.lit(str(as_of)), F.lit(DORMANT_DAYS)),
                   F.struct("created_date", "last_service"), "created_date")]
