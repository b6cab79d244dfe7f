"""The thin slice of the platform as plain functions, one per pipeline stage.

The CLI, the Airflow DAG and the end-to-end tests all call these; none of them holds logic of its
own. Each step takes optional ``settings`` (default: the environment's) and returns a small
JSON-serialisable summary dict.
"""
from __future__ import annotations

from lakehouse.settings import Settings, get_settings

STEPS = (
    "simulate",
    "ingest",
    "validate_bronze",
    "conform",
    "compute_indicators",
    "build_gold",
    "export_serving",
    "build_reports",
    "provision_dashboards",
)


def simulate(settings: Settings | None = None, residents: int = 2000, seed: int = 20250101,
             year: int = 2025) -> dict:
    """Write the simulated city into the regional source database."""
    raise NotImplementedError


def ingest(settings: Settings | None = None, full: bool = False) -> dict:
    """Load new source rows (by watermark; ``full`` re-reads everything) into bronze."""
    raise NotImplementedError


def validate_bronze(settings: Settings | None = None) -> dict:
    """Run the Great Expectations suites of the bronze tables; raise on a critical failure."""
    raise NotImplementedError


def conform(settings: Settings | None = None) -> dict:
    """Bronze → silver (typed, pseudonymous person_id) and restricted.person_identity."""
    raise NotImplementedError


def compute_indicators(settings: Settings | None = None) -> dict:
    """Compute the catalogued indicators with numerator, denominator and members."""
    raise NotImplementedError


def build_gold(settings: Settings | None = None) -> dict:
    """Run ``dbt build`` (dbt-spark, session method) into the gold marts."""
    raise NotImplementedError


def export_serving(settings: Settings | None = None) -> dict:
    """Gold marts → the serving database (DuckDB file replaced atomically)."""
    raise NotImplementedError


def build_reports(settings: Settings | None = None) -> dict:
    """The XLSX indicator report per township."""
    raise NotImplementedError


def provision_dashboards(settings: Settings | None = None) -> dict:
    """Import the Superset bundle into the Superset metadata database."""
    raise NotImplementedError
