"""A job's build state names its code: the job's module and the project modules it imports."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from lakehouse import ops


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A package ``jlprobe``: ``job`` imports ``helper`` inside a function and ``base`` relatively
    at the top; ``unrelated`` is imported by nobody."""
    pkg = tmp_path / "jlprobe"
    pkg.mkdir()
    files = {
        "__init__.py": "",
        "job.py": """
            from .base import BASE

            def run():
                from jlprobe.helper import help_me
                import json
                return help_me(BASE, json)
            """,
        "helper.py": "def help_me(x, _):\n    return x + 1\n",
        "base.py": "BASE = 1\n",
        "unrelated.py": "X = 0\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    job = importlib.import_module("jlprobe.job")
    yield pkg, job
    for name in [m for m in sys.modules if m.split(".")[0] == "jlprobe"]:
        del sys.modules[name]


def test_the_digest_changes_with_a_helper_the_job_imports_and_not_with_other_code(probe):
    pkg, job = probe
    def digest():   # as a new process computes it: within one, the code imported is the code that runs
        ops._digest.cache_clear()
        return ops.code_digest(job, packages=("jlprobe",))

    first = digest()
    assert digest() == first
    (pkg / "unrelated.py").write_text("X = 1\n")
    assert digest() == first, "a module the job does not import is not part of its code"
    (pkg / "helper.py").write_text("def help_me(x, _):\n    return x + 2\n")
    changed_helper = digest()
    assert changed_helper != first, "an import inside a function counts"
    (pkg / "base.py").write_text("BASE = 2\n")
    assert digest() not in (first, changed_helper), "a relative import counts"


def test_a_real_job_covers_the_helpers_it_imports():
    from spark_jobs.quality import scorecard

    names = ops._imported_sources([scorecard], ops.PROJECT_PACKAGES)
    assert {"spark_jobs.quality.scorecard", "lakehouse.delta", "lakehouse.ops", "lakehouse.tables"} <= set(names)
    assert not any(n.split(".")[0] not in ops.PROJECT_PACKAGES for n in names), "third-party code is left out"
