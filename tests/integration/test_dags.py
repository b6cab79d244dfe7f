"""The Airflow DAGs parse, only wire library steps, and run with ``dag.test()``.

Airflow reads ``AIRFLOW_HOME`` and opens its metadata database when the ``airflow`` package is
first imported, and keeps that connection for the life of the process. So the environment (made by
``infra/airflow/env.sh``, the same one ``make up`` uses, with a temporary ``JL_HOME``) is set before
this module imports Airflow, and every ``dag.test()`` runs in a subprocess: it runs all tasks inside
its own process, where a SparkSession, the cached settings or an in-memory catalogue left by this
test session would leak into the tasks.
"""
from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lakehouse import pipeline
from lakehouse.settings import REPO_ROOT, load_settings
from lakehouse.tables import LAYERS

DAGS_FOLDER = REPO_ROOT / "dags"
ENV_SH = REPO_ROOT / "infra" / "airflow" / "env.sh"
POOLS_FILE = REPO_ROOT / "infra" / "airflow" / "pools.json"
DAG_ID = "jiceng_thin_slice"
# simulate fills the source system; it is not a step of the daily DAG
DAG_STEPS = [step for step in pipeline.STEPS if step != "simulate"]
# variables that would point a run at a real lake or database instead of the temporary JL_HOME
_LOCATION_VARIABLES = ("LAKE_ROOT", "SOURCE_DB_URL", "SERVING_DB_URL", "SPARK_MASTER", "JL_SPARK_CATALOG")

# Runs one DAG with dag.test() and prints each task's state and summary (XCom) as JSON.
# argv: dag_id.
_RUN_DAG = r"""
import json, os, sys

dag_id = sys.argv[1]
dags_folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
sys.path.insert(0, dags_folder)  # as Airflow does for the dags-folder bundle
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=dags_folder)
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
dag = bag.dags[dag_id]
for task in dag.tasks:
    task.retries = 0  # dag.test() honours retry_delay: fail now, not after the retries
run = dag.test()
result = {
    "state": str(run.state),
    "tasks": {
        ti.task_id: {"state": str(ti.state), "summary": ti.xcom_pull(task_ids=ti.task_id)}
        for ti in run.get_task_instances()
    },
}
print("DAG_TEST_RESULT " + json.dumps(result, default=str))
"""


def _environment(jl_home: Path) -> dict[str, str]:
    """The process environment after sourcing env.sh with ``JL_HOME=jl_home``, in CI mode."""
    base = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARIABLES}
    base.update(JL_HOME=str(jl_home), JL_ENV="CI")
    out = subprocess.run(
        ["bash", "-c", f'. "{ENV_SH}" && env -0'], env=base, capture_output=True, check=True
    ).stdout.decode()
    env = dict(item.split("=", 1) for item in out.split("\0") if item)
    return {k: v for k, v in env.items() if k not in ("_", "SHLVL", "PWD", "OLDPWD")}


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def _dag_test(env: dict[str, str], timeout: float) -> dict:
    done = _run([sys.executable, "-c", _RUN_DAG, DAG_ID], env, timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert done.returncode == 0 and lines, (
        f"dag.test() of {DAG_ID} did not finish (exit {done.returncode}):\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return json.loads(lines[-1].removeprefix("DAG_TEST_RESULT "))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """env.sh's environment with a temporary JL_HOME, set in this process before Airflow is imported."""
    env = _environment(tmp_path_factory.mktemp("jl_home"))
    with pytest.MonkeyPatch.context() as mp:
        for key in _LOCATION_VARIABLES:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        mp.syspath_prepend(str(DAGS_FOLDER))  # as Airflow does for the dags-folder bundle
        yield env


@pytest.fixture(scope="module")
def airflow_db(airflow_env):
    """``airflow db migrate`` into the temporary AIRFLOW_HOME (SQLite)."""
    done = _run(["airflow", "db", "migrate"], airflow_env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return airflow_env


@pytest.fixture(scope="module")
def dag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=DAGS_FOLDER)
    assert bag.import_errors == {}
    assert DAG_ID in bag.dag_ids
    return bag.dags[DAG_ID]  # not bag.get_dag(), which queries the metadata database


def _body_lines(func) -> int:
    """Lines of a function's body, without its docstring."""
    node = ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]
    body = node.body[1:] if ast.get_docstring(node) else node.body
    return body[-1].end_lineno - body[0].lineno + 1


def test_environment_keeps_airflow_and_lake_in_jl_home(airflow_env):
    jl_home = Path(airflow_env["JL_HOME"])
    assert Path(airflow_env["AIRFLOW_HOME"]) == jl_home / "airflow"
    assert airflow_env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{jl_home}/airflow/airflow.db"
    assert load_settings(airflow_env).lake_root == str(jl_home / "lake")


def test_dag_wires_every_pipeline_step_in_order(dag):
    assert sorted(dag.task_ids) == sorted(DAG_STEPS)
    in_line = ["ingest", "validate_bronze", "conform", "compute_indicators", "build_gold", "export_serving"]
    for upstream, downstream in zip(in_line, in_line[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    for last in ("build_reports", "provision_dashboards"):
        assert dag.get_task(last).upstream_task_ids == {"export_serving"}
    assert (dag.max_active_tasks, dag.max_active_runs, dag.catchup) == (1, 1, False)
    assert dag.doc_md and dag.tags


def test_tasks_are_thin_declared_and_retried(dag):
    known_pools = {"default_pool", *json.loads(POOLS_FILE.read_text())}
    for task in dag.tasks:
        assert _body_lines(task.python_callable) <= 3, f"{task.task_id}: logic belongs in the library"
        assert task.outlets, f"{task.task_id} declares no Asset it writes"
        assert not task.multiple_outputs, f"{task.task_id}: the summary is one XCom, not one per key"
        assert task.retries >= 1
        assert task.pool in known_pools, f"{task.task_id}: pool {task.pool!r} is not in {POOLS_FILE.name}"


def test_lake_assets_are_named_like_the_table_catalogue(dag):
    lake_assets = [a for task in dag.tasks for a in task.outlets if a.group == "lake"]
    assert lake_assets
    for asset in lake_assets:
        assert asset.name.split(".")[0] in LAYERS, f"{asset.name}: not a layer of lakehouse.tables"


@pytest.mark.e2e
def test_dag_test_builds_the_lake_and_serving_db(airflow_db):
    """The whole thin slice through Airflow on a 300-resident city: Spark, GX, dbt, DuckDB."""
    simulate = "from lakehouse.pipeline import simulate; simulate(residents=300)"
    done = _run([sys.executable, "-c", simulate], airflow_db, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = _dag_test(airflow_db, timeout=3600)

    states = {task_id: task["state"] for task_id, task in result["tasks"].items()}
    assert states == {step: "success" for step in DAG_STEPS}
    assert result["state"] == "success"
    settings = load_settings(airflow_db)
    assert Path(settings.lake_root, "gold").is_dir()
    assert settings.serving_duckdb_path.is_file()
    report = result["tasks"]["build_reports"]["summary"]
    assert Path(report["path"]).is_file() and report["townships"] > 0
