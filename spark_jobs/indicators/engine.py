"""The indicator engine: catalogued indicators per org unit and period, with their members.

For every value it keeps the member records (who is in the denominator, who in the numerator,
and why a person is not) and the Delta versions of the input tables it read, so a published
number can be audited down to the person and recomputed from the same table versions later.
"""
from __future__ import annotations

import json
from lakehouse import delta
from lakehouse.tables import TableSpec, register, table
from spark_jobs.conform.silver import ORG_UNITS
from spark_jobs.empi.match import PERSONS
from spark_jobs.quality.authenticity import RECORD_FLAGS
from spark_jobs.indicators import rules
from spark_jobs.indicators.catalog import Catalog, Indicator, load_catalog

VALUES = register(TableSpec(
    "silver.indicator_values", keys=("indicator_id", "period", "org_level", "org_code"),
    description="Indicator values per org unit and period: numerator, denominator, value, score"))
MEMBERS = register(TableSpec(
    "silver.indicator_members", keys=("indicator_id", "period", "member_id"),
    description="The records behind every numerator and denominator, with the reason"))

LEVEL_COLUMNS = {"institution": "institution_org_code", "township": "township_org_code", "county": "county_org_code",
                 "city": "city_org_code"}
PERSON_RULES = {"chronic_management", "age_group_service"}   # rules that read silver.persons
OPTIONAL_INPUTS = {"silver.record_flags"}   # before the first quality run: no authenticity coefficient


def _read_inputs(spark, lake_root: str, names: list[str], versions: dict[str, int] | None):
    """Read the tables ``names`` at pinned versions (the given ones, else the current ones)."""
    pinned = bool(versions)
    versions = dict(versions or {})
    frames = {}
    for name in names:
        spec = table(name)
        v = versions.get(name)
        if v is None:
            # reproducing a value computed before an optional table existed: it stays absent
            if name in OPTIONAL_INPUTS and (pinned or not delta.table_exists(spark, spec.path(lake_root))):
                continue
            if pinned:
                raise ValueError(f"no recorded version of {name}: cannot reproduce from the versions given")
            v = delta.table_version(spark, spec.path(lake_root))
            versions[name] = v
        frames[name] = delta.read(spark, spec, lake_root, version=v)
    return frames, {n: versions[n] for n in frames}


def _org_levels(orgs):
    """org_code → township, county and city org codes (the city bureau is the root)."""
    from pyspark.sql import functions as F

    city = orgs.where("org_type = 'city_bureau'").select(F.col("org_code").alias("city_org_code"))
    return orgs.select("org_code", "township_org_code", "county_org_code").crossJoin(city)


def _context(frames: dict) -> dict:
    """What rules share: the business key of every silver entity, persons and their residence
    township centre (a township's area code → its health centre)."""
    from pyspark.sql import functions as F

    from spark_jobs.conform.entities import ENTITIES

    orgs = frames[ORG_UNITS.name]
    ctx = {"keys": {e.name: e.key for e in ENTITIES}}
    if PERSONS.name in frames:
        ctx["persons"] = frames[PERSONS.name].select("person_id", "birth_date", "death_date", "residence_area_code")
        ctx["residence"] = orgs.where("level = 'township'").select(
            F.col("area_code").alias("residence_area_code"), "org_code").dropDuplicates(["residence_area_code"])
    return ctx


def score_column(ind: Indicator, value):
    """Column twin of :func:`spark_jobs.indicators.catalog.score` (a unit test compares them)."""
    from pyspark.sql import functions as F

    if ind.scoring == "none":
        return F.lit(None).cast("double")
    w, t = F.lit(float(ind.weight)), F.lit(float(ind.target))
    if ind.scoring == "at_or_above_target":
        s = F.when(value >= t, w).otherwise(w * value / t)
    elif ind.scoring == "at_or_below_target":
        s = F.when(value <= t, w).when(value == 0, w).otherwise(w * t / value)
    else:
        s = F.when(value != 0, w).otherwise(F.lit(0.0))
    return F.when(value.isNotNull(), s)


def period_bounds():
    """(period_start, period_end) columns of ``period_type`` / ``period``."""
    from pyspark.sql import functions as F

    year = F.substring("period", 1, 4).cast("int")
    first_month = (F.when(F.col("period_type") == "year", F.lit(1))
                   .when(F.col("period_type") == "quarter", (F.substring("period", 7, 1).cast("int") - 1) * 3 + 1)
                   .otherwise(F.substring("period", 6, 2).cast("int")))
    months = F.when(F.col("period_type") == "year", 12).when(F.col("period_type") == "quarter", 3).otherwise(1)
    start = F.make_date(year, first_month, F.lit(1))
    return start, F.date_sub(F.add_months(start, months), 1)


def aggregate(spark, ind: Indicator, members, orgs, catalog_version: str, input_versions: dict):
    """Sum members into values per level and period, with target, score and weight."""
    from pyspark.sql import functions as F

    levels = _org_levels(orgs).withColumnRenamed("org_code", "institution_org_code")
    names = orgs.select(F.col("org_code").alias("__o"), F.col("org_name"), F.col("county_org_code").alias("__c"))
    # a member whose institution is not in the org-unit tree counts nowhere (as in authenticity())
    m = members.join(levels, members.member_org_code == levels.institution_org_code)
    frames = []
    for level in ind.levels:
        col = LEVEL_COLUMNS[level]
        frames.append(m.where(F.col(col).isNotNull()).groupBy("period_type", "period", F.col(col).alias("org_code"))
                      # rounded: a sum of doubles depends on the order partial sums meet, and a
                      # rerun must not rewrite a value over its last bits
                      .agg(F.round(F.sum(F.when(F.col("in_numerator"), F.col("numerator_value")).otherwise(0.0)), 6)
                           .alias("numerator"),
                           F.round(F.sum(F.when(F.col("in_denominator"), F.col("denominator_value"))), 6)
                           .alias("denominator"))
                      .withColumn("org_level", F.lit(level)))
    values = frames[0]
    for f in frames[1:]:
        values = values.unionByName(f)
    ratio = F.when(F.col("denominator") > 0, F.col("numerator") / F.col("denominator"))
    start, end = period_bounds()
    values = (values.join(names, values.org_code == names.__o, "left").drop("__o")
              .withColumnRenamed("__c", "county_org_code")
              .withColumn("denominator", F.col("denominator") if ind.unit != "count" else F.lit(None).cast("double"))
              .withColumn("value", F.col("numerator") if ind.unit == "count" else ratio)
              .withColumn("score", score_column(ind, F.col("value")))
              .select(F.lit(ind.id).alias("indicator_id"), F.lit(ind.name_zh).alias("indicator_name_zh"),
                      F.lit(ind.domain).alias("domain"), F.lit(ind.unit).alias("unit"),
                      F.lit(ind.direction).alias("direction"), "period_type", "period",
                      start.alias("period_start"), end.alias("period_end"),
                      "org_level", "org_code", "org_name", "county_org_code",
                      "numerator", "denominator", "value",
                      F.lit(ind.target).cast("double").alias("target"), "score",
                      F.lit(float(ind.weight)).alias("weight"), F.lit(ind.scoring).alias("scoring"),
                      F.lit(catalog_version).alias("catalog_version"),
                      F.lit(json.dumps(input_versions, sort_keys=True)).alias("input_versions")))
    return values


def with_authenticity(values, coefficients):
    """``values`` with the authenticity columns: records, flagged, coefficient (NULL where the
    unit has no such records in the period) and adjusted_score = score × coefficient (the score
    itself when there is no coefficient)."""
    from pyspark.sql import functions as F

    if coefficients is None:
        return (values.withColumn("authenticity_records", F.lit(None).cast("long"))
                .withColumn("authenticity_flagged", F.lit(None).cast("long"))
                .withColumn("authenticity_coefficient", F.lit(None).cast("double"))
                .withColumn("adjusted_score", F.col("score")))
    out = values.join(coefficients, ["period_type", "period", "org_level", "org_code"], "left")
    return out.withColumn("adjusted_score", F.col("score") * F.coalesce("authenticity_coefficient", F.lit(1.0)))


def inputs_of(ind: Indicator) -> list[str]:
    """Every table an indicator reads: its rule's silver tables, the org units, the persons for
    the rules over residents, and the record flags for an authenticity coefficient."""
    extra = [PERSONS.name] if ind.rule in PERSON_RULES else []
    if ind.params.get("authenticity_records"):
        extra.append(RECORD_FLAGS.name)
    tables = [*rules.input_tables(ind), ORG_UNITS.name, *extra]
    auth = ind.params.get("authenticity_records")
    if auth and f"silver.{auth['table']}" not in tables:
        tables.append(f"silver.{auth['table']}")
    return tables


def authenticity(ind: Indicator, frames: dict):
    """Per period, level and org unit: the indicator's authenticity records dated in the period at
    the unit's institutions, how many carry an authenticity flag, and the coefficient (the share
    without one); None when the indicator has no ``authenticity_records``."""
    from pyspark.sql import functions as F

    from spark_jobs.conform.entities import BY_NAME

    auth = ind.params.get("authenticity_records")
    if not auth or RECORD_FLAGS.name not in frames:
        return None
    entity = BY_NAME[auth["table"]]
    flagged = (frames[RECORD_FLAGS.name].where((F.col("category") == "authenticity") & (F.col("entity") == entity.bronze))
               .select(F.col("record_id").alias(entity.key)).distinct().withColumn("__flagged", F.lit(1)))
    recs = rules.with_periods(rules.recorded(frames[f"silver.{auth['table']}"], auth["date"]), auth["date"],
                              ind.periods).select(entity.key, "org_code", "period_type", "period") \
        .join(flagged, entity.key, "left")
    levels = _org_levels(frames[ORG_UNITS.name])
    m = recs.join(levels.withColumnRenamed("org_code", "institution_org_code"),
                  recs.org_code == F.col("institution_org_code"))
    out = None
    for level in ind.levels:
        col = LEVEL_COLUMNS[level]
        part = (m.where(F.col(col).isNotNull()).groupBy("period_type", "period", F.col(col).alias("org_code"))
                .agg(F.count("*").alias("authenticity_records"),
                     F.count("__flagged").alias("authenticity_flagged"))
                .withColumn("org_level", F.lit(level)))
        out = part if out is None else out.unionByName(part)
    return out.withColumn("authenticity_coefficient",
                          1 - F.col("authenticity_flagged") / F.col("authenticity_records"))


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
    out, values_frames, member_frames = {}, [], []
    for ind_id in indicator_ids or list(catalog.indicators):
        ind = catalog[ind_id]
        member_fn = rules.RULES[ind.rule]
        inputs = inputs_of(ind)
        blocked = {t: (held or {})[t] for t in inputs if t in (held or {})}
        if blocked:
            out[ind_id] = {"held": blocked}
            continue
        frames, versions = _read_inputs(spark, lake_root, inputs, input_versions)
        members = member_fn(ind, frames, _context(frames)).withColumn("indicator_id", F.lit(ind.id))
        values = with_authenticity(aggregate(spark, ind, members, frames[ORG_UNITS.name], catalog.version, versions),
                                   authenticity(ind, frames))
        out[ind_id] = {"values": values, "members": members, "input_versions": versions}
        values_frames.append(values)
        member_frames.append(members.select("indicator_id", *rules.MEMBER_COLUMNS))
    if not write or not values_frames:
        return out
    # one MERGE per table for every indicator computed (each scoped to its indicators)
    computed = [i for i, o in out.items() if "held" not in o]
    scope = "indicator_id IN ({})".format(", ".join(f"'{i}'" for i in computed))
    stats = {}
    for spec, parts in ((VALUES, values_frames), (MEMBERS, member_frames)):
        df = parts[0]
        for part in parts[1:]:
            df = df.unionByName(part)
        stats[spec.name] = delta.upsert(spark, delta.with_row_hash(df, exclude=()), spec, lake_root,
                                        delete_scope=scope).as_dict()
    for i in computed:
        out[i] = {"input_versions": out[i]["input_versions"]}
    out["_tables"] = stats
    return out


def explain(spark, lake_root: str, indicator_id: str, org_code: str, period: str, level: str | None = None,
            limit: int = 10) -> dict:
    """One published value taken apart: the value with its numerator, denominator, target and
    score, and the first ``limit`` members (by member id) of the numerator and of the denominator
    outside it, with their reasons. A township centre's code has an institution and a township
    value: ``level`` picks one (default: the widest). Raises LookupError when no such value was
    computed."""
    from pyspark.sql import functions as F

    ind = load_catalog()[indicator_id]
    values = delta.read(spark, VALUES, lake_root).where(
        (F.col("indicator_id") == indicator_id) & (F.col("org_code") == org_code) & (F.col("period") == period))
    if level:
        values = values.where(F.col("org_level") == level)
    rows = {r.org_level: r.asDict() for r in values.collect()}
    if not rows:
        raise LookupError(f"没有找到指标 {indicator_id}（{ind.name_zh}）在 {org_code} {period} 的计算结果")
    value = rows[max(rows, key=list(LEVEL_COLUMNS).index)]
    members = delta.read(spark, MEMBERS, lake_root).where(
        (F.col("indicator_id") == indicator_id) & (F.col("period") == period))
    levels = _org_levels(delta.read(spark, ORG_UNITS, lake_root)).withColumnRenamed("org_code", "institution_org_code")
    m = (members.join(levels, members.member_org_code == levels.institution_org_code)
         .where(F.col(LEVEL_COLUMNS[value["org_level"]]) == org_code))
    cols = ["member_id", "member_type", "person_id", "member_org_code", "numerator_value", "denominator_value",
            "reason", "evidence"]
    first = lambda cond: [r.asDict() for r in m.where(cond).orderBy("member_id").select(*cols)  # noqa: E731
                          .limit(limit).collect()]
    counts = m.agg(F.sum(F.col("in_numerator").cast("int")).alias("num"),
                   F.sum((F.col("in_denominator") & ~F.col("in_numerator")).cast("int")).alias("outside")).first()
    return {"indicator": {"id": ind.id, "name_zh": ind.name_zh, "unit": ind.unit, "direction": ind.direction,
                          "numerator_zh": ind.numerator.get("zh"), "denominator_zh": ind.denominator.get("zh"),
                          "scoring": ind.scoring},
            "value": value, "numerator_members": first("in_numerator"),
            "outside_numerator_members": first("in_denominator AND NOT in_numerator"),
            "members_in_numerator": int(counts.num or 0), "members_outside_numerator": int(counts.outside or 0)}
