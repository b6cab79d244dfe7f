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
from ingest.connectors.sources import SOURCE_KINDS
from lakehouse.tables import LAYERS

DAGS_FOLDER = REPO_ROOT / "dags"
ENV_SH = REPO_ROOT / "infra" / "airflow" / "env.sh"
POOLS_FILE = REPO_ROOT / "infra" / "airflow" / "pools.json"
DAG_ID = "jiceng_thin_slice"
# simulate builds the sources; ingestion has a DAG per source kind (jiceng_ingest.py)
DAG_STEPS = [step for step in pipeline.STEPS if step not in ("simulate", "ingest", "process_ecg",
                                                                        "process_imaging")]
# variables that would point a run at a real lake or database instead of the temporary JL_HOME
_LOCATION_VARIABLES = ("LAKE_ROOT", "SOURCE_DB_URL", "SERVING_DB_URL", "SPARK_MASTER", "JL_SPARK_CATALOG")

# Runs DAGs with dag.test(), one after another in this one process (as a backfill would, day by
# day), and prints each run's state and each task's state and summary (XCom) as JSON lines.
# argv: JSON list of [dag_id, logical_date or null].
_RUN_DAGS = r"""
import datetime as dt, json, os, sys

runs = json.loads(sys.argv[1])
dags_folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
sys.path.insert(0, dags_folder)  # as Airflow does for the dags-folder bundle
import pendulum
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=dags_folder)
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
for dag_id, logical_date in runs:
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0  # dag.test() honours retry_delay: fail now, not after the retries
    kwargs = {}
    if logical_date:
        kwargs["logical_date"] = pendulum.parse(logical_date, tz="Asia/Shanghai")
    run = dag.test(**kwargs)
    result = {
        "dag_id": dag_id, "logical_date": logical_date, "state": str(run.state),
        "data_interval_end": run.data_interval_end.astimezone(pendulum.timezone("Asia/Shanghai")).isoformat(),
        "tasks": {
            ti.task_id: {"state": str(ti.state), "summary": ti.xcom_pull(task_ids=ti.task_id)}
            for ti in run.get_task_instances()
        },
    }
    print("DAG_TEST_RESULT " + json.dumps(result, default=str), flush=True)
    if result["state"] != "success":
        sys.exit(1)
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


def _dag_tests(env: dict[str, str], runs: list[tuple[str, str | None]], timeout: float) -> list[dict]:
    done = _run([sys.executable, "-c", _RUN_DAGS, json.dumps(runs)], env, timeout)
    results = [json.loads(line.removeprefix("DAG_TEST_RESULT "))
               for line in done.stdout.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert done.returncode == 0 and len(results) == len(runs), (
        f"dag.test() runs did not all finish (exit {done.returncode}, {len(results)} of {len(runs)}):\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return results


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
    in_line = ["validate_bronze", "conform", "validate_silver", "flag_records", "score_quality", "compute_indicators",
               "build_gold",
               "export_serving"]
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


INGEST_DAGS = [f"jiceng_ingest_{kind}" for kind in SOURCE_KINDS]


def test_every_source_kind_has_a_daily_ingest_dag_with_data_intervals(airflow_env):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.timetables.interval import CronDataIntervalTimetable

    bag = DagBag(dag_folder=DAGS_FOLDER)
    assert bag.import_errors == {}
    assert {d for d in bag.dag_ids if d.startswith("jiceng_ingest_")} == set(INGEST_DAGS)
    for dag_id in INGEST_DAGS:
        d = bag.dags[dag_id]
        assert isinstance(d.timetable, CronDataIntervalTimetable), f"{dag_id}: runs need a data interval"
        (t,) = d.tasks
        assert t.retries >= 1 and _body_lines(t.python_callable) <= 3
        kind = dag_id.removeprefix("jiceng_ingest_")
        assert {a.name for a in t.outlets} >= {f"bronze.{kind}", f"quarantine.{kind}", "ops.ingest_batches"}
    thin = bag.dags[DAG_ID]
    scheduled_on = {a.name for a in thin.timetable.asset_condition.objects}
    assert scheduled_on == {"bronze.regional", "bronze.legacy", "bronze.fhir", "silver.ecg", "silver.imaging"}
    ecg, imaging = bag.dags["jiceng_ecg"], bag.dags["jiceng_imaging"]
    assert ecg.timetable.asset_condition.name == "bronze.ecg"
    assert {a.name for a in imaging.timetable.asset_condition.objects} == {"bronze.dicom", "bronze.orthanc"}
    for d, kind in ((ecg, "ecg"), (imaging, "imaging")):
        (t,) = d.tasks
        assert t.retries >= 1 and _body_lines(t.python_callable) <= 3
        assert {a.name for a in t.outlets} == {f"silver.{kind}"}
    (pull,) = bag.dags["jiceng_pull_orthanc"].tasks   # the PACS is polled, not delivered daily
    assert {a.name for a in pull.outlets} >= {"bronze.orthanc", "quarantine.orthanc"}


@pytest.mark.e2e
def test_a_backfill_of_the_ingest_dags_then_the_thin_slice(airflow_db):
    """Three past days of every source through dag.test(), a day run twice, then the thin slice
    on a 300-resident city: Spark, GX, dbt, DuckDB, all for real."""
    # remote diagnosis used 40× as much as in a typical county, so that 300 residents have files
    simulate = ("from lakehouse.pipeline import simulate; "
                "simulate(residents=300, counties=2, townships_per_county=3, start='2025-12-22', days=4, "
                "remote_uptake=40)")
    done = _run([sys.executable, "-c", simulate], airflow_db, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # a manual run at midnight of day D covers the day before it: [D-1 00:00, D 00:00) China time
    run_at = ["2025-12-22", "2025-12-23", "2025-12-24"]
    runs = [(dag_id, day) for day in run_at for dag_id in INGEST_DAGS]
    runs += [("jiceng_ingest_regional", run_at[1]), ("jiceng_ingest_legacy", run_at[1])]  # a day again
    runs += [("jiceng_ecg", None), ("jiceng_imaging", None), (DAG_ID, None)]
    results = _dag_tests(airflow_db, runs, timeout=3600)

    assert all(r["state"] == "success" for r in results)
    by_run = {(r["dag_id"], r["logical_date"]): r for r in results[:-5]}
    for day in run_at:
        assert by_run[("jiceng_ingest_regional", day)]["data_interval_end"].startswith(f"{day}T00:00:00")
    for rerun in results[-5:-3]:
        assert rerun["tasks"]["ingest"]["summary"]["batches"] == [], "a day already loaded loads nothing"

    settings = load_settings(airflow_db)
    from deltalake import DeltaTable

    lake = Path(settings.lake_root)
    landed = {p.name for layer in ("bronze", "quarantine") for p in (lake / layer).iterdir()}
    for source in ("reference", "regional", "legacy_", "fhir_", "dicom", "ecg"):
        delivered = [d for d in settings.dropzone_root.glob(f"{source}*/*") if d.name < "2025-12-24"]
        if source in ("dicom", "ecg") and not delivered:
            continue  # the simulated city sent no such file in these days
        assert any(name.startswith(source) for name in landed), f"nothing of {source} in the lake"
    marks = DeltaTable(str(lake / "ops" / "watermarks")).to_pandas()
    assert marks.watermark.max() < "2025-12-24", "the day after the last interval is not loaded"
    files = DeltaTable(str(lake / "ops" / "landed_files")).to_pandas()
    assert set(files.delivery_day) - {"0000-00-00"} == {"2025-12-21", "2025-12-22", "2025-12-23"}
    batches = DeltaTable(str(lake / "ops" / "ingest_batches")).to_pandas()
    assert (batches.rows_read == batches.rows_loaded + batches.rows_quarantined).all()

    ecg, imaging, thin = results[-3:]
    processed = ecg["tasks"]["process_ecg"]["summary"]
    landed_ecg = len(DeltaTable(str(lake / "bronze" / "ecg__files")).to_pandas()) \
        if (lake / "bronze" / "ecg__files").is_dir() else 0
    assert processed["processed"] + processed["quarantined"] == landed_ecg, "every landed recording processed"
    parsed = imaging["tasks"]["process_imaging"]["summary"]
    landed_dicom = len(DeltaTable(str(lake / "bronze" / "dicom__files")).to_pandas()) \
        if (lake / "bronze" / "dicom__files").is_dir() else 0
    assert parsed["parsed"] + parsed["quarantined"] == landed_dicom, "every landed DICOM file catalogued"
    assert {t: v["state"] for t, v in thin["tasks"].items()} == {step: "success" for step in DAG_STEPS}
    assert Path(settings.lake_root, "gold").is_dir()
    assert settings.serving_duckdb_path.is_file()
    report = thin["tasks"]["build_reports"]["summary"]
    assert Path(report["path"]).is_file() and report["townships"] > 0
