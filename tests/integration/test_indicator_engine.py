"""The engine's column expressions agree with their Python twins (scores, period bounds)."""
from __future__ import annotations

import datetime as dt

import pytest

from spark_jobs.indicators.catalog import load_catalog, score
from spark_jobs.indicators.engine import period_bounds, period_range, score_expr


def test_the_spark_score_is_the_catalogue_score_for_every_indicator(spark):
    from pyspark.sql import functions as F

    catalog = load_catalog()
    rows = []
    for ind in catalog.indicators.values():
        target = ind.target or 1.0
        for value in (None, 0.0, target * 0.5, target, target * 1.5, 1234.0):
            rows.append((ind.id, ind.scoring, ind.target, float(ind.weight), value))
    df = spark.createDataFrame(rows, "id string, scoring string, target double, weight double, value double")
    got = {(r.id, r.value): r.score for r in df.withColumn(
        "score", score_expr(F.col("scoring"), F.col("target"), F.col("weight"), F.col("value"))).collect()}
    assert len(got) == len(rows)
    for (ind_id, value), s in got.items():
        expected = score(catalog[ind_id], value)
        assert (s is None) == (expected is None) and (s is None or s == pytest.approx(expected)), (ind_id, value, s)
    # the lower-is-better and higher-is-better rules do differ
    assert {catalog[i].scoring for i, _ in got} >= {"at_or_above_target", "at_or_below_target", "none"}


@pytest.mark.parametrize("period_type, period, first, last", [
    ("year", "2024", dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    ("quarter", "2025-Q1", dt.date(2025, 1, 1), dt.date(2025, 3, 31)),
    ("quarter", "2025-Q4", dt.date(2025, 10, 1), dt.date(2025, 12, 31)),
    ("month", "2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
    ("month", "2025-12", dt.date(2025, 12, 1), dt.date(2025, 12, 31)),
])
def test_period_bounds_in_spark_and_in_python(spark, period_type, period, first, last):
    start, end = period_bounds()
    row = spark.createDataFrame([(period_type, period)], "period_type string, period string") \
        .select(start.alias("s"), end.alias("e")).first()
    assert (row.s, row.e) == (first, last) == period_range(period_type, period)


def test_the_periods_a_changed_day_touches_are_the_periods_members_get(spark):
    from spark_jobs.indicators.engine import period_labels
    from spark_jobs.indicators.rules import with_periods

    days = [dt.date(2024, 12, 31), dt.date(2025, 1, 1), dt.date(2025, 3, 31), dt.date(2025, 4, 1),
            dt.date(2025, 12, 22)]
    df = with_periods(spark.createDataFrame([(d,) for d in days], "day date"), "day", ("month", "quarter", "year"))
    members = {}
    for r in df.collect():
        members.setdefault(r.day, set()).add((r.period_type, r.period))
    assert members == {d: period_labels(d, ("month", "quarter", "year")) for d in days}
    assert period_labels(dt.date(2025, 4, 1), ("year",)) == {("year", "2025")}
