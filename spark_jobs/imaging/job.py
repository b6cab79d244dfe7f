"""Imaging pre-processing on Spark: the landed DICOM files in bronze → the imaging catalogue in silver.

Every file that bronze lists (the file-drop connector's ``bronze.dicom__files`` and the regional
PACS connector's ``bronze.orthanc__files``) and silver has not parsed with the current
:data:`ALGORITHM` is parsed header-only by :func:`spark_jobs.imaging.parse.parse_file` inside
``mapInPandas``; then one thumbnail per series is rendered and the images of every study sent to
a remote reading centre are de-identified, each in parallel over the cluster's cores.

| table | key | holds |
|---|---|---|
| ``silver.imaging_files`` | ``file_id`` | every landed file that parsed: its instance and all the fields below |
| ``silver.imaging_instances`` | ``sop_instance_uid`` | one row per image (the latest file of a resent instance): SOP class, transfer syntax, modality, body part, device, geometry, sizes, status ok / repaired (no patient identifiers) |
| ``silver.imaging_series`` | ``series_instance_uid`` | instances, frames and bytes per series, its thumbnail status |
| ``silver.imaging_studies`` | ``study_instance_uid`` | per study: request, ``person_id`` (through the EMPI), institution, modalities, counts, burned-in-annotation risk |
| ``silver.imaging_thumbnails`` | ``series_instance_uid`` | a PNG of each series' middle image (windowed, MONOCHROME1 inverted, palette applied) |
| ``silver.imaging_deidentified`` | ``sop_instance_uid``, ``reading_org_code`` | the de-identified copy sent to a reading centre: its new UIDs and path, burned-in-text risk, identifiers found surviving (none expected) |
| ``restricted.imaging_reid_map`` | ``reading_org_code``, ``kind``, ``original`` | the re-identification map of the de-identified copies (restricted layer only) |
| ``quarantine.imaging_files`` | ``record_key``, ``_row_hash`` | a file that cannot be catalogued, with its reason |

``file_id`` is the SHA-256 of the landed file (bronze's file identity). A rerun parses nothing;
a resent instance (same SOP Instance UID, new bytes) replaces the earlier one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lakehouse import delta
from lakehouse.frames import live
from lakehouse.tables import TableSpec, register
from spark_jobs.imaging import parse

ALGORITHM = "imaging-1"
BRONZE_TABLES = {"dicom": "bronze/dicom__files", "orthanc": "bronze/orthanc__files"}
ARROW_BATCH = 1024       # files per Arrow batch (header parsing is a fraction of a millisecond a file)
TASK_FILES = 16000      # files per Spark task (a task costs ~70 ms to set up; 16,000 headers ~4 s)

FILES = register(TableSpec(
    "silver.imaging_files", keys=("file_id",),
    description="Every landed DICOM file parsed: its instance, status ok / repaired, header fields (no identifiers)",
    stats_columns=("file_id", "sop_instance_uid", "study_instance_uid", "status", "algorithm")))
INSTANCES = register(TableSpec(
    "silver.imaging_instances", keys=("sop_instance_uid",),
    description="DICOM instances: SOP class, transfer syntax, modality, device, geometry, status (no identifiers)"))
SERIES = register(TableSpec(
    "silver.imaging_series", keys=("series_instance_uid",),
    description="DICOM series: instances, frames, bytes and thumbnail status"))
STUDIES = register(TableSpec(
    "silver.imaging_studies", keys=("study_instance_uid",),
    description="Imaging studies linked to the request and person_id, with counts and burned-in-text risk"))
THUMBNAILS = register(TableSpec(
    "silver.imaging_thumbnails", keys=("series_instance_uid",),
    description="PNG thumbnail of each series' middle image"))
DEIDENTIFIED = register(TableSpec(
    "silver.imaging_deidentified", keys=("sop_instance_uid", "reading_org_code"),
    description="De-identified copies sent to reading centres: new UIDs, path, burned-in-text risk, check"))
REID_MAP = register(TableSpec(
    "restricted.imaging_reid_map", keys=("reading_org_code", "kind", "original"),
    description="Re-identification map of the de-identified images; restricted access only"))
QUARANTINE = register(TableSpec(
    "quarantine.imaging_files", keys=("record_key", "_row_hash"),
    description="DICOM files that could not be catalogued",
    schema="record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING, "
           "_row_hash STRING, algorithm STRING"))

PENDING_SCHEMA = ("file_id STRING, source STRING, rel_path STRING, landing_path STRING, org_code STRING, "
                  "delivery_day STRING, received_at TIMESTAMP")
PARSED_SCHEMA = f"file_id STRING, {parse.SCHEMA}"


@dataclass
class ImagingResult:
    parsed: int = 0
    quarantined: int = 0
    repaired: int = 0
    thumbnails: int = 0
    deidentified: int = 0
    tables: dict = field(default_factory=dict)


def _bronze(spark, lake_root: str):
    from pyspark.sql import functions as F

    frames = []
    for source, rel in BRONZE_TABLES.items():
        path = f"{lake_root}/{rel}"
        if delta.table_exists(spark, path):
            frames.append(live(spark.read.format("delta").load(path)).select(
                F.col("sha256").alias("file_id"), F.lit(source).alias("source"), "rel_path", "landing_path",
                "org_code", "delivery_day", F.col("_ingested_at").alias("received_at")))
    if not frames:
        return spark.createDataFrame([], PENDING_SCHEMA)
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out.dropDuplicates(["file_id"])


def _pending(spark, lake_root: str):
    """Live bronze files not yet catalogued (or quarantined) with the current algorithm."""
    from pyspark.sql import functions as F

    todo = _bronze(spark, lake_root)
    for spec, key in ((FILES, "file_id"), (QUARANTINE, "record_key")):
        if delta.table_exists(spark, spec.path(lake_root)):
            done = delta.read(spark, spec, lake_root).where(F.col("algorithm") == ALGORITHM)
            todo = todo.join(done.select(F.col(key).alias("file_id")), "file_id", "left_anti")
    return todo


def _parse_batches(batches):
    import pandas as pd

    for pdf in batches:
        rows = [{"file_id": fid, **parse.parse_file(path)} for fid, path in zip(pdf["file_id"], pdf["path"])]
        yield pd.DataFrame(rows, columns=["file_id", *parse.FIELDS])


def parse_files(spark, todo, count: int | None = None):
    """``todo`` (``file_id``, ``path``) → one :data:`PARSED_SCHEMA` row per file, parsed in
    parallel: spread over at least twice the cluster's cores, tasks of about
    :data:`TASK_FILES` files."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH))
    cores = spark.sparkContext.defaultParallelism
    parts = max(2 * cores, -(-count // TASK_FILES) if count else 0, 1)
    return todo.repartition(parts, "file_id").mapInPandas(_parse_batches, PARSED_SCHEMA)


def _thumbnail_batches(batches):
    import pandas as pd

    from spark_jobs.imaging.thumbnails import ThumbnailError, thumbnail_png

    for pdf in batches:
        out = []
        for uid, path in zip(pdf["series_instance_uid"], pdf["path"]):
            png, reason = None, None
            try:
                png = thumbnail_png(parse.load_dataset(path))
            except ThumbnailError as exc:
                reason = exc.reason
            except Exception as exc:  # noqa: BLE001 - one bad image never stops the job
                reason = f"render_failed: {type(exc).__name__}"
            out.append({"series_instance_uid": uid, "png": png, "thumbnail_reason": reason})
        yield pd.DataFrame(out, columns=["series_instance_uid", "png", "thumbnail_reason"])


def _person_links(spark, lake_root: str):
    """accession number → request, person_id, institution and reading centre of the remote imaging
    requests (the Accession Number is the order's key in the images, RIS and PACS alike)."""
    from pyspark.sql import functions as F

    from spark_jobs.conform.silver import SILVER

    spec = SILVER["imaging_requests"]
    if not delta.table_exists(spark, spec.path(lake_root)):
        return None
    return delta.read(spark, spec, lake_root).where("accession_no IS NOT NULL").select(
        F.col("accession_no").alias("accession_number"), "request_id", "person_id",
        F.col("org_code").alias("request_org_code"), "reading_org_code", "township_org_code", "county_org_code"
    ).dropDuplicates(["accession_number"])


def run_imaging(spark, lake_root: str, *, deid_key: bytes | None = None, exchange_root: str | None = None
                ) -> ImagingResult:
    """Catalogue every pending DICOM file, refresh the series and study tables, render the missing
    thumbnails (the tables are created empty before the first file lands) and, given a
    ``deid_key`` and an ``exchange_root``, de-identify every image of a study requested by a
    reading centre into ``exchange_root/<reading_org_code>/``."""
    from pyspark.sql import functions as F

    result = ImagingResult()
    pending = _pending(spark, lake_root).persist()
    try:
        n = pending.count()
        todo = pending.select("file_id", F.col("landing_path").alias("path"))
        parsed = parse_files(spark, todo, n).join(pending, "file_id").persist()
        bad = parsed.where(F.col("status") == "quarantined")
        ok = parsed.where(F.col("status") != "quarantined")
        result.quarantined = bad.count()
        result.parsed = n - result.quarantined
        result.repaired = ok.where(F.col("status") == "repaired").count()
        if result.quarantined:
            rows = bad.select(
                F.col("file_id").alias("record_key"), F.col("reason").alias("reason_code"),
                F.col("repairs").alias("reason_detail"),
                F.to_json(F.struct("source", "rel_path", "org_code", "delivery_day", "modality",
                                   "transfer_syntax", "pixel_bytes", "expected_pixel_bytes")).alias("raw_payload"),
                F.lit(ALGORITHM).alias("algorithm"))
            result.tables[QUARANTINE.name] = delta.upsert(
                spark, delta.with_row_hash(rows, exclude=("algorithm",)), QUARANTINE, lake_root).as_dict()
        if result.parsed or not delta.table_exists(spark, FILES.path(lake_root)):
            result.tables.update(_write_files_and_instances(spark, lake_root, ok))
        parsed.unpersist()
    finally:
        pending.unpersist()
    result.thumbnails = _write_series_and_studies(spark, lake_root, result)
    if deid_key is not None and exchange_root is not None:
        result.deidentified = _write_deidentified(spark, lake_root, deid_key, exchange_root, result)
    return result


def _write_files_and_instances(spark, lake_root: str, ok) -> dict:
    """The parsed files, then one instance per SOP Instance UID: the file received last (a
    modality or the PACS resending an instance with a corrected header replaces it)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    files = ok.select(
        "file_id", "sop_instance_uid", "series_instance_uid", "study_instance_uid", "source", "rel_path",
        "landing_path", "org_code", "delivery_day", "received_at", "status", "repairs", "sop_class_uid",
        "sop_class_name", "transfer_syntax", "transfer_syntax_name", "modality", "body_part",
        F.try_to_timestamp(F.concat_ws(" ", "study_date", F.substring(F.split("study_time", r"\.")[0], 1, 6)),
                           F.lit("yyyyMMdd HHmmss")).alias("study_datetime"),
        "series_number", "instance_number", "series_description", "study_description", "institution_name",
        "manufacturer", "model", "station_name", "device_serial", "rows", "columns", "frames",
        "samples_per_pixel", "bits_allocated", "bits_stored", "photometric_interpretation",
        "pixel_spacing_row_mm", "pixel_spacing_col_mm", "slice_thickness_mm", "file_size", "pixel_bytes",
        "has_pixel_data", "burned_in_annotation", "accession_number",
        F.lit(ALGORITHM).alias("algorithm"))
    out = {FILES.name: delta.upsert(spark, delta.with_row_hash(files, exclude=()), FILES, lake_root).as_dict()}
    latest = Window.partitionBy("sop_instance_uid").orderBy(F.col("received_at").desc(), F.col("file_id"))
    instances = delta.read(spark, FILES, lake_root).withColumn("__rn", F.row_number().over(latest)) \
        .where("__rn = 1").drop("__rn", "_row_hash")
    out[INSTANCES.name] = delta.upsert(spark, delta.with_row_hash(instances, exclude=()), INSTANCES,
                                       lake_root, delete_scope="true").as_dict()
    return out


def _write_series_and_studies(spark, lake_root: str, result: ImagingResult) -> int:
    """Series and studies from the whole instance table (a MERGE rewrites only what changed), and
    a thumbnail for every series whose representative image changed."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    inst = delta.read(spark, INSTANCES, lake_root).persist()
    try:
        # the series' representative image: the middle one by instance number, among the decodable
        middle = Window.partitionBy("series_instance_uid").orderBy(
            F.coalesce("instance_number", F.lit(0)), "sop_instance_uid")
        images = inst.where("has_pixel_data").withColumn("__i", F.row_number().over(middle)) \
            .withColumn("__n", F.count("*").over(Window.partitionBy("series_instance_uid")))
        rep = images.where(F.col("__i") == F.floor((F.col("__n") + 1) / 2)).select(
            "series_instance_uid", F.col("sop_instance_uid").alias("thumbnail_sop_instance_uid"),
            F.col("landing_path").alias("path"), F.col("_row_hash").alias("thumbnail_source_hash"))
        series = inst.groupBy("series_instance_uid").agg(
            F.first("study_instance_uid").alias("study_instance_uid"), F.first("modality").alias("modality"),
            F.first("body_part", ignorenulls=True).alias("body_part"),
            F.first("series_number", ignorenulls=True).alias("series_number"),
            F.first("series_description", ignorenulls=True).alias("series_description"),
            F.count("*").alias("n_instances"), F.sum("frames").alias("n_frames"),
            F.sum("file_size").alias("total_bytes"), F.min("received_at").alias("first_received_at"),
            F.max("received_at").alias("last_received_at"))
        series = series.join(rep.drop("path"), "series_instance_uid", "left")
        result.tables[SERIES.name] = delta.upsert(
            spark, delta.with_row_hash(series, exclude=()), SERIES, lake_root).as_dict()
        made = _write_thumbnails(spark, lake_root, rep, result)
        result.tables[STUDIES.name] = _write_studies(spark, lake_root, inst)
        return made
    finally:
        inst.unpersist()


def _write_thumbnails(spark, lake_root: str, rep, result: ImagingResult) -> int:
    from pyspark.sql import functions as F

    todo = rep
    if delta.table_exists(spark, THUMBNAILS.path(lake_root)):
        have = delta.read(spark, THUMBNAILS, lake_root).select("series_instance_uid", "thumbnail_source_hash")
        todo = rep.join(have, ["series_instance_uid", "thumbnail_source_hash"], "left_anti")
    todo = todo.persist()
    try:
        n = todo.count()
        if n == 0 and delta.table_exists(spark, THUMBNAILS.path(lake_root)):
            return 0
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
        parts = max(2 * spark.sparkContext.defaultParallelism, -(-n // 200), 1)
        pngs = todo.select("series_instance_uid", "path").repartition(parts, "series_instance_uid").mapInPandas(
            _thumbnail_batches, "series_instance_uid STRING, png BINARY, thumbnail_reason STRING")
        rows = todo.join(pngs, "series_instance_uid").select(
            "series_instance_uid", "thumbnail_sop_instance_uid", "thumbnail_source_hash", "png",
            F.col("png").isNotNull().alias("made"), "thumbnail_reason", F.lit(ALGORITHM).alias("algorithm"))
        stats = delta.upsert(spark, delta.with_row_hash(rows, exclude=("png",)), THUMBNAILS, lake_root).as_dict()
        result.tables[THUMBNAILS.name] = stats
        return n
    finally:
        todo.unpersist()


def _write_studies(spark, lake_root: str, inst) -> dict:
    from pyspark.sql import functions as F

    studies = inst.groupBy("study_instance_uid").agg(
        F.first("accession_number", ignorenulls=True).alias("accession_number"),
        F.first("org_code", ignorenulls=True).alias("org_code"),
        F.first("institution_name", ignorenulls=True).alias("institution_name"),
        F.min("study_datetime").alias("study_datetime"),
        F.concat_ws(",", F.array_sort(F.collect_set("modality"))).alias("modalities"),
        F.concat_ws(",", F.array_sort(F.collect_set("body_part"))).alias("body_parts"),
        F.countDistinct("series_instance_uid").alias("n_series"), F.count("*").alias("n_instances"),
        F.sum("frames").alias("n_frames"), F.sum("file_size").alias("total_bytes"),
        F.sum(F.when(F.col("status") == "repaired", 1).otherwise(0)).alias("n_repaired"),
        F.max(F.when(F.col("burned_in_annotation") == "YES", True).otherwise(False)).alias("burned_in_annotation"),
        F.min("received_at").alias("first_received_at"), F.max("received_at").alias("last_received_at"))
    links = _person_links(spark, lake_root)
    if links is not None:
        studies = studies.join(links, "accession_number", "left")
    else:
        studies = studies.select("*", *[F.lit(None).cast("string").alias(c) for c in (
            "request_id", "person_id", "request_org_code", "reading_org_code", "township_org_code", "county_org_code")])
    studies = studies.select(
        "study_instance_uid", "request_id", "person_id", F.coalesce("request_org_code", "org_code").alias("org_code"),
        "township_org_code", "county_org_code", "reading_org_code", *[c for c in studies.columns if c not in (
            "study_instance_uid", "request_id", "person_id", "org_code", "request_org_code", "township_org_code",
            "county_org_code", "reading_org_code")])
    return delta.upsert(spark, delta.with_row_hash(studies, exclude=()), STUDIES, lake_root).as_dict()


DEID_SCHEMA = ("sop_instance_uid STRING, reading_org_code STRING, deid_study_instance_uid STRING, "
               "deid_series_instance_uid STRING, deid_sop_instance_uid STRING, deid_path STRING, "
               "date_shift_days INT, burned_in_risk BOOLEAN, burned_in_reason STRING, actions INT, "
               "n_surviving INT, surviving_identifiers STRING, error STRING, reid STRING")


def _deid_batches(key: bytes, exchange_root: str):
    """mapInPandas function: de-identify each file for its reading centre, write the copy, and
    return the new UIDs, the check of the copy and the re-identification rows (JSON)."""
    def run(batches):
        import json
        from pathlib import Path

        import pandas as pd

        from spark_jobs.imaging.deid import deidentify, surviving_identifiers

        for pdf in batches:
            out = []
            for r in pdf.itertuples(index=False):
                row = {"sop_instance_uid": r.sop_instance_uid, "reading_org_code": r.reading_org_code}
                try:
                    ds = parse.load_dataset(r.path)
                    res = deidentify(ds, key=key, patient_key=r.person_id)
                    d = res.dataset
                    target = Path(exchange_root, r.reading_org_code, str(d.StudyInstanceUID),
                                  str(d.SeriesInstanceUID), f"{d.SOPInstanceUID}.dcm")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_suffix(".part")
                    d.save_as(tmp, enforce_file_format=False)
                    tmp.replace(target)   # a crash never leaves a half-written copy under the final name
                    row.update(deid_study_instance_uid=str(d.StudyInstanceUID),
                               deid_series_instance_uid=str(d.SeriesInstanceUID),
                               deid_sop_instance_uid=str(d.SOPInstanceUID), deid_path=str(target),
                               date_shift_days=res.date_shift_days, burned_in_risk=res.burned_in_risk,
                               burned_in_reason=res.burned_in_reason or None, actions=len(res.actions),
                               **_surviving(surviving_identifiers(ds, d)),
                               reid=json.dumps([[x.kind, x.original, x.replacement] for x in res.reid_map]))
                except Exception as exc:  # noqa: BLE001 - recorded on the row; the image is not sent
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                out.append(row)
            # object columns: a batch of failures only has None where numbers and flags would be
            yield pd.DataFrame(out, columns=[c.split()[0] for c in DEID_SCHEMA.split(", ")], dtype=object)
    return run


def _surviving(found: list[str]) -> dict:
    import json

    return {"n_surviving": len(found), "surviving_identifiers": json.dumps(found, ensure_ascii=False) if found else None}


def _write_deidentified(spark, lake_root: str, key: bytes, exchange_root: str, result: ImagingResult) -> int:
    """De-identified copies of the images of every study a reading centre was asked to read, not
    sent yet (or changed since): one per image and reading centre."""
    from pyspark.sql import functions as F

    studies = delta.read(spark, STUDIES, lake_root).where(
        "reading_org_code IS NOT NULL AND person_id IS NOT NULL AND reading_org_code <> org_code")
    inst = delta.read(spark, INSTANCES, lake_root)
    todo = inst.join(studies.select("study_instance_uid", "reading_org_code", "person_id"), "study_instance_uid") \
        .select("sop_instance_uid", "reading_org_code", "person_id", F.col("landing_path").alias("path"),
                F.col("_row_hash").alias("source_hash"))
    if delta.table_exists(spark, DEIDENTIFIED.path(lake_root)):
        done = delta.read(spark, DEIDENTIFIED, lake_root).select("sop_instance_uid", "reading_org_code", "source_hash")
        todo = todo.join(done, ["sop_instance_uid", "reading_org_code", "source_hash"], "left_anti")
    todo = todo.persist()
    try:
        n = todo.count()
        if n == 0 and delta.table_exists(spark, DEIDENTIFIED.path(lake_root)):
            return 0
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "32")
        parts = max(2 * spark.sparkContext.defaultParallelism, -(-n // 500), 1)
        copies = todo.repartition(parts, "sop_instance_uid").mapInPandas(
            _deid_batches(key, exchange_root), DEID_SCHEMA) \
            .join(todo.select("sop_instance_uid", "reading_org_code", "source_hash"),
                  ["sop_instance_uid", "reading_org_code"]).persist()
        sent = copies.drop("reid").withColumn("algorithm", F.lit(ALGORITHM))
        result.tables[DEIDENTIFIED.name] = delta.upsert(spark, delta.with_row_hash(sent, exclude=()), DEIDENTIFIED, lake_root).as_dict()
        reid = copies.where("reid IS NOT NULL").select(
            "reading_org_code", F.explode(F.from_json("reid", "ARRAY<ARRAY<STRING>>")).alias("r")).select(
            "reading_org_code", F.col("r")[0].alias("kind"), F.col("r")[1].alias("original"),
            F.col("r")[2].alias("replacement")).dropDuplicates(["reading_org_code", "kind", "original"])
        result.tables[REID_MAP.name] = delta.upsert(spark, delta.with_row_hash(reid, exclude=()), REID_MAP, lake_root).as_dict()
        copies.unpersist()
        return n
    finally:
        todo.unpersist()
