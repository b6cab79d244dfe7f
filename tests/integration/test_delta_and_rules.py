"""The core write helper and the Spark twins of the Python rules."""
from __future__ import annotations

import pytest

from lakehouse import delta, idcard
from lakehouse.pseudonym import person_id, spark_person_id
from lakehouse.tables import TableSpec

pytestmark = pytest.mark.spark

SPEC = TableSpec("silver.upsert_probe", keys=("k",))


def _df(spark, rows):
    return delta.with_row_hash(spark.createDataFrame(rows, "k STRING, v INT, grp STRING"), exclude=())


def test_upsert_inserts_updates_and_leaves_identical_rows_alone(spark, tmp_path):
    lake = str(tmp_path)
    first = delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 2, "x")]), SPEC, lake)
    assert (first.inserted, first.version) == (2, 0)
    again = delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 2, "x")]), SPEC, lake)
    assert not again.changed and again.version == 0, "an identical rewrite must not commit"
    changed = delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 3, "x"), ("c", 4, "y")]), SPEC, lake)
    assert (changed.inserted, changed.updated, changed.unchanged, changed.version) == (1, 1, 1, 1)
    got = {r.k: r.v for r in delta.read(spark, SPEC, lake).collect()}
    assert got == {"a": 1, "b": 3, "c": 4}


def test_upsert_deletes_only_inside_the_scope(spark, tmp_path):
    lake = str(tmp_path)
    delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 2, "x"), ("c", 3, "y")]), SPEC, lake)
    stats = delta.upsert(spark, _df(spark, [("a", 1, "x")]), SPEC, lake, delete_scope="grp = 'x'")
    assert stats.deleted == 1
    assert sorted(r.k for r in delta.read(spark, SPEC, lake).collect()) == ["a", "c"]


def test_upsert_refuses_duplicate_keys(spark, tmp_path):
    with pytest.raises(ValueError, match="duplicate keys"):
        delta.upsert(spark, _df(spark, [("a", 1, "x"), ("a", 2, "x")]), SPEC, str(tmp_path))


def test_spark_person_id_equals_the_python_hmac(spark):
    key = b"a test key that is only for this test"
    numbers = ["11010519491231002X", "350921195803070016", idcard.make("350902", __import__("datetime").date(2001, 2, 3), 5, True)]
    df = spark.createDataFrame([(n,) for n in numbers], "n STRING")
    got = {r.n: r.pid for r in df.select("n", spark_person_id(df.n, key).alias("pid")).collect()}
    assert got == {n: person_id(n, key) for n in numbers}


def test_spark_id_card_rule_agrees_with_python(spark):
    cases = [None, "", "11010519491231002X", "11010519491231002", "110105194902300021",
             "110105194912310021", "1101051949123100AX", "350921195803070016"]
    df = spark.createDataFrame([(c,) for c in cases], "n STRING")
    got = [r.reason for r in df.select(idcard.spark_invalid_reason(df.n).alias("reason")).collect()]
    assert got == [idcard.invalid_reason(c) for c in cases]
