"""The simulated city: residents and every record the city's source systems hold about them,
as they stand at the end of the as-of day.

- the regional EHR/HIS database (``source_schema``), recreated on every run;
- the legacy county's daily GBK CSV exports, the city hospital's daily FHIR bulk export, DICOM
  and ECG files of remote-diagnosis requests, and reference snapshots, in the drop zone;
- the ground truth: every injected defect and every record of every real person.

Deterministic for a seed, and consistent across as-of days: each person's records come from the
person's own random stream over a fixed horizon (see ``people``), and the as-of day only decides
which of them, in which version, the sources show (``timeline``). Residents are generated and
written one at a time (a stream), so memory is bounded at any city size.
"""
from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine

from ingest.simulator import catalog as C, deliveries as Dl, geography, legacy_spec, people, source_schema as S
from ingest.simulator.timeline import Rec, day_end, state_as_of, visible_defects

DEFECT_CODES = (
    "bad_id_check_digit", "duplicate_person_name_variant", "followup_after_death", "impossible_vitals",
    "impossible_date", "future_date", "copied_followup", "implausible_daily_workload", "late_arriving",
    "corrected", "deleted", "bad_encoding", "malformed_row", "invalid_json", "truncated_dicom",
    "truncated_ecg", "flatline_ecg",
)
# entities that exist only in the regional platform and are kept for legacy-county residents too
CITYWIDE_ENTITIES = {"death_registrations"}


@dataclass(frozen=True)
class DefectRates:
    """Probabilities of the injected defects (all recorded in the ground-truth manifest).

    Per record unless noted: ``duplicate_person_name_variant`` per person, ``copied_followup`` per
    chronic patient, ``followup_after_death`` per deceased chronic patient, ``bad_encoding`` per row of
    the one legacy file with broken characters, ``invalid_json`` per NDJSON line, the media defects
    per exam."""
    bad_id_check_digit: float = 0.005
    impossible_followup_date: float = 0.002      # defect code impossible_date
    duplicate_person_name_variant: float = 0.01
    followup_after_death: float = 0.3
    impossible_vitals: float = 0.002
    future_date: float = 0.001
    copied_followup: float = 0.02
    implausible_daily_workload: float = 0.1   # moved to one doctor per county on quarter ends
    late_arriving: float = 0.02
    corrected: float = 0.02
    deleted: float = 0.005
    bad_encoding: float = 0.01
    malformed_row: float = 0.0005
    invalid_json: float = 0.0005
    truncated_dicom: float = 0.03
    truncated_ecg: float = 0.03
    flatline_ecg: float = 0.03


@dataclass(frozen=True)
class CityConfig:
    residents: int = 2000
    seed: int = 20250101
    counties: int = 4
    townships_per_county: int = 15
    defects: DefectRates = field(default_factory=DefectRates)
    chunk_size: int = 5000
    start: dt.date = dt.date(2025, 12, 22)
    days: int = 10
    legacy_county: bool = True     # the last configured county runs the legacy system
    media_files: bool = True       # write DICOM / ECG files (off for large benchmarks)
    # how much the remote ECG / imaging services are used, relative to a typical county (1.0);
    # pilot regions with a strong reading centre use them several times more
    remote_uptake: float = 1.0

    @property
    def year(self) -> int:
        """The assessment year; records cover 1 January of the year before it up to the as-of day."""
        return self.start.year

    @property
    def as_of(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    @property
    def horizon(self) -> dt.date:
        """The last day any record's timeline reaches; independent of ``days``."""
        return max(dt.date(self.start.year, 12, 31), self.start + dt.timedelta(days=59))


@dataclass
class SimulationSummary:
    source_db_url: str
    manifest_path: str
    rows: dict[str, int]
    defects: dict[str, int]
    files: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None
    duplicate_persons_path: str = ""


class _Writer:
    """Buffers rows per table and flushes them with executemany in chunks."""

    def __init__(self, conn, chunk_size: int):
        self.conn, self.chunk_size = conn, chunk_size
        self.buffers: dict[str, list[dict]] = {}
        self.counts: dict[str, int] = {t.name: 0 for t in S.TABLES}

    def add(self, table, row: dict) -> None:
        buf = self.buffers.setdefault(table.name, [])
        buf.append(row)
        if len(buf) >= self.chunk_size:
            self.flush(table)

    def flush(self, table) -> None:
        buf = self.buffers.get(table.name)
        if buf:
            self.conn.execute(table.insert(), buf)
            self.counts[table.name] += len(buf)
            buf.clear()

    def flush_all(self) -> None:
        for t in S.TABLES:
            self.flush(t)


def _static(rec_rows, created: str):
    return {**rec_rows, "created_at": created, "updated_at": created, "is_deleted": 0}


def _build_world(config: CityConfig, rng: random.Random, units) -> tuple[people.World, list[dict], list[dict]]:
    """The org tree's staff and family-doctor teams (global, drawn before any person)."""
    townships = [u for u in units if u.level == "township"]
    villages_of: dict[str, list] = {}
    for u in units:
        if u.level == "village":
            villages_of.setdefault(u.parent_code, []).append(u)
    staff_rows, team_rows = [], []
    doctors_of, nurses_of, team_of_org, team_doctors = {}, {}, {}, {}
    hired_base = dt.date(config.year - 12, 1, 1)

    def add_staff(org, role, prefix, title, n, team=None):
        ids = []
        for i in range(1, n + 1):
            sid = f"{prefix}{org.org_code[1:]}{i:02d}" if org.level != "village" else f"{prefix}{org.org_code[1:]}"
            if org.level == "village" and i > 1:
                sid += f"{i}"
            name = rng.choice(C.SURNAMES) + "".join(rng.choice(C.GIVEN_CHARS) for _ in range(rng.choice((1, 2))))
            staff_rows.append({"staff_id": sid, "name": name, "sex": rng.choice("12"), "org_code": org.org_code,
                               "role": role, "title_zh": title, "team_id": team,
                               "hired_date": (hired_base + dt.timedelta(days=rng.randint(0, 3000))).isoformat()})
            ids.append(sid)
        return ids

    for u in units:
        if u.org_type in ("county_hospital", "city_hospital"):
            doctors_of[u.org_code] = add_staff(u, "doctor", "D", "执业医师", 6)
            nurses_of[u.org_code] = add_staff(u, "nurse", "N", "护士", 2)
    for t in townships:
        n_teams = rng.randint(2, 4)
        doctors = add_staff(t, "doctor", "D", "执业医师", rng.randint(4, 8))
        nurses = add_staff(t, "nurse", "N", "护士", rng.randint(3, 6))
        add_staff(t, "public_health", "G", "公卫医师", rng.randint(2, 3))
        doctors_of[t.org_code], nurses_of[t.org_code] = doctors, nurses
        teams = []
        for k in range(n_teams):
            team_id = f"T{t.area_code}{k + 1:02d}"
            leader = doctors[k % len(doctors)]
            team_rows.append({"team_id": team_id, "org_code": t.org_code, "team_name": f"{t.area_name}家庭医生团队{k + 1}",
                              "leader_staff_id": leader,
                              "established_date": dt.date(config.year - 6, 7, 1).isoformat()})
            team_doctors[team_id] = [(d, t.org_code) for d in doctors[k::n_teams]]
            teams.append(team_id)
        for row in staff_rows:
            if row["org_code"] == t.org_code and row["role"] != "public_health":
                idx = (doctors + nurses).index(row["staff_id"])
                row["team_id"] = teams[idx % n_teams]
        team_of_org[t.org_code] = teams[0]
        for j, v in enumerate(villages_of[t.org_code]):
            team = teams[j % n_teams]
            vd = add_staff(v, "doctor", "D", "乡村医生", rng.choice((1, 1, 2)), team=team)
            doctors_of[v.org_code] = vd
            team_of_org[v.org_code] = team
            team_doctors[team] += [(d, v.org_code) for d in vd]
    counties = [c for c, _, _ in geography.COUNTIES[:config.counties]]
    county_hospital = {c: f"CH{c}" for c in counties}
    city_hospital = f"CH{geography.CITY[0]}"
    reading_org = {c: (city_hospital if kind == "district" else f"CH{c}")
                   for c, _, kind in geography.COUNTIES[:config.counties]}
    bulk_doctor = {}
    for c in counties:
        t = rng.choice([t for t in townships if t.area_code.startswith(c)])
        bulk_doctor[c] = (doctors_of[t.org_code][0], t.org_code)
    world = people.World(
        seed=config.seed, year=config.year, records_start=dt.date(config.year - 1, 1, 1), horizon=config.horizon,
        rates=config.defects, townships=townships, villages_of=villages_of,
        org_name={u.org_code: u.org_name for u in units}, team_of_org=team_of_org, doctors_of=doctors_of,
        nurses_of=nurses_of, team_doctors=team_doctors, county_hospital=county_hospital, reading_org=reading_org,
        bulk_doctor=bulk_doctor, legacy_county=counties[-1] if config.legacy_county else None,
        city_hospital=city_hospital, remote_uptake=config.remote_uptake)
    return world, staff_rows, team_rows


def simulate_city(source_db_url: str, ground_truth_dir: Path, dropzone_root: Path,
                  config: CityConfig = CityConfig(),
                  progress: Callable[[int], None] | None = None) -> SimulationSummary:
    """(Re)create the regional source database at ``source_db_url``, write the file deliveries of
    days ``start - 1 … as-of`` under ``dropzone_root`` (removing later days) and the ground truth
    (``defects.csv``, ``duplicate_persons.csv``) under ``ground_truth_dir``. ``progress`` is called
    with the number of residents written so far."""
    if config.days < 1:
        raise ValueError("days must be at least 1")
    if config.as_of > config.horizon:
        raise ValueError(f"the as-of day {config.as_of} is after the simulated horizon {config.horizon}")
    ground_truth_dir, dropzone_root = Path(ground_truth_dir), Path(dropzone_root)
    rng = random.Random(config.seed)
    units = geography.build_org_units(rng, config.counties, config.townships_per_county)
    world, staff_rows, team_rows = _build_world(config, rng, units)
    as_of_end = day_end(config.as_of)
    history_day = (config.start - dt.timedelta(days=1)).isoformat()
    days = [(config.start + dt.timedelta(days=i)).isoformat() for i in range(config.days)]
    window = (config.start, config.as_of)

    if source_db_url.startswith("sqlite:///"):
        Path(source_db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(source_db_url)
    S.metadata.drop_all(engine)
    S.metadata.create_all(engine)
    ground_truth_dir.mkdir(parents=True, exist_ok=True)
    dropzone_root.mkdir(parents=True, exist_ok=True)
    manifest_path = ground_truth_dir / "defects.csv"
    dup_path = ground_truth_dir / "duplicate_persons.csv"
    defects: dict[str, int] = {}
    files: dict[str, int] = {}
    census: dict[tuple, int] = {}
    media = None
    if config.media_files:
        from ingest.simulator import media   # written separately; only needed with media files
    for src in ("dicom", "ecg"):
        Dl.reset_day_folders(dropzone_root / src)
    for stale in dropzone_root.glob("legacy_*"):
        if world.legacy_county is None or stale.name != f"legacy_{world.legacy_county}":
            shutil.rmtree(stale)

    with engine.begin() as conn, open(manifest_path, "w", newline="", encoding="utf-8") as mf, \
            open(dup_path, "w", newline="", encoding="utf-8") as df:
        manifest, dups = csv.writer(mf, lineterminator="\n"), csv.writer(df, lineterminator="\n")
        manifest.writerow(["source", "entity", "record_key", "defect", "detail"])
        dups.writerow(["person_key", "source", "record_key"])

        def record_defect(source: str, entity: str, key: str, defect: str, detail: str = "") -> None:
            manifest.writerow([source, entity, key, defect, detail])
            defects[defect] = defects.get(defect, 0) + 1

        sink = Dl.FileSink()
        legacy = (Dl.LegacyWriter(dropzone_root, world.legacy_county, history_day, days, sink, config.seed,
                                  config.defects, record_defect) if world.legacy_county else None)
        fhir = Dl.FhirWriter(dropzone_root, history_day, days, sink, config.seed, config.defects, record_defect)
        w = _Writer(conn, config.chunk_size)
        org_created = f"{config.year - 6}-01-01 09:00:00"
        for u in units:
            w.add(S.org_units, _static({"org_code": u.org_code, "org_name": u.org_name, "org_type": u.org_type,
                                        "level": u.level, "parent_code": u.parent_code, "area_code": u.area_code},
                                       org_created))
        for row in team_rows:
            w.add(S.family_doctor_teams, _static(row, org_created))
        for row in staff_rows:
            w.add(S.staff, _static(row, org_created))
        tables = {t.name: t for t in S.TABLES}
        legacy_source = f"legacy_{world.legacy_county}"

        for seq in range(1, config.residents + 1):
            p = people.make_person(world, seq)
            if p.census_key:
                census[p.census_key] = census.get(p.census_key, 0) + 1
            for rec in p.recs:
                if p.legacy and rec.entity not in CITYWIDE_ENTITIES:
                    if rec.entity not in legacy_spec.EXPORT_BY_ENTITY:
                        continue        # the legacy system keeps it, but does not export it
                    legacy.write(rec)
                    source = legacy_source
                else:
                    state = state_as_of(rec, as_of_end)
                    if state is None:
                        continue
                    values, updated, deleted = state
                    w.add(tables[rec.entity], {**values, "created_at": rec.created, "updated_at": updated,
                                               "is_deleted": deleted})
                    source = "regional"
                    if rec.media and config.media_files and window[0] <= rec.media[1] <= window[1]:
                        _write_media(media, dropzone_root, p, rec, config.seed, record_defect, files)
                for defect, detail in visible_defects(rec, as_of_end):
                    record_defect(source, rec.entity, rec.key, defect, detail)
                if rec.entity in ("residents", "death_registrations") and rec.created <= as_of_end:
                    dups.writerow([p.person_key, source, rec.key])
            for rec in p.fhir:
                fhir.write(rec)
                if rec.created <= as_of_end:
                    for defect, detail in visible_defects(rec, as_of_end):
                        record_defect(Dl.FHIR_SOURCE, rec.entity, rec.key, defect, detail)
                    if rec.entity == "Patient":
                        dups.writerow([p.person_key, Dl.FHIR_SOURCE, rec.key])
            if progress and seq % 1000 == 0:
                progress(seq)
        w.flush_all()
        sink.flush()
        fhir.finish()
        files[Dl.FHIR_SOURCE] = fhir.files()
        if legacy:
            files[legacy_source] = (1 + len(days)) * len(legacy_spec.EXPORTS) + 1
        if progress:
            progress(config.residents)
    engine.dispose()
    files["reference"] = _write_reference(dropzone_root / "reference", units, census, config.year)
    return SimulationSummary(source_db_url, str(manifest_path), dict(w.counts), defects, files, config.as_of,
                             str(dup_path))


def _write_media(media, root: Path, p: people.Person, rec: Rec, seed: int, record_defect, files) -> None:
    kind, day, args = rec.media
    patient = media.PatientIdentity(patient_id=p.resident_id, name=p.name, id_card_no=p.id_card_no, sex=p.sex,
                                    birth_date=p.birth)
    day_dir = root / kind / day.isoformat()
    exam_seed = seed * 1_000_003 + p.seq * 100 + int(rec.key[-2:])
    if kind == "ecg":
        written = media.write_ecg(day_dir, patient, media.EcgExam(**args), exam_seed)
        entity = "ecg_recordings"
    else:
        written = media.write_imaging_exam(day_dir, patient, media.ImagingExam(**args), exam_seed)
        entity = "imaging_exams"
    files[kind] = files.get(kind, 0) + len(written)
    if args.get("defect"):
        record_defect(kind, entity, args["request_id"], args["defect"],
                      ", ".join(Path(f).relative_to(root / kind).as_posix() for f in written))


def _write_reference(ref_dir: Path, units, census: dict, year: int) -> int:
    ref_dir.mkdir(parents=True, exist_ok=True)
    areas = {geography.CITY[0]: (geography.CITY[1], "city", "350000")}
    for u in units:
        if u.level == "county":
            areas.setdefault(u.area_code, (u.area_name, "county", geography.CITY[0]))
        elif u.level == "township":
            areas.setdefault(u.area_code, (u.area_name, "township", u.area_code[:6]))
    Dl.write_csv(ref_dir / "gbt2260_areas.csv", ["code", "name", "level", "parent_code"],
                 ([code, name, level, parent] for code, (name, level, parent) in areas.items()))
    Dl.write_csv(ref_dir / "icd10.csv", ["code", "name_zh"], sorted(C.ICD10.items()))
    Dl.write_csv(ref_dir / "essential_drugs.csv", ["drug_code", "name_zh", "category", "is_antibiotic", "dosage_form"],
                 ([d[0], d[1], d[2], d[3], d[4]] for d in C.DRUGS if d[5]))
    # census (常住人口): the simulated population, scaled by a township's share of unregistered residents
    factor = {}
    for (township, _, _) in sorted(census):
        if township not in factor:
            factor[township] = 1.0 + Dl.unit(year, "census", township) * 0.08
    Dl.write_csv(ref_dir / "census_population.csv", ["year", "area_code", "sex", "age_band", "population"],
                 ([year, t, sex, band, round(n * factor[t])] for (t, sex, band), n in sorted(
                     census.items(), key=lambda kv: (kv[0][0], kv[0][1], _band_start(kv[0][2])))))
    return 4


def _band_start(band: str) -> int:
    return int(band.rstrip("+").split("-")[0])
