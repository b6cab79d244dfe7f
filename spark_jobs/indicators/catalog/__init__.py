"""The versioned indicator catalogue (YAML) and its loader."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

CATALOG_PATH = Path(__file__).with_name("indicators.yaml")
SCORING_RULES = ("at_or_above_target", "at_or_below_target", "yes_no", "none")
LEVELS = ("institution", "township", "county", "city")
PERIODS = ("month", "quarter", "year")
UNITS = ("rate", "count", "yuan", "hours")
DISAGGREGATIONS = ("sex", "age_band")   # by the members' persons (dbt: fct_indicator_disaggregations)


@dataclass(frozen=True)
class Indicator:
    id: str
    name_zh: str
    name_en: str
    domain: str
    rule: str                      # the engine's member rule (spark_jobs.indicators.rules.RULES)
    unit: str
    direction: str
    numerator: dict
    denominator: dict
    levels: tuple[str, ...]
    periods: tuple[str, ...]
    target: float | None
    scoring: str
    weight: float
    effective_from: str
    effective_to: str | None = None
    params: dict = field(default_factory=dict)
    source: str = ""
    disaggregations: tuple[str, ...] = ()   # of DISAGGREGATIONS; county is a level
    age_bands: tuple[int, ...] = ()         # lower bounds of the age bands (age at the period's end)


@dataclass(frozen=True)
class WorkItem:
    """A service item of the staff work points (工分): the records of ``table`` earn ``points``
    each for the staff member in ``staff_column``, in the month of ``date_column``."""
    id: str
    name_zh: str
    table: str
    staff_column: str
    date_column: str
    points: float


@dataclass(frozen=True)
class Workpoints:
    items: tuple[WorkItem, ...]
    void_flags: tuple[str, ...]
    quality_period_type: str
    quality_floor: float
    quality_default: float


@dataclass(frozen=True)
class Catalog:
    version: str
    indicators: dict[str, Indicator]
    workpoints: Workpoints | None = None

    def __getitem__(self, indicator_id: str) -> Indicator:
        try:
            return self.indicators[indicator_id]
        except KeyError:
            raise KeyError(f"indicator {indicator_id!r} is not in catalogue {self.version}; "
                           f"known: {sorted(self.indicators)}") from None


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Parse and check the catalogue; raises ValueError naming the bad entry."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = {}
    default_bands = tuple(doc.get("default_age_bands") or ())
    for raw in doc["indicators"]:
        ind = Indicator(**{**raw, "levels": tuple(raw["levels"]), "periods": tuple(raw["periods"]),
                           "disaggregations": tuple(raw.get("disaggregations") or ()),
                           "age_bands": tuple(raw.get("age_bands") or default_bands)})
        if set(ind.disaggregations) - set(DISAGGREGATIONS):
            raise ValueError(f"{ind.id}: disaggregations must be among {DISAGGREGATIONS}")
        if "age_band" in ind.disaggregations and (not ind.age_bands or list(ind.age_bands) != sorted(set(ind.age_bands))):
            raise ValueError(f"{ind.id}: age_band needs ascending age_bands (or the catalogue's default_age_bands)")
        if ind.scoring not in SCORING_RULES:
            raise ValueError(f"{ind.id}: scoring must be one of {SCORING_RULES}")
        if ind.scoring != "none" and ind.target is None:
            raise ValueError(f"{ind.id}: a scored indicator needs a target")
        for what, got, allowed in (("levels", ind.levels, LEVELS), ("periods", ind.periods, PERIODS),
                                   ("unit", (ind.unit,), UNITS)):
            if not got or set(got) - set(allowed):
                raise ValueError(f"{ind.id}: {what} must be among {allowed}, got {list(got)}")
        if ind.id in out:
            raise ValueError(f"duplicate indicator id {ind.id}")
        out[ind.id] = ind
    return Catalog(str(doc["catalog_version"]), out, _workpoints(doc.get("workpoints")))


def _workpoints(raw: dict | None) -> Workpoints | None:
    """The work-point scheme of the catalogue; raises ValueError naming the bad entry."""
    from spark_jobs.conform.entities import BY_NAME

    if raw is None:
        return None
    items = tuple(WorkItem(**{**i, "points": float(i["points"])}) for i in raw["items"])
    seen = set()
    for item in items:
        entity = BY_NAME.get(item.table)
        if entity is None:
            raise ValueError(f"work item {item.id}: no silver table {item.table!r}")
        for col in (item.staff_column, item.date_column):
            if col not in entity.columns:
                raise ValueError(f"work item {item.id}: {item.table} has no column {col!r}")
        if item.points <= 0 or item.id in seen:
            raise ValueError(f"work item {item.id}: points must be positive and ids unique")
        seen.add(item.id)
    q = raw["quality_coefficient"]
    if q["period_type"] not in PERIODS or not 0 <= q["floor"] <= q["default"] <= 1:
        raise ValueError("workpoints.quality_coefficient: period_type must be a period and 0 ≤ floor ≤ default ≤ 1")
    return Workpoints(items, tuple(raw["void_flags"]), q["period_type"], float(q["floor"]), float(q["default"]))


def score(indicator: Indicator, value: float | None) -> float | None:
    """The indicator's score for ``value`` under its scoring rule (None when there is no value)."""
    if value is None or indicator.scoring == "none":
        return None
    w, t = indicator.weight, indicator.target
    if indicator.scoring == "at_or_above_target":
        return w if value >= t else w * value / t
    if indicator.scoring == "at_or_below_target":
        return w if value <= t else (w * t / value if value else w)
    return w if value else 0.0
