"""Shared fixtures. The whole test session runs in CI mode against a temporary JL_HOME, so no test
ever touches the developer's var/ folder, and it shares one local Spark session (local[2], UI off,
in-memory catalogue), as Delta's own test base class does.

One session lives for the whole run (about 120 tests, hundreds of Delta tables in temporary
homes), so its driver gets 4 GB and every test module ends by dropping Delta's table-state cache:
otherwise snapshots of tables no later test reads pile up in the heap until a broadcast join
(Delta MERGE) fails for lack of memory late in the run."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="jiceng-test-"))
os.environ.update(JL_ENV="CI", JL_HOME=str(_SESSION_HOME), GX_ANALYTICS_ENABLED="false",
                  DBT_SEND_ANONYMOUS_USAGE_STATS="false", SPARK_DRIVER_MEMORY="4g")
for _var in ("LAKE_ROOT", "SOURCE_DB_URL", "SERVING_DB_URL", "SPARK_MASTER", "JL_SPARK_CATALOG"):
    os.environ.pop(_var, None)


# py4j logs at INFO from a finaliser at interpreter exit, after pytest closed the stream it
# captured: the "--- Logging error ---" noise at the end of a run
logging.getLogger("py4j").setLevel(logging.WARNING)


# Under pytest-xdist (`make test` runs two workers), a group of tests runs whole on one worker:
# each module is a group, so its module-scoped city is built once, and the modules that share the
# session's conformed city (tests/integration/conftest.py) are one group. The groups go out
# longest first (the order below, then the rest as collected), so that the two workers end
# together rather than one waiting on the end-to-end city after the other has finished.
SHARED_CITY_MODULES = ("test_empi.py", "test_quality.py", "test_silver.py")
LONGEST_FIRST = ("tests/e2e/test_thin_slice.py", "conformed_city", "tests/integration/test_sources.py",
                 "tests/integration/test_dags.py", "tests/integration/test_ingest.py")


def _group(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return "conformed_city" if module.rsplit("/", 1)[-1] in SHARED_CITY_MODULES else module


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduler, with :func:`_group` as the scope."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):   # an xdist worker: the scheduler hands out groups in this order
        rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))   # stable within a group


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def spark():
    from lakehouse.settings import get_settings
    from lakehouse.spark import get_spark

    get_settings.cache_clear()
    session = get_spark(get_settings(), app_name="jiceng-tests")
    yield session
    session.stop()


@pytest.fixture
def settings_for(tmp_path):
    """Settings with their own JL_HOME (a fresh lake, source DB and serving DB) per test."""
    from lakehouse.settings import load_settings

    def make(name: str = "home", **extra: str):
        home = tmp_path / name
        return load_settings({**os.environ, "JL_HOME": str(home), **extra})

    return make


@pytest.fixture(scope="module", autouse=True)
def _release_spark_state_after_module():
    """Drop cached Delta snapshots and cached DataFrames of the module that just ran.

    Does nothing when no Spark session was started (unit tests never start one)."""
    yield
    if "pyspark.sql" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        return
    active.catalog.clearCache()
    active._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
