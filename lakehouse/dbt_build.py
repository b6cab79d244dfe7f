"""Run the dbt project (dbt/) in-process, in the pipeline's SparkSession (dbt-spark ``session``).

The silver tables are registered in the Spark catalogue first, so dbt's ``source()`` resolves
them whichever catalogue (embedded Hive metastore or in-memory) the session uses.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass

from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.tables import lake_tables, register_all

DBT_DIR = REPO_ROOT / "dbt"
# the key of the gold build's state in ops.build_states
GOLD_STATE = "gold"


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


def project_digest() -> str:
    """sha256 of the dbt project: every file under dbt/ (models, tests, macros, configuration)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in DBT_DIR.rglob("*") if p.is_file()):
        relative = path.relative_to(DBT_DIR).as_posix()
        if relative.split("/", 1)[0] in ("target", "logs", "dbt_packages") or "__pycache__" in relative:
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_tables() -> list[str]:
    """``layer.entity`` of every lake table the dbt project reads (its ``sources:``)."""
    import yaml

    found = set()
    for path in sorted((DBT_DIR / "models").rglob("*.yml")):
        for source in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("sources") or []:
            found |= {f"{source.get('schema', source['name'])}.{t['name']}" for t in source.get("tables") or []}
    return sorted(found)


def gold_state(spark, settings: Settings) -> str:
    """The build state (:func:`lakehouse.ops.build_state`) of gold: the Delta version of every
    table dbt reads and of every gold table, the dbt project's digest and the target. Equal to
    the state recorded after the last successful build means that a ``dbt build`` would leave
    gold as it is (no model reads the clock). Silver tables no model reads (the indicator runs'
    log, the EMPI's working tables) do not count."""
    from lakehouse.ops import build_state

    root = settings.lake_root.rstrip("/")
    locations = [f"{root}/{name.replace('.', '/')}" for name in source_tables()]
    locations += lake_tables(spark, settings.lake_root, "gold").values()
    return build_state(spark, locations, f"{project_digest()}|{settings.env.lower()}")
