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


def _residents(ctx: dict, years, min_age: int):
    """(person, year): persons alive on 31 Dec, aged ≥ ``min_age`` then, with their residence
    township centre (``org_code``) and age."""
    from pyspark.sql import functions as F

    persons = ctx["persons"].crossJoin(years)
    age = F.floor(F.months_between(_year_end(), F.col("birth_date")) / 12).cast("int")
    return (persons.where(F.col("death_date").isNull() | (F.col("death_date") > _year_end()))
            .withColumn("age", age).where(F.col("age") >= min_age)
            .join(ctx["residence"], "residence_area_code")
            .select("person_id", "year", "age", "birth_date", "org_code"))


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
    residents = _residents(ctx, services.select("year").distinct(), int(p["min_age"]))
    m = _year_period(residents.join(services, ["person_id", "year"], "left")
                     .withColumn("services", F.coalesce("services", F.lit(0))))
    in_num = F.col("services") > 0
    service = p.get("service_zh", "服务")
    reason = F.when(in_num, F.format_string(f"年内{service}%d次（最近一次%s）", "services",
                                            F.col("last_service_date").cast("string"))) \
              .otherwise(F.format_string(f"%d岁，年内未{service}", "age"))
    return _members(m, member_id="person_id", member_type="person", org="org_code", in_den=F.lit(True),
                    in_num=in_num, reason=reason, evidence=["age", "services", "last_service_date"])


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
    event_count, event_mean, line_share, prescription_share, report_timeliness)}


def input_tables(ind: Indicator) -> list[str]:
    """The silver tables an indicator's rule reads (besides org units and persons)."""
    p = ind.params
    names = [p.get(k) for k in ("registry", "followups", "service", "table", "reports", "requests")]
    return [f"silver.{n}" for n in names if n]


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
