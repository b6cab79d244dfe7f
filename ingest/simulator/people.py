"""One resident's life in the sources: every record about them, with its timeline.

Each person draws from their own ``random.Random`` seeded by (city seed, person number), and the
records run over a fixed horizon that does not depend on the number of simulated days; so the
same person has the same records whatever the as-of day, and whatever anybody else drew.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

from ingest.simulator import catalog as C
from ingest.simulator.timeline import Rec
from lakehouse import idcard

D = dt.timedelta
AGE_BANDS = [(a, min(a + 4, 99)) for a in range(0, 85, 5)] + [(85, 99)]
# China 2020 census, share of population by 5-year age band (0–4 … 85+)
AGE_WEIGHTS = [5.7, 6.4, 6.1, 5.3, 5.3, 6.6, 8.8, 7.0, 6.6, 8.0, 8.7, 7.2, 5.2, 5.0, 3.4, 2.2, 1.4, 1.0]
HTN_PREVALENCE = [(18, 0.05), (35, 0.12), (45, 0.25), (55, 0.38), (65, 0.50), (75, 0.58)]
HTN_MANAGED_SHARE = 0.55
DM_PREVALENCE = [(18, 0.02), (35, 0.05), (45, 0.10), (55, 0.15), (65, 0.18), (75, 0.20)]
DM_MANAGED_SHARE = 0.45
MORTALITY = [(0, 0.004), (1, 0.0003), (15, 0.0006), (45, 0.003), (55, 0.007), (65, 0.018),
             (75, 0.05), (85, 0.13)]
FOLLOWUP_TYPES = (("clinic", 60), ("home", 30), ("phone", 10))
ADHERENCE = (("regular", 65), ("intermittent", 25), ("none", 10))


def age_band_label(age: int) -> str:
    return "85+" if age >= 85 else f"{age // 5 * 5}-{age // 5 * 5 + 4}"


def _step(table, x: float) -> float:
    p = 0.0
    for lower, v in table:
        if x >= lower:
            p = v
    return p


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def permute(seq: int, mult: int = 48271, mod: int = 99_999_989) -> int:
    """A bijection of person numbers (< mod) so that identifiers do not reveal the person."""
    return seq * mult % mod


@dataclass
class World:
    """Everything a person's generator may look at: fixed before any person is generated."""
    seed: int
    year: int
    records_start: dt.date
    horizon: dt.date
    rates: object                         # DefectRates
    townships: list                       # geography.OrgUnit
    villages_of: dict
    org_name: dict
    team_of_org: dict                     # village / township org_code → team_id
    doctors_of: dict                      # org_code → [staff_id]
    nurses_of: dict
    team_doctors: dict                    # team_id → [(staff_id, org_code)]
    county_hospital: dict                 # county code → org_code
    reading_org: dict                     # county code → org_code of the remote reading centre
    bulk_doctor: dict                     # county code → (staff_id, org_code)
    legacy_county: str | None
    city_hospital: str
    remote_uptake: float = 1.0            # scales the remote ECG / imaging request rates


@dataclass
class Person:
    seq: int
    person_key: str
    county: str
    township: object
    village: object
    sex: str
    birth: dt.date
    name: str
    id_card_no: str
    phone: str
    address: str
    resident_id: str
    death: dt.date | None = None
    recs: list[Rec] = field(default_factory=list)
    fhir: list[Rec] = field(default_factory=list)
    census_key: tuple | None = None       # (township, sex, age band) when counted mid-year
    legacy: bool = False


def _poisson(r: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(r.gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


class _Gen:
    def __init__(self, w: World, seq: int):
        self.w, self.seq = w, seq
        self.r = random.Random(w.seed * 1_000_003 + seq)
        self.rates = w.rates

    # ---- time helpers ------------------------------------------------------------------------
    def clock(self, day: dt.date, lo: int = 8, hi: int = 17) -> str:
        r = self.r
        return f"{day:%Y-%m-%d} {r.randint(lo, hi):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"

    def recorded(self, day: dt.date, late_ok: bool = True) -> tuple[str, bool]:
        """created_at for an event on ``day``: usually 0–3 days later, late arrivals 10–60."""
        r = self.r
        late = late_ok and r.random() < self.rates.late_arriving
        lag = r.randint(10, 60) if late else r.choices((0, 1, 2, 3), (70, 20, 6, 4))[0]
        return self.clock(day + D(days=lag)), late

    def later(self, ts: str, lo: int, hi: int) -> str:
        day = dt.date.fromisoformat(ts[:10]) + D(days=self.r.randint(lo, hi))
        return self.clock(day)

    def finish(self, p: Person, entity: str, key: str, row: dict, day: dt.date, correct=None,
               late_ok: bool = True, created: str | None = None, can_delete: bool = True) -> Rec:
        """Wrap ``row`` in a record with its timeline (recording lag, correction, deletion)."""
        r = self.r
        late = False
        if created is None:
            created, late = self.recorded(day, late_ok)
        rec = Rec(entity, key, row, created)
        if late:
            rec.add_defect("late_arriving", f"event {day}, recorded {created[:10]}")
        if correct is not None and r.random() < self.rates.corrected:
            rec.corr_at = self.later(created, 1, 30)
            rec.corr = correct(row)
        if can_delete and r.random() < self.rates.deleted:
            rec.del_at = self.later(rec.corr_at or created, 1, 40)
        p.recs.append(rec)
        return rec

    def pick(self, pairs):
        values, weights = zip(*pairs)
        return self.r.choices(values, weights=weights, k=1)[0]

    def where(self, p: Person, village_share: float) -> tuple[str, str]:
        """(org_code, doctor_id) of a primary-care contact: village clinic or township centre."""
        org = p.village.org_code if self.r.random() < village_share else p.township.org_code
        docs = self.w.doctors_of.get(org) or self.w.doctors_of[p.township.org_code]
        return org, self.r.choice(docs)

    def rid(self, p: Person, prefix: str, n: int | str = "") -> str:
        base = f"{prefix}{p.seq:08d}{n}"
        return f"{p.county}{base}" if p.legacy else base


def make_person(w: World, seq: int) -> Person:
    """The person number ``seq`` and all their records."""
    g = _Gen(w, seq)
    r = g.r
    township = w.townships[r.randrange(len(w.townships))]
    village = r.choice(w.villages_of[township.org_code])
    ref = dt.date(w.year, 12, 31)
    low, high = r.choices(AGE_BANDS, weights=AGE_WEIGHTS, k=1)[0]
    age = r.randint(low, high)
    birth = ref - D(days=age * 365 + r.randint(0, 364))
    sex = r.choice("12")
    county = township.area_code[:6]
    legacy = county == w.legacy_county
    name = r.choice(C.SURNAMES) + "".join(r.choice(C.GIVEN_CHARS) for _ in range(r.choice((1, 2, 2))))
    id_no = idcard.make(county, birth, r.randint(0, 999), female=sex == "2")
    phone = f"1{r.choice('3456789')}{r.randint(0, 999_999_999):09d}"
    address = (f"福建省宁德市{township.area_name}"
               f"{village.org_name.removeprefix(township.area_name).removesuffix('卫生室')}{r.randint(1, 200)}号")
    resident_id = f"{county}{permute(seq):08d}" if legacy else f"R{seq:08d}"
    p = Person(seq, f"P{seq:08d}", county, township, village, sex, birth, name, id_no, phone, address,
               resident_id, legacy=legacy)

    # death: annual mortality by age over the simulated span
    span_years = (w.horizon - w.records_start).days / 365
    if r.random() < _step(MORTALITY, age_on(birth, w.records_start)) * span_years:
        first = max(w.records_start, birth)
        if first <= w.horizon:
            p.death = first + D(days=r.randint(0, (w.horizon - first).days))
    mid = dt.date(w.year, 7, 1)
    if birth <= mid and (p.death is None or p.death > mid):
        p.census_key = (township.area_code, sex, age_band_label(age_on(birth, mid)))

    _resident(g, p)
    end = min(w.horizon, p.death) if p.death else w.horizon
    htn = _chronic(g, p, "hypertension", HTN_PREVALENCE, HTN_MANAGED_SHARE, end)
    dm = _chronic(g, p, "diabetes", DM_PREVALENCE, DM_MANAGED_SHARE, end)
    _contracts(g, p, end, htn, dm)
    _elderly_checkups(g, p, end)
    _child(g, p, end)
    _maternal(g, p, end)
    _outpatient(g, p, end, htn, dm)
    _hospital(g, p, end)
    _remote(g, p, end)
    _death(g, p)
    return p


# ---- residents, duplicates, deaths ---------------------------------------------------------------

def _resident(g: _Gen, p: Person) -> None:
    r, w = g.r, g.w
    if p.birth >= w.records_start:
        registered = p.birth + D(days=r.randint(20, 90))
    elif r.random() < 0.02:     # moved in during the simulated span
        registered = w.records_start + D(days=r.randint(0, (w.horizon - w.records_start).days))
    else:
        registered = max(p.birth, dt.date(w.year - 8, 1, 1)) + D(days=r.randint(0, 2000))
        registered = min(registered, w.records_start - D(days=r.randint(1, 180)))
    id_no = p.id_card_no
    bad_id = r.random() < g.rates.bad_id_check_digit
    if bad_id:
        id_no = id_no[:17] + r.choice([c for c in idcard.CHECK_CHARS if c != id_no[17]])
    reg_org = p.village.org_code if r.random() < 0.4 else p.township.org_code
    row = {"resident_id": p.resident_id, "id_card_no": id_no, "name": p.name, "sex": p.sex,
           "birth_date": p.birth.isoformat(), "phone": p.phone, "address": p.address,
           "area_code": p.township.area_code, "org_code": reg_org}
    new_phone = f"1{r.choice('3456789')}{r.randint(0, 999_999_999):09d}"
    rec = g.finish(p, "residents", p.resident_id, row, registered, late_ok=False,
                   correct=lambda _: {"phone": new_phone}, can_delete=False)
    if bad_id:
        rec.add_defect("bad_id_check_digit", f"{id_no}")
    if r.random() < 0.88:   # most residents have an electronic health archive
        archive_org, doctor = g.where(p, 0.6)
        archive_no = f"{p.township.area_code}{p.seq:08d}"
        g.finish(p, "health_archives", archive_no,
                 {"archive_no": archive_no, "resident_id": p.resident_id, "org_code": archive_org,
                  "created_date": registered.isoformat(), "doctor_id": doctor},
                 registered, late_ok=False, created=rec.created)
    if r.random() < g.rates.duplicate_person_name_variant:
        # registered a second time at another institution, with a clerk's variant of the name
        others = [t for t in w.townships if t.area_code[:6] == p.county and t is not p.township] or [p.township]
        other = r.choice(others)
        chars = list(p.name)
        i = r.randrange(1, len(chars))
        chars[i] = C.NAME_VARIANTS.get(chars[i], "小")
        variant = "".join(chars)
        dup_no = r.choice((None, None, p.id_card_no))
        dup_day = registered + D(days=r.randint(30, 900))
        n = permute(p.seq, 69621, 99_999_989)
        dup_id = f"{p.county}9{n:08d}" if p.legacy else f"R9{n:08d}"
        dup = g.finish(p, "residents", dup_id,
                       {**row, "resident_id": dup_id, "id_card_no": dup_no, "name": variant,
                        "org_code": other.org_code,
                        "phone": r.choice((p.phone, None)), "address": f"福建省宁德市{other.area_name}"},
                       min(dup_day, w.horizon), late_ok=False, can_delete=False)
        dup.add_defect("duplicate_person_name_variant", f"of {p.resident_id}: {p.name}→{variant}")


def _death(g: _Gen, p: Person) -> None:
    if p.death is None:
        return
    r = g.r
    reported = p.death + D(days=r.randint(1, 20))
    age = age_on(p.birth, p.death)
    cause = r.choice(("I63.9", "I25.1", "C34.9", "J44.9", "C16.9", "R99")) if age >= 45 else r.choice(("S82.0", "R99"))
    death_id = f"SW{p.county}{permute(p.seq, 16807):08d}"
    g.finish(p, "death_registrations", death_id,
             {"death_id": death_id, "id_card_no": p.id_card_no, "name": p.name, "sex": p.sex,
              "birth_date": p.birth.isoformat(), "death_date": p.death.isoformat(), "cause_icd10": cause,
              "death_place": g.pick((("hospital", 45), ("home", 50), ("other", 5))),
              "area_code": p.township.area_code, "reported_by": f"MZ{p.county}",
              "reported_date": reported.isoformat()},
             reported, late_ok=False, created=g.clock(reported), can_delete=False)


# ---- chronic disease management ------------------------------------------------------------------

@dataclass
class _Chronic:
    registry_id: str
    registered: dt.date


def _chronic(g: _Gen, p: Person, disease: str, prevalence, managed: float, end: dt.date):
    r, w = g.r, g.w
    age = age_on(p.birth, dt.date(w.year, 12, 31))
    if age < 18 or r.random() >= _step(prevalence, age) * managed:
        return None
    adult = dt.date(p.birth.year + 18, p.birth.month, min(p.birth.day, 28))
    registered = max(w.records_start + D(days=r.randint(-1500, 700)), adult)
    if registered > end:
        return None
    prefix = "HR" if disease == "hypertension" else "DR"
    registry_id = g.rid(p, prefix)
    org, doctor = g.where(p, 0.3)
    diag = max(registered - D(days=r.randint(0, 900)), adult)
    g.finish(p, f"{disease}_registry", registry_id,
             {"registry_id": registry_id, "resident_id": p.resident_id, "org_code": org, "doctor_id": doctor,
              "diagnosed_date": diag.isoformat(), "registered_date": registered.isoformat()},
             registered, correct=lambda row: {"diagnosed_date": (diag - D(days=r.randint(30, 400))).isoformat()})
    _followups(g, p, disease, registry_id, registered, end, doctor)
    return _Chronic(registry_id, registered)


def _followups(g: _Gen, p: Person, disease: str, registry_id: str, registered: dt.date,
               end: dt.date, doctor: str) -> None:
    r, w, rates = g.r, g.w, g.rates
    dm = disease == "diabetes"
    compliant = r.random() < 0.72
    base_sbp = r.gauss(142, 12) if not dm else r.gauss(134, 12)
    base_dbp = min(r.gauss(86, 8), base_sbp - 30)
    base_glu = r.gauss(7.6, 1.4)
    weight = r.gauss(66 if p.sex == "1" else 58, 9)
    adherence = g.pick(ADHERENCE)
    copy_from = r.randint(1, 3) if r.random() < rates.copied_followup else None
    haunted = p.death is not None and r.random() < rates.followup_after_death
    stop = end if not haunted else min(w.horizon, p.death + D(days=r.randint(60, 200)))
    day = max(registered, w.records_start) + D(days=r.randint(7, 60))
    n, template = 0, None
    prefix = "HF" if not dm else "DF"
    table = f"{disease}_followups"
    while day <= stop:
        n += 1
        interval = r.randint(75, 95) if compliant else r.randint(100, 200)
        next_day = day + D(days=interval)
        org, doc = g.where(p, 0.45)
        if r.random() < 0.5:
            doc = doctor if doctor in w.doctors_of.get(org, ()) else doc
        effect = {"regular": 12, "intermittent": 6, "none": 0}[adherence]
        sbp = int(r.gauss(base_sbp - effect, 9))
        dbp = int(min(r.gauss(base_dbp - effect / 2, 6), sbp - 20))
        glu = round(max(3.5, r.gauss(base_glu - effect / 10, 1.0)), 1)
        wt = round(weight + r.gauss(0, 1.2), 1)
        controlled = sbp < 140 and dbp < 90 and (not dm or glu < 7.0)
        cls = "控制满意" if controlled else "控制不满意"
        u = r.random()
        cls = "不良反应" if u < 0.02 else "并发症" if u < 0.05 else cls
        values = {"sbp_mmhg": sbp, "dbp_mmhg": dbp, "weight_kg": wt, "medication_adherence": adherence,
                  "classification": cls}
        if dm:
            values["fasting_glucose_mmol"] = glu
        else:
            values["heart_rate_bpm"] = int(r.gauss(76, 8))
        copied = False
        if copy_from is not None and n >= copy_from:
            if template is None:
                template = values
            else:
                values, copied = dict(template), True
        fu_type = g.pick(FOLLOWUP_TYPES)
        event, bulk = day, False
        if r.random() < rates.implausible_daily_workload:
            # catch-up entry by one doctor at the end of the quarter
            q_end_month = (day.month - 1) // 3 * 3 + 3
            q_end = dt.date(day.year, q_end_month, 31 if q_end_month in (3, 12) else 30)
            if q_end <= w.horizon:
                event, bulk = q_end, True
                doc, org = w.bulk_doctor[p.county]
        vital_bad = r.random() < rates.impossible_vitals
        date_bad = r.random() < rates.impossible_followup_date
        future = r.random() < rates.future_date
        followup_id = g.rid(p, prefix, f"{n:03d}")
        row = {"followup_id": followup_id, "registry_id": registry_id, "resident_id": p.resident_id,
               "org_code": org, "doctor_id": doc, "followup_date": event.isoformat(), "followup_type": fu_type,
               **values, "next_followup_date": next_day.isoformat()}
        detail_vitals = None
        if vital_bad:
            kind = r.choice(("sbp", "dbp", "glu") if dm else ("sbp", "dbp"))
            if kind == "sbp":
                row["sbp_mmhg"] = r.choice((0, 310, 420, 1400))
            elif kind == "dbp":
                row["dbp_mmhg"] = row["sbp_mmhg"] + r.randint(5, 40)
            else:
                row["fasting_glucose_mmol"] = r.choice((0.0, 85.0, 120.5))
            detail_vitals = f"sbp {row['sbp_mmhg']} dbp {row['dbp_mmhg']}" + (
                f" glucose {row['fasting_glucose_mmol']}" if dm else "")
        rec = g.finish(p, table, followup_id, row, event,
                       correct=lambda row: {"sbp_mmhg": row["sbp_mmhg"] + r.choice((-10, -6, -4, 4, 6, 10))})
        if date_bad:
            row["followup_date"] = f"{event:%Y}-02-30" if r.random() < 0.5 else f"{event:%Y}-13-{event:%d}"
            rec.add_defect("impossible_date", f"followup_date {row['followup_date']}")
        elif future:
            row["followup_date"] = _next_year(event).isoformat()
            rec.add_defect("future_date", f"followup_date {row['followup_date']} after created_at {rec.created[:10]}")
        if detail_vitals:
            rec.add_defect("impossible_vitals", detail_vitals)
        if copied:
            rec.add_defect("copied_followup", f"values identical to follow-up {copy_from} of {registry_id}")
        if bulk:
            rec.add_defect("implausible_daily_workload", f"doctor {doc} on {event}")
        if p.death is not None and event > p.death:
            rec.add_defect("followup_after_death", f"died {p.death}")
        day = next_day


def _next_year(day: dt.date) -> dt.date:
    return day.replace(year=day.year + 1, day=min(day.day, 28))


# ---- contracts, elderly, children, mothers -------------------------------------------------------

def _contracts(g: _Gen, p: Person, end: dt.date, htn, dm) -> None:
    r, w = g.r, g.w
    team = w.team_of_org.get(p.village.org_code) or w.team_of_org.get(p.township.org_code)
    for y in (w.year - 1, w.year):
        signed = dt.date(y, 1, 2) + D(days=int(abs(r.gauss(0, 45))))
        if signed > end or signed < p.birth:
            continue
        age = age_on(p.birth, signed)
        flags = {"is_elderly": int(age >= 65), "is_hypertension": int(bool(htn and htn.registered <= signed)),
                 "is_diabetes": int(bool(dm and dm.registered <= signed)), "is_child": int(age <= 6),
                 "is_pregnant": 0, "is_disabled": int(r.random() < 0.02), "is_poverty": int(r.random() < 0.03)}
        key_pop = any(flags.values())
        if r.random() >= (0.72 if key_pop else 0.28):
            continue
        doc, org = r.choice(w.team_doctors[team])
        contract_id = g.rid(p, "QY", y)
        fee = r.choice((0.0, 0.0, 30.0, 60.0, 120.0))
        g.finish(p, "family_doctor_contracts", contract_id,
                 {"contract_id": contract_id, "resident_id": p.resident_id, "team_id": team, "org_code": org,
                  "doctor_id": doc, "signed_date": signed.isoformat(), "start_date": signed.isoformat(),
                  "end_date": (signed + D(days=364)).isoformat(), **flags,
                  "fee_yuan": fee},
                 signed, correct=lambda row: {"fee_yuan": 0.0 if row["fee_yuan"] else 30.0})


def _vitals_defect(g: _Gen, rec: Rec, row: dict) -> None:
    if g.r.random() < g.rates.impossible_vitals:
        col = g.r.choice(("sbp_mmhg", "weight_kg", "height_cm"))
        if col not in row:
            col = "weight_kg"
        row[col] = {"sbp_mmhg": 400, "weight_kg": 0.0, "height_cm": 350.0}[col]
        rec.add_defect("impossible_vitals", f"{col} {row[col]}")


def _elderly_checkups(g: _Gen, p: Person, end: dt.date) -> None:
    r, w = g.r, g.w
    for y in (w.year - 1, w.year):
        if age_on(p.birth, dt.date(y, 12, 31)) < 65 or r.random() >= 0.62:
            continue
        day = dt.date(y, 3, 1) + D(days=r.randint(0, 260))
        if day > end:
            continue
        org, doc = g.where(p, 0.15)
        height = round(r.gauss(163 if p.sex == "1" else 153, 6), 1)
        weight = round(r.gauss(63 if p.sex == "1" else 55, 9), 1)
        sbp = int(r.gauss(138, 16))
        key = g.rid(p, "TJ", y)
        row = {"checkup_id": key, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
               "checkup_date": day.isoformat(), "height_cm": height, "weight_kg": weight, "sbp_mmhg": sbp,
               "dbp_mmhg": int(min(r.gauss(80, 9), sbp - 25)),
               "fasting_glucose_mmol": round(max(3.6, r.gauss(6.0, 1.3)), 1),
               "has_ecg": int(r.random() < 0.8), "has_ultrasound": int(r.random() < 0.7),
               "conclusion": "异常" if r.random() < 0.45 else "正常"}
        rec = g.finish(p, "elderly_checkups", key, row, day,
                       correct=lambda row: {"weight_kg": round(row["weight_kg"] + 1.0, 1)})
        _vitals_defect(g, rec, row)


def _growth(age_months: int, sex: str, r: random.Random) -> tuple[float, float]:
    if age_months <= 24:
        h = 50 + 2.1 * min(age_months, 12) + 1.0 * max(age_months - 12, 0)
        wt = 3.3 + 0.55 * min(age_months, 12) + 0.2 * max(age_months - 12, 0)
    else:
        h = 87 + 0.55 * (age_months - 24)
        wt = 12.3 + 0.17 * (age_months - 24)
    k = 1.02 if sex == "1" else 0.98
    return round(r.gauss(h * k, 2.5), 1), round(r.gauss(wt * k, wt * 0.1), 1)


def _child(g: _Gen, p: Person, end: dt.date) -> None:
    r, w = g.r, g.w
    if p.birth > end or age_on(p.birth, w.records_start) > 6:
        return
    for m in C.CHILD_CHECK_MONTHS:
        day = p.birth + D(days=int(m * 30.4) + r.randint(-5, 15))
        if r.random() >= 0.9 or not (w.records_start <= day <= end):
            continue
        org, doc = g.where(p, 0.1)
        h, wt = _growth(m, p.sex, r)
        key = g.rid(p, "ET", f"{m:02d}")
        row = {"check_id": key, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
               "check_date": day.isoformat(), "age_months": m, "height_cm": h, "weight_kg": wt,
               "hemoglobin_g_l": int(r.gauss(120, 10)) if m in (6, 8, 12, 18, 24, 36) else None,
               "development": "suspect" if r.random() < 0.04 else "normal"}
        rec = g.finish(p, "child_health_checks", key, row, day,
                       correct=lambda row: {"height_cm": round(row["height_cm"] + 1.0, 1)})
        _vitals_defect(g, rec, row)
    vacc_org = p.township.org_code
    for i, (code, vname, dose, age_days) in enumerate(C.NIP_SCHEDULE):
        day = p.birth + D(days=age_days + (r.randint(0, 1) if age_days == 0 else r.randint(0, 25)))
        if r.random() >= 0.96 or not (w.records_start <= day <= end):
            continue
        key = g.rid(p, "YM", f"{i:02d}")
        nurse = r.choice(w.nurses_of[vacc_org])
        g.finish(p, "immunizations", key,
                 {"immunization_id": key, "resident_id": p.resident_id, "org_code": vacc_org, "staff_id": nurse,
                  "vaccine_code": code, "vaccine_name": vname, "dose_no": dose, "vaccinated_date": day.isoformat(),
                  "lot_no": f"{day.year}{r.randint(0, 999999):06d}"},
                 day, correct=lambda row: {"lot_no": row["lot_no"][:-1] + str((int(row["lot_no"][-1]) + 1) % 10)})


def _maternal(g: _Gen, p: Person, end: dt.date) -> None:
    r, w = g.r, g.w
    if p.sex != "2":
        return
    age = age_on(p.birth, w.records_start)
    rate = 0.06 if 20 <= age <= 34 else 0.025 if 35 <= age <= 42 else 0.0
    span = (end - w.records_start).days + 280
    if span <= 0 or r.random() >= rate * span / 365:
        return
    lmp = w.records_start - D(days=280) + D(days=r.randint(0, span))
    reg_week = r.randint(8, 13) if r.random() < 0.88 else r.randint(14, 24)
    registered = lmp + D(weeks=reg_week, days=r.randint(0, 6))
    if registered > end:
        return
    org, doc = g.where(p, 0.0)
    preg_id = g.rid(p, "YC")
    g.finish(p, "pregnancy_registrations", preg_id,
             {"pregnancy_id": preg_id, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
              "registered_date": registered.isoformat(), "last_menstrual_date": lmp.isoformat(),
              "gestational_weeks": reg_week, "expected_delivery_date": (lmp + D(days=280)).isoformat()},
             registered, correct=lambda row: {"gestational_weeks": row["gestational_weeks"] + 1})
    weeks = [reg_week] + [wk for wk in (r.randint(16, 20), r.randint(21, 24), r.randint(28, 36), r.randint(37, 40))
                          if wk > reg_week and r.random() < 0.9]
    for n, wk in enumerate(weeks, start=1):
        day = lmp + D(weeks=wk, days=r.randint(0, 6))
        if day > end or day < w.records_start:
            continue
        org, doc = g.where(p, 0.0)
        key = g.rid(p, "CJ", n)
        sbp = int(r.gauss(112, 10))
        row = {"visit_id": key, "pregnancy_id": preg_id, "resident_id": p.resident_id, "org_code": org,
               "doctor_id": doc, "visit_date": day.isoformat(), "gestational_weeks": wk, "sbp_mmhg": sbp,
               "dbp_mmhg": int(min(r.gauss(72, 8), sbp - 25)), "weight_kg": round(r.gauss(58 + wk * 0.3, 7), 1),
               "hemoglobin_g_l": int(r.gauss(118, 11))}
        rec = g.finish(p, "prenatal_visits", key, row, day,
                       correct=lambda row: {"weight_kg": round(row["weight_kg"] + 0.5, 1)})
        _vitals_defect(g, rec, row)
    delivery = lmp + D(days=r.randint(266, 290))
    outcome = "live_birth" if r.random() < 0.995 else "stillbirth"
    for n, lag in ((1, r.randint(3, 7)), (2, r.randint(42, 49))):
        day = delivery + D(days=lag)
        if day > end or day < w.records_start or r.random() >= (0.92 if n == 1 else 0.8):
            continue
        org, doc = g.where(p, 0.3)
        key = g.rid(p, "CH", n)
        g.finish(p, "postpartum_visits", key,
                 {"visit_id": key, "pregnancy_id": preg_id, "resident_id": p.resident_id, "org_code": org,
                  "doctor_id": doc, "delivery_date": delivery.isoformat(), "visit_date": day.isoformat(),
                  "delivery_outcome": outcome}, day)


# ---- outpatient, inpatient, referrals ------------------------------------------------------------

def _visit_rate(age: int) -> float:
    return 2.0 if age <= 6 else 0.7 if age < 45 else 1.3 if age < 65 else 2.4


def _record_span(w, p: Person, end: dt.date) -> tuple[dt.date, int, int] | None:
    """``(first day, days until end, age on 1 January)`` of a person's records up to ``end``, or
    None when the person's records start after ``end``."""
    first = max(w.records_start, p.birth)
    if first > end:
        return None
    return first, (end - first).days, age_on(p.birth, dt.date(w.year, 1, 1))


def _outpatient(g: _Gen, p: Person, end: dt.date, htn, dm) -> None:
    r, w = g.r, g.w
    span = _record_span(w, p, end)
    if span is None:
        return
    first, days, age = span
    lam = (_visit_rate(age) + (1.5 if htn else 0) + (1.5 if dm else 0)) * days / 365
    dates = sorted(first + D(days=r.randint(0, days)) for _ in range(_poisson(r, lam)))
    group = "child" if age <= 14 else "adult" if age < 65 else "elderly"
    for n, day in enumerate(dates, start=1):
        u = r.random()
        dx = "I10" if htn and u < 0.4 else "E11.9" if dm and u < 0.7 else g.pick(C.VISIT_DX[group])
        org, doc = g.where(p, 0.55)
        visit_id = g.rid(p, "MZ", f"{n:03d}")
        items = [(code, qty, iv, round(C.DRUG_BY_CODE[code][6] * qty, 2)) for code, qty, iv in _prescribe(g, dx, age)]
        fee = round(10.0 + sum(i[3] for i in items) + (r.choice((0, 0, 20, 35)) if items else 0), 2)
        future = r.random() < g.rates.future_date
        row = {"visit_id": visit_id, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
               "visit_date": day.isoformat(), "diagnosis_code": dx, "diagnosis_name": C.ICD10[dx], "fee_yuan": fee}
        rec = g.finish(p, "outpatient_visits", visit_id, row, day,
                       correct=lambda row: {"fee_yuan": round(row["fee_yuan"] + 5.0, 2)})
        if future:
            row["visit_date"] = _next_year(day).isoformat()
            rec.add_defect("future_date", f"visit_date {row['visit_date']} after created_at {rec.created[:10]}")
        for i, (code, qty, iv, amount) in enumerate(items, start=1):
            drug = C.DRUG_BY_CODE[code]
            key = f"{visit_id}{i:02d}"
            g.finish(p, "prescriptions", key,
                     {"prescription_id": key, "visit_id": visit_id, "resident_id": p.resident_id, "org_code": org,
                      "doctor_id": doc, "prescribed_date": day.isoformat(), "drug_code": code, "drug_name": drug[1],
                      "is_essential_drug": drug[5], "is_antibiotic": drug[3], "is_iv_infusion": iv,
                      "quantity": qty, "amount_yuan": amount},
                     day, created=rec.created, can_delete=False)


def _prescribe(g: _Gen, dx: str, age: int) -> list[tuple[str, int, int]]:
    r = g.r
    if dx == "Z00.0" or r.random() < 0.15:
        return []
    items: list[tuple[str, int, int]] = []
    if dx == "I10":
        items.append((r.choice(C.ANTIHYPERTENSIVES), r.choice((14, 28, 30)), 0))
        if r.random() < 0.3:
            items.append(("XB01ACA009", 30, 0))
    elif dx.startswith("E11"):
        items.append((r.choice(C.ANTIDIABETICS), r.choice((1, 28, 30)), 0))
    elif dx in C.RESPIRATORY_INFECTION:
        if r.random() < 0.42:
            if r.random() < 0.2:
                items.append((r.choice(("XJ01DDA015", "XJ01DBA016")), r.randint(1, 3), 1))
                items.append(("XB05BBA017", r.randint(1, 3), 1))
            else:
                items.append((r.choice(C.ORAL_ANTIBIOTICS), r.choice((6, 12, 18)), 0))
    for code in r.sample(C.SYMPTOMATIC.get(dx[0], ["XN02BEA018"]), k=1):
        if all(code != c for c, _, _ in items):
            items.append((code, r.choice((1, 10, 12, 20)), 0))
    return items


def _hospital(g: _Gen, p: Person, end: dt.date) -> None:
    r, w = g.r, g.w
    span = _record_span(w, p, end)
    if span is None:
        return
    first, days, age = span
    old = age >= 65
    stays = [("township", (0.04 if old else 0.012)), ("county", (0.07 if old else 0.025))]
    n_ref = 0
    for level, rate in stays:
        for n in range(1, _poisson(r, rate * days / 365) + 1):
            adm = first + D(days=r.randint(0, days))
            los = r.randint(3, 12)
            org = p.township.org_code if level == "township" else w.county_hospital[p.county]
            docs = w.doctors_of[org]
            dx = g.pick(C.HOSPITAL_DX)
            stay_id = g.rid(p, "ZY" + level[0].upper(), n)
            dis = adm + D(days=los)
            g.finish(p, "inpatient_stays", stay_id,
                     {"stay_id": stay_id, "resident_id": p.resident_id, "org_code": org, "doctor_id": r.choice(docs),
                      "admission_date": adm.isoformat(), "discharge_date": dis.isoformat(), "diagnosis_code": dx,
                      "diagnosis_name": C.ICD10[dx],
                      "total_cost_yuan": round(r.uniform(1500, 5000) if level == "township" else r.uniform(4000, 20000), 2)},
                     dis, correct=lambda row: {"total_cost_yuan": round(row["total_cost_yuan"] * 1.05, 2)})
            if level == "county":
                if r.random() < 0.3:
                    n_ref += 1
                    _referral(g, p, n_ref, "up", p.township.org_code, org, adm - D(days=r.randint(0, 2)), dx)
                if r.random() < 0.2 and dis <= end:
                    n_ref += 1
                    _referral(g, p, n_ref, "down", org, p.township.org_code, dis, dx)
    _city_hospital(g, p, first, end, days, old, n_ref)


def _referral(g: _Gen, p: Person, n: int, direction: str, src: str, dst: str, day: dt.date, dx: str) -> None:
    key = g.rid(p, "ZZ", n)
    docs = g.w.doctors_of.get(src) or g.w.doctors_of[g.w.county_hospital[p.county]]
    g.finish(p, "referrals", key,
             {"referral_id": key, "resident_id": p.resident_id, "direction": direction, "from_org_code": src,
              "to_org_code": dst, "doctor_id": g.r.choice(docs), "referral_date": day.isoformat(), "reason_code": dx},
             day)


# ---- the city hospital (FHIR) --------------------------------------------------------------------

ID_CARD_SYSTEM = "urn:oid:2.16.156.10011.1.5.1.6"
MRN_SYSTEM = "urn:oid:2.16.156.10011.1.12.CH350900"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
DRUG_SYSTEM = "urn:oid:2.16.156.10011.2.5.1.27"
UCUM = "http://unitsofmeasure.org"


def fhir_instant(ts: str) -> str:
    return f"{ts[:10]}T{ts[11:]}+08:00"


def _city_hospital(g: _Gen, p: Person, first: dt.date, end: dt.date, days: int, old: bool, n_ref: int) -> None:
    r, w = g.r, g.w
    n_amb = _poisson(r, (0.2 if old else 0.08) * days / 365)
    n_imp = _poisson(r, (0.04 if old else 0.008) * days / 365)
    if not n_amb + n_imp:
        return
    mrn = f"{(p.seq * 7919 + 104729) % 10**9:09d}"
    pid = f"pat{mrn}"
    encounters = sorted([(first + D(days=r.randint(0, days)), "AMB") for _ in range(n_amb)]
                        + [(first + D(days=r.randint(0, days)), "IMP") for _ in range(n_imp)])
    patient_created = None
    ref = f"Patient/{pid}"
    for n, (day, cls) in enumerate(encounters, start=1):
        eid = f"enc{mrn}{n:02d}"
        los = r.randint(3, 14) if cls == "IMP" else 0
        start_ts = g.clock(day, 7, 16)
        end_ts = g.clock(day + D(days=los), 9, 18) if cls == "IMP" else start_ts[:11] + f"{min(int(start_ts[11:13]) + 1, 23):02d}" + start_ts[13:]
        created = g.later(end_ts, 0, 1)
        if patient_created is None:
            patient_created = start_ts
        dx = g.pick(C.HOSPITAL_DX)
        enc = {"resourceType": "Encounter", "id": eid, "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls,
                         "display": "ambulatory" if cls == "AMB" else "inpatient encounter"},
               "subject": {"reference": ref},
               "period": {"start": fhir_instant(start_ts), "end": fhir_instant(end_ts)},
               "serviceProvider": {"reference": f"Organization/{w.city_hospital}",
                                   "display": w.org_name[w.city_hospital]}}
        g.finish(p, "Encounter", eid, enc, day, created=created, can_delete=False,
                        correct=lambda res: {"status": "finished", "period": {
                            "start": res["period"]["start"], "end": fhir_instant(g.later(end_ts, 0, 1))}})
        p.fhir.append(p.recs.pop())
        eref = {"reference": f"Encounter/{eid}"}
        cond = {"resourceType": "Condition", "id": f"con{mrn}{n:02d}",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": ICD10_SYSTEM, "code": dx, "display": C.ICD10[dx]}], "text": C.ICD10[dx]},
                "subject": {"reference": ref}, "encounter": eref, "recordedDate": fhir_instant(start_ts)}
        g.finish(p, "Condition", cond["id"], cond, day, created=created)
        p.fhir.append(p.recs.pop())
        for i in range(1, r.choice((0, 1, 1, 2, 3)) + 1):
            drug = C.DRUG_BY_CODE[r.choice([d[0] for d in C.DRUGS])]
            mr = {"resourceType": "MedicationRequest", "id": f"med{mrn}{n:02d}{i}", "status": "completed",
                  "intent": "order",
                  "medicationCodeableConcept": {"coding": [{"system": DRUG_SYSTEM, "code": drug[0], "display": drug[1]}],
                                                "text": drug[1]},
                  "subject": {"reference": ref}, "encounter": eref, "authoredOn": fhir_instant(start_ts),
                  "dosageInstruction": [{"text": "遵医嘱"}]}
            g.finish(p, "MedicationRequest", mr["id"], mr, day, created=created)
            p.fhir.append(p.recs.pop())
        if r.random() < 0.6:
            sbp, dbp = int(r.gauss(135, 16)), int(r.gauss(82, 10))
            obs = {"resourceType": "Observation", "id": f"obp{mrn}{n:02d}", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                             "code": "vital-signs"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
                   "subject": {"reference": ref}, "encounter": eref, "effectiveDateTime": fhir_instant(start_ts),
                   "component": [
                       {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                        "valueQuantity": {"value": sbp, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                       {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                        "valueQuantity": {"value": min(dbp, sbp - 20), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}]}
            g.finish(p, "Observation", obs["id"], obs, day, created=created)
            p.fhir.append(p.recs.pop())
        if r.random() < 0.25:
            obs = {"resourceType": "Observation", "id": f"ogl{mrn}{n:02d}", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                             "code": "laboratory"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "1558-6", "display": "Fasting glucose"}]},
                   "subject": {"reference": ref}, "encounter": eref, "effectiveDateTime": fhir_instant(start_ts),
                   "valueQuantity": {"value": round(max(3.5, r.gauss(6.4, 1.6)), 1), "unit": "mmol/L",
                                     "system": UCUM, "code": "mmol/L"}}
            g.finish(p, "Observation", obs["id"], obs, day, created=created)
            p.fhir.append(p.recs.pop())
        if cls == "IMP" and r.random() < 0.2:
            n_ref += 1
            _referral(g, p, n_ref, "up", p.township.org_code, w.city_hospital, day - D(days=r.randint(0, 2)), dx)
    no_id = r.random() < 0.03
    identifiers = ([] if no_id else [{"system": ID_CARD_SYSTEM, "value": p.id_card_no}]) + [
        {"system": MRN_SYSTEM, "value": mrn, "type": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}]
    patient = {"resourceType": "Patient", "id": pid, "identifier": identifiers,
               "name": [{"use": "official", "text": p.name, "family": p.name[0], "given": [p.name[1:]]}],
               "gender": "male" if p.sex == "1" else "female", "birthDate": p.birth.isoformat(),
               "telecom": [{"system": "phone", "value": p.phone, "use": "mobile"}],
               "address": [{"use": "home", "text": p.address, "state": "福建省", "city": "宁德市"}],
               "managingOrganization": {"reference": f"Organization/{w.city_hospital}"}}
    rec = Rec("Patient", pid, patient, patient_created)
    p.fhir.insert(0, rec)


# ---- remote ECG and imaging ----------------------------------------------------------------------

def _remote(g: _Gen, p: Person, end: dt.date) -> None:
    r, w = g.r, g.w
    span = _record_span(w, p, end)
    if span is None:
        return
    first, days, age = span
    ecg_rate = (0.0 if age < 14 else 0.02 if age < 40 else 0.06 if age < 65 else 0.12) * w.remote_uptake
    img_rate = (0.02 if age < 14 else 0.05 if age < 45 else 0.10) * w.remote_uptake
    reading = w.reading_org[p.county]
    readers = w.doctors_of[reading]
    for n in range(1, _poisson(r, ecg_rate * days / 365) + 1):
        day = first + D(days=r.randint(0, days))
        org, doc = g.where(p, 0.2)
        requested = g.clock(day, 8, 16)
        t0 = dt.datetime.fromisoformat(requested)
        recorded = t0 + D(minutes=r.randint(2, 30))
        overdue = r.random() < 0.06
        reported = recorded + (D(hours=r.randint(26, 72)) if overdue else D(minutes=r.randint(10, 360)))
        rhythm = g.pick(C.ECG_RHYTHMS)
        hr = {"sinus": r.randint(60, 95), "brady": r.randint(40, 55), "tachy": r.randint(105, 150),
              "afib": r.randint(70, 130), "pvc": r.randint(60, 95), "pause": r.randint(45, 70)}[rhythm]
        fmt = "dicom" if r.random() < 0.6 else "wfdb"
        u = r.random()
        defect = ("flatline_ecg" if u < g.rates.flatline_ecg
                  else "truncated_ecg" if u < g.rates.flatline_ecg + g.rates.truncated_ecg else None)
        noise = round(r.uniform(0.01, 0.08), 3)
        key = g.rid(p, "XD", f"{n:02d}")
        rec = g.finish(p, "ecg_requests", key,
                       {"request_id": key, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
                        "reading_org_code": reading, "requested_at": requested, "recorded_at": f"{recorded:%Y-%m-%d %H:%M:%S}",
                        "file_format": fmt},
                       day, created=requested, can_delete=False)
        rec.media = ("ecg", recorded.date(), dict(request_id=key, org_code=org, institution_name=w.org_name[org],
                                                   recorded_at=recorded, rhythm=rhythm, heart_rate=hr, noise=noise,
                                                   file_format=fmt, defect=defect))
        rep = f"{key}R"
        g.finish(p, "ecg_reports", rep,
                 {"report_id": rep, "request_id": key, "reading_org_code": reading, "reader_id": r.choice(readers),
                  "reported_at": f"{reported:%Y-%m-%d %H:%M:%S}", "rhythm": rhythm, "heart_rate_bpm": hr,
                  "conclusion": C.ECG_CONCLUSION[rhythm]},
                 reported.date(), created=f"{reported:%Y-%m-%d %H:%M:%S}", can_delete=False)
    for n in range(1, _poisson(r, img_rate * days / 365) + 1):
        day = first + D(days=r.randint(0, days))
        org, doc = g.where(p, 0.0)
        requested = g.clock(day, 8, 16)
        t0 = dt.datetime.fromisoformat(requested)
        received = t0 + D(minutes=r.randint(10, 120))
        overdue = r.random() < 0.06
        reported = received + (D(hours=r.randint(50, 120)) if overdue else D(minutes=r.randint(30, 24 * 60)))
        modality = g.pick(C.MODALITIES)
        body = r.choice(C.BODY_PARTS[modality])
        accession = f"A{reading[-4:]}{permute(p.seq, 16807):08d}{n:02d}"   # DICOM SH: ≤ 16 chars
        defect = "truncated_dicom" if r.random() < g.rates.truncated_dicom else None
        key = g.rid(p, "YX", f"{n:02d}")
        rec = g.finish(p, "imaging_requests", key,
                       {"request_id": key, "resident_id": p.resident_id, "org_code": org, "doctor_id": doc,
                        "reading_org_code": reading, "accession_no": accession, "modality": modality,
                        "body_part": body, "requested_at": requested,
                        "images_received_at": f"{received:%Y-%m-%d %H:%M:%S}"},
                       day, created=requested, can_delete=False)
        rec.media = ("dicom", received.date(), dict(accession_no=accession, request_id=key, org_code=org,
                                                     institution_name=w.org_name[org], modality=modality,
                                                     body_part=body, study_datetime=t0 + D(minutes=5), defect=defect))
        rep = f"{key}R"
        g.finish(p, "imaging_reports", rep,
                 {"report_id": rep, "request_id": key, "reading_org_code": reading, "reader_id": r.choice(readers),
                  "reported_at": f"{reported:%Y-%m-%d %H:%M:%S}", "findings": f"{body} {modality} 检查",
                  "impression": r.choice(C.IMAGING_IMPRESSIONS)},
                 reported.date(), created=f"{reported:%Y-%m-%d %H:%M:%S}", can_delete=False)
