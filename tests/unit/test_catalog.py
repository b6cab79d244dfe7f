import dataclasses

import pytest

from spark_jobs.indicators.catalog import load_catalog, score


def test_catalogue_is_versioned_and_names_its_definitions_in_chinese():
    cat = load_catalog()
    assert cat.version
    ind = cat["htn_standard_mgmt_rate"]
    assert ind.name_zh == "高血压患者规范管理率"
    assert ind.numerator["zh"] and ind.denominator["zh"]
    assert ind.params["min_face_to_face_followups"] == 4
    assert "phone" not in ind.params["face_to_face_types"]
    with pytest.raises(KeyError, match="not in catalogue"):
        cat["no_such_indicator"]


@pytest.mark.parametrize("value, expected", [(0.6, 5.0), (0.9, 5.0), (0.3, 2.5), (0.0, 0.0), (None, None)])
def test_at_or_above_target_scoring(value, expected):
    ind = load_catalog()["htn_standard_mgmt_rate"]  # target 0.60, weight 5
    assert score(ind, value) == pytest.approx(expected) if expected is not None else score(ind, value) is None


def test_at_or_below_target_scoring_rewards_lower_values():
    ind = dataclasses.replace(load_catalog()["htn_standard_mgmt_rate"], scoring="at_or_below_target",
                              target=0.2, weight=4.0)
    assert score(ind, 0.1) == 4.0
    assert score(ind, 0.4) == pytest.approx(2.0)


REQUIRED = {   # the indicators of this catalogue version: id → Chinese name
    "htn_mgmt_rate": "高血压患者管理率", "htn_standard_mgmt_rate": "高血压患者规范管理率",
    "htn_bp_control_rate": "管理人群血压控制率", "dm_mgmt_rate": "2型糖尿病患者管理率",
    "dm_standard_mgmt_rate": "2型糖尿病患者规范管理率", "dm_glucose_control_rate": "管理人群血糖控制率",
    "elderly_health_mgmt_rate": "65岁及以上老年人健康管理率", "outpatient_visits": "门急诊人次",
    "outpatient_avg_fee": "门诊次均费用", "inpatient_avg_cost": "住院次均费用", "essential_drug_rate": "基本药物使用比例",
    "antibiotic_rx_rate": "抗菌药物处方比例", "iv_infusion_rx_rate": "静脉输液处方比例", "referrals_up": "上转人次",
    "referrals_down": "下转人次",
}


def test_every_indicator_names_a_rule_the_engine_has_and_tables_silver_has():
    from lakehouse.tables import table
    from spark_jobs.indicators import engine, rules

    cat = load_catalog()
    assert {i: cat[i].name_zh for i in REQUIRED} == REQUIRED
    for ind in cat.indicators.values():
        assert ind.rule in rules.RULES, ind.id
        for name in engine.inputs_of(ind):
            assert table(name).layer == "silver", (ind.id, name)
        assert ind.numerator["zh"] and ind.denominator["zh"], ind.id
        assert (ind.scoring == "none") == (ind.direction == "volume"), ind.id
        if ind.direction == "lower_is_better":
            assert ind.scoring == "at_or_below_target", ind.id


def test_estimate_parameters_are_catalogue_data_not_code():
    cat = load_catalog()
    for ind_id in ("htn_mgmt_rate", "dm_mgmt_rate"):
        bands = cat[ind_id].params["prevalence_by_age"]
        assert bands == sorted(bands) and all(0 < rate < 1 for _, rate in bands)
        assert bands[0][0] == cat[ind_id].params["min_age"]


def test_volumes_are_shown_but_not_scored_and_a_bad_entry_is_refused(tmp_path):
    cat = load_catalog()
    assert score(cat["outpatient_visits"], 1234) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog_version: x\nindicators:\n  - {id: a, name_zh: 甲, name_en: A, domain: d, rule: event_count, "
                   "unit: count, direction: volume, numerator: {zh: 甲}, denominator: {zh: 无}, levels: [ward], "
                   "periods: [year], target: null, scoring: none, weight: 0, effective_from: '2020-01-01'}\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match="levels must be among"):
        load_catalog(bad)


def test_work_points_name_a_staff_column_and_service_day_of_their_silver_table(tmp_path):
    from spark_jobs.conform.entities import BY_NAME
    from spark_jobs.quality import authenticity

    scheme = load_catalog().workpoints
    assert {"htn_followup", "dm_followup", "elderly_checkup", "archive_created"} <= {i.id for i in scheme.items}
    for item in scheme.items:
        entity = BY_NAME[item.table]
        assert item.date_column == entity.event and item.points > 0 and item.name_zh, item
    # a void flag is an authenticity flag the quality job raises
    assert set(scheme.void_flags) <= set(authenticity.__doc__.split("``")[1::2])
    assert 0 < scheme.quality_floor <= scheme.quality_default <= 1
    good = load_catalog().version
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"catalog_version: '{good}'\nindicators: []\nworkpoints:\n  void_flags: []\n"
                   "  quality_coefficient: {period_type: month, floor: 0.6, default: 1.0}\n"
                   "  items:\n    - {id: x, name_zh: 随访, table: hypertension_followups, staff_column: nurse_id, "
                   "date_column: followup_date, points: 1}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no column 'nurse_id'"):
        load_catalog(bad)


def test_disaggregations_are_by_the_persons_of_person_members(tmp_path):
    """Sex and age band come from a member's person: an indicator whose denominator is census
    cells (no person) is not disaggregated; age bands ascend; an unknown dimension is refused."""
    cat = load_catalog()
    split = {i.id for i in cat.indicators.values() if i.disaggregations}
    assert {"htn_standard_mgmt_rate", "elderly_health_mgmt_rate", "nip_vaccination_rate", "outpatient_visits"} <= split
    assert not {i.id for i in cat.indicators.values() if i.rule == "population_coverage"} & split
    for ind_id in split:
        bands = cat[ind_id].age_bands
        assert list(bands) == sorted(set(bands)), ind_id
    assert cat["elderly_health_mgmt_rate"].age_bands[0] == cat["elderly_health_mgmt_rate"].params["min_age"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog_version: x\nindicators:\n  - {id: a, name_zh: 甲, name_en: A, domain: d, rule: event_count, "
                   "unit: count, direction: volume, numerator: {zh: 甲}, denominator: {zh: 无}, levels: [city], "
                   "periods: [year], target: null, scoring: none, weight: 0, effective_from: '2020-01-01', "
                   "disaggregations: [income]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="disaggregations must be among"):
        load_catalog(bad)


def test_a_period_to_recompute_covers_its_months_quarters_and_year():
    """What a backfill run of a month (or `lakehouse indicators compute --period`) recomputes."""
    import datetime as dt

    from spark_jobs.indicators.engine import interval_periods, period_interval

    assert period_interval("2025-12") == (dt.date(2025, 12, 1), dt.date(2026, 1, 1))
    assert period_interval("2024-02") == (dt.date(2024, 2, 1), dt.date(2024, 3, 1))
    assert interval_periods(*period_interval("2025-12")) == {("month", "2025-12"), ("quarter", "2025-Q4"),
                                                             ("year", "2025")}
    q1 = interval_periods(*period_interval("2025-Q1"))
    assert q1 == {("month", "2025-01"), ("month", "2025-02"), ("month", "2025-03"), ("quarter", "2025-Q1"),
                  ("year", "2025")}
    assert len(interval_periods(*period_interval("2025"))) == 12 + 4 + 1
    # an interval across a year's end touches both years
    assert {p for t, p in interval_periods(dt.date(2025, 12, 31), dt.date(2026, 1, 2)) if t == "year"} == {"2025", "2026"}
    for bad in ("2025-13", "2025-Q5", "25-01", "2025/01"):
        with pytest.raises(ValueError, match="not a period"):
            period_interval(bad)
