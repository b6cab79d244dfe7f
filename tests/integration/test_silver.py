"""Silver on a small simulated city: every entity is built from every source that delivers it
(regional database, legacy county exports, hospital FHIR), every live bronze row is in silver or in
quarantine with a reason, codes are national, no identifier reaches silver, and a rerun changes
nothing."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from lakehouse import delta
from spark_jobs.conform import entities as E
from spark_jobs.conform.silver import ORG_UNITS, SILVER, UNMAPPED_CODES, conform_silver, entity_rows
from spark_jobs.empi.match import PERSON_XREF, PERSONS
from spark_jobs.indicators.engine import VALUES, compute

pytestmark = pytest.mark.spark

FHIR_FED = {e.name for e in E.ENTITIES if e.fhir}
ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?$")


def _silver(spark, s, name: str):
    return delta.read(spark, SILVER[name], s.lake_root)


def _legacy_exports(s) -> set[str]:
    """The bronze entities the legacy county delivered."""
    return {d.name.split("__", 1)[1] for d in (Path(s.lake_root) / "bronze").glob("legacy_*__*")}


def test_every_entity_from_every_source_that_delivers_it(spark, conformed_city):
    s, _, _ = conformed_city
    legacy = _legacy_exports(s)
    for entity in E.ENTITIES:
        sources = {r.source for r in _silver(spark, s, entity.name).select("source").distinct().collect()}
        assert "regional" in sources, entity.name
        if entity.bronze in legacy:
            assert any(x.startswith("legacy_") for x in sources), entity.name
        if entity.name in FHIR_FED:
            assert any(x.startswith("fhir_") for x in sources), entity.name


def test_every_live_bronze_row_is_in_silver_or_quarantined_with_a_reason(spark, conformed_city):
    s, _, _ = conformed_city
    for entity in E.ENTITIES:
        expected = entity_rows(spark, s.lake_root, entity).count()
        in_silver = _silver(spark, s, entity.name).count()
        q = Path(s.lake_root) / "quarantine" / entity.name
        quarantined = (spark.read.format("delta").load(str(q)).collect() if (q / "_delta_log").is_dir() else [])
        assert {r.reason_code for r in quarantined} <= {"unresolved_person"}, entity.name
        assert in_silver + len(quarantined) == expected, entity.name


def test_columns_are_typed_and_codes_national(spark, conformed_city):
    s, _, _ = conformed_city
    fu = _silver(spark, s, "hypertension_followups")
    types = dict(fu.dtypes)
    assert (types["followup_date"], types["sbp_mmhg"], types["weight_kg"]) == ("date", "int", "double")
    assert dict(_silver(spark, s, "family_doctor_contracts").dtypes)["is_elderly"] == "boolean"
    visits = _silver(spark, s, "outpatient_visits")
    legacy = visits.where("source LIKE 'legacy_%'").collect()
    assert legacy and all(v.diagnosis_code_local for v in legacy)
    mapped = [v for v in legacy if v.diagnosis_code is not None]
    assert mapped and all(ICD10.match(v.diagnosis_code) for v in mapped)
    unmapped = {(r.source, r.local_code): r.rows for r in delta.read(spark, UNMAPPED_CODES, s.lake_root).collect()
                if r.entity == "outpatient_visits"} if delta.table_exists(spark, UNMAPPED_CODES.path(s.lake_root)) else {}
    assert sum(unmapped.values()) == len(legacy) - len(mapped), "every unmapped local code is reported"
    regional = visits.where("source = 'regional' AND diagnosis_code IS NOT NULL").select("diagnosis_code").collect()
    assert regional and all(ICD10.match(v.diagnosis_code) for v in regional)


def test_rows_carry_person_and_org_levels_never_identifiers(spark, conformed_city):
    s, _, _ = conformed_city
    orgs = {r.org_code: r.level for r in delta.read(spark, ORG_UNITS, s.lake_root).collect()}
    for entity in E.ENTITIES:
        df = _silver(spark, s, entity.name)
        assert not {"resident_id", "name", "id_card_no", "phone", "address"} & set(df.columns), entity.name
        if entity.person:
            assert df.where("person_id IS NULL").count() == 0, entity.name
        rows = df.select("org_code", "county_org_code").collect()
        assert all(r.org_code in orgs for r in rows), entity.name
        assert all(r.county_org_code for r in rows if orgs[r.org_code] != "city"), entity.name


def test_a_rerun_changes_nothing(spark, conformed_city):
    s, _, _ = conformed_city
    tables = list(SILVER.values()) + [ORG_UNITS]
    before = {t.name: delta.table_version(spark, t.path(s.lake_root)) for t in tables}
    again = conform_silver(spark, s.lake_root)
    assert sorted(again.unchanged_inputs) == sorted(e.name for e in E.ENTITIES), "inputs as last run: skipped"
    rebuilt = conform_silver(spark, s.lake_root, force=True)
    assert not rebuilt.unchanged_inputs
    for result in (again, rebuilt):
        assert not [t for t, st in result.tables.items() if st["inserted"] or st["updated"] or st["deleted"]]
    assert {t.name: delta.table_version(spark, t.path(s.lake_root)) for t in tables} == before


def _silver_content(spark, s) -> dict:
    names = [t.path(s.lake_root) for t in (*SILVER.values(), ORG_UNITS, UNMAPPED_CODES, PERSON_XREF, PERSONS)]
    names += [str(q) for q in sorted((Path(s.lake_root) / "quarantine").iterdir()) if q.name in SILVER]
    return {Path(p).relative_to(s.lake_root).as_posix(): delta.content_hash(spark, p) for p in names}


def test_a_day_of_new_data_updates_silver_as_a_full_rebuild_would(spark, conformed_city, conformed_city_config,
                                                                  tmp_path_factory):
    """Day one loaded and conformed, then day two on top: silver ends up as the city conformed in
    one go, and only the rows that changed are written. On the way one bronze table fails a
    critical expectation: its silver table is held at its last good state while every other entity
    takes the new day, until the table is repaired."""
    import os

    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from ingest.connectors.sources import ingest_sources
    from lakehouse import pipeline
    from lakehouse.settings import load_settings
    s, _, _ = conformed_city
    city, kinds = conformed_city_config
    daily = load_settings({**os.environ, "JL_HOME": str(s.home),
                           "LAKE_ROOT": str(tmp_path_factory.mktemp("daily") / "lake")})
    ingest_sources(spark, daily, kinds, until=city.start + dt.timedelta(days=1))
    pipeline.conform(daily)
    first_day = {name: _silver(spark, daily, name).count() for name in SILVER}
    # a month's indicators as published after day one, with the input versions they record
    reproduced = ["outpatient_visits", "htn_standard_mgmt_rate"]
    first_run = compute(spark, daily.lake_root, indicator_ids=reproduced)
    assert all(first_run[i]["periods"] is None for i in reproduced), "a first computation covers every period"
    published = _published(spark, daily.lake_root, reproduced)
    ingest_sources(spark, daily, kinds)

    broken = f"{daily.lake_root}/bronze/regional__immunizations"     # a second row under a key
    (spark.read.format("delta").load(broken).limit(1).withColumn("_batch_id", F.lit("broken"))
     .write.format("delta").mode("append").save(broken))
    checked = ["bronze.regional__immunizations", "bronze.regional__hypertension_followups"]
    assert set(pipeline.validate_bronze(daily, tables=checked)["held"]) == {"bronze.regional__immunizations"}
    held_version = delta.table_version(spark, SILVER["immunizations"].path(daily.lake_root))
    second_day = pipeline.conform(daily)
    assert set(second_day["held"]) == {"immunizations"}
    assert delta.table_version(spark, SILVER["immunizations"].path(daily.lake_root)) == held_version
    assert second_day["tables"]["silver.hypertension_followups"]["inserted"] > 0, "the rest flows on"
    stats = [st for t, st in second_day["tables"].items() if t.startswith("silver.") and t[7:] in SILVER]
    written = sum(st["inserted"] + st["updated"] + st["deleted"] for st in stats)
    total = sum(st["inserted"] + st["updated"] + st["unchanged"] for st in stats)
    print(f"\nday two: {written:,} of {total:,} silver rows written; first day had {sum(first_day.values()):,}")
    assert 0 < written < total / 2, "a day's new data rewrites only what changed"

    DeltaTable.forPath(spark, broken).delete("_batch_id = 'broken'")
    assert pipeline.validate_bronze(daily, tables=checked)["held"] == {}
    released = pipeline.conform(daily)
    assert released["held"] == {} and "immunizations" not in released["unchanged_inputs"]
    assert _silver_content(spark, daily) == _silver_content(spark, s)

    # newer and corrected data arrived: recomputed from the versions the values record, every
    # value is what was published; recomputed from today's tables, the month's numbers move
    versions = {}
    for ind in reproduced:
        recorded_versions = {json.dumps(v["input_versions"], sort_keys=True) for v in published[ind].values()}
        assert len(recorded_versions) == 1
        versions.update(json.loads(recorded_versions.pop()))
    again = _indicator_values(compute(spark, daily.lake_root, indicator_ids=reproduced, input_versions=versions,
                                      write=False))
    assert again == published

    # the incremental run recomputes the periods the new days touch and nothing else, and ends
    # where a computation from scratch does (versions aside: an unchanged value keeps the ones
    # that reproduce it)
    run = compute(spark, daily.lake_root, indicator_ids=reproduced)
    touched = run["outpatient_visits"]["periods"]
    assert touched and f"{city.start:%Y-%m}" in touched
    assert {p for (p, _, _) in published["outpatient_visits"]} - set(touched), "older periods are left alone"
    now = _published(spark, daily.lake_root, reproduced)
    scratch = _indicator_values(compute(spark, daily.lake_root, indicator_ids=reproduced, write=False))
    strip = lambda vs: {i: {k: {f: x for f, x in v.items() if f != "input_versions"} for k, v in by.items()}  # noqa: E731
                        for i, by in vs.items()}
    assert strip(now) == strip(scratch)
    month = f"{city.start:%Y-%m}"
    before = {k: v["numerator"] for k, v in published["outpatient_visits"].items() if k[0] == month}
    after = {k: v["numerator"] for k, v in now["outpatient_visits"].items() if k[0] == month}
    assert before and before != after, "the new days change the month's outpatient visits"
    assert compute(spark, daily.lake_root, indicator_ids=reproduced)["outpatient_visits"].get("unchanged")


def _published(spark, lake_root: str, indicator_ids: list[str]) -> dict:
    """indicator → {(period, level, org): the published value's numbers and recorded versions}."""
    from pyspark.sql import functions as F

    values = delta.read(spark, VALUES, lake_root).where(F.col("indicator_id").isin(indicator_ids))
    return _indicator_values({i: {"values": values.where(F.col("indicator_id") == i)} for i in indicator_ids})


def _indicator_values(result: dict) -> dict:
    """indicator → {(period, level, org): the value's numbers and recorded versions}."""
    out = {}
    for ind, r in result.items():
        out[ind] = {(v.period, v.org_level, v.org_code): {
            "numerator": v.numerator, "denominator": v.denominator, "value": v.value, "score": v.score,
            "input_versions": json.loads(v.input_versions), "catalog_version": v.catalog_version}
            for v in r["values"].collect()}
    return out


def test_silver_suites_pass_and_catch_a_broken_table(spark, conformed_city, tmp_path):
    from expectations.runner import validate
    from lakehouse import pipeline
    from pyspark.sql import functions as F

    s, _, _ = conformed_city
    result = pipeline.validate_silver(s)          # raises on a critical failure
    assert set(result["tables"]) >= {f"silver.{e.name}" for e in E.ENTITIES} | {PERSON_XREF.name, ORG_UNITS.name}
    assert result["held"] == {}
    assert Path(result["data_docs"]).is_file()
    # the pipeline wrote person_id and a unique key: a table without them fails critically
    fu = _silver(spark, s, "hypertension_followups")
    first = fu.select("followup_id").first()[0]
    broken = fu.withColumn("person_id", F.when(F.col("followup_id") == first, None).otherwise(F.col("person_id")))
    broken = broken.unionByName(fu.where(F.col("followup_id") == first))
    outcome = validate(spark, "silver.hypertension_followups", broken, tmp_path / "docs")
    failed = {(r["expectation_type"], r["column"]) for r in outcome.critical_failures}
    assert ("expect_column_values_to_not_be_null", "person_id") in failed
    assert ("expect_column_values_to_be_unique", "followup_id") in failed
