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
