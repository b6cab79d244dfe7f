"""The simulated city: residents and their primary-care records, written into the regional source
database the way the regional EHR/HIS system holds them.

Deterministic for a seed. Residents are generated and written in chunks (a stream), so the size
is bounded by disk, not memory. Known defects are injected at configurable rates and each one is
written to a ground-truth manifest so tests can measure detection instead of assuming it.
"""
from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import create_engine

from ingest.simulator import geography, source_schema as S
from lakehouse import idcard

# China 2020 census, share of population by 5-year age band (0–4 … 85+)
AGE_BANDS = [(a, min(a + 4, 99)) for a in range(0, 85, 5)] + [(85, 99)]
AGE_WEIGHTS = [5.7, 6.4, 6.1, 5.3, 5.3, 6.6, 8.8, 7.0, 6.6, 8.0, 8.7, 7.2, 5.2, 5.0, 3.4, 2.2, 1.4, 1.0]
# hypertension prevalence by age (adults), and the share of prevalent cases under management
HTN_PREVALENCE = [(18, 0.05), (35, 0.12), (45, 0.25), (55, 0.38), (65, 0.50), (75, 0.58)]
HTN_MANAGED_SHARE = 0.55
# face-to-face follow-ups a managed patient gets in a full year
FOLLOWUP_COUNTS = [(0, 3), (1, 4), (2, 6), (3, 10), (4, 55), (5, 12), (6, 6), (8, 4)]
FOLLOWUP_TYPES = [("clinic", 60), ("home", 30), ("phone", 10)]

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余"
            "于杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛阎段雷")
GIVEN_CHARS = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍建国文红梅志强春梅"
               "海燕德福金凤淑珍丹辉鹏飞宇浩然子轩欣怡雨涵思远佳琪俊杰晓东永庆荣生")


@dataclass(frozen=True)
class DefectRates:
    """Probabilities of the injected defects (all recorded in the manifest)."""
    bad_id_check_digit: float = 0.005
    impossible_followup_date: float = 0.002


@dataclass(frozen=True)
class CityConfig:
    residents: int = 2000
    seed: int = 20250101
    year: int = 2025                 # the assessment year; records cover year-1 and year
    counties: int = 4
    townships_per_county: int = 15
    defects: DefectRates = field(default_factory=DefectRates)
    chunk_size: int = 5000


@dataclass
class SimulationSummary:
    source_db_url: str
    manifest_path: str
    rows: dict[str, int]
    defects: dict[str, int]


def _weighted(rng: random.Random, pairs):
    values, weights = zip(*pairs)
    return rng.choices(values, weights=weights, k=1)[0]


def _ts(day: dt.date, rng: random.Random) -> str:
    return f"{day:%Y-%m-%d} {rng.randint(8, 17):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def _htn_prevalence(age: int) -> float:
    p = 0.0
    for lower, prev in HTN_PREVALENCE:
        if age >= lower:
            p = prev
    return p


class _Writer:
    """Buffers rows per table and flushes them with executemany in chunks."""

    def __init__(self, conn, chunk_size: int):
        self.conn, self.chunk_size = conn, chunk_size
        self.buffers: dict[str, list[dict]] = {}
        self.counts: dict[str, int] = {}

    def add(self, table, row: dict) -> None:
        buf = self.buffers.setdefault(table.name, [])
        buf.append(row)
        if len(buf) >= self.chunk_size:
            self.flush(table)

    def flush(self, table) -> None:
        buf = self.buffers.get(table.name)
        if buf:
            self.conn.execute(table.insert(), buf)
            self.counts[table.name] = self.counts.get(table.name, 0) + len(buf)
            buf.clear()

    def flush_all(self) -> None:
        for t in S.metadata.sorted_tables:
            self.flush(t)


def simulate_city(source_db_url: str, manifest_dir: Path, config: CityConfig = CityConfig(),
                  progress: Callable[[int], None] | None = None) -> SimulationSummary:
    """(Re)create the regional source database at ``source_db_url`` with the simulated city and
    write the defect manifest to ``manifest_dir/defects.csv``. ``progress`` is called with the
    number of residents written so far."""
    rng = random.Random(config.seed)
    units = geography.build_org_units(rng, config.counties, config.townships_per_county)
    townships = [u for u in units if u.level == "township"]
    villages_of: dict[str, list[geography.OrgUnit]] = {}
    for u in units:
        if u.level == "village":
            villages_of.setdefault(u.parent_code, []).append(u)

    if source_db_url.startswith("sqlite:///"):
        Path(source_db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(source_db_url)
    S.metadata.drop_all(engine)
    S.metadata.create_all(engine)
    manifest_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = manifest_dir / "defects.csv"
    defects: dict[str, int] = {}

    with engine.begin() as conn, open(manifest_path, "w", newline="", encoding="utf-8") as mf:
        manifest = csv.writer(mf)
        manifest.writerow(["table", "record_key", "defect"])

        def record_defect(table: str, key: str, defect: str) -> None:
            manifest.writerow([table, key, defect])
            defects[defect] = defects.get(defect, 0) + 1

        w = _Writer(conn, config.chunk_size)
        opened = dt.date(config.year - 6, 1, 1)
        for u in units:
            ts = _ts(opened, rng)
            w.add(S.org_units, {
                "org_code": u.org_code, "org_name": u.org_name, "org_type": u.org_type,
                "level": u.level, "parent_code": u.parent_code, "area_code": u.area_code,
                "created_at": ts, "updated_at": ts, "is_deleted": 0,
            })
        for n, person in enumerate(_residents(rng, config, townships, villages_of), start=1):
            _write_person(w, rng, config, person, record_defect)
            if progress and n % 1000 == 0:
                progress(n)
        w.flush_all()
        if progress:
            progress(config.residents)
    engine.dispose()
    return SimulationSummary(source_db_url, str(manifest_path), dict(w.counts), defects)


@dataclass
class _Person:
    seq: int
    township: geography.OrgUnit
    village: geography.OrgUnit
    sex: str
    birth: dt.date


def _residents(rng: random.Random, config: CityConfig, townships, villages_of) -> Iterator[_Person]:
    ref = dt.date(config.year, 12, 31)
    for seq in range(1, config.residents + 1):
        township = townships[rng.randrange(len(townships))]
        village = rng.choice(villages_of[township.org_code])
        low, high = rng.choices(AGE_BANDS, weights=AGE_WEIGHTS, k=1)[0]
        age = rng.randint(low, high)
        birth = ref - dt.timedelta(days=age * 365 + rng.randint(0, 364))
        yield _Person(seq, township, village, rng.choice("12"), birth)


def _write_person(w: _Writer, rng: random.Random, config: CityConfig, p: _Person, record_defect) -> None:
    year = config.year
    resident_id = f"R{p.seq:08d}"
    county_code = p.township.area_code[:6]
    id_no = idcard.make(county_code, p.birth, rng.randint(0, 999), female=p.sex == "2")
    if rng.random() < config.defects.bad_id_check_digit:
        wrong = rng.choice([c for c in idcard.CHECK_CHARS if c != id_no[17]])
        id_no = id_no[:17] + wrong
        record_defect("residents", resident_id, "bad_id_check_digit")
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    phone = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
    address = f"福建省宁德市{p.township.area_name}{p.village.org_name.removeprefix(p.township.area_name).removesuffix('卫生室')}{rng.randint(1, 200)}号"
    registered_on = max(p.birth, dt.date(year - 8, 1, 1)) + dt.timedelta(days=rng.randint(0, 2000))
    registered_on = min(registered_on, dt.date(year - 1, 6, 30))
    ts = _ts(registered_on, rng)
    w.add(S.residents, {
        "resident_id": resident_id, "id_card_no": id_no, "name": name, "sex": p.sex,
        "birth_date": f"{p.birth:%Y-%m-%d}", "phone": phone, "address": address,
        "area_code": p.township.area_code, "created_at": ts, "updated_at": ts, "is_deleted": 0,
    })

    if rng.random() < 0.88:  # most residents have an electronic health archive
        archive_org = p.village if rng.random() < 0.6 else p.township
        w.add(S.health_archives, {
            "archive_no": f"{p.township.area_code}{p.seq:08d}", "resident_id": resident_id,
            "org_code": archive_org.org_code, "created_date": f"{registered_on:%Y-%m-%d}",
            "created_at": ts, "updated_at": ts, "is_deleted": 0,
        })

    age = (dt.date(year, 12, 31) - p.birth).days // 365
    if age < 18 or rng.random() >= _htn_prevalence(age) * HTN_MANAGED_SHARE:
        return
    # a managed hypertensive patient: registered before or during the two simulated years
    registered = dt.date(year - 1, 1, 1) + dt.timedelta(days=rng.randint(-1500, 700))
    doctor_id = f"D{p.township.area_code}{rng.randint(1, 6):02d}"
    registry_id = f"HR{p.seq:08d}"
    reg_org = p.village if rng.random() < 0.3 else p.township
    reg_deleted = 1 if rng.random() < 0.01 else 0
    reg_ts = _ts(registered, rng)
    w.add(S.hypertension_registry, {
        "registry_id": registry_id, "resident_id": resident_id, "org_code": reg_org.org_code,
        "doctor_id": doctor_id, "diagnosed_date": f"{registered - dt.timedelta(days=rng.randint(0, 900)):%Y-%m-%d}",
        "registered_date": f"{registered:%Y-%m-%d}", "created_at": reg_ts,
        "updated_at": reg_ts if not reg_deleted else max(reg_ts, _ts(dt.date(year, 11, 30), rng)),
        "is_deleted": reg_deleted,
    })
    n_fu = 0
    for fy in (year - 1, year):
        start = max(registered, dt.date(fy, 1, 1))
        if start > dt.date(fy, 12, 31):
            continue
        share = ((dt.date(fy, 12, 31) - start).days + 1) / 365
        count = round(_weighted(rng, FOLLOWUP_COUNTS) * share)
        span = (dt.date(fy, 12, 31) - start).days
        dates = sorted(start + dt.timedelta(days=rng.randint(0, span)) for _ in range(count))
        for d in dates:
            n_fu += 1
            fu_type = _weighted(rng, FOLLOWUP_TYPES)
            sbp = int(rng.gauss(138, 14))
            dbp = int(min(rng.gauss(84, 9), sbp - 20))
            followup_id = f"HF{p.seq:08d}{n_fu:02d}"
            date_text = f"{d:%Y-%m-%d}"
            if rng.random() < config.defects.impossible_followup_date:
                date_text = f"{d:%Y}-02-30" if rng.random() < 0.5 else f"{d:%Y}-13-{d:%d}"
                record_defect("hypertension_followups", followup_id, "impossible_date")
            created = _ts(d, rng)
            corrected = rng.random() < 0.03
            deleted = 1 if rng.random() < 0.01 else 0
            w.add(S.hypertension_followups, {
                "followup_id": followup_id, "registry_id": registry_id, "resident_id": resident_id,
                "org_code": (p.village if rng.random() < 0.4 else p.township).org_code,
                "doctor_id": doctor_id, "followup_date": date_text, "followup_type": fu_type,
                "sbp_mmhg": sbp - 4 if corrected else sbp, "dbp_mmhg": dbp,
                "created_at": created,
                "updated_at": max(created, _ts(min(d + dt.timedelta(days=rng.randint(1, 20)), dt.date(year, 12, 31)), rng))
                if (corrected or deleted) else created,
                "is_deleted": deleted,
            })
