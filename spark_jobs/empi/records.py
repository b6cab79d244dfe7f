"""Identity records: every bronze record that names a person, from every source, in one shape.

A source entity is an identity source when its rows describe a person (a resident registration, a
civil-affairs death registration, a hospital Patient). :data:`SOURCES` says where each one's
columns are; :func:`identity_records` reads every bronze table that matches and returns one
DataFrame with the columns of :data:`COLUMNS`, normalised so that records from different systems
compare:

- ``id_card_no`` upper-case without blanks (NULL when blank), ``id_status`` NULL for a valid
  GB 11643 number else the reason code of :func:`lakehouse.idcard.spark_invalid_reason`, and
  ``id17`` (its first 17 digits, which survive a wrong check digit);
- ``name`` without blanks and ``surname`` (its first character); :func:`pinyin_column` gives the
  tone-less pinyin that the matcher compares (clerks write homophones, 玮 for 伟);
- ``sex`` '1' / '2' (GB/T 2261.1), ``birth_date`` a date, ``phone`` digits only;
- ``area_code`` the township (GB/T 2260 + township digits) where the source gives one, and
  ``county_code`` its first six digits.

Rows deleted at the source are left out: they no longer claim to be anyone.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.frames import live, union_all

COLUMNS = ("rid", "source", "entity", "record_id", "id_card_no", "id_status", "id17", "name", "surname", "sex", "birth_date", "phone", "address", "area_code", "county_code", "updated_at",
           "source_rank")


@dataclass(frozen=True)
class IdentitySource:
    """Where a source entity keeps the identity attributes (standard name → source column)."""
    table_glob: str                     # bronze table directory name, e.g. "legacy_*__residents"
    entity: str
    record_id: str
    columns: dict[str, str | None]
    sex_codes: dict[str, str] = field(default_factory=lambda: {"1": "1", "2": "2"})
    # which record describes a person best when several do: lower wins (registrations first)
    rank: int = 0


_RESIDENT = {"id_card_no": "id_card_no", "name": "name", "sex": "sex", "birth_date": "birth_date",
             "phone": "phone", "address": "address", "area_code": "area_code"}

SOURCES = (
    IdentitySource("regional__residents", "residents", "resident_id", _RESIDENT, rank=0),
    IdentitySource("legacy_*__residents", "residents", "resident_id", _RESIDENT, rank=1),
    IdentitySource("fhir_*__patient", "patient", "patient_id",
                   {**_RESIDENT, "sex": "gender", "area_code": None},
                   sex_codes={"male": "1", "female": "2"}, rank=2),
    IdentitySource("regional__death_registrations", "death_registrations", "death_id",
                   {**_RESIDENT, "phone": None, "address": None}, rank=3),
)


def bronze_tables(lake_root: str) -> list[tuple[IdentitySource, str, str]]:
    """``(identity source, source name, table path)`` of every bronze table that is an identity
    source, in a stable order."""
    bronze = Path(lake_root) / "bronze"
    if not bronze.is_dir():
        return []
    found = []
    for spec in SOURCES:
        for d in sorted(bronze.iterdir()):
            if d.is_dir() and fnmatch.fnmatchcase(d.name, spec.table_glob) and (d / "_delta_log").is_dir():
                found.append((spec, d.name.split("__", 1)[0], str(d)))
    return found


def _pinyin(names):
    """pandas UDF body: tone-less pinyin of each name, syllables joined by blanks."""
    from pypinyin import lazy_pinyin

    return names.map(lambda n: " ".join(lazy_pinyin(n)) if isinstance(n, str) and n else None)


def pinyin_column(col):
    from pyspark.sql import functions as F

    return F.pandas_udf(_pinyin, "string")(col)


def normalise(df, spec: IdentitySource, source: str):
    """One identity source's live rows in the shape of :data:`COLUMNS`."""
    from pyspark.sql import functions as F

    from lakehouse.idcard import spark_invalid_reason

    def col(std: str):
        name = spec.columns.get(std)
        return F.col(name).cast("string") if name and name in df.columns else F.lit(None).cast("string")

    def blank_to_null(c):
        return F.when(F.trim(c) != "", c)

    id_no = blank_to_null(F.upper(F.regexp_replace(col("id_card_no"), r"\s", "")))
    name = blank_to_null(F.regexp_replace(col("name"), r"\s", ""))
    sex_map = F.create_map(*[F.lit(x) for kv in spec.sex_codes.items() for x in kv])
    area = blank_to_null(F.trim(col("area_code")))
    return live(df).select(
        F.concat_ws("|", F.lit(source), F.lit(spec.entity), F.col(spec.record_id).cast("string")).alias("rid"),
        F.lit(source).alias("source"), F.lit(spec.entity).alias("entity"),
        F.col(spec.record_id).cast("string").alias("record_id"),
        id_no.alias("id_card_no"),
        spark_invalid_reason(id_no).alias("id_status"),
        F.when(id_no.rlike(r"^\d{17}[\dX]$"), F.substring(id_no, 1, 17)).alias("id17"),
        name.alias("name"), F.substring(name, 1, 1).alias("surname"),
        sex_map[F.lower(F.trim(col("sex")))].alias("sex"),
        F.try_to_date(F.substring(col("birth_date"), 1, 10), "yyyy-MM-dd").alias("birth_date"),
        blank_to_null(F.regexp_replace(col("phone"), r"\D", "")).alias("phone"),
        blank_to_null(F.trim(col("address"))).alias("address"),
        area.alias("area_code"), F.substring(area, 1, 6).alias("county_code"),
        F.col("updated_at").cast("string").alias("updated_at"),
        F.lit(spec.rank).alias("source_rank"),
    )


def identity_records(spark, lake_root: str):
    """Every live identity record of every source (see the module doc), or None when bronze holds
    no identity source yet."""
    df = union_all([normalise(spark.read.format("delta").load(path), spec, source)
                    for spec, source, path in bronze_tables(lake_root)])
    return None if df is None else df.select(*COLUMNS)
