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
INDICATORS_DAG_ID = "jiceng_indicators"
# simulate builds the sources; ingestion has a DAG per source kind (jiceng_ingest.py); the thin
# slice ends at silver, and jiceng_indicators takes it from there
DAG_STEPS = [step for step in pipeline.STEPS if step not in ("simulate", "ingest", "process_ecg",
                                                                        "process_imaging")]
INDICATOR_STEPS = DAG_STEPS[DAG_STEPS.index("compute_indicators"):]
THIN_STEPS = DAG_STEPS[:DAG_STEPS.index("compute_indicators")]
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
def bag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=DAGS_FOLDER)
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def dag(bag):
    assert DAG_ID in bag.dag_ids
    return bag.dags[DAG_ID]  # not bag.get_dag(), which queries the metadata database


@pytest.fixture(scope="module")
def indicators_dag(bag):
    assert INDICATORS_DAG_ID in bag.dag_ids
    return bag.dags[INDICATORS_DAG_ID]


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


def test_dags_wire_every_pipeline_step_in_order(dag, indicators_dag):
    assert sorted(dag.task_ids) == sorted(THIN_STEPS)
    assert sorted(indicators_dag.task_ids) == sorted(INDICATOR_STEPS)
    thin = ["validate_bronze", "conform", "validate_silver", "flag_records", "score_quality"]
    assessment = ["compute_indicators", "build_gold", "export_serving"]
    for d, in_line in ((dag, thin), (indicators_dag, assessment)):
        assert d.get_task(in_line[0]).upstream_task_ids == set()
        for upstream, downstream in zip(in_line, in_line[1:]):
            assert d.get_task(downstream).upstream_task_ids == {upstream}
        assert (d.max_active_tasks, d.max_active_runs, d.catchup) == (1, 1, False)
        assert d.doc_md and d.tags
    for last in ("build_reports", "provision_dashboards"):
        assert indicators_dag.get_task(last).upstream_task_ids == {"export_serving"}


def _fires(d, *asset_names: str) -> bool:
    """Whether Airflow's scheduler would start a run of ``d`` once these lake Assets have events."""
    from airflow.assets.evaluation import AssetEvaluator
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow.sdk import Asset

    import jiceng_assets   # the DAGs folder is on sys.path (airflow_env)

    known = {a.name: a for v in vars(jiceng_assets).values()
             for a in (v.values() if isinstance(v, dict) else [v]) if isinstance(a, Asset)}
    condition = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(d)).timetable.asset_condition
    statuses = {SerializedAssetUniqueKey(name=n, uri=known[n].uri): True for n in asset_names}
    return AssetEvaluator(None).run(condition, statuses)


def test_indicators_run_when_the_thin_slice_has_rebuilt_silver_and_monthly(dag, indicators_dag):
    from airflow.sdk import CronDataIntervalTimetable

    written = {a.name for t in dag.tasks for a in t.outlets}
    assert _fires(indicators_dag, *written), "a whole thin-slice run starts the indicators"
    assert not _fires(indicators_dag, "silver"), "not before the flags and the scorecard are rebuilt"
    assert not _fires(indicators_dag, "silver", "silver.record_flags")
    assert _fires(indicators_dag, "silver.ecg") and _fires(indicators_dag, "silver.imaging")
    assert not _fires(indicators_dag, "bronze.regional")
    monthly = indicators_dag.timetable.timetable
    assert isinstance(monthly, CronDataIntervalTimetable), "backfills need data intervals"
    assert (monthly.expression, str(monthly.timezone)) == ("0 0 1 * *", "Asia/Shanghai")


def test_a_backfill_of_the_indicators_is_a_run_per_month(airflow_db):
    """`airflow backfill create` (dry run) over a quarter, dates given in China time."""
    done = _run(["airflow", "dags", "reserialize"], airflow_db, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = _run(["airflow", "backfill", "create", "--dag-id", INDICATORS_DAG_ID, "--dry-run",
                 "--from-date", "2025-10-01T00:00:00+08:00", "--to-date", "2025-12-01T00:00:00+08:00"],
                airflow_db, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import pendulum

    runs = [pendulum.parse(line.split("|")[1].strip()) for line in done.stdout.splitlines()
            if line.startswith("| 20")]
    assert [r.in_tz("Asia/Shanghai").date().isoformat() for r in runs] == ["2025-10-01", "2025-11-01", "2025-12-01"]


def test_tasks_are_thin_declared_and_retried(dag, indicators_dag):
    known_pools = {"default_pool", *json.loads(POOLS_FILE.read_text())}
    for task in dag.tasks + indicators_dag.tasks:
        assert _body_lines(task.python_callable) <= 3, f"{task.task_id}: logic belongs in the library"
        assert task.outlets, f"{task.task_id} declares no Asset it writes"
        assert not task.multiple_outputs, f"{task.task_id}: the summary is one XCom, not one per key"
        assert task.retries >= 1
        assert task.pool in known_pools, f"{task.task_id}: pool {task.pool!r} is not in {POOLS_FILE.name}"


def test_lake_assets_are_named_like_the_table_catalogue(dag, indicators_dag):
    lake_assets = [a for task in dag.tasks + indicators_dag.tasks for a in task.outlets if a.group == "lake"]
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
    assert scheduled_on == {"bronze.regional", "bronze.legacy", "bronze.fhir"}
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
    # as the Assets would start it, then December again as a backfill's run for that month would
    runs += [(INDICATORS_DAG_ID, None), (INDICATORS_DAG_ID, "2026-01-01")]
    results = _dag_tests(airflow_db, runs, timeout=3600)

    assert all(r["state"] == "success" for r in results)
    by_run = {(r["dag_id"], r["logical_date"]): r for r in results[:-7]}
    for day in run_at:
        assert by_run[("jiceng_ingest_regional", day)]["data_interval_end"].startswith(f"{day}T00:00:00")
    for rerun in results[-7:-5]:
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

    ecg, imaging, thin, assessment, december = results[-5:]
    processed = ecg["tasks"]["process_ecg"]["summary"]
    landed_ecg = len(DeltaTable(str(lake / "bronze" / "ecg__files")).to_pandas()) \
        if (lake / "bronze" / "ecg__files").is_dir() else 0
    assert processed["processed"] + processed["quarantined"] == landed_ecg, "every landed recording processed"
    parsed = imaging["tasks"]["process_imaging"]["summary"]
    landed_dicom = len(DeltaTable(str(lake / "bronze" / "dicom__files")).to_pandas()) \
        if (lake / "bronze" / "dicom__files").is_dir() else 0
    assert parsed["parsed"] + parsed["quarantined"] == landed_dicom, "every landed DICOM file catalogued"
    assert {t: v["state"] for t, v in thin["tasks"].items()} == {step: "success" for step in THIN_STEPS}
    assert {t: v["state"] for t, v in assessment["tasks"].items()} == {step: "success" for step in INDICATOR_STEPS}
    assert Path(settings.lake_root, "gold").is_dir()
    assert settings.serving_duckdb_path.is_file()
    report = assessment["tasks"]["build_reports"]["summary"]
    assert Path(report["path"]).is_file() and report["townships"] > 0

    # the run for December recomputes every indicator's December periods from unchanged data,
    # which rewrites nothing; and it leaves no other period stale (nothing else had changed)
    from spark_jobs.indicators.catalog import load_catalog

    assert december["data_interval_end"].startswith("2026-01-01T00:00:00")
    computed = december["tasks"]["compute_indicators"]["summary"]["indicators"]
    for ind in load_catalog().indicators.values():
        labels = {"year": "2025", "quarter": "2025-Q4", "month": "2025-12"}
        assert computed[ind.id]["periods"] == sorted(labels[p] for p in ind.periods), ind.id
    written = computed["_tables"]["silver.indicator_values"]
    assert written["inserted"] == written["updated"] == written["deleted"] == 0 < written["unchanged"]
    assert december["tasks"]["build_gold"]["summary"] == {"unchanged": True}
