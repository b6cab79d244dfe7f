"""The resident master index: every identity record → one ``person_id``, with the evidence.

1. **Deterministic.** Records with a valid ID-card number are the same person exactly when their
   numbers are equal; the number is the person's key (``person_id`` = HMAC of it, as everywhere).
2. **Probabilistic.** A record without a valid number (missing, or a wrong check digit, format or
   birth date) is compared with every record that shares a blocking key with it — same birth date
   and sex, same first 17 ID digits, or same phone — on seven attributes. Each attribute's
   agreement level adds a weight (:data:`WEIGHTS`, log-likelihood ratios set from how the sources
   err: a clerk's homophone keeps the pinyin, a wrong check digit keeps 17 digits, phones change);
   the sum is the match score.
3. **Decision.** score ≥ :data:`AUTO_LINK`: linked. :data:`REVIEW` ≤ score < AUTO_LINK: not linked,
   listed for review (``silver.empi_review``). Below: no link. Linked records form clusters
   (union-find on the driver: only records without a valid number take part, a few per cent);
   a cluster that reaches one ID-card number takes that person, a cluster that reaches none is a
   new person keyed by its first record, a cluster that would join two different numbers is not
   merged (each record keeps its own best link) and goes to review as ``conflicting_ids``.

Outputs (each rebuilt as a whole and written with a MERGE that touches only changed rows):
``silver.person_xref`` (source record → person_id, rule, score, matched record, evidence),
``silver.empi_review``, ``silver.persons`` and ``restricted.person_identity``.
Evidence names agreement levels only (``name=pinyin;birth_date=same;…``), never a value: silver
holds no identifiers.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

from lakehouse import delta, ops
from lakehouse.frames import live
from lakehouse.pseudonym import spark_person_id
from lakehouse.tables import TableSpec, register
from spark_jobs.empi import records as records_module
from spark_jobs.empi.records import bronze_tables, identity_records, pinyin_column

AUTO_LINK = 10.0
REVIEW = 6.0

# attribute → agreement level → weight; a level not listed (e.g. missing on either side) adds 0
WEIGHTS: dict[str, dict[str, float]] = {
    "id17": {"same": 8.0, "different": -5.0},
    "name": {"exact": 6.0, "pinyin": 4.5, "surname": 1.5, "different": -3.0},
    "birth_date": {"same": 4.0, "different": -5.0},
    "sex": {"same": 0.5, "different": -6.0},
    "phone": {"same": 4.0, "different": -1.0},
    "area": {"township": 2.0, "county": 1.0, "different": -2.0},
    "address": {"same": 1.0},
}
BLOCKS = (("birth_date", "sex"), ("id17",), ("phone",))

RULE_ID_CARD, RULE_PROBABILISTIC, RULE_NEW = "id_card", "probabilistic", "new_person"

PERSON_XREF = register(TableSpec(
    "silver.person_xref", keys=("source", "source_entity", "source_record_id"),
    description="Source identity record → person_id: rule, score, matched record, evidence"))
EMPI_REVIEW = register(TableSpec(
    "silver.empi_review", keys=("record_a", "record_b"),
    description="Possible duplicate persons the EMPI did not link: for a person to decide"))
PERSONS = register(TableSpec(
    "silver.persons", keys=("person_id",),
    description="One row per person: sex, birth date, residence, death date; no identifiers"))
PERSON_IDENTITY = register(TableSpec(
    "restricted.person_identity", keys=("person_id",),
    description="Direct identifiers of each person; restricted access only"))


@dataclass
class EmpiResult:
    records: int
    persons: int
    by_rule: dict[str, int]
    review_pairs: int
    tables: dict[str, dict]


# ---- scoring --------------------------------------------------------------------------------------

def _levels():
    """Agreement level columns of a pair (``l_*`` the record without a valid number, ``r_*`` the
    candidate)."""
    from pyspark.sql import functions as F

    def cmp(a: str, same: str = "same"):
        lc, rc = F.col(f"l_{a}"), F.col(f"r_{a}")
        return F.when(lc.isNull() | rc.isNull(), F.lit("missing")).when(lc == rc, F.lit(same)).otherwise(F.lit("different"))

    name = (F.when(F.col("l_name").isNull() | F.col("r_name").isNull(), F.lit("missing"))
            .when(F.col("l_name") == F.col("r_name"), F.lit("exact"))
            .when(F.col("l_pinyin") == F.col("r_pinyin"), F.lit("pinyin"))
            .when(F.col("l_surname") == F.col("r_surname"), F.lit("surname"))
            .otherwise(F.lit("different")))
    area = (F.when(F.col("l_area_code").isNull() | F.col("r_area_code").isNull(), F.lit("missing"))
            .when(F.col("l_area_code") == F.col("r_area_code"), F.lit("township"))
            .when(F.col("l_county_code") == F.col("r_county_code"), F.lit("county"))
            .otherwise(F.lit("different")))
    return {"id17": cmp("id17"), "name": name, "birth_date": cmp("birth_date"), "sex": cmp("sex"),
            "phone": cmp("phone"), "area": area, "address": cmp("address")}


def score_pairs(pairs):
    """``pairs`` (``l_*`` / ``r_*`` attribute columns) plus ``score`` and ``evidence``."""
    from pyspark.sql import functions as F

    levels = _levels()
    pairs = pairs.withColumns({
        "l_pinyin": pinyin_column(F.col("l_name")), "r_pinyin": pinyin_column(F.col("r_name"))})
    pairs = pairs.withColumns({f"lv_{a}": c for a, c in levels.items()})
    weight = None
    for attr, table in WEIGHTS.items():
        w = F.coalesce(F.create_map(*[F.lit(x) for kv in table.items() for x in kv])[F.col(f"lv_{attr}")],
                       F.lit(0.0))
        weight = w if weight is None else weight + w
    evidence = F.concat_ws(";", *[F.concat(F.lit(f"{a}="), F.col(f"lv_{a}")) for a in levels])
    return pairs.withColumns({"score": F.round(weight, 2), "evidence": evidence})


def candidate_pairs(records):
    """Every (record without a valid number, other record) pair sharing a blocking key, with both
    sides' attributes as ``l_*`` / ``r_*``."""
    from pyspark.sql import functions as F

    attrs = [c for c in records.columns if c not in ("source", "entity", "record_id", "source_rank", "updated_at")]
    floating = records.where(F.col("id_status").isNotNull())
    keys = None
    for block in BLOCKS:
        l = floating.select(F.col("rid").alias("l_rid"), *[F.col(k).alias(f"k{i}") for i, k in enumerate(block)])
        r = records.select(F.col("rid").alias("r_rid"), *[F.col(k).alias(f"k{i}") for i, k in enumerate(block)])
        p = (l.join(r, [f"k{i}" for i in range(len(block))]).where(F.col("l_rid") != F.col("r_rid"))
             .select("l_rid", "r_rid"))
        keys = p if keys is None else keys.unionByName(p)
    keys = keys.distinct()
    left = records.select(*[F.col(c).alias(f"l_{c}") for c in attrs])
    right = records.select(*[F.col(c).alias(f"r_{c}") for c in attrs])
    return keys.join(left, "l_rid").join(right, "r_rid")


# ---- clustering (driver side: only records without a valid number) -------------------------------

class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def resolve(floating: list[str], edges: list[tuple]) -> tuple[dict[str, tuple], list[tuple]]:
    """Decide the person of every record without a valid number.

    ``edges``: ``(l_rid, r_rid, r_id_card or None, score, evidence)`` with score ≥ REVIEW.
    Returns ``{rid: (person_key, rule, score, matched_rid, evidence)}`` and the review pairs
    ``(rid_a, rid_b, score, evidence, reason)``; person keys are an ID-card number or
    ``empi:<rid>``."""
    ID = "id:"
    uf = _UnionFind()
    for rid in floating:
        uf.find(rid)
    best: dict[str, tuple] = {}                 # rid → its best auto-link edge
    auto = [e for e in edges if e[3] >= AUTO_LINK]
    for e in auto:
        l_rid, r_rid, r_id, score, _ = e
        if l_rid not in best or (score, r_rid) > (best[l_rid][3], best[l_rid][1]):
            best[l_rid] = e
        uf.union(l_rid, ID + r_id if r_id else r_rid)
    members: dict[str, set[str]] = {}
    for node in list(uf.parent):
        members.setdefault(uf.find(node), set()).add(node)
    out: dict[str, tuple] = {}
    conflicts: list[tuple] = []
    for root, nodes in members.items():
        ids = sorted(n[len(ID):] for n in nodes if n.startswith(ID))
        rids = sorted(n for n in nodes if not n.startswith(ID))
        if len(ids) > 1:
            # one cluster would join two ID-card numbers: link each record only along its own best
            # edge, and let a person look at the cluster
            for rid in rids:
                e = best.get(rid)
                if e is not None and e[2]:
                    out[rid] = (e[2], RULE_PROBABILISTIC, e[3], e[1], e[4])
                else:
                    out[rid] = ("empi:" + rid, RULE_NEW, e[3] if e else None, None, e[4] if e else None)
            conflicts += [e for e in auto if e[0] in nodes]
            continue
        key = ids[0] if ids else "empi:" + min(rids)
        for rid in rids:
            e = best.get(rid)
            if e is None:    # reached through another record's link, or alone
                out[rid] = (key, RULE_PROBABILISTIC if len(nodes) > 1 else RULE_NEW, None, None, None)
            else:
                out[rid] = (key, RULE_PROBABILISTIC, e[3], e[1], e[4])
    # review: every scored pair that ended up as two persons
    review = []
    for e, reason in [(e, "review_band") for e in edges if e[3] < AUTO_LINK] + [(e, "conflicting_ids") for e in conflicts]:
        l_key = out[e[0]][0]
        r_key = e[2] if e[2] else out.get(e[1], (None,))[0]
        if l_key != r_key:
            review.append((e[0], e[1], e[3], e[4], reason))
    return out, _unique_pairs(review)


def _unique_pairs(review: list[tuple]) -> list[tuple]:
    """One row per unordered pair (the higher score wins)."""
    by_pair: dict[tuple[str, str], tuple] = {}
    for a, b, score, evidence, reason in review:
        pair = (min(a, b), max(a, b))
        if pair not in by_pair or score > by_pair[pair][2]:
            by_pair[pair] = (*pair, score, evidence, reason)
    return sorted(by_pair.values())


# ---- the job --------------------------------------------------------------------------------------

def link(spark, records):
    """``records`` (see :mod:`spark_jobs.empi.records`) → (xref rows with ``person_key``, review
    rows) as DataFrames."""
    from pyspark.sql import functions as F

    scored = score_pairs(candidate_pairs(records)).where(F.col("score") >= REVIEW)
    r_id = F.when(F.col("r_id_status").isNull(), F.col("r_id_card_no"))
    edges = [tuple(r) for r in scored.select("l_rid", "r_rid", r_id.alias("r_id"), "score", "evidence").collect()]
    floating = [r.rid for r in records.where(F.col("id_status").isNotNull()).select("rid").collect()]
    decided, review = resolve(floating, edges)

    decided_df = spark.createDataFrame(
        [(rid, *v) for rid, v in decided.items()],
        "rid STRING, person_key STRING, match_rule STRING, match_score DOUBLE, matched_record STRING, evidence STRING")
    anchored = records.where(F.col("id_status").isNull()).select(
        "rid", F.col("id_card_no").alias("person_key"), F.lit(RULE_ID_CARD).alias("match_rule"),
        F.lit(None).cast("double").alias("match_score"), F.lit(None).cast("string").alias("matched_record"),
        F.lit(None).cast("string").alias("evidence"))
    xref = records.join(anchored.unionByName(decided_df), "rid")
    review_df = spark.createDataFrame(
        review, "record_a STRING, record_b STRING, score DOUBLE, evidence STRING, reason STRING")
    return xref, review_df


def _first_non_null(col: str, order):
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    w = Window.partitionBy("person_id").orderBy(*order).rowsBetween(Window.unboundedPreceding,
                                                                      Window.unboundedFollowing)
    return F.first(F.col(col), ignorenulls=True).over(w)


STATE_KEY = "empi"
DEATHS = "bronze/regional__death_registrations"


def _state(spark, lake_root: str, pseudonym_key: bytes) -> str:
    """Versions of the identity tables, the death registrations and the four outputs, the code of
    the EMPI and a fingerprint of the pseudonym key (a new key is new person_ids)."""
    paths = [path for _, _, path in bronze_tables(lake_root)] + [f"{lake_root}/{DEATHS}"]
    paths += [spec.path(lake_root) for spec in (PERSON_XREF, EMPI_REVIEW, PERSONS, PERSON_IDENTITY)]
    key = hashlib.sha256(b"jiceng empi state|" + pseudonym_key).hexdigest()[:16]
    return ops.build_state(spark, paths, f"{ops.code_digest(sys.modules[__name__], records_module)}|{key}")


def _stored_result(spark, lake_root: str) -> EmpiResult:
    """The counts of the EMPI tables as they are (a skipped run reports what the last one did)."""
    xref = delta.read(spark, PERSON_XREF, lake_root)
    by_rule = {r.match_rule: r["count"] for r in xref.groupBy("match_rule").count().collect()}
    return EmpiResult(records=sum(by_rule.values()), persons=delta.read(spark, PERSONS, lake_root).count(),
                      by_rule=by_rule, review_pairs=delta.read(spark, EMPI_REVIEW, lake_root).count(), tables={})


def run_empi(spark, lake_root: str, pseudonym_key: bytes, force: bool = False) -> EmpiResult | None:
    """Link every identity record in bronze and write the four EMPI tables; None when bronze holds
    no identity source yet. Skipped (the tables as they are, their counts reported) when the
    identity tables, the outputs and the code are as after the last run, unless ``force``."""
    from pyspark.sql import functions as F

    if not bronze_tables(lake_root):
        return None
    state = _state(spark, lake_root, pseudonym_key)
    if not force and ops.get_build_states(spark, lake_root).get(STATE_KEY) == state:
        return _stored_result(spark, lake_root)
    records = identity_records(spark, lake_root)
    if records is None:
        return None
    records = records.persist()
    xref, review = link(spark, records)
    xref = xref.withColumn("person_id", spark_person_id(F.col("person_key"), pseudonym_key)).persist()
    stats: dict[str, dict] = {}

    def write(df, spec):
        stats[spec.name] = delta.upsert(spark, delta.with_row_hash(df, exclude=()), spec, lake_root,
                                        delete_scope="true").as_dict()

    write(xref.select(
        "source", F.col("entity").alias("source_entity"), F.col("record_id").alias("source_record_id"),
        "person_id", "match_rule", "match_score", "matched_record", "evidence",
        F.coalesce("id_status", F.lit("valid")).alias("id_card_status")), PERSON_XREF)

    person_of = xref.select(F.col("rid").alias("r"), "person_id")
    review = (review.join(person_of.withColumnRenamed("r", "record_a").withColumnRenamed("person_id", "person_id_a"),
                          "record_a", "left")
              .join(person_of.withColumnRenamed("r", "record_b").withColumnRenamed("person_id", "person_id_b"),
                    "record_b", "left")
              .select("record_a", "record_b", "person_id_a", "person_id_b", "score", "evidence", "reason"))
    write(review, EMPI_REVIEW)

    # the best record describes the person: a valid number first, then registrations before
    # hospital and death records, then the latest
    order = [F.col("id_status").isNull().desc(), "source_rank", F.col("updated_at").desc_nulls_last(), "rid"]
    attrs = {c: _first_non_null(c, order) for c in ("sex", "birth_date", "area_code", "name", "phone",
                                                    "address")}
    attrs["id_card_no"] = _first_non_null("valid_id", order)
    per_record = xref.withColumn("valid_id", F.when(F.col("id_status").isNull(), F.col("id_card_no")))
    per_person = per_record.select("person_id", *[c.alias(n) for n, c in attrs.items()]).dropDuplicates(["person_id"])
    deaths = _death_dates(spark, lake_root, xref)
    counts = per_record.groupBy("person_id").agg(F.count("*").alias("source_records"))
    persons = (per_person.join(counts, "person_id").join(deaths, "person_id", "left")
               .select("person_id", "sex", "birth_date", F.col("area_code").alias("residence_area_code"),
                       "death_date", "source_records",
                       F.when(F.col("id_card_no").isNotNull(), "valid").otherwise("none").alias("id_card")))
    write(persons, PERSONS)
    write(per_person.select("person_id", "name", "id_card_no", "phone", "address"), PERSON_IDENTITY)

    by_rule = {r.match_rule: r["count"] for r in xref.groupBy("match_rule").count().collect()}
    result = EmpiResult(records=sum(by_rule.values()), persons=persons.count(), by_rule=by_rule,
                        review_pairs=review.count(), tables=stats)
    xref.unpersist()
    records.unpersist()
    ops.set_build_states(spark, lake_root, {STATE_KEY: _state(spark, lake_root, pseudonym_key)})
    return result


def _death_dates(spark, lake_root: str, xref):
    """person_id → the earliest reported death date (civil affairs)."""
    from pyspark.sql import functions as F

    path = f"{lake_root}/bronze/regional__death_registrations"
    if not delta.table_exists(spark, path):
        return spark.createDataFrame([], "person_id STRING, death_date DATE")
    deaths = (live(spark.read.format("delta").load(path))
              .select(F.concat_ws("|", F.lit("regional"), F.lit("death_registrations"), "death_id").alias("rid"),
                      F.try_to_date(F.col("death_date"), "yyyy-MM-dd").alias("death_date")))
    return (deaths.join(xref.select("rid", "person_id"), "rid")
            .groupBy("person_id").agg(F.min("death_date").alias("death_date")))
