"""Superset configuration for Jiceng Lakehouse (loaded through SUPERSET_CONFIG_PATH).

Everything that differs between a laptop, CI and production comes from environment variables,
the same names the rest of the platform uses:

| variable              | meaning                                   | default                                 |
|-----------------------|-------------------------------------------|-----------------------------------------|
| SUPERSET_SECRET_KEY   | signs sessions, encrypts stored passwords | none: Superset refuses to start without |
| SUPERSET_METADATA_URL | Superset's own metadata database          | sqlite:///$JL_HOME/superset/superset.db |
| JL_HOME               | folder for everything the platform writes | <repo>/var                              |

`dashboards/provision.py` generates a secret key once into `$JL_HOME/superset/secret_key` (mode
600) when none is set, and passes it on; nothing secret is ever stored in the repository.
Built for offline use: no example data, no telemetry pixel, no fonts or map tiles from the web.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
_JL_HOME = Path(os.environ.get("JL_HOME") or _REPO_ROOT / "var").resolve()
_SUPERSET_HOME = _JL_HOME / "superset"
_SUPERSET_HOME.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if len(SECRET_KEY) < 32:
    # SystemExit rather than an exception: Superset logs and re-raises config errors, and a
    # one-line reason is clearer than a traceback.
    raise SystemExit(
        "SUPERSET_SECRET_KEY is not set (or shorter than 32 characters): refusing to start. "
        "Run `.venv-bi/bin/python dashboards/provision.py`, which creates one in "
        f"{_SUPERSET_HOME / 'secret_key'}, or export your own."
    )

SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_METADATA_URL") or (
    f"sqlite:///{_SUPERSET_HOME / 'superset.db'}?check_same_thread=false"
)

if SQLALCHEMY_DATABASE_URI.startswith("sqlite:"):
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _sqlite_wal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        """Write-ahead log for the local SQLite metadata database.

        Readers then never block the writer (two gunicorn workers share the file), and a commit
        no longer waits for a disk flush, which shortens `superset db upgrade` on a fresh
        database. Only the last commits before a power cut can be lost, never the whole file.
        """
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("pragma journal_mode = wal")
            dbapi_connection.execute("pragma synchronous = normal")

# Superset's own files (uploads, logs, default SQLite paths) stay under JL_HOME, not ~/.superset
# or the installed package.
DATA_DIR = str(_SUPERSET_HOME)
UPLOAD_FOLDER = str(_SUPERSET_HOME / "uploads") + "/"
FILENAME = str(_SUPERSET_HOME / "superset_app.log")
SQLALCHEMY_EXAMPLES_URI = f"sqlite:///{_SUPERSET_HOME / 'examples.db'}?check_same_thread=false"

APP_NAME = "基层卫生健康数据平台"
SUPERSET_WEBSERVER_ADDRESS = "127.0.0.1"
SUPERSET_WEBSERVER_PORT = 8088

# Chinese UI. Superset ships with LANGUAGES = {} (i18n off), which would ignore the default
# locale, so the two languages offered are listed explicitly.
BABEL_DEFAULT_LOCALE = "zh"
LANGUAGES = {
    "zh": {"flag": "cn", "name": "简体中文"},
    "en": {"flag": "us", "name": "English"},
}

# Results change when the pipeline replaces the serving DuckDB file: no result caching, so a
# dashboard never shows numbers from before the last export.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# Offline and private: the frontend renders a Scarf telemetry pixel
# (apachesuperset.gateway.scarf.sh) and allows map tiles, web fonts and docs images from the
# internet. This content-security policy only allows the server itself, so the browser loads
# none of them.
THEME_FONT_URL_ALLOWED_DOMAINS: list[str] = []
_SELF_ONLY_CSP = {
    "base-uri": ["'self'"],
    "default-src": ["'self'"],
    "img-src": ["'self'", "blob:", "data:"],
    "worker-src": ["'self'", "blob:"],
    "connect-src": ["'self'"],
    "object-src": "'none'",
    "style-src": ["'self'", "'unsafe-inline'"],
    "font-src": ["'self'", "data:"],
    "script-src": ["'self'", "'strict-dynamic'"],
}
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": _SELF_ONLY_CSP,
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
MAPBOX_API_KEY = ""

# Only the bundle's database is used; nobody should add SQLite files as data sources.
PREVENT_UNSAFE_DB_CONNECTIONS = True
# CSV exports open in Excel on Chinese Windows without mojibake.
CSV_EXPORT = {"encoding": "utf-8-sig"}
