"""Run the dbt project (dbt/) in-process, in the pipeline's SparkSession (dbt-spark ``session``).

The silver tables are registered in the Spark catalogue first, so dbt's ``source()`` resolves
them whichever catalogue (embedded Hive metastore or in-memory) the session uses.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.tables import register_all

DBT_DIR = REPO_ROOT / "dbt"


class DbtError(RuntimeError):
    """dbt reported a failed model or test."""


@dataclass
class DbtResult:
    command: str
    results: list[dict]

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if r["status"] in ("error", "fail", "runtime error")]


@contextmanager
def _environment(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_dbt(spark, settings: Settings, command: str = "build", extra_args: list[str] | None = None) -> DbtResult:
    """``dbt <command>`` against the lake of ``settings``; raises :class:`DbtError` on failures."""
    from dbt.cli.main import dbtRunner

    register_all(spark, settings.lake_root, layers=("silver", "gold"))
    work = settings.home / "dbt"
    args = [command, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
            "--target", settings.env.lower(), *(extra_args or [])]
    # dbt reads the lake root from the environment (dbt_project.yml): set it for this call only,
    # so the process keeps the environment it had (another JL_HOME may follow in the same process)
    with _environment(LAKE_ROOT=settings.lake_root, JL_ENV=settings.env,
                      DBT_SEND_ANONYMOUS_USAGE_STATS="false"):
        res = dbtRunner().invoke(args)
    rows = []
    if res.result is not None and hasattr(res.result, "results"):
        for r in res.result.results:
            rows.append({"node": r.node.unique_id, "status": str(r.status), "message": r.message or ""})
    out = DbtResult(command, rows)
    if not res.success or out.failures:
        detail = "; ".join(f"{r['node']}: {r['status']} {r['message']}" for r in out.failures) or str(res.exception)
        raise DbtError(f"dbt {command} failed: {detail}")
    return out
