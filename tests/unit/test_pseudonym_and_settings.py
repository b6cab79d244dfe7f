import hashlib
import hmac

import pytest

from lakehouse.pseudonym import PERSON_ID_HEX_CHARS, person_id
from lakehouse.settings import SettingsError, load_settings


def test_person_id_is_keyed_hmac_of_the_normalised_number():
    key = b"k" * 40
    expected = hmac.new(key, b"11010519491231002X", hashlib.sha256).hexdigest()[:PERSON_ID_HEX_CHARS]
    assert person_id("11010519491231002x", key) == expected
    assert person_id(" 11010519491231002X", key) == expected
    assert person_id("11010519491231002X", b"another key") != expected


def test_prod_refuses_to_run_without_its_own_pseudonym_key():
    with pytest.raises(SettingsError, match="JL_PSEUDONYM_KEY"):
        load_settings({"JL_ENV": "PROD", "JL_HOME": "/tmp/x"})
    dev = load_settings({"JL_ENV": "LOCAL", "JL_HOME": "/tmp/x"}).pseudonym_key
    with pytest.raises(SettingsError, match="development"):
        load_settings({"JL_ENV": "PROD", "JL_HOME": "/tmp/x", "JL_PSEUDONYM_KEY": dev.decode()})
    prod = load_settings({"JL_ENV": "PROD", "JL_HOME": "/tmp/x", "JL_PSEUDONYM_KEY": "s3cret-from-vault",
                          "JL_DEID_KEY": "another-s3cret"})
    assert prod.pseudonym_key == b"s3cret-from-vault"


def test_environment_names_pick_the_defaults():
    ci = load_settings({"CI": "true", "JL_HOME": "/tmp/h"})
    assert (ci.env, ci.spark_master, ci.spark_catalog) == ("CI", "local[2]", "in-memory")
    local = load_settings({"JL_HOME": "/tmp/h"})
    assert (local.env, local.spark_catalog) == ("LOCAL", "hive")
    assert local.lake_root == "/tmp/h/lake"
    assert str(local.serving_duckdb_path) == "/tmp/h/serving/jiceng.duckdb"
    pg = load_settings({"JL_HOME": "/tmp/h", "SERVING_DB_URL": "postgresql://u@db/serving"})
    assert pg.serving_duckdb_path is None
    with pytest.raises(SettingsError):
        load_settings({"JL_ENV": "STAGING"})
