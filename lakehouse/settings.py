"""The one settings module: environment (LOCAL / CI / PROD), paths and secrets.

Everything that differs between a laptop, CI and production is read here from environment
variables, never edited in code. Other modules call :func:`get_settings` and receive a frozen
:class:`Settings`.

| variable            | meaning                                              | LOCAL / CI default          |
|---------------------|------------------------------------------------------|-----------------------------|
| JL_ENV              | LOCAL, CI or PROD                                    | LOCAL (CI when CI=true)     |
| JL_HOME             | folder for everything the platform writes            | <repo>/var                  |
| LAKE_ROOT           | root of the Delta lake (local path, s3a://, hdfs://) | $JL_HOME/lake               |
| SPARK_MASTER        | Spark master URL                                     | local[*] (CI: local[2])     |
| JL_SPARK_CATALOG    | hive (embedded Derby metastore) or in-memory         | hive (CI: in-memory)        |
| SOURCE_DB_URL       | the regional EHR/HIS source database                 | sqlite:///$JL_HOME/source/regional.sqlite |
| SERVING_DB_URL      | serving database (duckdb:///path or postgresql://)   | duckdb:///$JL_HOME/serving/jiceng.duckdb  |
| JL_PSEUDONYM_KEY    | HMAC key for person_id (required in PROD)            | a fixed development key     |
| JL_DEID_KEY         | HMAC key for DICOM de-identification: pseudonyms, UIDs, date shifts (required in PROD) | a fixed development key |
| JL_ORTHANC_URL      | the regional PACS (Orthanc REST base URL); unset: the `orthanc` source is not ingested | unset |
| JL_ORTHANC_USER / JL_ORTHANC_PASSWORD | its HTTP basic-auth login, when it has one | unset       |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("LOCAL", "CI", "PROD")

# Only ever used when JL_ENV is LOCAL or CI, where no real person is in the data.
_DEV_PSEUDONYM_KEY = "jiceng-dev-only-pseudonym-key-not-for-production"
_DEV_DEID_KEY = "jiceng-dev-only-deidentification-key-not-for-production"


class SettingsError(RuntimeError):
    """A setting is missing or invalid for the chosen environment."""


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    lake_root: str
    spark_master: str
    spark_catalog: str
    source_db_url: str
    serving_db_url: str
    pseudonym_key: bytes = field(repr=False)
    jars_dir: Path
    spark_driver_memory: str
    deid_key: bytes = field(default=_DEV_DEID_KEY.encode(), repr=False)
    orthanc_url: str | None = None
    orthanc_user: str | None = None
    orthanc_password: str | None = field(default=None, repr=False)

    @property
    def landing_root(self) -> Path:
        """Immutable copies of every delivered file, by source and delivery day."""
        return self.home / "landing"

    @property
    def dropzone_root(self) -> Path:
        """Where file sources deliver (the simulator writes here): <source>/<YYYY-MM-DD>/..."""
        return self.home / "dropzone"

    @property
    def exchange_root(self) -> Path:
        """What leaves the platform for other institutions (de-identified images for the reading
        centres): <kind>/<org_code>/..."""
        return self.home / "exchange"

    @property
    def ground_truth_dir(self) -> Path:
        """The simulator's manifest of injected defects and duplicate persons (tests only)."""
        return self.home / "source" / "ground_truth"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "data_docs"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def serving_duckdb_path(self) -> Path | None:
        """The DuckDB file behind SERVING_DB_URL, or None when serving is PostgreSQL."""
        prefix = "duckdb:///"
        if self.serving_db_url.startswith(prefix):
            return Path(self.serving_db_url[len(prefix):])
        return None

    @property
    def source_sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.source_db_url.startswith(prefix):
            return Path(self.source_db_url[len(prefix):])
        return None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: the process environment)."""
    e = dict(os.environ if environ is None else environ)
    env = (e.get("JL_ENV") or ("CI" if e.get("CI", "").lower() == "true" else "LOCAL")).upper()
    if env not in ENVIRONMENTS:
        raise SettingsError(f"JL_ENV must be one of {ENVIRONMENTS}, got {env!r}")
    home = Path(e.get("JL_HOME") or REPO_ROOT / "var").resolve()
    key = e.get("JL_PSEUDONYM_KEY")
    if not key:
        if env == "PROD":
            raise SettingsError("JL_PSEUDONYM_KEY must be set in PROD (the HMAC key for person_id)")
        key = _DEV_PSEUDONYM_KEY
    if env == "PROD" and key == _DEV_PSEUDONYM_KEY:
        raise SettingsError("the development pseudonym key may not be used in PROD")
    deid_key = e.get("JL_DEID_KEY") or ""
    if env == "PROD" and deid_key in ("", _DEV_DEID_KEY):
        raise SettingsError("JL_DEID_KEY must be set in PROD, to a key of its own (DICOM de-identification)")
    return Settings(
        env=env,
        home=home,
        lake_root=e.get("LAKE_ROOT") or str(home / "lake"),
        spark_master=e.get("SPARK_MASTER") or ("local[2]" if env == "CI" else "local[*]"),
        spark_catalog=e.get("JL_SPARK_CATALOG") or ("in-memory" if env == "CI" else "hive"),
        source_db_url=e.get("SOURCE_DB_URL") or f"sqlite:///{home / 'source' / 'regional.sqlite'}",
        serving_db_url=e.get("SERVING_DB_URL") or f"duckdb:///{home / 'serving' / 'jiceng.duckdb'}",
        pseudonym_key=key.encode("utf-8"),
        jars_dir=Path(e.get("JL_JARS_DIR") or REPO_ROOT / ".cache" / "jars"),
        spark_driver_memory=e.get("SPARK_DRIVER_MEMORY") or "4g",
        deid_key=(deid_key or _DEV_DEID_KEY).encode("utf-8"),
        orthanc_url=(e.get("JL_ORTHANC_URL") or "").rstrip("/") or None,
        orthanc_user=e.get("JL_ORTHANC_USER") or None,
        orthanc_password=e.get("JL_ORTHANC_PASSWORD") or None,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
