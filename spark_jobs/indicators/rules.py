"""Member rules: for one catalogued indicator, the records behind its numerator and denominator.

Every rule returns one row per (period, member) with the columns of :data:`MEMBER_COLUMNS`: who
or what the member is, the institution it counts for, whether it is in the denominator and the
numerator (with the amounts summed there: 1 for a count, the fee for an average fee), the reason
in Chinese, and the facts used as JSON evidence. :mod:`spark_jobs.indicators.engine` sums them per
org unit and period; the catalogue (``catalog/indicators.yaml``) names each indicator's rule and
parameters, so one rule serves every indicator of its shape.

Common 口径: an event dated after the day it was recorded counts in no period (:func:`recorded`);
a person's residence township centre is their institution for coverage indicators.
"""
from __future__ import annotations

from typing import Callable

from lakehouse.frames import union_all
from spark_jobs.indicators.catalog import Indicator

# the date a yearly service (age_group_service) is dated by, per service table
SERVICE_DATES = {"elderly_checkups": "checkup_date", "child_health_checks": "check_date"}
MEMBER_COLUMNS = ("period_type", "period", "member_id", "member_type", "person_id", "member_org_code",
                  "in_denominator", "in_numerator", "numerator_value", "denominator_value", "reason", "evidence")

def recorded(df, date_col: str):
    """Rows whose event is not dated after the day the source recorded it."""
    from pyspark.sql import functions as F

    recorded_at = F.coalesce("source_created_at", "source_updated_at")   # FHIR rows carry only lastUpdated
    return df.where(F.col(date_col).isNotNull() & (recorded_at.isNull() | (F.to_date(date_col) <= F.to_date(recorded_at))))


def with_periods(df, date_col: str, periods: tuple[str, ...]):
    """One row per period type of ``periods`` the date falls in: ``period_type``, ``period``."""
    from pyspark.sql import functions as F

    d = F.to_date(date_col)
    label = {"year": F.date_format(d, "yyyy"), "month": F.date_format(d, "yyyy-MM"),
             "quarter": F.format_string("%d-Q%d", F.year(d), F.quarter(d))}
    return df.withColumn("__p", F.explode(F.array(*[
        F.struct(F.lit(p).alias("period_type"), label[p].alias("period")) for p in periods]))) \
        .select("*", "__p.period_type", "__p.period").drop("__p")


def _members(df, *, member_id, member_type: str, org, in_den, in_num, num_value=None, den_value=None,
             reason, evidence: list[str], person_id="person_id"):
    from pyspark.sql import functions as F

    c = lambda v: F.col(v) if isinstance(v, str) else v  # noqa: E731
    return df.select(
        "period_type", "period", c(member_id).cast("string").alias("member_id"),
        F.lit(member_type).alias("member_type"),
        (c(person_id) if person_id else F.lit(None)).cast("string").alias("person_id"),
        c(org).alias("member_org_code"), c(in_den).alias("in_denominator"), c(in_num).alias("in_numerator"),
        (c(num_value) if num_value is not None else F.lit(1.0)).cast("double").alias("numerator_value"),
        (c(den_value) if den_value is not None else F.when(c(in_den), F.lit(1.0))).cast("double")
        .alias("denominator_value"),
        c(reason).alias("reason"), F.to_json(F.struct(*evidence)).alias("evidence"))


# ---- person-based, per year ------------------------------------------------------------------

def _years(df, date_col: str):
    from pyspark.sql import functions as F

    return recorded(df, date_col).select(F.year(date_col).alias("year")).distinct()


def _year_end(col="year"):
    from pyspark.sql import functions as F

    return F.make_date(F.col(col), F.lit(12), F.lit(31))


def _managed(frames: dict, p: dict, years):
    """(person, year) → the managing registration: the latest registered on or before the year end."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    reg = recorded(frames[f"silver.{p['registry']}"], "registered_date").crossJoin(years) \
        .where(F.col("registered_date") <= _year_end())
    w = Window.partitionBy("person_id", "year").orderBy(F.col("registered_date").desc(), F.col("registry_id").desc())
    return reg.withColumn("__rn", F.row_number().over(w)).where("__rn = 1").drop("__rn")


def _year_period(df):
    from pyspark.sql import functions as F

    return df.withColumn("period_type", F.lit("year")).withColumn("period", F.col("year").cast("string"))


def chronic_standard_management(ind: Indicator, frames: dict, ctx: dict):
    """规范管理率: managed patients with at least N face-to-face follow-ups dated in the year."""
    from pyspark.sql import functions as F

    p = ind.params
    followups = recorded(frames[f"silver.{p['followups']}"], "followup_date")
    reg = _managed(frames, p, _years(followups, "followup_date"))
    f2f = (followups.where(F.col("followup_type").isin(*p["face_to_face_types"]))
           .groupBy("person_id", F.year("followup_date").alias("year"))
           .agg(F.count("*").alias("face_to_face_followups")))
    m = _year_period(reg.join(f2f, ["person_id", "year"], "left")
                     .withColumn("face_to_face_followups", F.coalesce("face_to_face_followups", F.lit(0))))
    need = int(p["min_face_to_face_followups"])
    in_num = F.col("face_to_face_followups") >= need
    reason = F.when(in_num, F.format_string(f"规范管理：年内面对面随访%d次（≥{need}次）", "face_to_face_followups")) \
              .otherwise(F.format_string(f"未达规范：年内面对面随访仅%d次（需≥{need}次）", "face_to_face_followups"))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason,
                    evidence=["registry_id", "registered_date", "face_to_face_followups"])


def chronic_control(ind: Indicator, frames: dict, ctx: dict):
    """控制率: managed patients whose latest follow-up dated in the year is below every limit."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    p = ind.params
    followups = recorded(frames[f"silver.{p['followups']}"], "followup_date") \
        .withColumn("year", F.year("followup_date"))
    reg = _managed(frames, p, followups.select("year").distinct())
    w = Window.partitionBy("person_id", "year").orderBy(F.col("followup_date").desc(), F.col("followup_id").desc())
    limits = p["controlled_below"]
    latest = (followups.withColumn("__rn", F.row_number().over(w)).where("__rn = 1")
              .select("person_id", "year", F.col("followup_id").alias("latest_followup_id"),
                      F.col("followup_date").alias("latest_followup_date"),
                      *[F.col(c).alias(f"latest_{c}") for c in limits]))
    m = _year_period(reg.join(latest, ["person_id", "year"], "left"))
    ok = F.lit(True)
    for c, limit in limits.items():
        ok = ok & (F.col(f"latest_{c}") < F.lit(limit))
    # a value no living person can have is a recording error, not a controlled patient
    for c, (low, high) in p.get("plausible", {}).items():
        ok = ok & F.col(f"latest_{c}").between(low, high)
    if {"sbp_mmhg", "dbp_mmhg"} <= set(limits):
        ok = ok & (F.col("latest_dbp_mmhg") < F.col("latest_sbp_mmhg"))
    in_num = F.col("latest_followup_id").isNotNull() & F.coalesce(ok, F.lit(False))
    names = {"sbp_mmhg": ("收缩压", "mmHg"), "dbp_mmhg": ("舒张压", "mmHg"), "fasting_glucose_mmol": ("空腹血糖", "mmol/L")}
    shown = F.concat_ws("，", *[F.format_string(f"{names.get(c, (c, ''))[0]}%s{names.get(c, (c, ''))[1]}",
                                              F.coalesce(F.col(f"latest_{c}").cast("string"), F.lit("未记录")))
                              for c in limits])
    rule = "、".join(f"{names.get(c, (c, ''))[0]}<{limit}" for c, limit in limits.items())
    plausible = F.lit(True)
    for c, (low, high) in p.get("plausible", {}).items():
        plausible = plausible & F.col(f"latest_{c}").between(low, high)
    reason = (F.when(F.col("latest_followup_id").isNull(), F.lit("未达标：年内无随访"))
              .when(in_num, F.concat(F.lit("达标：年内最近一次随访 "), shown))
              .when(~F.coalesce(plausible, F.lit(False)),
                    F.concat(F.lit("未达标：年内最近一次随访数值不合理（"), shown, F.lit("），视为未达标")))
              .otherwise(F.concat(F.lit("未达标：年内最近一次随访 "), shown, F.lit(f"（达标需{rule}）"))))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason,
                    evidence=["registry_id", "latest_followup_id", "latest_followup_date",
                              *[f"latest_{c}" for c in limits]])


def _residents(ctx: dict, years, min_age: int, max_age: int | None = None):
    """(person, year): persons alive on 31 Dec, aged ≥ ``min_age`` (and ≤ ``max_age``) then, with
    their residence township centre (``org_code``) and age."""
    from pyspark.sql import functions as F

    persons = ctx["persons"].crossJoin(years)
    age = F.floor(F.months_between(_year_end(), F.col("birth_date")) / 12).cast("int")
    return (persons.where(F.col("death_date").isNull() | (F.col("death_date") > _year_end()))
            .withColumn("age", age).where((F.col("age") >= min_age) & (F.col("age") <= (999 if max_age is None else max_age)))
            .join(ctx["residence"], "residence_area_code")
            .select("person_id", "year", "age", "birth_date", "org_code", "residence_county_org_code"))


def _where_delivered(residents, table, date_col: str):
    """(person, year) ``residents`` of the counties with at least one record of ``table`` dated in
    the year: a county without a single one measures a missing feed, not the service (the legacy
    county systems deliver no child or maternal records), so it gets no value."""
    from pyspark.sql import functions as F

    counties = recorded(table, date_col).select(F.col("county_org_code").alias("residence_county_org_code"),
                                                F.year(date_col).alias("year")).distinct()
    return residents.join(counties, ["residence_county_org_code", "year"], "left_semi")


def chronic_management(ind: Indicator, frames: dict, ctx: dict):
    """管理率: managed patients ÷ the estimated patients of the area (Σ adults × age-band prevalence)."""
    from pyspark.sql import functions as F

    p = ind.params
    years = _years(frames[f"silver.{p['followups']}"], "followup_date")
    adults = _residents(ctx, years, int(p["min_age"]))
    bands = sorted(p["prevalence_by_age"])
    prevalence = F.lit(0.0)
    for lower, rate in bands:
        prevalence = F.when(F.col("age") >= lower, F.lit(float(rate))).otherwise(prevalence)
    reg = _managed(frames, p, years).select("person_id", "year", "registry_id", "registered_date")
    m = _year_period(adults.withColumn("prevalence", prevalence).join(reg, ["person_id", "year"], "left"))
    managed = F.col("registry_id").isNotNull()
    reason = F.when(managed, F.format_string("在管患者（登记号%s）；年龄%d岁，患病率%.2f计入估算", "registry_id", "age",
                                             "prevalence")) \
              .otherwise(F.format_string("未登记管理；年龄%d岁，患病率%.2f计入估算", "age", "prevalence"))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=managed, den_value="prevalence", reason=reason,
                    evidence=["age", "prevalence", "registry_id", "registered_date"])


def age_group_service(ind: Indicator, frames: dict, ctx: dict):
    """An age group's coverage by a yearly service (e.g. 65+ check-ups), by residence."""
    from pyspark.sql import functions as F

    p = ind.params
    table = frames[f"silver.{p['service']}"]
    date_col = SERVICE_DATES[p["service"]]
    services = recorded(table, date_col).groupBy("person_id", F.year(date_col).alias("year")).agg(
        F.count("*").alias("services"), F.max(date_col).alias("last_service_date"))
    residents = _where_delivered(_residents(ctx, services.select("year").distinct(), int(p["min_age"]),
                                            None if p.get("max_age") is None else int(p["max_age"])),
                                 table, date_col)
    m = _year_period(residents.join(services, ["person_id", "year"], "left")
                     .withColumn("services", F.coalesce("services", F.lit(0))))
    in_num = F.col("services") > 0
    service = p.get("service_zh", "服务")
    reason = F.when(in_num, F.format_string(f"年内{service}%d次（最近一次%s）", "services",
                                            F.col("last_service_date").cast("string"))) \
              .otherwise(F.format_string(f"%d岁，年内未{service}", "age"))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason, evidence=["age", "services", "last_service_date"])


def _year_start(col="year"):
    from pyspark.sql import functions as F

    return F.make_date(F.col(col), F.lit(1), F.lit(1))


def _in_effect(ind: Indicator, frames: dict, years):
    """(person, year) → the person's records of ``params.table`` in effect in the year: begun
    (``from_date``) on or before 31 Dec and, with ``to_date``, not ended before 1 Jan; with the
    count, the latest record and its dates."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    p = ind.params
    start, end = p["from_date"], p.get("to_date")
    df = recorded(frames[f"silver.{p['table']}"], start).crossJoin(years).where(F.col(start) <= _year_end())
    if end:
        df = df.where(F.col(end).isNull() | (F.col(end) >= _year_start()))
    key = p["key"]
    w = Window.partitionBy("person_id", "year").orderBy(F.col(start).desc(), F.col(key).desc())
    counted = df.groupBy("person_id", "year").agg(F.count("*").alias("records"))
    latest = (df.withColumn("__rn", F.row_number().over(w)).where("__rn = 1")
              .select("person_id", "year", F.col(key).alias("record_id"), F.col(start).alias("record_start"),
                      (F.col(end) if end else F.lit(None).cast("date")).alias("record_end")))
    return counted.join(latest, ["person_id", "year"])


def population_coverage(ind: Indicator, frames: dict, ctx: dict):
    """A share of the resident population (建档率, 签约率): persons alive on 31 Dec, by residence,
    with a record of ``params.table`` in effect in the year ÷ the census population of the year
    (silver.population, one member per census cell). Computed for the census years."""
    from pyspark.sql import functions as F

    p = ind.params
    pop = frames["silver.population"].where(F.col("township_org_code").isNotNull() & F.col("population").isNotNull())
    years = pop.select("year").distinct()
    covered = _residents(ctx, years, 0).join(_in_effect(ind, frames, years), ["person_id", "year"])
    what = p["record_zh"]
    persons = _members(
        _year_period(covered), member_id="person_id", member_type="person", org="org_code", in_den=F.lit(False),
        in_num=F.lit(True), den_value=F.lit(None),
        reason=F.format_string(f"{what}：%s（%s起）", "record_id", F.col("record_start").cast("string")),
        evidence=["age", "records", "record_id", "record_start", "record_end"])
    sex = F.when(F.col("sex") == "1", F.lit("男")).when(F.col("sex") == "2", F.lit("女")).otherwise(F.col("sex"))
    cells = _members(
        _year_period(pop), member_id=F.concat_ws(":", F.lit("census"), F.col("year").cast("string"), "area_code",
                                                 "sex", "age_band"),
        member_type="census_cell", org="township_org_code", in_den=F.lit(True), in_num=F.lit(False),
        num_value=F.lit(0.0), den_value="population", person_id=None,
        reason=F.format_string("常住人口：%s %s岁 %d人", sex, F.col("age_band"), F.col("population")),
        evidence=["area_code", "sex", "age_band", "population"])
    return persons.unionByName(cells)


def key_population_contracts(ind: Indicator, frames: dict, ctx: dict):
    """重点人群签约率: residents alive on 31 Dec in a key group that year (aged ≥ ``elderly_age`` or
    ≤ ``child_max_age`` on 31 Dec, a hypertension or diabetes patient registered on or before it,
    a pregnancy registered in the year), by residence; in the numerator with a contract in effect
    in the year. Computed for the years with a contract in effect."""
    from pyspark.sql import functions as F

    p = ind.params
    years = _years(frames[f"silver.{p['table']}"], p["from_date"])
    people = _residents(ctx, years, 0)
    groups = [F.when(F.col("age") >= int(p["elderly_age"]), F.lit("老年人")),
              F.when(F.col("age") <= int(p["child_max_age"]), F.lit("0～6岁儿童"))]
    for registry, label in (("hypertension_patients", "高血压患者"), ("diabetes_patients", "2型糖尿病患者")):
        reg = _managed(frames, {"registry": registry}, years).select("person_id", "year", F.lit(True).alias(f"__{registry}"))
        people = people.join(reg, ["person_id", "year"], "left")
        groups.append(F.when(F.col(f"__{registry}"), F.lit(label)))
    pregnant = (recorded(frames["silver.pregnancy_registrations"], "registered_date")
                .select("person_id", F.year("registered_date").alias("year")).distinct()
                .withColumn("__pregnant", F.lit(True)))
    people = people.join(pregnant, ["person_id", "year"], "left")
    groups.append(F.when(F.col("__pregnant"), F.lit("孕产妇")))
    people = people.withColumn("key_groups", F.concat_ws("、", *groups)).where(F.col("key_groups") != "")
    m = _year_period(people.join(_in_effect(ind, frames, years), ["person_id", "year"], "left"))
    in_num = F.col("record_id").isNotNull()
    reason = F.when(in_num, F.format_string("重点人群（%s）：年内签约有效（协议%s，%s起）", "key_groups", "record_id",
                                            F.col("record_start").cast("string"))) \
              .otherwise(F.format_string("重点人群（%s）：年内无有效签约", "key_groups"))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason, evidence=["age", "key_groups", "record_id", "record_start"])


def archive_use(ind: Indicator, frames: dict, ctx: dict):
    """健康档案使用率: archives created on or before 31 Dec whose person had not died before the
    year, at the archive's institution; in the numerator when the person has a service record
    (any table of ``params.services``) dated in the year (有动态记录)."""
    from pyspark.sql import functions as F

    p = ind.params
    services = union_all([recorded(frames[f"silver.{t}"], d).select("person_id", F.col(d).cast("date").alias("day"))
                          for t, d in p["services"].items()])
    per_year = services.groupBy("person_id", F.year("day").alias("year")).agg(
        F.count("*").alias("services"), F.max("day").alias("last_service_date"))
    years = per_year.select("year").distinct()
    archives = recorded(frames[f"silver.{p['table']}"], "created_date").crossJoin(years) \
        .where(F.col("created_date") <= _year_end())
    alive = ctx["persons"].select("person_id", "death_date")
    m = (archives.join(alive, "person_id", "left")
         .where(F.col("death_date").isNull() | (F.col("death_date") >= _year_start()))
         .join(per_year, ["person_id", "year"], "left")
         .withColumn("services", F.coalesce("services", F.lit(0))))
    in_num = F.col("services") > 0
    reason = F.when(in_num, F.format_string("有动态记录：年内服务%d次（最近一次%s）", "services",
                                            F.col("last_service_date").cast("string"))) \
              .otherwise(F.lit("无动态记录：年内无任何服务记录"))
    return _members(_year_period(m), member_id="archive_no", member_type="archive", org="org_code",
                    in_den=F.lit(True), in_num=in_num, reason=reason,
                    evidence=["archive_no", "created_date", "services", "last_service_date"])


def vaccination_coverage(ind: Indicator, frames: dict, ctx: dict):
    """适龄儿童免疫规划疫苗接种率, per dose of the schedule (``params.schedule``: vaccine code, dose,
    age in days when due, name): every resident child alive on 31 Dec whose dose fell due in the
    year (birth date + due age), by residence, in a county that delivers vaccinations; in the
    numerator when vaccinated with that vaccine and dose on or before 31 Dec (wherever)."""
    from pyspark.sql import functions as F

    p = ind.params
    shots = recorded(frames["silver.immunizations"], "vaccinated_date")
    years = shots.select(F.year("vaccinated_date").alias("year")).distinct()
    schedule = frames["silver.immunizations"].sparkSession.createDataFrame(
        [(str(code), int(dose), int(days), str(name)) for code, dose, days, name in p["schedule"]],
        "vaccine_code string, dose_no int, due_age_days int, vaccine_zh string")
    max_age = max(int(days) for _, _, days, _ in p["schedule"]) // 365 + 1
    due = (_where_delivered(_residents(ctx, years, 0, max_age), frames["silver.immunizations"], "vaccinated_date")
           .crossJoin(F.broadcast(schedule))
           .withColumn("due_date", F.date_add("birth_date", F.col("due_age_days")))
           .where(F.year("due_date") == F.col("year")))
    given = (shots.groupBy("person_id", "vaccine_code", "dose_no")
             .agg(F.min("vaccinated_date").alias("vaccinated_date"), F.min("immunization_id").alias("immunization_id")))
    m = due.join(given, ["person_id", "vaccine_code", "dose_no"], "left")
    in_num = F.col("vaccinated_date").isNotNull() & (F.col("vaccinated_date") <= _year_end())
    dose = F.format_string("%s第%d剂", "vaccine_zh", "dose_no")
    reason = F.when(in_num, F.format_string("已接种：%s（%s）", dose, F.col("vaccinated_date").cast("string"))) \
              .otherwise(F.format_string("未接种：%s（应种日期%s）", dose, F.col("due_date").cast("string")))
    return _members(_year_period(m), member_id=F.concat_ws(":", "person_id", "vaccine_code", F.col("dose_no").cast("string")),
                    member_type="dose", org="org_code", in_den=F.lit(True), in_num=in_num, reason=reason,
                    evidence=["vaccine_code", "dose_no", "due_date", "vaccinated_date", "immunization_id"])


def maternal_care(ind: Indicator, frames: dict, ctx: dict):
    """早孕建册率 / 产后访视率 over the live births of the year: registered pregnancies whose
    postpartum visits record a live birth (the earliest delivery date recorded), by the mother's
    residence, in the year of delivery. ``params.require``: ``early_registration`` (registered
    before ``before_weeks`` weeks with a prenatal visit before then too) or ``postpartum_visit`` (a
    postpartum visit within ``within_days`` days after delivery)."""
    from pyspark.sql import functions as F

    p = ind.params
    visits = recorded(frames["silver.postpartum_visits"], "visit_date")
    births = (visits.where(F.col("delivery_outcome") == "live_birth").where(F.col("delivery_date").isNotNull())
              .groupBy("pregnancy_id").agg(F.min("delivery_date").alias("delivery_date")))
    reg = recorded(frames["silver.pregnancy_registrations"], "registered_date").select(
        "pregnancy_id", "person_id", "registered_date", F.col("gestational_weeks").alias("registered_weeks"))
    df = births.join(reg, "pregnancy_id").withColumn("year", F.year("delivery_date"))
    people = _residents(ctx, df.select("year").distinct(), 0).select("person_id", "year", "org_code")
    df = df.join(people, ["person_id", "year"])
    if p["require"] == "early_registration":
        weeks = int(p["before_weeks"])
        early = (recorded(frames["silver.prenatal_visits"], "visit_date").where(F.col("gestational_weeks") < weeks)
                 .groupBy("pregnancy_id").agg(F.min("visit_date").alias("first_visit_date"),
                                              F.min("gestational_weeks").alias("first_visit_weeks")))
        df = df.join(early, "pregnancy_id", "left")
        in_num = F.coalesce((F.col("registered_weeks") < weeks) & F.col("first_visit_date").isNotNull(), F.lit(False))
        reason = (F.when(in_num, F.format_string("早孕建册：孕%d周建册，孕%d周首次产检", "registered_weeks",
                                                  "first_visit_weeks"))
                  .when(F.col("registered_weeks") >= weeks, F.format_string(f"非早孕建册：孕%d周建册（需<{weeks}周）",
                                                                             "registered_weeks"))
                  .otherwise(F.format_string(f"非早孕建册：孕{weeks}周前无产检记录（建册孕周%s）",
                                             F.coalesce(F.col("registered_weeks").cast("string"), F.lit("未记录")))))
        evidence = ["pregnancy_id", "delivery_date", "registered_date", "registered_weeks", "first_visit_date"]
    else:
        days = int(p["within_days"])
        timely = (visits.join(births.select("pregnancy_id", F.col("delivery_date").alias("__d")), "pregnancy_id")
                  .where(F.datediff("visit_date", "__d").between(0, days))
                  .groupBy("pregnancy_id").agg(F.min("visit_date").alias("first_visit_date")))
        df = df.join(timely, "pregnancy_id", "left")
        in_num = F.col("first_visit_date").isNotNull()
        reason = F.when(in_num, F.format_string(f"产后{days}天内访视：分娩%s，访视%s", F.col("delivery_date").cast("string"),
                                                F.col("first_visit_date").cast("string"))) \
                  .otherwise(F.format_string(f"产后{days}天内无访视（分娩%s）", F.col("delivery_date").cast("string")))
        evidence = ["pregnancy_id", "delivery_date", "first_visit_date"]
    return _members(_year_period(df), member_id="pregnancy_id", member_type="pregnancy", org="org_code",
                    in_den=F.lit(True), in_num=in_num, reason=reason, evidence=evidence)


# ---- event-based, per month / quarter / year -------------------------------------------------

def _events(ind: Indicator, frames: dict):
    p = ind.params
    df = recorded(frames[f"silver.{p['table']}"], p["date"])
    if p.get("where"):
        df = df.where(p["where"])
    return with_periods(df, p["date"], ind.periods)


def event_count(ind: Indicator, frames: dict, ctx: dict):
    """A volume: the events dated in the period, at the institution of ``params.org``."""
    from pyspark.sql import functions as F

    p = ind.params
    key = ctx["keys"][p["table"]]
    df = _events(ind, frames)
    return _members(df, member_id=key, member_type=p["member_type"], org=p.get("org", "org_code"),
                    in_den=F.lit(False), in_num=F.lit(True), den_value=F.lit(None),
                    reason=F.format_string(f"{p.get('date_zh', '日期')}%s", F.col(p["date"]).cast("string")),
                    evidence=[key, p["date"]], person_id="person_id")


def event_mean(ind: Indicator, frames: dict, ctx: dict):
    """An average amount per event (e.g. 次均费用): events that carry the amount."""
    from pyspark.sql import functions as F

    p = ind.params
    key = ctx["keys"][p["table"]]
    df = _events(ind, frames).where(F.col(p["amount"]).isNotNull())
    return _members(df, member_id=key, member_type=p["member_type"], org="org_code", in_den=F.lit(True),
                    in_num=F.lit(True), num_value=p["amount"],
                    reason=F.format_string("金额%.2f元", F.col(p["amount"])), evidence=[key, p["date"], p["amount"]])


def line_share(ind: Indicator, frames: dict, ctx: dict):
    """The share of records with a flag among those where it is known."""
    from pyspark.sql import functions as F

    p = ind.params
    key = ctx["keys"][p["table"]]
    df = _events(ind, frames).where(F.col(p["flag"]).isNotNull())
    flag = F.col(p["flag"])
    drug = F.coalesce("drug_name", "drug_code")
    yes, no = p.get("flag_zh", ["是", "否"])
    return _members(df, member_id=key, member_type="prescription_line", org="org_code", in_den=F.lit(True),
                    in_num=flag, reason=F.when(flag, F.concat(F.lit(f"{yes}："), drug))
                    .otherwise(F.concat(F.lit(f"{no}："), drug)),
                    evidence=[key, "visit_id", p["date"], "drug_code", p["flag"]])


def prescription_share(ind: Indicator, frames: dict, ctx: dict):
    """The share of prescriptions (the lines of one visit) with at least one flagged line."""
    from pyspark.sql import functions as F

    p = ind.params
    lines = recorded(frames[f"silver.{p['table']}"], p["date"]).where(
        F.col(p["flag"]).isNotNull() & F.col("visit_id").isNotNull())
    rx = lines.groupBy("visit_id").agg(
        F.min(p["date"]).alias(p["date"]), F.min("person_id").alias("person_id"),
        F.min("org_code").alias("org_code"), F.count("*").alias("lines"),
        F.max(F.col(p["flag"]).cast("int")).alias("flagged"),
        F.concat_ws("、", F.sort_array(F.collect_set(F.when(F.col(p["flag"]), F.coalesce("drug_name", "drug_code")))))
        .alias("drugs"))
    df = with_periods(rx, p["date"], ind.periods)
    in_num = F.col("flagged") == 1
    what = p.get("flag_zh", "标记药品")
    return _members(df, member_id="visit_id", member_type="prescription", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=F.when(in_num, F.concat(F.lit(f"含{what}："), F.col("drugs")))
                    .otherwise(F.format_string(f"不含{what}（共%d条明细）", "lines")),
                    evidence=["visit_id", p["date"], "lines", "drugs"])


def report_timeliness(ind: Indicator, frames: dict, ctx: dict):
    """Reports issued within the limit after their start event (per modality where set); a report
    dated before its start is not on time."""
    from pyspark.sql import functions as F

    p = ind.params
    requests = frames[f"silver.{p['requests']}"]
    cols = [F.col("request_id"), F.col(p["start"]).alias("started_at"), F.col("person_id")]
    if "modality" in requests.columns:
        cols.append(F.col("modality"))
    reports = recorded(frames[f"silver.{p['reports']}"], "reported_at").drop("person_id") \
        .join(requests.select(*cols), "request_id").where(F.col("started_at").isNotNull())
    limit = F.lit(float(p["limit_hours"]))
    for modality, hours in (p.get("limit_hours_by_modality") or {}).items():
        limit = F.when(F.col("modality") == modality, F.lit(float(hours))).otherwise(limit)
    seconds = F.col("reported_at").cast("long") - F.col("started_at").cast("long")
    df = with_periods(reports.withColumn("limit_hours", limit).withColumn("seconds", seconds)
                      .withColumn("hours", F.round(seconds / 3600.0, 2)), "reported_at", ind.periods)
    # a report before its start is a data error, never on time
    in_num = (F.col("seconds") >= 0) & (F.col("seconds") <= F.col("limit_hours") * 3600)
    reason = F.when(in_num, F.format_string("及时：%.1f小时（时限%.0f小时）", "hours", "limit_hours")) \
              .when(F.col("seconds") < 0, F.format_string("时间矛盾：报告早于开始时间%.1f小时", -F.col("hours"))) \
              .otherwise(F.format_string("超时：%.1f小时（时限%.0f小时）", "hours", "limit_hours"))
    return _members(df, member_id="report_id", member_type="report", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason,
                    evidence=["report_id", "request_id", "started_at", "reported_at", "hours", "limit_hours"])


RULES: dict[str, Callable] = {f.__name__: f for f in (
    chronic_standard_management, chronic_control, chronic_management, age_group_service,
    population_coverage, key_population_contracts, archive_use, maternal_care, vaccination_coverage,
    event_count, event_mean, line_share, prescription_share, report_timeliness)}


# what a rule's denominator counts when it is not the records it looks at: an estimate (adults ×
# prevalence) or the census. A unit may then count more in the numerator (more managed patients
# than estimated, residents born or moved in since the census), so such a rate may pass 1; dbt's
# bounds on rates (fct_indicator_values) read this from silver.indicator_definitions
DENOMINATOR_BASIS = {"chronic_management": "estimate", "population_coverage": "census"}


def denominator_basis(ind: Indicator) -> str:
    """``estimate``, ``census`` or ``records`` (the denominator counts the members themselves)."""
    return DENOMINATOR_BASIS.get(ind.rule, "records")


# the tables a rule always reads, whatever its parameters
RULE_TABLES = {"population_coverage": ("population",),
               "key_population_contracts": ("hypertension_patients", "diabetes_patients", "pregnancy_registrations"),
               "maternal_care": ("pregnancy_registrations", "prenatal_visits", "postpartum_visits"),
               "vaccination_coverage": ("immunizations",)}


def input_tables(ind: Indicator) -> list[str]:
    """The silver tables an indicator's rule reads (besides org units and persons)."""
    p = ind.params
    names = [p.get(k) for k in ("registry", "followups", "service", "table", "reports", "requests")]
    names += list(p.get("services", {})) + list(RULE_TABLES.get(ind.rule, ()))
    return [f"silver.{n}" for n in dict.fromkeys(names) if n]


def dated_inputs(ind: Indicator) -> dict[str, str]:
    """The inputs whose rows count only in the periods of one of their dates: table → date column.

    A member of a period depends on these tables' rows dated in that period alone (and on the
    undated inputs as a whole), so a change to one of their rows touches only the periods of its
    old and new date; a change to any other input touches every period."""
    p = ind.params
    date_of = {"chronic_standard_management": ("followups", "followup_date"),
               "chronic_control": ("followups", "followup_date"),
               "chronic_management": ("followups", "followup_date"),
               "event_count": ("table", p.get("date")), "event_mean": ("table", p.get("date")),
               "line_share": ("table", p.get("date")),
               "report_timeliness": ("reports", "reported_at")}
    if ind.rule == "age_group_service":
        out = {f"silver.{p['service']}": SERVICE_DATES[p["service"]]}
    elif ind.rule in date_of:
        param, col = date_of[ind.rule]
        out = {f"silver.{p[param]}": col}
    else:   # prescription_share: a prescription is dated by its first line, which another line can move
        out = {}
    auth = p.get("authenticity_records")
    if auth and out.get(f"silver.{auth['table']}", auth["date"]) != auth["date"]:
        return {}
    if auth:
        out[f"silver.{auth['table']}"] = auth["date"]
    return out
