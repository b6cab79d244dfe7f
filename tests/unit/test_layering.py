"""Library code never imports Airflow; DAG files only wire library steps."""
import ast
from pathlib import Path

from lakehouse.settings import REPO_ROOT

LIBRARY = ("lakehouse", "ingest", "spark_jobs", "expectations", "sharing", "reports")


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def test_library_packages_never_import_airflow():
    files = [p for pkg in LIBRARY for p in (REPO_ROOT / pkg).rglob("*.py")]
    assert len(files) > 10
    offenders = [str(p.relative_to(REPO_ROOT)) for p in files if "airflow" in _imports(p)]
    assert offenders == []


def test_dag_files_hold_no_data_logic():
    for dag_file in (REPO_ROOT / "dags").glob("*.py"):
        mods = _imports(dag_file)
        assert not mods & {"pyspark", "pandas", "duckdb", "sqlalchemy", "great_expectations"}, dag_file.name
