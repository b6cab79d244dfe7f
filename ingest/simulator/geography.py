"""The simulated city's org-unit tree, under real GB/T 2260 county codes.

The prefecture and county codes are real (宁德市, Fujian) so area codes validate; township and
village names are made up from common place-name parts, deterministically from the seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

CITY = ("350900", "宁德市")
COUNTIES = (
    ("350902", "蕉城区", "district"),
    ("350921", "霞浦县", "county"),
    ("350922", "古田县", "county"),
    ("350923", "屏南县", "county"),
    ("350924", "寿宁县", "county"),
)
_PLACE_HEAD = "东西南北上下大小长新安平和兴福宁龙凤山水石青白金玉双沙桥溪洋坑湖塘"
_PLACE_TAIL = "口头坪洋岭溪坑洲墩湾桥田源阳峰"
_VILLAGE_TAIL = "村"


@dataclass(frozen=True)
class OrgUnit:
    org_code: str
    org_name: str
    org_type: str   # city_bureau | county_bureau | township_hc | community_hc | village_clinic | county_hospital | city_hospital
    level: str      # city | county | township | village
    parent_code: str | None
    area_code: str  # GB/T 2260 county code, or the 9-digit township code
    area_name: str  # the township / county name the unit serves


def build_org_units(rng: random.Random, n_counties: int = 4, townships_per_county: int = 15,
                    villages_per_township: tuple[int, int] = (3, 6)) -> list[OrgUnit]:
    """The org-unit tree: bureau → county bureaus and hospitals → township centres → village
    clinics. Deterministic for a given ``rng`` state."""
    if not 1 <= n_counties <= len(COUNTIES):
        raise ValueError(f"n_counties must be 1..{len(COUNTIES)}")
    city_code, city_name = CITY
    units = [
        OrgUnit(f"B{city_code}", f"{city_name}卫生健康局", "city_bureau", "city", None, city_code, city_name),
        OrgUnit(f"CH{city_code}", f"{city_name}医院", "city_hospital", "city", f"B{city_code}", city_code, city_name),
    ]
    used: set[str] = set()
    for county_code, county_name, kind in COUNTIES[:n_counties]:
        units.append(OrgUnit(f"B{county_code}", f"{county_name}卫生健康局", "county_bureau", "county",
                             f"B{city_code}", county_code, county_name))
        units.append(OrgUnit(f"CH{county_code}", f"{county_name}医院", "county_hospital", "county",
                             f"B{county_code}", county_code, county_name))
        for t in range(1, townships_per_county + 1):
            tcode = f"{county_code}{100 + t:03d}"
            while True:
                stem = rng.choice(_PLACE_HEAD) + rng.choice(_PLACE_TAIL)
                if stem not in used:
                    used.add(stem)
                    break
            urban = kind == "district" and t <= 4
            if urban:
                tname = f"{stem}街道"
                hc_name, hc_type = f"{county_name}{stem}街道社区卫生服务中心", "community_hc"
            else:
                tname = f"{stem}镇" if t % 3 else f"{stem}乡"
                hc_name, hc_type = f"{county_name}{tname}卫生院", "township_hc"
            units.append(OrgUnit(f"H{tcode}", hc_name, hc_type, "township", f"B{county_code}", tcode, tname))
            for v in range(1, rng.randint(*villages_per_township) + 1):
                vname = rng.choice(_PLACE_HEAD) + rng.choice(_PLACE_TAIL) + _VILLAGE_TAIL
                units.append(OrgUnit(f"V{tcode}{v:03d}", f"{tname}{vname}卫生室", "village_clinic",
                                     "village", f"H{tcode}", tcode, tname))
    return units
