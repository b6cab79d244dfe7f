"""A source record with a timeline that does not depend on the simulated number of days.

Every record knows when it was recorded (``created``), and optionally when its values were
corrected and when it was soft-deleted. :func:`state_as_of` gives the row as the source system
held it at the end of a day; the simulator asks for the as-of day (database) or for each delivery
day (file exports). Timestamps are 'YYYY-MM-DD HH:MM:SS' strings, so they compare as text.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(slots=True)
class Rec:
    entity: str                  # regional table name, or FHIR resource type
    key: str
    row: dict                    # values as first recorded (no audit columns)
    created: str
    corr_at: str | None = None
    corr: dict | None = None     # the changed values
    del_at: str | None = None
    defects: list | None = None  # [(defect, detail)], reported once the row is visible
    media: tuple | None = None   # (kind, day, exam args) for remote-diagnosis files

    def add_defect(self, defect: str, detail: str = "") -> None:
        if self.defects is None:
            self.defects = []
        self.defects.append((defect, detail))

    @property
    def change_times(self) -> list[str]:
        return [t for t in (self.created, self.corr_at, self.del_at) if t]


def day_end(day: dt.date) -> str:
    return f"{day:%Y-%m-%d} 23:59:59"


def state_as_of(rec: Rec, end: str) -> tuple[dict, str, int] | None:
    """(values, updated_at, is_deleted) of ``rec`` at time ``end``, or None before it exists."""
    if rec.created > end:
        return None
    values, updated, deleted = rec.row, rec.created, 0
    if rec.corr_at and rec.corr_at <= end:
        values = {**values, **rec.corr}
        updated = rec.corr_at
    if rec.del_at and rec.del_at <= end:
        deleted, updated = 1, max(updated, rec.del_at)
    return values, updated, deleted


def visible_defects(rec: Rec, end: str) -> list[tuple[str, str]]:
    """The defects of ``rec`` that the source shows at ``end`` (corrections and deletions only
    once they happened)."""
    if rec.created > end:
        return []
    out = list(rec.defects or ())
    if rec.corr_at and rec.corr_at <= end:
        out.append(("corrected", f"at {rec.corr_at}: " + ", ".join(
            f"{k} {rec.row.get(k)!s}→{v!s}" for k, v in rec.corr.items() if not isinstance(v, (dict, list)))))
    if rec.del_at and rec.del_at <= end:
        out.append(("deleted", f"at {rec.del_at}"))
    return out
