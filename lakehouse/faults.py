"""Fault injection for crash-safety tests: ``JL_FAULT_INJECT=<point>[,<point>...]`` makes
:func:`maybe_fail` raise at that point, as a crashed process would stop there.

Points are named where a crash would hurt most, e.g. ``after_bronze:regional__residents`` (bronze
committed, quarantine and batch record not) or ``before_watermarks``. Read from the environment at
each call, so a test can set it for one run; unset in production, where it costs one dict lookup.
"""
from __future__ import annotations

import os


class InjectedFault(RuntimeError):
    """Raised at an injected fault point (never in normal operation)."""


def maybe_fail(point: str) -> None:
    wanted = os.environ.get("JL_FAULT_INJECT")
    if wanted and point in {p.strip() for p in wanted.split(",")}:
        raise InjectedFault(f"injected fault at {point}")
