"""The indicator engine: catalogued indicators per org unit and period, with their members.

For every value it keeps the member records (who is in the denominator, who in the numerator,
and why a person is not) and the Delta versions of the input tables it read, so a published
number can be audited down to the person and recomputed from the same table versions later.
"""
from __future__ import annotations

import datetime as dt
import json
from lakehouse import delta
from lakehouse.frames import union_all
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
RUNS = register(TableSpec(
    "silver.indicator_runs", keys=("indicator_id", "computed_at"),
    description="Every computation of an indicator: the catalogue and input versions it read and the "
                "periods it recomputed (NULL: all); the next run compares its inputs with these"))

DEFINITIONS = register(TableSpec(
    "silver.indicator_definitions", keys=("indicator_id",),
    description="The indicator catalogue as a table: names, 口径 in Chinese, unit, target, scoring, weight, "
                "levels, periods, disaggregations and age bands (what dashboards and dbt read)"))

LEVEL_COLUMNS = {"institution": "institution_org_code", "township": "township_org_code", "county": "county_org_code",
                 "city": "city_org_code"}
PERSON_RULES = {"chronic_management", "age_group_service", "population_coverage", "key_population_contracts",
                "archive_use", "maternal_care", "vaccination_coverage"}   # rules that read silver.persons
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
        # a township with two centres: the lower code (as silver.population attributes its census)
        ctx["residence"] = orgs.where("level = 'township'").groupBy(
            F.col("area_code").alias("residence_area_code")).agg(F.min("org_code").alias("org_code")) \
            .join(orgs.select("org_code", F.col("county_org_code").alias("residence_county_org_code")), "org_code")
    return ctx


def score_expr(scoring, target, weight, value):
    """The score of ``value`` under a scoring rule, all as columns (NULL without a value or under
    ``none``); :func:`spark_jobs.indicators.catalog.score` is its Python twin (a test compares them)."""
    from pyspark.sql import functions as F

    s = (F.when(scoring == "at_or_above_target", F.when(value >= target, weight).otherwise(weight * value / target))
         .when(scoring == "at_or_below_target",
               F.when(value <= target, weight).when(value == 0, weight).otherwise(weight * target / value))
         .when(scoring == "yes_no", F.when(value != 0, weight).otherwise(F.lit(0.0))))
    return F.when(value.isNotNull(), s).cast("double")


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


def period_range(period_type: str, period: str) -> tuple[dt.date, dt.date]:
    """First and last day of a period label (``2025``, ``2025-Q3``, ``2025-07``)."""
    year = int(period[:4])
    if period_type == "year":
        first, months = 1, 12
    elif period_type == "quarter":
        first, months = (int(period[-1]) - 1) * 3 + 1, 3
    else:
        first, months = int(period[5:7]), 1
    after = dt.date(year + (first - 1 + months) // 12, (first - 1 + months) % 12 + 1, 1)
    return dt.date(year, first, 1), after - dt.timedelta(days=1)


def aggregate(members, orgs, indicators: list[Indicator], catalog_version: str, input_versions: dict[str, dict]):
    """Sum the members of ``indicators`` (one frame, column ``indicator_id``) into values per
    level of each indicator and period, with target, score and weight; ``input_versions`` gives
    each indicator's table versions."""
    from pyspark.sql import functions as F

    spark = members.sparkSession
    levels = _org_levels(orgs).withColumnRenamed("org_code", "institution_org_code")
    allowed = spark.createDataFrame([(i.id, level) for i in indicators for level in i.levels],
                                    "indicator_id string, org_level string")
    attrs = spark.createDataFrame(
        [(i.id, i.name_zh, i.domain, i.unit, i.direction, None if i.target is None else float(i.target),
          float(i.weight), i.scoring, json.dumps(input_versions[i.id], sort_keys=True)) for i in indicators],
        "indicator_id string, indicator_name_zh string, domain string, unit string, direction string, "
        "target double, weight double, scoring string, input_versions string")
    names = orgs.select(F.col("org_code"), "org_name", "county_org_code")
    unit_code = F.coalesce(*[F.when(F.col("org_level") == level, F.col(col)) for level, col in LEVEL_COLUMNS.items()])
    # a member whose institution is not in the org-unit tree counts nowhere (as in authenticity())
    sums = (members.join(levels, members.member_org_code == levels.institution_org_code)
            .join(F.broadcast(allowed), "indicator_id")
            .withColumn("org_code", unit_code).where(F.col("org_code").isNotNull())
            .groupBy("indicator_id", "period_type", "period", "org_level", "org_code")
            # rounded: a sum of doubles depends on the order partial sums meet, and a rerun must
            # not rewrite a value over its last bits
            .agg(F.round(F.sum(F.when(F.col("in_numerator"), F.col("numerator_value")).otherwise(0.0)), 6)
                 .alias("numerator"),
                 F.round(F.sum(F.when(F.col("in_denominator"), F.col("denominator_value"))), 6).alias("denominator")))
    count = F.col("unit") == "count"
    value = F.when(count, F.col("numerator")).when(F.col("denominator") > 0, F.col("numerator") / F.col("denominator"))
    start, end = period_bounds()
    return (sums.join(F.broadcast(attrs), "indicator_id").join(F.broadcast(names), "org_code", "left")
            .withColumn("value", value)
            .withColumn("denominator", F.when(~count, F.col("denominator")))
            .select("indicator_id", "indicator_name_zh", "domain", "unit", "direction", "period_type", "period",
                    start.alias("period_start"), end.alias("period_end"),
                    "org_level", "org_code", "org_name", "county_org_code", "numerator", "denominator", "value",
                    "target", score_expr(F.col("scoring"), F.col("target"), F.col("weight"), F.col("value"))
                    .alias("score"), "weight", "scoring", F.lit(catalog_version).alias("catalog_version"),
                    "input_versions"))


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
    out = values.join(coefficients, ["indicator_id", "period_type", "period", "org_level", "org_code"], "left")
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
    out = union_all([
        m.where(F.col(LEVEL_COLUMNS[level]).isNotNull())
        .groupBy("period_type", "period", F.col(LEVEL_COLUMNS[level]).alias("org_code"))
        .agg(F.count("*").alias("authenticity_records"), F.count("__flagged").alias("authenticity_flagged"))
        .withColumn("org_level", F.lit(level)) for level in ind.levels])
    return out.withColumn("authenticity_coefficient",
                          1 - F.col("authenticity_flagged") / F.col("authenticity_records")) \
        .withColumn("indicator_id", F.lit(ind.id))


def _last_runs(spark, lake_root: str) -> dict[str, dict]:
    """indicator → its latest run: catalogue version and the input versions it read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not delta.table_exists(spark, RUNS.path(lake_root)):
        return {}
    latest = Window.partitionBy("indicator_id").orderBy(F.col("computed_at").desc())
    rows = delta.read(spark, RUNS, lake_root).withColumn("__n", F.row_number().over(latest)).where("__n = 1").collect()
    return {r.indicator_id: {"catalog_version": r.catalog_version, "input_versions": json.loads(r.input_versions)}
            for r in rows}


def period_labels(day: dt.date, periods: tuple[str, ...]) -> set[tuple[str, str]]:
    """(period_type, period) of every period type in ``periods`` that ``day`` falls in."""
    label = {"year": f"{day:%Y}", "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}", "month": f"{day:%Y-%m}"}
    return {(p, label[p]) for p in periods}


def period_interval(label: str) -> tuple[dt.date, dt.date]:
    """``[first day, day after the last)`` of a period label (``2025``, ``2025-Q3``, ``2025-07``)."""
    import re

    kinds = {r"\d{4}": "year", r"\d{4}-Q[1-4]": "quarter", r"\d{4}-(0[1-9]|1[0-2])": "month"}
    kind = next((k for pattern, k in kinds.items() if re.fullmatch(pattern, label)), None)
    if kind is None:
        raise ValueError(f"{label!r} is not a period: give 2025, 2025-Q3 or 2025-07")
    first, last = period_range(kind, label)
    return first, last + dt.timedelta(days=1)


def interval_periods(start: dt.date, end: dt.date) -> set[tuple[str, str]]:
    """Every (period_type, period) that a day of ``[start, end)`` falls in: for a month, the
    month, its quarter and its year (a year's value depends on each of its months)."""
    out, day = set(), start
    while day < end:
        out |= period_labels(day, ("year", "quarter", "month"))
        day += dt.timedelta(days=1)
    return out


def changed_days(spark, lake_root: str, name: str, date_col: str, before: int, now: int,
                 memo: dict | None = None) -> set[dt.date]:
    """The old and new dates (``date_col``) of the rows of table ``name`` that differ between two
    versions (from the table's change data feed, see :func:`lakehouse.delta.changed_values`);
    ``memo`` keeps them for the next indicator over the same table."""
    from pyspark.sql import functions as F

    key = (name, date_col, before, now)
    if memo is not None and key in memo:
        return memo[key]
    days = delta.changed_values(spark, table(name), lake_root, before, now, F.to_date(date_col)) - {None}
    if memo is not None:
        memo[key] = days
    return days


def touched_periods(spark, lake_root: str, ind: Indicator, before: dict[str, int], now: dict[str, int],
                    memo: dict | None = None):
    """The periods of ``ind`` that the changes between two sets of input versions can move: the
    periods of the old and new dates of every changed row of a dated input (see
    :func:`rules.dated_inputs`). None (every period) when an undated input changed."""
    dated = rules.dated_inputs(ind)
    changed = sorted(t for t in set(before) | set(now) if before.get(t) != now.get(t))
    if any(t not in dated or t not in before or t not in now for t in changed):
        return None
    return {p for name in changed
            for day in changed_days(spark, lake_root, name, dated[name], before[name], now[name], memo)
            for p in period_labels(day, ind.periods)}


def _restrict(ind: Indicator, frames: dict, periods: set[tuple[str, str]]) -> dict:
    """``frames`` with the dated inputs cut to the days of ``periods`` (all a member of one of
    them can depend on)."""
    from functools import reduce

    from pyspark.sql import functions as F

    ranges = []
    for lo, hi in sorted(period_range(*p) for p in periods):   # merged: a year covers its months
        if ranges and lo <= ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))
        else:
            ranges.append((lo, hi))
    out = dict(frames)
    for name, col in rules.dated_inputs(ind).items():
        if name in out:
            day = F.to_date(col)
            out[name] = out[name].where(reduce(lambda a, b: a | b, [day.between(F.lit(lo), F.lit(hi))
                                                                    for lo, hi in ranges]))
    return out


def compute(spark, lake_root: str, catalog: Catalog | None = None, indicator_ids: list[str] | None = None,
            input_versions: dict[str, int] | None = None, write: bool = True,
            held: dict[str, list[str]] | None = None, full: bool = False,
            recompute: set[tuple[str, str]] | None = None) -> dict:
    """Compute the indicators (all catalogued ones by default).

    - With ``input_versions`` the inputs are read at those Delta versions (reproducing a past
      computation).
    - An indicator with an input in ``held`` (a failed critical expectation) is not recomputed:
      its published values stay as they were, and the result says why.
    - Incremental (unless ``full``, ``input_versions`` or ``write=False``): against the input
      versions of the indicator's last run (``silver.indicator_runs``), an indicator whose inputs
      did not change is skipped, and one whose changes are confined to dated rows is recomputed
      for the periods those rows fall in only (:func:`touched_periods`). A new catalogue version
      recomputes everything.
    - ``recompute`` names periods (``(period_type, period)``, see :func:`interval_periods`) to
      recompute from the current inputs whether or not they changed, on top of the incremental
      ones: the backfill of a month. An indicator computed for none of them and with unchanged
      inputs is skipped as usual.

    Returns per indicator its input versions and the periods recomputed (None: all), plus the
    write stats under ``_tables`` (with ``write=False``: the values and members DataFrames)."""
    from pyspark.sql import functions as F

    catalog = catalog or load_catalog()
    incremental = write and not input_versions and not full
    last = _last_runs(spark, lake_root) if incremental else {}
    diffs = {}   # table diffs shared by the indicators over the same table
    out, computed, member_frames, coefficients, orgs = {}, [], [], [], None
    for ind_id in indicator_ids or list(catalog.indicators):
        ind = catalog[ind_id]
        inputs = inputs_of(ind)
        blocked = {t: (held or {})[t] for t in inputs if t in (held or {})}
        if blocked:
            out[ind_id] = {"held": blocked}
            continue
        frames, versions = _read_inputs(spark, lake_root, inputs, input_versions)
        periods = None
        prev = last.get(ind.id)
        forced = {p for p in recompute or () if p[0] in ind.periods}
        if prev and prev["catalog_version"] == catalog.version:
            if prev["input_versions"] == versions and not forced:
                out[ind_id] = {"unchanged": True, "input_versions": versions}
                continue
            touched = set() if prev["input_versions"] == versions else \
                touched_periods(spark, lake_root, ind, prev["input_versions"], versions, diffs)
            # the periods a change moved stay in: the run records the current versions
            periods = None if touched is None else touched | forced
        if periods is not None:
            frames = _restrict(ind, frames, periods)
        members = rules.RULES[ind.rule](ind, frames, _context(frames))
        if periods is not None:
            members = members.where(F.col("period").isin(sorted({p for _, p in periods}) or [""]))
        member_frames.append(members.select(F.lit(ind.id).alias("indicator_id"), *rules.MEMBER_COLUMNS))
        coefficients.append(authenticity(ind, frames))
        orgs = orgs if orgs is not None else frames[ORG_UNITS.name]
        computed.append(ind)
        out[ind_id] = {"input_versions": versions, "periods": None if periods is None else sorted(p for _, p in periods)}
    if not computed:
        return out
    members = union_all(member_frames).persist()   # read by both the values and the members write
    try:
        found = [c for c in coefficients if c is not None]
        values = with_authenticity(
            aggregate(members, orgs, computed, catalog.version, {i.id: out[i.id]["input_versions"] for i in computed}),
            union_all(found).select("indicator_id", "period_type", "period", "org_level", "org_code",
                                 "authenticity_records", "authenticity_flagged", "authenticity_coefficient")
            if found else None)
        if not write:
            for i in computed:
                out[i.id].update(values=values.where(F.col("indicator_id") == i.id),
                                 members=members.where(F.col("indicator_id") == i.id))
            return out
        # one MERGE per table for every indicator computed, each scoped to its recomputed periods
        scope = " OR ".join(
            f"(indicator_id = '{i.id}'" + ("" if out[i.id]["periods"] is None else
                                          " AND period IN ({})".format(", ".join(f"'{p}'" for p in out[i.id]["periods"]) or "''"))
            + ")" for i in computed)
        stats = {
            # a value's input versions are not part of its content: a recomputation that finds
            # the same numbers leaves the row (and the versions that reproduce it) as it was
            VALUES.name: delta.upsert(spark, delta.with_row_hash(values, exclude=("input_versions",)), VALUES,
                                      lake_root, delete_scope=scope).as_dict(),
            MEMBERS.name: delta.upsert(spark, delta.with_row_hash(members, exclude=()), MEMBERS, lake_root,
                                       delete_scope=scope).as_dict()}
    finally:
        if write:
            members.unpersist()
    runs = spark.createDataFrame(
        [(i.id, catalog.version, json.dumps(out[i.id]["input_versions"], sort_keys=True), out[i.id]["periods"])
         for i in computed], "indicator_id string, catalog_version string, input_versions string, periods array<string>")
    runs = runs.withColumn("computed_at", F.current_timestamp())
    stats[RUNS.name] = delta.upsert(spark, delta.with_row_hash(runs, exclude=()), RUNS, lake_root,
                                    check_unique=False).as_dict()
    out["_tables"] = stats
    return out


def write_definitions(spark, lake_root: str, catalog: Catalog | None = None) -> dict:
    """The catalogue's indicators as ``silver.indicator_definitions`` (MERGEd: an unchanged
    catalogue writes nothing; an indicator no longer catalogued is removed). Lists are
    comma-separated strings (levels, periods, disaggregations, age_bands)."""
    catalog = catalog or load_catalog()
    rows = [(i.id, i.name_zh, i.name_en, i.domain, i.unit, i.direction, i.numerator.get("zh"), i.denominator.get("zh"),
             None if i.target is None else float(i.target), i.scoring, float(i.weight), ",".join(i.levels),
             ",".join(i.periods), ",".join(i.disaggregations), ",".join(str(b) for b in i.age_bands),
             i.effective_from, i.effective_to, i.source or None, rules.denominator_basis(i), catalog.version)
            for i in catalog.indicators.values()]
    df = spark.createDataFrame(rows, "indicator_id string, name_zh string, name_en string, domain string, unit string, "
                                     "direction string, numerator_zh string, denominator_zh string, target double, "
                                     "scoring string, weight double, levels string, periods string, "
                                     "disaggregations string, age_bands string, effective_from string, "
                                     "effective_to string, source string, denominator_basis string, "
                                     "catalog_version string")
    return delta.upsert(spark, delta.with_row_hash(df, exclude=()), DEFINITIONS, lake_root,
                        delete_scope="true").as_dict()


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
