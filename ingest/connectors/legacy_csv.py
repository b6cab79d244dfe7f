"""Legacy county system connector: daily GBK CSV exports → ``bronze.legacy_<county>__<entity>``.

Everything source-specific comes from the contract ``contracts/legacy_<county_code>.yaml``: the
encoding and delimiter, the void flag, and per export its file prefix, key, legacy header →
standard column names, date / timestamp formats, ID-card column and code columns (looked up in a
delivered code map, e.g. local diagnosis code → ICD-10).

For every delivered file, in delivery-day order (code maps before exports within a day):

1. land it (immutable copy), read the landing copy with Spark's CSV reader (contract encoding,
   header, every column a string, PERMISSIVE with a corrupt-record column);
2. rename the columns, normalise ``updated_at`` / ``created_at`` to ``yyyy-MM-dd HH:mm:ss`` and
   the contract's dates to ``yyyy-MM-dd``, turn the void flag into ``is_deleted`` (0/1), add
   ``<code column>_icd10`` from the code map; columns the contract does not know are schema
   drift: kept under their (sanitised) header name and recorded in ``ops.schema_changes``;
3. give every row a reason (NULL = good): ``malformed_row`` (wrong field count),
   ``bad_encoding`` (undecodable bytes, U+FFFD), ``missing_key``, ``bad_updated_at``, ``impossible_date:<column>``
   (an ID-card number is kept as received, valid or not: the EMPI judges it in silver);
   a rejected row without a usable key (blank, or a malformed row whose first field is not a plain
   ASCII token, e.g. the continuation of a line broken inside a value) is quarantined as
   ``<rel_path>#line<n>`` (n = CSV record number + 1, the physical line when no blank lines precede);
4. load it with :func:`common.load_file_batch` (``common.load_batch`` plus a guard: a row never replaces
   a newer version of itself already in bronze, so a re-delivered or reloaded older file cannot
   undo a later correction); record the batches, then, last, the files (``ops.landed_files``),
   once per run.

A file that cannot be read as the contract says (no header, key or modification-time column
missing, unknown file name) is recorded with status ``quarantined`` in ``ops.landed_files`` and in
``quarantine.<source>__files``.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from ingest.connectors import common
from lakehouse import delta, ops
from lakehouse.landing import DeliveredFile, land, record_files

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
SOURCE_PREFIX = "legacy_"
TS_OUT = "yyyy-MM-dd HH:mm:ss"
DATE_OUT = "yyyy-MM-dd"


class ContractError(ValueError):
    """A legacy contract YAML is missing something the connector needs."""


# ---- the contract ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimestampColumn:
    column: str      # legacy header
    format: str      # Spark datetime pattern


@dataclass(frozen=True)
class Feed:
    """One kind of delivered file: a daily export or a code map."""
    entity: str
    file_prefix: str
    key: str
    columns: dict[str, str]                      # legacy header -> standard name
    updated_at: TimestampColumn | None = None
    created_at: TimestampColumn | None = None
    dates: dict[str, str] = field(default_factory=dict)         # standard column -> pattern
    id_card_column: str | None = None
    code_columns: dict[str, str] = field(default_factory=dict)  # standard column -> code map name
    is_code_map: bool = False

    def matches(self, file_name: str) -> bool:
        p = re.escape(self.file_prefix)
        return re.fullmatch(rf"{p}(_\d{{8}})?\.csv", file_name, flags=re.IGNORECASE) is not None


@dataclass(frozen=True)
class Contract:
    source: str
    system: str
    encoding: str
    delimiter: str
    void_column: str | None
    deleted_values: tuple[str, ...]
    exports: tuple[Feed, ...]
    code_maps: tuple[Feed, ...]

    def feed_for(self, file_name: str) -> Feed | None:
        return next((f for f in (*self.code_maps, *self.exports) if f.matches(file_name)), None)

    def code_map(self, name: str) -> Feed:
        for m in self.code_maps:
            if m.entity == name:
                return m
        raise ContractError(f"{self.source}: code map {name!r} is not defined")


def _ts(spec, where: str) -> TimestampColumn | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or "column" not in spec or "format" not in spec:
        raise ContractError(f"{where}: expected {{column: ..., format: ...}}, got {spec!r}")
    return TimestampColumn(str(spec["column"]), str(spec["format"]))


def _feed(d: dict, where: str, is_code_map: bool) -> Feed:
    name_field = "name" if is_code_map else "entity"
    missing = [k for k in (name_field, "file_prefix", "key", "columns") if not d.get(k)]
    if missing:
        raise ContractError(f"{where}: missing {missing}")
    columns = {str(k): str(v) for k, v in d["columns"].items()}
    feed = Feed(
        entity=str(d[name_field]), file_prefix=str(d["file_prefix"]), key=str(d["key"]), columns=columns,
        updated_at=_ts(d.get("updated_at"), f"{where}.updated_at"),
        created_at=_ts(d.get("created_at"), f"{where}.created_at"),
        dates={str(k): str(v) for k, v in (d.get("dates") or {}).items()},
        id_card_column=d.get("id_card_column"),
        code_columns={str(k): str(v) for k, v in (d.get("code_columns") or {}).items()},
        is_code_map=is_code_map)
    standard = set(columns.values())
    unknown = [c for c in (feed.key, *feed.dates, *feed.code_columns, *filter(None, [feed.id_card_column]))
               if c not in standard]
    if unknown:
        raise ContractError(f"{where}: columns {unknown} are not among the mapped columns {sorted(standard)}")
    if not is_code_map and feed.updated_at is None:
        raise ContractError(f"{where}: an export needs an updated_at column")
    return feed


def load_contract(path: Path) -> Contract:
    """Parse and check one ``legacy_<code>.yaml`` contract."""
    import yaml

    d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    where = Path(path).name
    if not d.get("source") or not d.get("exports"):
        raise ContractError(f"{where}: 'source' and 'exports' are required")
    void = d.get("void_flag") or {}
    contract = Contract(
        source=str(d["source"]), system=str(d.get("system", "")), encoding=str(d.get("encoding", "utf-8")),
        delimiter=str(d.get("delimiter", ",")), void_column=void.get("column"),
        deleted_values=tuple(str(v) for v in void.get("deleted_values", ["1"])),
        exports=tuple(_feed(e, f"{where}: exports[{i}]", False) for i, e in enumerate(d["exports"])),
        code_maps=tuple(_feed(m, f"{where}: code_maps[{i}]", True) for i, m in enumerate(d.get("code_maps") or [])))
    for e in contract.exports:
        for name in e.code_columns.values():
            contract.code_map(name)
    return contract


def find_contracts(contracts_dir: Path | None = None, system: str | None = None) -> list[Contract]:
    """The legacy contracts in ``contracts_dir`` (all, or the one for ``system``: ``legacy_350923``
    or ``350923``)."""
    folder = Path(contracts_dir or CONTRACTS_DIR)
    paths = sorted(folder.glob(f"{SOURCE_PREFIX}*.yaml")) + sorted(folder.glob(f"{SOURCE_PREFIX}*.yml"))
    if system:
        wanted = system if system.startswith(SOURCE_PREFIX) else SOURCE_PREFIX + system
        paths = [p for p in paths if p.stem == wanted]
        if not paths:
            raise ContractError(f"no contract {wanted}.yaml in {folder}")
    return [load_contract(p) for p in paths]


# ---- ingest --------------------------------------------------------------------------------------

def ingest(spark, settings, *, system: str | None = None, until=None, full: bool = False,
           contracts_dir: Path | None = None) -> list[common.BatchResult]:
    """Load the delivered, not yet loaded files of every legacy contract (or of ``system``) from
    delivery days before ``until``; ``full`` reloads every delivered file. Returns the batches."""
    results = []
    for contract in find_contracts(contracts_dir, system):
        results += ingest_contract(spark, settings, contract, until=until, full=full)
    return results


def ingest_contract(spark, settings, contract: Contract, *, until=None, full: bool = False) -> list[common.BatchResult]:
    files = common.files_to_load(spark, settings, contract.source, until=until, full=full, suffixes=(".csv",))
    by_day: dict[str, list[DeliveredFile]] = {}
    for f in files:
        by_day.setdefault(f.delivery_day, []).append(f)
    results: list[common.BatchResult] = []
    rows: list[dict] = []
    for day in sorted(by_day):
        # code maps first: the exports of the same day look their codes up in them
        for f in sorted(by_day[day], key=lambda f: (not _is_code_map(contract, f), f.rel_path)):
            result, row = _ingest_file(spark, settings, contract, f)
            rows.append(row)
            if result is not None:
                results.append(result)
    # last: a crash before this line leaves the files unrecorded, and the rerun's MERGEs are no-ops
    common.record_ops(spark, settings.lake_root, results)
    record_files(spark, settings.lake_root, rows)
    return results


def _is_code_map(contract: Contract, f: DeliveredFile) -> bool:
    feed = contract.feed_for(Path(f.rel_path).name)
    return feed is not None and feed.is_code_map


def _ingest_file(spark, settings, contract: Contract, f: DeliveredFile):
    started = dt.datetime.now()
    lake_root = settings.lake_root
    feed = contract.feed_for(Path(f.rel_path).name)
    landed = land(f, settings.landing_root)
    if feed is None:
        common.quarantine_file(spark, lake_root, f, "unknown_file",
                               f"no export in the contract matches {Path(f.rel_path).name}", started=started)
        return None, common.landed_row(f, landed, None, status=common.STATUS_QUARANTINED, reason="unknown_file")
    if _header_only(landed, contract, feed):   # a day without changes: no Spark job for it
        return None, common.landed_row(f, landed, feed.entity)
    checked, problem = read_export(spark, lake_root, contract, feed, f, landed)
    if problem:
        common.quarantine_file(spark, lake_root, f, problem.split(":")[0], problem, started=started)
        return None, common.landed_row(f, landed, feed.entity, status=common.STATUS_QUARANTINED, reason=problem)
    bid = ops.batch_id(contract.source, feed.entity, f.rel_path, f.sha256)
    result = common.load_file_batch(
        spark, lake_root, checked, source=contract.source, entity=feed.entity, keys=(feed.key,), batch_id=bid,
        source_file=f.rel_path, delivery_day=f.delivery_day,
        order_by="updated_at" if feed.updated_at else None, started=started)
    return result, common.landed_row(f, landed, feed.entity, [result])


def _header_only(landed: Path, contract: Contract, feed: Feed) -> bool:
    """Whether ``landed`` holds just a header that names the key and modification-time columns
    (what an export of a day without changes looks like). Anything else goes through Spark."""
    import csv
    import io

    if landed.stat().st_size > 64 * 1024:
        return False
    try:
        text = landed.read_bytes().decode(contract.encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        return False
    header = {h.strip() for h in next(csv.reader(io.StringIO(lines[0]), delimiter=contract.delimiter))}
    required = [c for c in (_legacy_name(feed, feed.key), feed.updated_at and feed.updated_at.column) if c]
    return all(c in header for c in required)


def read_export(spark, lake_root: str, contract: Contract, feed: Feed, f: DeliveredFile, landed: Path):
    """``(checked DataFrame, None)`` for a readable file, ``(None, reason)`` for one that is not."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    reader = (spark.read.option("header", True).option("encoding", contract.encoding)
              .option("sep", contract.delimiter))
    header = reader.csv(str(landed)).columns
    if not header:
        return None, "empty_file"
    by_name = {h.strip(): h for h in header}
    required = [c for c in (_legacy_name(feed, feed.key), feed.updated_at and feed.updated_at.column) if c]
    missing = [c for c in required if c not in by_name]
    if missing:
        return None, "missing_columns:" + ",".join(missing)

    schema = T.StructType([T.StructField(h, T.StringType()) for h in header]
                          + [T.StructField(common.CORRUPT, T.StringType())])
    raw = (reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", common.CORRUPT)
           .schema(schema).csv(str(landed)))
    raw = common.add_line_numbers(raw, first_line=2)          # line 1 is the header
    bad_bytes = F.concat_ws("", *[F.coalesce(F.col(f"`{h}`"), F.lit("")) for h in header],
                            F.coalesce(F.col(common.CORRUPT), F.lit(""))).contains("\ufffd")

    special = {feed.updated_at.column if feed.updated_at else None: "__upd_raw",
               feed.created_at.column if feed.created_at else None: "__crt_raw",
               contract.void_column: "__void_raw"}
    special.pop(None, None)
    standard = list(dict.fromkeys(feed.columns.values()))
    taken = set(standard) | {"updated_at", "created_at", "is_deleted", "__line", common.CORRUPT}
    taken |= {f"{c}_icd10" for c in feed.code_columns}
    cols, drift = [], []
    for h in header:
        name = h.strip()
        if name in feed.columns:
            cols.append(F.col(f"`{h}`").alias(feed.columns[name]))
        elif name in special:
            cols.append(F.col(f"`{h}`").alias(special[name]))
        else:                                     # schema drift: keep under the sanitised header
            s = base = common.sanitise_name(name)
            n = 1
            while s in taken:
                n += 1
                s = f"{base}_{n}"
            taken.add(s)
            drift.append(s)
            cols.append(F.col(f"`{h}`").alias(s))
    present = {feed.columns[h.strip()] for h in header if h.strip() in feed.columns}
    present |= {special[h.strip()] for h in header if h.strip() in special}
    cols += [F.lit(None).cast("string").alias(c)
             for c in [*standard, "__upd_raw", "__crt_raw", "__void_raw"] if c not in present]
    df = raw.select(*cols, F.col(common.CORRUPT), F.col("__line"), bad_bytes.alias("__bad_bytes"))

    def blank(c):
        return c.isNull() | (F.trim(c) == "")

    upd = F.date_format(F.try_to_timestamp(F.col("__upd_raw"), F.lit(feed.updated_at.format)), TS_OUT) \
        if feed.updated_at else F.lit(None).cast("string")
    crt = F.date_format(F.try_to_timestamp(F.col("__crt_raw"), F.lit(feed.created_at.format)), TS_OUT) \
        if feed.created_at else F.lit(None).cast("string")
    parsed_dates = {c: F.date_format(F.try_to_date(F.col(c), fmt), DATE_OUT) for c, fmt in feed.dates.items()}
    line = F.concat(F.lit("line"), F.col("__line").cast("string"))
    checks = [(F.col(common.CORRUPT).isNotNull(), F.concat(F.lit("malformed_row:"), line)),
              (F.col("__bad_bytes"), F.concat(F.lit("bad_encoding:"), line)),
              (blank(F.col(feed.key)), F.lit("missing_key"))]
    if feed.updated_at:
        checks.append((upd.isNull(), F.lit("bad_updated_at")))
    if feed.created_at:
        checks.append((~blank(F.col("__crt_raw")) & _impossible(crt), F.lit("impossible_date:created_at")))
    for c, parsed in parsed_dates.items():
        checks.append((~blank(F.col(c)) & _impossible(parsed), F.lit(f"impossible_date:{c}")))
    reason = None
    for cond, why in checks:
        reason = F.when(cond, why) if reason is None else reason.when(cond, why)

    deleted = (F.trim(F.col("__void_raw")).isin(*contract.deleted_values).cast("int")
               if contract.void_column else F.lit(0))
    out = df.withColumn(common.REASON, reason).withColumns({
        # a rejected row keeps its raw values (quarantine payload); a good one is normalised
        **{c: F.coalesce(p, F.col(c)) for c, p in parsed_dates.items()},
        "updated_at": F.coalesce(upd, F.col("__upd_raw")),
        "created_at": F.coalesce(crt, F.col("__crt_raw")),
        "is_deleted": F.coalesce(deleted, F.lit(0)).cast("int"),
        # a rejected row is filed under its key when it has a usable one; a malformed row's first
        # field may be the tail of a broken line ("续…"), so only a plain token counts as a key there
        feed.key: F.when(F.col(common.REASON).isNotNull()
                         & (blank(F.col(feed.key))
                            | (F.col(common.CORRUPT).isNotNull() & ~F.col(feed.key).rlike(r"^[\x21-\x7E]+$"))),
                         F.concat(F.lit(f"{f.rel_path}#"), line)).otherwise(F.col(feed.key)),
    })
    if not feed.updated_at:   # no version order: the first of several rows with one key wins
        out = common.mark_duplicates(out, (feed.key,))
    for c, map_name in feed.code_columns.items():
        out = _lookup_code(spark, lake_root, contract, contract.code_map(map_name), out, c)
    ordered = ([feed.key] + [c for c in standard if c != feed.key]
               + [f"{c}_icd10" for c in feed.code_columns]
               + (["created_at"] if feed.created_at else []) + (["updated_at"] if feed.updated_at else [])
               + ["is_deleted"] + drift)
    # the corrupt raw line holds unmasked identifiers: the quarantine payload keeps the parsed
    # (masked) fields and the line number instead; the landing copy keeps the original
    return out.select(*[F.col(f"`{c}`") for c in ordered], common.REASON), None


def _legacy_name(feed: Feed, standard: str) -> str | None:
    return next((h for h, s in feed.columns.items() if s == standard), None)


def _impossible(parsed):
    from pyspark.sql import functions as F

    return parsed.isNull() | (parsed < F.lit("1900-01-01")) | (parsed > F.lit("2100-12-31"))


def _lookup_code(spark, lake_root: str, contract: Contract, code_map: Feed, df, column: str):
    """``df`` plus ``<column>_icd10`` from the code map's bronze table (NULL when unmapped or the map
    was not delivered yet)."""
    from pyspark.sql import functions as F

    target = f"{column}_icd10"
    spec = common.bronze_table(contract.source, code_map.entity, (code_map.key,))
    path = spec.path(lake_root)
    value_cols = [c for c in code_map.columns.values() if c != code_map.key]
    value = "icd10_code" if "icd10_code" in value_cols else (value_cols[0] if value_cols else None)
    if value is None or not delta.table_exists(spark, path):
        return df.withColumn(target, F.lit(None).cast("string"))
    version = delta.table_version(spark, path)
    m = spark.read.format("delta").option("versionAsOf", version).load(path)
    if "is_deleted" in m.columns:
        m = m.where("is_deleted = 0")
    m = m.select(F.col(code_map.key).alias("__code"), F.col(value).alias(target))
    return (df.join(F.broadcast(m), F.col(column) == F.col("__code"), "left").drop("__code"))
