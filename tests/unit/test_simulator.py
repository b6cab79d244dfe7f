import csv
import hashlib
import sqlite3

from ingest.simulator.city import CityConfig, DefectRates, simulate_city
from lakehouse import idcard


def _dump(db) -> str:
    con = sqlite3.connect(db)
    h = hashlib.sha256()
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        for row in con.execute(f"SELECT * FROM {table} ORDER BY 1"):
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def _city(tmp_path, name, **kw):
    cfg = CityConfig(residents=600, counties=2, townships_per_county=3, **kw)
    return simulate_city(f"sqlite:///{tmp_path / name / 'src.sqlite'}", tmp_path / name, cfg)


def test_same_seed_same_city_other_seed_other_city(tmp_path):
    a, b = _city(tmp_path, "a"), _city(tmp_path, "b")
    c = _city(tmp_path, "c", seed=7)
    assert _dump(tmp_path / "a" / "src.sqlite") == _dump(tmp_path / "b" / "src.sqlite")
    assert _dump(tmp_path / "a" / "src.sqlite") != _dump(tmp_path / "c" / "src.sqlite")
    assert a.rows == b.rows and a.rows["residents"] == 600


def test_every_invalid_id_number_is_in_the_manifest_and_only_those(tmp_path):
    s = _city(tmp_path, "d", defects=DefectRates(bad_id_check_digit=0.05, impossible_followup_date=0.05))
    with open(s.manifest_path, encoding="utf-8") as f:
        manifest = {(r["table"], r["record_key"]): r["defect"] for r in csv.DictReader(f)}
    con = sqlite3.connect(tmp_path / "d" / "src.sqlite")
    invalid = {rid for rid, no in con.execute("SELECT resident_id, id_card_no FROM residents")
               if not idcard.is_valid(no)}
    assert invalid and invalid == {k for (t, k), d in manifest.items() if d == "bad_id_check_digit"}
    bad_dates = {fid for fid, d in con.execute("SELECT followup_id, followup_date FROM hypertension_followups")
                 if d[5:7] == "13" or d[5:] == "02-30"}
    assert bad_dates == {k for (t, k), d in manifest.items() if d == "impossible_date"}


def test_org_tree_and_records_hang_together(tmp_path):
    _city(tmp_path, "e")
    con = sqlite3.connect(tmp_path / "e" / "src.sqlite")
    levels = dict(con.execute("SELECT level, count(*) FROM org_units GROUP BY level"))
    assert levels["city"] == 2 and levels["township"] == 6 and levels["village"] >= 18
    orphans = con.execute("""SELECT count(*) FROM hypertension_followups f
                             LEFT JOIN hypertension_registry r USING (registry_id)
                             WHERE r.registry_id IS NULL""").fetchone()[0]
    assert orphans == 0
    assert con.execute("SELECT count(*) FROM org_units WHERE parent_code IS NOT NULL AND parent_code NOT IN (SELECT org_code FROM org_units)").fetchone()[0] == 0
