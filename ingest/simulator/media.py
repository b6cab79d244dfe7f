"""Synthetic imaging exams (DICOM) and 12-lead resting ECGs (DICOM waveform or WFDB) for the
remote imaging / remote ECG requests of the simulated city.

The files look like what a PACS or an ECG cart delivers (see ``docs/sources.md``, sources
``dicom`` and ``ecg``):

- imaging: ``<day_dir>/<org_code>/<accession_no>/<n>.dcm``, one DICOM Part 10 file per image, with
  a modality-typical study (DX/CR 1-2 views, CT / MR a small series, US a few images or a cine
  loop), small but non-constant pixel data (simple anatomical phantoms), the patient's identity
  (Chinese name in UTF-8, ID-card number in Other Patient IDs) and deterministic UIDs;
- ECG: a 10-s 12-lead recording at 500 Hz, as ``<request_id>.dcm`` (12-lead ECG Waveform Storage)
  or ``<request_id>.hea`` + ``.dat`` (WFDB format 16) in ``<day_dir>/<org_code>/``.

ECG morphology comes from a cardiac-dipole model: a few Gaussian waves (P, septal Q, R, S, T) with
a direction each, projected on the 12 lead vectors, so the limb leads obey Einthoven's law and the
precordial R wave progresses from V1 to V6 as on a real tracing. (neurokit2's "multileads" ecgsyn
scales every lead to the same -0.4..1.2 mV range, which gives lead II a tiny R and a huge T, and
takes ~0.7 s per recording.) The rhythm is laid out beat by beat from an RR series, so each
rhythm is exactly what it claims: sinus with respiratory variability, irregularly irregular RR
with f-waves and no P for AF, premature wide beats with a compensatory pause for PVCs, a sinus
arrest > 2 s for a pause. Recording noise (baseline wander, 50 Hz mains, EMG-like noise) comes
from neurokit2's ``signal_distort``.

Everything is a function of the inputs and ``seed``: no clock, no random UIDs, so the same call
writes the same bytes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---- the API the city simulator calls -------------------------------------------------------------


@dataclass(frozen=True)
class PatientIdentity:
    patient_id: str
    name: str
    id_card_no: str
    sex: str  # "1" male / "2" female (GB/T 2261.1)
    birth_date: dt.date


@dataclass(frozen=True)
class ImagingExam:
    accession_no: str
    request_id: str
    org_code: str
    institution_name: str
    modality: str  # DX CR CT US MR
    body_part: str
    study_datetime: dt.datetime
    defect: str | None = None  # "truncated_dicom"


@dataclass(frozen=True)
class EcgExam:
    request_id: str
    org_code: str
    institution_name: str
    recorded_at: dt.datetime
    rhythm: str  # sinus brady tachy afib pvc pause
    heart_rate: int
    noise: float  # noise amplitude in mV
    file_format: str  # "dicom" | "wfdb"
    defect: str | None = None  # "flatline_ecg" | "truncated_ecg"


MODALITIES = ("DX", "CR", "CT", "US", "MR")
RHYTHMS = ("sinus", "brady", "tachy", "afib", "pvc", "pause")
ECG_FORMATS = ("dicom", "wfdb")
IMAGING_DEFECTS = ("truncated_dicom",)
ECG_DEFECTS = ("flatline_ecg", "truncated_ecg")

LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# SCP-ECG lead codes (DICOM CID 3001, coding scheme SCPECG) in LEAD_NAMES order
LEAD_CODES = (
    ("5.6.3-9-1", "Lead I (Einthoven)"), ("5.6.3-9-2", "Lead II"), ("5.6.3-9-61", "Lead III"),
    ("5.6.3-9-62", "Lead aVR"), ("5.6.3-9-63", "Lead aVL"), ("5.6.3-9-64", "Lead aVF"),
    ("5.6.3-9-3", "Lead V1"), ("5.6.3-9-4", "Lead V2"), ("5.6.3-9-5", "Lead V3"),
    ("5.6.3-9-6", "Lead V4"), ("5.6.3-9-7", "Lead V5"), ("5.6.3-9-8", "Lead V6"),
)
ECG_FS = 500
ECG_SECONDS = 10
ECG_UV_PER_LSB = 2.5          # 400 ADC units per mV

SOP_CLASSES = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image Storage
    "CT": "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",    # Ultrasound Image Storage
    "US_MF": "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",      # MR Image Storage
    "ECG": "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
}
# issuer of the resident ID card in Other Patient IDs Sequence (the national OID also used by FHIR)
ID_CARD_ISSUER = "2.16.156.10011.1.5.1.6"
MANUFACTURER = "JL-SIM"

_STUDY_DESCRIPTIONS = {
    ("DX", "CHEST"): "胸部正位片", ("CR", "CHEST"): "胸部正位片", ("CT", "CHEST"): "胸部CT平扫",
    ("CT", "HEAD"): "头颅CT平扫", ("CT", "ABDOMEN"): "上腹部CT平扫", ("MR", "HEAD"): "头颅MRI平扫",
    ("MR", "BRAIN"): "头颅MRI平扫", ("US", "ABDOMEN"): "腹部彩超", ("US", "THYROID"): "甲状腺彩超",
}


# ---- shared helpers --------------------------------------------------------------------------------

def _rng(seed: int, *parts: str) -> np.random.Generator:
    """A numpy RNG seeded from ``seed`` and the identifying strings (stable across processes)."""
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _uid(seed: int, *parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(seed), *parts]))


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


def _patient_module(ds, patient: PatientIdentity, on: dt.date, org_code: str) -> None:
    from pydicom.dataset import Dataset

    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = org_code
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = {"1": "M", "2": "F"}.get(patient.sex, "O")
    ds.PatientAge = _age(patient.birth_date, on)
    ds.OtherPatientIDs = patient.id_card_no  # (retired but still what Chinese PACS fill in)
    other = Dataset()
    other.PatientID = patient.id_card_no
    other.IssuerOfPatientID = ID_CARD_ISSUER
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [other]


def _file_dataset(sop_class: str, sop_instance: str):
    from pydicom.dataset import FileMetaDataset, Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    return ds


def _encode(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _truncate_inside(data: bytes, tag: bytes, fraction: float) -> bytes:
    """``data`` cut ``fraction`` of the way into the value of the last element with ``tag``
    (little-endian group+element bytes followed by an OB/OW explicit-VR header)."""
    pos = data.rfind(tag)
    if pos < 0:
        raise ValueError("element to truncate not found")
    length = int.from_bytes(data[pos + 8:pos + 12], "little")  # tag(4) VR(2) reserved(2) length(4)
    start = pos + 12
    return data[:start + max(1, int(length * fraction))]


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# ---- imaging -----------------------------------------------------------------------------------------

def _grid(rows: int, cols: int):
    y, x = np.mgrid[0:rows, 0:cols]
    return (x - cols / 2) / (cols / 2), (y - rows / 2) / (rows / 2)


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _smooth_noise(rng, shape, scale: int = 8):
    """Low-frequency texture: coarse noise upsampled by repetition and blurred by a box filter."""
    coarse = rng.normal(size=(shape[0] // scale + 2, shape[1] // scale + 2))
    up = np.kron(coarse, np.ones((scale, scale)))[:shape[0], :shape[1]]
    k = np.ones(scale) / scale
    up = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, up)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, up)


def _radiograph(rng, rows: int, cols: int, region: str, lateral: bool) -> np.ndarray:
    """Projection X-ray phantom in 'attenuation' units 0..1 (1 = dense)."""
    x, y = _grid(rows, cols)
    img = np.zeros((rows, cols))
    body = _ellipse(x, y, 0, 0.05, 0.85 if not lateral else 0.6, 1.1)
    img[body] = 0.45
    if region == "CHEST":
        for cx in ((-0.38, 0.38) if not lateral else (0.0,)):
            img[_ellipse(x, y, cx, -0.05, 0.28 if not lateral else 0.45, 0.62)] = 0.12  # lungs
        img[_ellipse(x, y, 0.12, 0.25, 0.28, 0.3)] = 0.55  # heart
        img[(np.abs(x - (0 if not lateral else 0.35)) < 0.07) & body] = 0.85  # spine
        for k in range(8):  # ribs
            yy = -0.55 + k * 0.14
            img[(np.abs(y - yy - 0.15 * x ** 2) < 0.018) & body] += 0.2
    else:
        img[(np.abs(x) < 0.12) & body] = 0.85  # spine / long bone
        img[_ellipse(x, y, 0, 0.7, 0.5, 0.25) & body] = 0.7  # pelvis / joint
    img += 0.04 * _smooth_noise(rng, (rows, cols)) + 0.01 * rng.normal(size=(rows, cols))
    return np.clip(img, 0, 1)


def _ct_slice(rng, rows: int, cols: int, region: str, z: float) -> np.ndarray:
    """CT phantom slice in Hounsfield units; ``z`` in -1..1 changes the anatomy along the series."""
    x, y = _grid(rows, cols)
    hu = np.full((rows, cols), -1000.0)
    if region in ("HEAD", "BRAIN"):
        r = 0.8 * np.sqrt(max(1 - (0.6 * z) ** 2, 0.2))
        hu[_ellipse(x, y, 0, 0, r, r * 1.2)] = 900  # skull
        hu[_ellipse(x, y, 0, 0, r - 0.08, r * 1.2 - 0.08)] = 35  # brain
        vent = max(0.22 * (1 - abs(z)), 0.01)
        hu[_ellipse(x, y, -0.12, -0.05, 0.06, vent)] = 8  # ventricles
        hu[_ellipse(x, y, 0.12, -0.05, 0.06, vent)] = 8
    else:
        body = _ellipse(x, y, 0, 0, 0.9, 0.65)
        hu[body] = -90  # fat
        hu[_ellipse(x, y, 0, 0, 0.82, 0.57)] = 45  # soft tissue
        if region == "CHEST":
            for cx in (-0.38, 0.38):
                hu[_ellipse(x, y, cx, -0.05, 0.3, 0.42 * (1 - 0.3 * abs(z)))] = -820
            hu[_ellipse(x, y, 0.1, 0.05, 0.22, 0.2)] = 40  # heart
        else:
            hu[_ellipse(x, y, -0.35, -0.05, 0.3 + 0.05 * z, 0.3)] = 60  # liver
            hu[_ellipse(x, y, 0.35, 0.05, 0.12, 0.12)] = 30  # kidney / spleen
        hu[_ellipse(x, y, 0, 0.45, 0.1, 0.09)] = 700  # vertebra
    hu += 6 * _smooth_noise(rng, (rows, cols), 4) + 8 * rng.normal(size=(rows, cols))
    return hu


def _mr_slice(rng, rows: int, cols: int, region: str, z: float) -> np.ndarray:
    x, y = _grid(rows, cols)
    img = np.zeros((rows, cols))
    r = 0.8 * np.sqrt(max(1 - (0.6 * z) ** 2, 0.2))
    img[_ellipse(x, y, 0, 0, r, r * 1.2)] = 300  # scalp / fat
    img[_ellipse(x, y, 0, 0, r - 0.06, r * 1.2 - 0.06)] = 40  # skull (dark)
    img[_ellipse(x, y, 0, 0, r - 0.1, r * 1.2 - 0.1)] = 600  # grey matter
    img[_ellipse(x, y, 0, 0, r - 0.25, r * 1.2 - 0.3)] = 800  # white matter
    vent = max(0.2 * (1 - abs(z)), 0.01)
    img[_ellipse(x, y, -0.1, 0, 0.05, vent)] = 150  # ventricles
    img[_ellipse(x, y, 0.1, 0, 0.05, vent)] = 150
    img = img * (1 + 0.05 * _smooth_noise(rng, (rows, cols))) + np.abs(rng.normal(0, 15, (rows, cols)))
    return np.clip(img, 0, 4000)


def _us_frame(rng, rows: int, cols: int, phase: float) -> np.ndarray:
    """B-mode sector: speckle inside a fan, a dark cyst and a bright interface; 0..255."""
    x, y = np.mgrid[0:rows, 0:cols]
    apex_x = cols / 2
    ang = np.arctan2(y - apex_x, x + 1.0)
    depth = np.hypot(x + 1.0, y - apex_x) / rows
    fan = (np.abs(ang) < 0.6) & (depth < 0.95) & (depth > 0.05)
    speckle = rng.rayleigh(1.0, (rows, cols))
    img = 70 * speckle * np.exp(-0.8 * depth)
    img[np.abs(depth - (0.55 + 0.02 * np.sin(phase))) < 0.015] += 120
    img[((ang - 0.1) ** 2 / 0.03 + (depth - 0.35) ** 2 / 0.01) < 1] *= 0.15
    img[~fan] = 0
    return np.clip(img, 0, 255)


def _series_plan(modality: str, rng) -> list[dict]:
    """The images of a study: one dict per file (series number, image kind, frames...)."""
    if modality in ("DX", "CR"):
        views = ["PA", "LL"][: int(rng.integers(1, 3))]
        return [{"series": i + 1, "view": v} for i, v in enumerate(views)]
    if modality == "CT":
        return [{"series": 2, "z": z} for z in np.linspace(-1, 1, int(rng.integers(8, 17)))]
    if modality == "MR":
        return [{"series": 3, "z": z} for z in np.linspace(-0.8, 0.8, int(rng.integers(6, 13)))]
    if rng.random() < 0.3:  # US: a short cine loop
        return [{"series": 1, "frames": int(rng.integers(6, 11))}]
    return [{"series": 1, "frames": 1} for _ in range(int(rng.integers(2, 5)))]


def _image_dataset(patient: PatientIdentity, exam: ImagingExam, seed: int, n: int, plan: dict,
                   rng) -> "object":
    from pydicom.dataset import Dataset

    modality = exam.modality.upper()
    region = exam.body_part.upper()
    multiframe = modality == "US" and plan.get("frames", 1) > 1
    sop_class = SOP_CLASSES["US_MF" if multiframe else modality]
    study_uid = _uid(seed, exam.accession_no, "study")
    series_uid = _uid(seed, exam.accession_no, "series", str(plan["series"]))
    sop_uid = _uid(seed, exam.accession_no, "instance", str(n))
    ds = _file_dataset(sop_class, sop_uid)
    when = exam.study_datetime
    _patient_module(ds, patient, when.date(), exam.org_code)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else ""]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    acq = when + dt.timedelta(seconds=30 + 5 * n)
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = acq.strftime("%H%M%S")
    ds.AccessionNumber = exam.accession_no
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = exam.institution_name
    ds.StationName = f"{exam.org_code}-{modality}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = _STUDY_DESCRIPTIONS.get((modality, region), f"{region} {modality}")
    ds.BodyPartExamined = region
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = exam.accession_no[-16:]
    ds.SeriesNumber = plan["series"]
    ds.InstanceNumber = n
    req = Dataset()
    req.RequestedProcedureID = exam.request_id
    req.AccessionNumber = exam.accession_no
    ds.RequestAttributesSequence = [req]
    ds.PatientOrientation = ""

    if modality in ("DX", "CR"):
        rows, cols = int(rng.integers(160, 257)), int(rng.integers(140, 225))
        lateral = plan["view"] == "LL"
        att = _radiograph(rng, rows, cols, region, lateral)
        bits = 12
        pixels = (att * 3000 + 400).astype(np.uint16)
        ds.ViewPosition = plan["view"]
        ds.PatientOrientation = ["A", "F"] if lateral else ["L", "F"]
        ds.ImagerPixelSpacing = ds.PixelSpacing = [0.143 * 2048 / rows] * 2
        ds.KVP = 120 if region == "CHEST" else 75
        if modality == "CR" and rng.random() < 0.5:
            ds.PhotometricInterpretation = "MONOCHROME1"  # CR plates often store bone as dark
            pixels = (4095 - pixels).astype(np.uint16)
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
        if modality == "DX":
            ds.PresentationIntentType = "FOR PRESENTATION"
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelRepresentation = 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        samples, frames = 1, 1
    elif modality == "CT":
        rows = cols = 128
        hu = _ct_slice(rng, rows, cols, region, plan["z"])
        pixels = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
        bits = 12
        thickness = 5.0
        ds.SliceThickness = thickness
        ds.KVP = 120
        ds.PixelSpacing = [0.7 * 512 / rows] * 2
        ds.ImagePositionPatient = [-0.7 * 256, -0.7 * 256, round(float(plan["z"]) * 40, 2)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = round(float(plan["z"]) * 40, 2)
        ds.FrameOfReferenceUID = _uid(seed, exam.accession_no, "frame")
        ds.PositionReferenceIndicator = ""
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = {"CHEST": (-600, 1500), "HEAD": (40, 80),
                                           "BRAIN": (40, 80)}.get(region, (40, 400))
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        samples, frames = 1, 1
    elif modality == "MR":
        rows = cols = 128
        pixels = _mr_slice(rng, rows, cols, region, plan["z"]).astype(np.uint16)
        bits = 12
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.SliceThickness, ds.RepetitionTime, ds.EchoTime = 5.0, 500, 15
        ds.MagneticFieldStrength = 1.5
        ds.PixelSpacing = [1.8, 1.8]
        ds.ImagePositionPatient = [-115.2, -115.2, round(float(plan["z"]) * 60, 2)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = round(float(plan["z"]) * 60, 2)
        ds.FrameOfReferenceUID = _uid(seed, exam.accession_no, "frame")
        ds.PositionReferenceIndicator = ""
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        samples, frames = 1, 1
    elif modality == "US":
        rows, cols = 120, 160
        frames = plan["frames"]
        stack = np.stack([_us_frame(rng, rows, cols, k * 0.7) for k in range(frames)]).astype(np.uint8)
        bits = 8
        if multiframe:
            ds.PhotometricInterpretation = "MONOCHROME2"
            samples = 1
            pixels = stack
            ds.NumberOfFrames = frames
            ds.FrameTime = 40.0
            ds.FrameIncrementPointer = 0x00181063  # Frame Time
            ds.CineRate = 25
        else:  # single images with an RGB overlay of the scanner's colour annotations
            ds.PhotometricInterpretation = "RGB"
            samples = 3
            rgb = np.repeat(stack[0][:, :, None], 3, axis=2)
            rgb[4:10, 4:40] = (255, 200, 0)  # yellow caption bar
            pixels = rgb
            ds.PlanarConfiguration = 0
        ds.PixelRepresentation = 0
    else:
        raise ValueError(f"unsupported modality {exam.modality!r}; expected one of {MODALITIES}")

    ds.SamplesPerPixel = samples
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_imaging_exam(day_dir: Path, patient: PatientIdentity, exam: ImagingExam, seed: int) -> list[Path]:
    """Write the exam's images as ``<day_dir>/<org_code>/<accession_no>/<n>.dcm`` (n from 1) and
    return their paths. ``exam.defect == "truncated_dicom"`` cuts the last file short inside its
    pixel data."""
    if exam.defect not in (None, *IMAGING_DEFECTS):
        raise ValueError(f"unknown imaging defect {exam.defect!r}")
    if exam.modality.upper() not in MODALITIES:
        raise ValueError(f"unsupported modality {exam.modality!r}; expected one of {MODALITIES}")
    rng = _rng(seed, "imaging", exam.accession_no)
    folder = Path(day_dir) / exam.org_code / exam.accession_no
    plan = _series_plan(exam.modality.upper(), rng)
    paths = []
    for n, item in enumerate(plan, start=1):
        data = _encode(_image_dataset(patient, exam, seed, n, item, rng))
        if exam.defect == "truncated_dicom" and n == len(plan):
            data = _truncate_inside(data, b"\xe0\x7f\x10\x00", 0.4 + 0.4 * rng.random())
        paths.append(_write_bytes(folder / f"{n}.dcm", data))
    return paths


# ---- ECG ----------------------------------------------------------------------------------------------

def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _frontal(deg: float, anterior: float = 0.0) -> np.ndarray:
    """A direction at ``deg`` in the frontal plane (0° = patient's left, 90° = feet), tilted
    ``anterior`` towards the chest wall (x left, y inferior, z anterior)."""
    r = np.radians(deg)
    return _unit([np.cos(r), np.sin(r), anterior])


# lead vectors: I and II in the frontal plane; V1..V6 around the horizontal plane (0° = left
# mid-axillary, 90° = anterior), slightly larger gain as the chest electrodes sit closer
_LEAD_I = np.array([1.0, 0.0, 0.0])
_LEAD_II = np.array([0.5, np.sqrt(3) / 2, 0.0])
_PRECORDIAL = np.array([[1.4 * np.cos(np.radians(a)), 0.15, 1.4 * np.sin(np.radians(a))]
                        for a in (118, 95, 75, 60, 35, 5)])


@dataclass(frozen=True)
class _Wave:
    t: float        # s relative to the R peak (for T: scaled with sqrt(RR))
    sigma: float    # s
    amp: float      # mV along ``direction``
    direction: np.ndarray


def _sinus_waves(rng) -> list[_Wave]:
    """P-QRS-T of a normal beat; the QRS axis, PR and amplitudes vary by patient."""
    axis = rng.uniform(15, 75)
    scale = rng.uniform(0.75, 1.3)
    pr = rng.uniform(0.13, 0.19)
    return [
        _Wave(-pr, 0.024, 0.16 * scale, _frontal(55, 0.2)),                 # P
        _Wave(-0.028, 0.008, 0.22 * scale, _unit([-0.7, 0.1, 0.7])),        # septal q (to the right, front)
        _Wave(0.0, 0.010, 1.35 * scale, _frontal(axis, -0.55)),             # R (left, back)
        _Wave(0.026, 0.010, 0.45 * scale, _unit([-0.4, -0.3, -0.85])),      # S (right, up, back)
        _Wave(0.0, 0.050, 0.45 * scale, _frontal(axis + 5, 0.35)),          # T (t set per beat)
    ]


def _pvc_waves(rng) -> list[_Wave]:
    """A wide ventricular beat with discordant T (no P)."""
    d = _frontal(rng.uniform(-80, -30), rng.uniform(-0.8, 0.8))
    return [
        _Wave(-0.03, 0.028, 1.1, d),
        _Wave(0.035, 0.030, 0.6, _unit(-d + _frontal(90))),
        _Wave(0.0, 0.070, 0.45, -d),  # discordant T
    ]


def _rr_series(exam: EcgExam, rng, total: float) -> tuple[list[float], list[str]]:
    """R-peak times (s, may start before 0) and beat kinds ("N" normal, "V" PVC)."""
    rr = 60.0 / max(float(exam.heart_rate), 20.0)
    t = -rng.uniform(0.2, 1.0) * rr
    times, kinds = [], []
    pvc_at: set[int] = set()
    pause_at = None
    n_est = int(total / rr) + 2
    if exam.rhythm == "pvc":
        k = int(rng.integers(1, 3))
        pvc_at = set(int(i) for i in rng.choice(np.arange(3, max(n_est - 2, 4)), size=k, replace=False))
    if exam.rhythm == "pause":
        pause_at = int(rng.integers(3, max(n_est // 2, 4)))
    i = 0
    while t < total + 0.5:
        times.append(t)
        kinds.append("V" if i in pvc_at else "N")
        if exam.rhythm == "afib":
            step = rr * float(np.clip(rng.gamma(16, 1 / 16), 0.55, 1.8))  # irregularly irregular
        else:  # sinus with respiratory sinus arrhythmia
            step = rr * (1 + 0.04 * np.sin(2 * np.pi * 0.25 * t) + 0.012 * rng.normal())
        if i + 1 in pvc_at:
            step = rr * rng.uniform(0.55, 0.68)      # premature
        elif i in pvc_at:
            step = 2 * rr - (times[-1] - times[-2]) if len(times) > 1 else 1.4 * rr  # compensatory
        if pause_at is not None and i == pause_at:
            step = max(2.3, 2.2 * rr) + rng.uniform(0, 0.6)  # sinus arrest
        t += step
        i += 1
    return times, kinds


def _dipole(exam: EcgExam, rng) -> tuple[np.ndarray, np.ndarray]:
    """The cardiac dipole (n, 3) over the recording, and the R-peak sample indices in it."""
    n = ECG_FS * ECG_SECONDS
    tt = np.arange(n) / ECG_FS
    d = np.zeros((n, 3))
    normal, ectopic = _sinus_waves(rng), _pvc_waves(rng)
    times, kinds = _rr_series(exam, rng, ECG_SECONDS)
    afib = exam.rhythm == "afib"
    for k, (r, kind) in enumerate(zip(times, kinds)):
        rr = (times[k] - times[k - 1]) if k else (times[1] - times[0] if len(times) > 1 else 1.0)
        rr = float(np.clip(rr, 0.3, 2.0))
        lo, hi = np.searchsorted(tt, [r - 0.35, r + 0.75])
        if hi <= lo:
            continue
        seg = tt[lo:hi] - r
        resp = 1 + 0.06 * np.sin(2 * np.pi * 0.25 * r)  # respiration moves the heart a little
        waves = ectopic if kind == "V" else normal
        for j, w in enumerate(waves):
            if kind == "N" and j == 0 and afib:
                continue  # no P waves in AF
            centre, sigma = w.t, w.sigma
            if kind == "N" and j == 4:  # T follows the heart rate (Bazett-like)
                centre, sigma = 0.24 * np.sqrt(rr), 0.045 * np.sqrt(rr)   # QTc about 400 ms
            g = w.amp * resp * np.exp(-0.5 * ((seg - centre) / sigma) ** 2)
            d[lo:hi] += g[:, None] * w.direction[None, :]
    if afib:  # fibrillatory waves, 4-8 Hz, strongest towards V1
        f = rng.uniform(5, 7)
        phase = np.cumsum(2 * np.pi * (f + 0.8 * np.sin(2 * np.pi * 0.3 * tt)) / ECG_FS)
        amp = 0.05 * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * tt + rng.uniform(0, 6)))
        d += (amp * np.sin(phase))[:, None] * _unit([-0.3, 0.5, 0.8])[None, :]
    peaks = np.array([int(round(r * ECG_FS)) for r in times if 0 <= r < ECG_SECONDS])
    return d, peaks


def _noise(n: int, amplitude: float, rng) -> np.ndarray:
    """Recording noise of one electrode (mV): baseline wander (respiration, electrode drift) of
    about ``amplitude``, 50 Hz mains and broadband muscle noise at 15 % of it."""
    if amplitude <= 0:
        return np.zeros(n)
    t = np.arange(n) / ECG_FS
    f1, f2 = rng.uniform(0.12, 0.35), rng.uniform(0.4, 0.8)
    p1, p2, p3 = rng.uniform(0, 2 * np.pi, 3)
    wander = amplitude * (np.sin(2 * np.pi * f1 * t + p1) + 0.4 * np.sin(2 * np.pi * f2 * t + p2))
    mains = 0.15 * amplitude * np.sin(2 * np.pi * 50 * t + p3)
    return wander + mains + rng.normal(0, 0.15 * amplitude, n)


def synthesize_ecg(exam: EcgExam, seed: int) -> np.ndarray:
    """The 12 leads (samples, 12) in mV, LEAD_NAMES order, before quantisation."""
    rng = _rng(seed, "ecg", exam.request_id)
    n = ECG_FS * ECG_SECONDS
    if exam.defect == "flatline_ecg":  # leads off: electrode offset only, a few µV of noise
        return rng.normal(0, 0.02, (1, 12)) + rng.normal(0, 0.003, (n, 12))
    d, _ = _dipole(exam, rng)
    lead_i, lead_ii = d @ _LEAD_I, d @ _LEAD_II
    chest = d @ _PRECORDIAL.T
    # the cart records I, II and V1-V6 (each with its own electrode noise) and derives the rest
    lead_i = lead_i + _noise(n, exam.noise, rng)
    lead_ii = lead_ii + _noise(n, exam.noise, rng)
    chest = chest + np.stack([_noise(n, exam.noise, rng) for _ in range(6)], axis=1)
    iii = lead_ii - lead_i
    avr, avl, avf = -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2
    return np.column_stack([lead_i, lead_ii, iii, avr, avl, avf, chest])


def _quantise(signals_mv: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signals_mv * 1000 / ECG_UV_PER_LSB), -32767, 32767).astype(np.int16)


def _ecg_dicom(patient: PatientIdentity, exam: EcgExam, seed: int, digital: np.ndarray) -> bytes:
    from pydicom.dataset import Dataset

    sop_uid = _uid(seed, exam.request_id, "ecg", "instance")
    ds = _file_dataset(SOP_CLASSES["ECG"], sop_uid)
    when = exam.recorded_at
    _patient_module(ds, patient, when.date(), exam.org_code)
    ds.StudyDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.AccessionNumber = exam.request_id[-16:]
    ds.Modality = "ECG"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "12-lead resting ECG"
    ds.InstitutionName = exam.institution_name
    ds.StationName = f"{exam.org_code[-12:]}-ECG"  # SH: at most 16 characters
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "常规十二导联心电图"
    ds.StudyInstanceUID = _uid(seed, exam.request_id, "ecg", "study")
    ds.SeriesInstanceUID = _uid(seed, exam.request_id, "ecg", "series")
    ds.StudyID = exam.request_id[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    req = Dataset()
    req.RequestedProcedureID = exam.request_id
    ds.RequestAttributesSequence = [req]
    ds.AcquisitionContextSequence = []

    group = Dataset()
    group.MultiplexGroupTimeOffset = 0
    group.TriggerTimeOffset = 0
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = digital.shape[1]
    group.NumberOfWaveformSamples = digital.shape[0]
    group.SamplingFrequency = ECG_FS
    group.MultiplexGroupLabel = "RHYTHM"
    channels = []
    for code, meaning in LEAD_CODES:
        ch = Dataset()
        src = Dataset()
        src.CodeValue, src.CodingSchemeDesignator, src.CodingSchemeVersion, src.CodeMeaning = \
            code, "SCPECG", "1.3", meaning
        ch.ChannelSourceSequence = [src]
        unit = Dataset()
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodingSchemeVersion, unit.CodeMeaning = \
            "uV", "UCUM", "1.4", "microvolt"
        ch.ChannelSensitivity = ECG_UV_PER_LSB
        ch.ChannelSensitivityUnitsSequence = [unit]
        ch.ChannelSensitivityCorrectionFactor = 1
        ch.ChannelBaseline = 0
        ch.ChannelSampleSkew = 0
        ch.WaveformBitsStored = 16
        ch.FilterLowFrequency = 0.05
        ch.FilterHighFrequency = 150
        ch.NotchFilterFrequency = 0
        channels.append(ch)
    group.ChannelDefinitionSequence = channels
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformData = digital.astype("<i2").tobytes()  # interleaved: C1S1 C2S1 ... CnS1 C1S2 ...
    ds.WaveformSequence = [group]
    data = _encode(ds)
    return data


def _ecg_wfdb(folder: Path, patient: PatientIdentity, exam: EcgExam, digital: np.ndarray) -> list[Path]:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    name = exam.request_id
    sex = {"1": "M", "2": "F"}.get(patient.sex, "U")
    comments = [
        f"<age>: {int(_age(patient.birth_date, exam.recorded_at.date())[:3])} <sex>: {sex}",
        f"patient_id: {patient.patient_id}",
        f"id_card_no: {patient.id_card_no}",
        f"birth_date: {patient.birth_date.isoformat()}",
        f"request_id: {exam.request_id}",
        f"org_code: {exam.org_code}",
        f"recorded_at: {exam.recorded_at:%Y-%m-%d %H:%M:%S}",
    ]
    wfdb.wrsamp(name, fs=ECG_FS, units=["mV"] * 12, sig_name=list(LEAD_NAMES),
                d_signal=digital.astype(np.int16), fmt=["16"] * 12,
                adc_gain=[1000 / ECG_UV_PER_LSB] * 12, baseline=[0] * 12, comments=comments,
                base_date=exam.recorded_at.date(), base_time=exam.recorded_at.time(),
                write_dir=str(folder))
    hea, dat = folder / f"{name}.hea", folder / f"{name}.dat"
    # wfdb writes headers in the locale's encoding and reads them as ASCII: write the
    # patient's (Chinese) name ourselves, in UTF-8, so the bytes never depend on the locale
    text = hea.read_text(encoding="ascii") + f"# name: {patient.name}\n"
    _write_bytes(hea, text.encode("utf-8"))
    return [hea, dat]


def write_ecg(day_dir: Path, patient: PatientIdentity, exam: EcgExam, seed: int) -> list[Path]:
    """Write a 10-s 12-lead ECG at 500 Hz into ``<day_dir>/<org_code>/`` as ``<request_id>.dcm``
    (``file_format="dicom"``) or ``<request_id>.hea`` + ``.dat`` (``"wfdb"``); returns the paths.
    ``defect``: ``flatline_ecg`` (leads off, flat) or ``truncated_ecg`` (the file cut short)."""
    if exam.defect not in (None, *ECG_DEFECTS):
        raise ValueError(f"unknown ECG defect {exam.defect!r}")
    if exam.rhythm not in RHYTHMS:
        raise ValueError(f"unknown rhythm {exam.rhythm!r}; expected one of {RHYTHMS}")
    digital = _quantise(synthesize_ecg(exam, seed))
    folder = Path(day_dir) / exam.org_code
    rng = _rng(seed, "ecg-defect", exam.request_id)
    if exam.file_format == "dicom":
        data = _ecg_dicom(patient, exam, seed, digital)
        if exam.defect == "truncated_ecg":
            data = _truncate_inside(data, b"\x00\x54\x10\x10", 0.3 + 0.5 * rng.random())
        return [_write_bytes(folder / f"{exam.request_id}.dcm", data)]
    if exam.file_format == "wfdb":
        paths = _ecg_wfdb(folder, patient, exam, digital)
        if exam.defect == "truncated_ecg":
            dat = paths[1]
            raw = dat.read_bytes()
            _write_bytes(dat, raw[: int(len(raw) * (0.3 + 0.5 * rng.random()))])
        return paths
    raise ValueError(f"unknown ECG file format {exam.file_format!r}; expected one of {ECG_FORMATS}")
