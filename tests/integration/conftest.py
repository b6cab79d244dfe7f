"""A small city conformed end to end to silver, shared by the EMPI and silver tests (one ingest of
every record source for both)."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from ingest.simulator.city import CityConfig, DefectRates

# 5 % of residents registered twice (a clerk's variant of the name, usually no ID-card number) and
# 2 % with a wrong check digit: a few hundred record pairs only the probabilistic EMPI can find
CONFORMED_CITY = CityConfig(
    residents=3000, counties=2, townships_per_county=3, start=dt.date(2025, 12, 22), days=2, seed=11,
    media_files=False, defects=DefectRates(duplicate_person_name_variant=0.05, bad_id_check_digit=0.02))
SOURCE_KINDS = ("reference", "regional", "legacy", "fhir")     # every record source (no media files)


@pytest.fixture(scope="session")
def conformed_city(spark, tmp_path_factory):
    """(settings, EMPI result, silver result) of :data:`CONFORMED_CITY` after ingesting its
    reference tables, regional database, legacy county exports and hospital FHIR export."""
    from ingest.connectors.sources import ingest_sources
    from ingest.simulator.city import simulate_city
    from lakehouse.settings import load_settings
    from spark_jobs.conform.silver import conform_silver
    from spark_jobs.empi.match import run_empi

    s = load_settings({**os.environ, "JL_HOME": str(tmp_path_factory.mktemp("conformed"))})
    simulate_city(s.source_db_url, s.ground_truth_dir, s.dropzone_root, CONFORMED_CITY)
    ingest_sources(spark, s, SOURCE_KINDS)
    empi = run_empi(spark, s.lake_root, s.pseudonym_key)
    silver = conform_silver(spark, s.lake_root)
    return s, empi, silver


@pytest.fixture(scope="session")
def conformed_city_config():
    """(:data:`CONFORMED_CITY`, :data:`SOURCE_KINDS`): for tests that load the same city again."""
    return CONFORMED_CITY, SOURCE_KINDS
