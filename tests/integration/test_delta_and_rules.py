"""The core write helper and the Spark twins of the Python rules."""
from __future__ import annotations

import pytest
from delta.tables import DeltaTable

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
    merged = DeltaTable.forPath(spark, SPEC.path(lake)).history(1).first().operationMetrics
    assert merged["numSourceRows"] == "2", "the MERGE is given the rows to write, not the unchanged a"


def test_upsert_deletes_only_inside_the_scope(spark, tmp_path):
    lake = str(tmp_path)
    delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 2, "x"), ("c", 3, "y")]), SPEC, lake)
    stats = delta.upsert(spark, _df(spark, [("a", 1, "x")]), SPEC, lake, delete_scope="grp = 'x'")
    assert stats.deleted == 1
    assert sorted(r.k for r in delta.read(spark, SPEC, lake).collect()) == ["a", "c"]
    # a change, an insert and a deletion in one commit, the unchanged row left out of it
    stats = delta.upsert(spark, _df(spark, [("a", 1, "x"), ("d", 4, "y"), ("e", 5, "z")]), SPEC, lake,
                         delete_scope="grp = 'y'")
    assert (stats.inserted, stats.updated, stats.deleted, stats.unchanged) == (2, 0, 1, 1)
    assert {r.k: (r.v, r.grp) for r in delta.read(spark, SPEC, lake).collect()} == {
        "a": (1, "x"), "d": (4, "y"), "e": (5, "z")}
    again = delta.upsert(spark, _df(spark, [("a", 2, "x"), ("d", 4, "y"), ("e", 5, "z")]), SPEC, lake,
                         delete_scope="grp = 'y'")
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 1, 0, 2)
    assert {r.k: r.v for r in delta.read(spark, SPEC, lake).collect()} == {"a": 2, "d": 4, "e": 5}


def test_upsert_with_the_row_hash_as_a_key_or_a_null_key_deletes_only_what_is_gone(spark, tmp_path):
    """Quarantine tables are keyed on (record_key, _row_hash); a business key may be NULL, and the
    MERGE matches NULL with NULL."""
    lake = str(tmp_path)
    quarantine = TableSpec("quarantine.upsert_probe", keys=("k", "_row_hash"))
    delta.upsert(spark, _df(spark, [("a", 1, "x"), ("b", 2, "x")]), quarantine, lake)
    resolved = delta.upsert(spark, _df(spark, [("a", 1, "x")]), quarantine, lake, delete_scope="true")
    assert (resolved.inserted, resolved.updated, resolved.deleted) == (0, 0, 1)
    assert [r.k for r in delta.read(spark, quarantine, lake).collect()] == ["a"]
    assert not delta.upsert(spark, _df(spark, [("a", 1, "x")]), quarantine, lake, delete_scope="true").changed

    delta.upsert(spark, _df(spark, [(None, 1, "x"), ("b", 2, "x")]), SPEC, lake)
    stats = delta.upsert(spark, _df(spark, [(None, 1, "x"), ("b", 3, "x")]), SPEC, lake, delete_scope="true")
    assert (stats.inserted, stats.updated, stats.deleted, stats.unchanged) == (0, 1, 0, 1)
    assert {r.k: r.v for r in delta.read(spark, SPEC, lake).collect()} == {None: 1, "b": 3}


def test_upsert_refuses_duplicate_keys(spark, tmp_path):
    with pytest.raises(ValueError, match="duplicate keys"):
        delta.upsert(spark, _df(spark, [("a", 1, "x"), ("a", 2, "x")]), SPEC, str(tmp_path))


def test_the_rows_a_change_moved_come_from_the_change_feed_or_else_from_both_versions(spark, tmp_path,
                                                                                       monkeypatch):
    """The indicator engine asks which dates the changed rows of a silver table had, before and
    after. A table made by an older release has no change feed: its first platform write turns the
    feed on, and ranges before that are answered by reading both versions whole."""
    from pyspark.sql import functions as F

    lake, path = str(tmp_path), SPEC.path(str(tmp_path))
    # an older release's table: versions 0 and 1 written without a change feed
    _df(spark, [("a", 1, "p"), ("b", 2, "x")]).write.format("delta").save(path)
    _df(spark, [("c", 3, "y")]).write.format("delta").mode("append").save(path)
    # b moves from group x to z, d is new, c is gone: this write turns the feed on first
    stats = delta.upsert(spark, _df(spark, [("a", 1, "p"), ("b", 5, "z"), ("d", 4, "w")]), SPEC, lake,
                         delete_scope="true")
    assert (stats.inserted, stats.updated, stats.deleted) == (1, 1, 1)
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    assert {r.key: r.value for r in props}.get("delta.enableChangeDataFeed") == "true"

    whole_reads = []
    real_read = delta.read
    monkeypatch.setattr(delta, "read", lambda *a, **k: whole_reads.append(k.get("version")) or real_read(*a, **k))
    # since the feed was on: only the merge's rows, without reading either version whole
    assert delta.changed_values(spark, SPEC, lake, stats.version - 1, stats.version, F.col("grp")) == {"x", "z", "w", "y"}
    assert whole_reads == []
    # from version 0: the feed does not cover version 1, so both versions are read and compared;
    # a is in both and unchanged, so p is not there
    assert delta.changed_values(spark, SPEC, lake, 0, stats.version, F.col("grp")) == {"x", "z", "w"}
    assert whole_reads == [0, stats.version]


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
