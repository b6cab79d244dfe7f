"""Read WFDB ECG records into a plain, lead-agnostic ``Recording``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Recording", "EcgReadError", "read_wfdb", "read_dicom_ecg", "read_recording", "normalise_lead_name"]

# aliases -> standard lower-case lead names
_LEAD_ALIASES = {
    "i": "i", "lead i": "i", "di": "i",
    "ii": "ii", "lead ii": "ii", "dii": "ii",
    "iii": "iii", "lead iii": "iii", "diii": "iii",
    "avr": "avr", "avl": "avl", "avf": "avf",
    "mlii": "mlii", "ml2": "mlii", "mli": "mli", "mliii": "mliii",
    "vx": "vx", "vy": "vy", "vz": "vz", "x": "vx", "y": "vy", "z": "vz",
    "lead i (einthoven)": "i", "lead ii (einthoven)": "ii", "lead iii (einthoven)": "iii",
    "lead avr": "avr", "lead avl": "avl", "lead avf": "avf",
}
# SCP-ECG lead codes (DICOM CID 3001, coding scheme SCPECG) → standard lead names
_SCPECG_LEADS = {
    "5.6.3-9-1": "i", "5.6.3-9-2": "ii", "5.6.3-9-61": "iii", "5.6.3-9-62": "avr", "5.6.3-9-63": "avl",
    "5.6.3-9-64": "avf", "5.6.3-9-3": "v1", "5.6.3-9-4": "v2", "5.6.3-9-5": "v3", "5.6.3-9-6": "v4",
    "5.6.3-9-7": "v5", "5.6.3-9-8": "v6",
}
_UNIT_TO_MV = {"uv": 1e-3, "µv": 1e-3, "mv": 1.0, "v": 1e3}
for _k in range(1, 7):
    _LEAD_ALIASES[f"v{_k}"] = f"v{_k}"
    _LEAD_ALIASES[f"lead v{_k}"] = f"v{_k}"


class EcgReadError(Exception):
    """Raised when a WFDB record cannot be read. ``reason_code`` is machine-readable."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(f"[{reason_code}] {message}")
        self.reason_code = reason_code
        self.message = message


@dataclass
class Recording:
    signals: np.ndarray          # float64, (n_samples, n_leads), mV
    fs: float
    lead_names: list[str]
    record_id: str
    duration_s: float
    units: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def n_leads(self) -> int:
        return int(self.signals.shape[1])


def normalise_lead_name(name: str) -> str:
    n = (name or "").strip().lower()
    return _LEAD_ALIASES.get(n, n)


def _to_mv(sig: np.ndarray, units: list[str]) -> np.ndarray:
    out = sig.astype(np.float64, copy=True)
    for j, u in enumerate(units):
        u = (u or "").strip().lower()
        if u in ("uv", "µv", "microvolt", "microvolts"):
            out[:, j] /= 1000.0
        elif u in ("v", "volt", "volts"):
            out[:, j] *= 1000.0
    return out


def read_wfdb(record_path: str | os.PathLike) -> Recording:
    """Read a WFDB record (path without extension, or with ``.hea``/``.dat``).

    All signal files referenced by the header are read (e.g. PTB ``.dat`` + ``.xyz``).
    Raises :class:`EcgReadError` with reason codes ``missing_header``,
    ``missing_signal_file``, ``bad_header``, ``truncated``, ``no_signals``, ``unreadable``.
    """
    import wfdb

    p = Path(record_path)
    if p.suffix.lower() in (".hea", ".dat", ".xyz", ".atr"):
        p = p.with_suffix("")
    hea = p.with_name(p.name + ".hea")
    if not hea.is_file():
        raise EcgReadError("missing_header", f"no WFDB header at {hea}")
    try:
        header = wfdb.rdheader(str(p))
    except Exception as exc:  # noqa: BLE001
        raise EcgReadError("bad_header", f"cannot parse header {hea}: {exc}") from exc
    if not header.n_sig:
        raise EcgReadError("no_signals", f"header {hea} declares no signals")
    for fname in sorted(set(header.file_name or [])):
        f = p.parent / fname
        if not f.is_file():
            raise EcgReadError("missing_signal_file", f"signal file {f} referenced by {hea} is missing")
    try:
        rec = wfdb.rdrecord(str(p), physical=True)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        code = "truncated" if any(s in msg.lower() for s in ("buffer", "size", "reshape", "length", "shape")) else "unreadable"
        raise EcgReadError(code, f"cannot read signals of {p}: {type(exc).__name__}: {msg}") from exc
    sig = rec.p_signal
    if sig is None or sig.ndim != 2 or sig.shape[1] == 0:
        raise EcgReadError("no_signals", f"record {p} has no signal data")
    if header.sig_len and sig.shape[0] < header.sig_len:
        raise EcgReadError("truncated", f"record {p}: {sig.shape[0]} of {header.sig_len} samples present")
    if sig.shape[0] == 0:
        raise EcgReadError("truncated", f"record {p} has zero samples")
    fs = float(rec.fs)
    if not fs or fs <= 0:
        raise EcgReadError("bad_header", f"record {p} has invalid sampling frequency {rec.fs!r}")
    units = list(rec.units or [""] * sig.shape[1])
    signals = _to_mv(sig, units)
    names = [normalise_lead_name(n) for n in (rec.sig_name or [f"ch{j}" for j in range(sig.shape[1])])]
    return Recording(
        signals=signals, fs=fs, lead_names=names, record_id=str(rec.record_name or p.name),
        duration_s=signals.shape[0] / fs, units=units, comments=list(rec.comments or []),
    )


def read_dicom_ecg(path: str | os.PathLike) -> Recording:
    """Read the first multiplex group of a DICOM waveform file (12-lead ECG Waveform Storage and
    the like) into mV, with lead names from the channel definitions (SCP-ECG code, else the code
    meaning). Raises :class:`EcgReadError`: ``unreadable``, ``not_ecg_waveform``, ``truncated``,
    ``no_signals``, ``bad_header``."""
    import pydicom

    p = Path(path)
    try:
        ds = pydicom.dcmread(str(p), force=True)
    except Exception as exc:  # noqa: BLE001
        raise EcgReadError("unreadable", f"cannot parse DICOM {p}: {type(exc).__name__}: {exc}") from exc
    groups = ds.get("WaveformSequence")
    if not groups:
        raise EcgReadError("not_ecg_waveform", f"{p} has no Waveform Sequence")
    group = groups[0]
    try:
        n_ch, n_s = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
        fs = float(group.SamplingFrequency)
        data = group.get("WaveformData")
        expected = n_ch * n_s * int(group.WaveformBitsAllocated) // 8
    except Exception as exc:  # noqa: BLE001
        raise EcgReadError("bad_header", f"{p}: incomplete waveform header: {exc}") from exc
    if not n_ch or not n_s:
        raise EcgReadError("no_signals", f"{p} declares {n_ch} channels of {n_s} samples")
    if fs <= 0:
        raise EcgReadError("bad_header", f"{p} has invalid sampling frequency {fs!r}")
    if data is None or len(data) < expected:
        raise EcgReadError("truncated", f"{p}: {0 if data is None else len(data)} of {expected} waveform bytes present")
    try:
        raw = np.asarray(ds.waveform_array(0), dtype=np.float64)   # × channel sensitivity, + baseline
    except Exception as exc:  # noqa: BLE001
        raise EcgReadError("unreadable", f"cannot decode the waveform of {p}: {type(exc).__name__}: {exc}") from exc
    names, units = [], []
    for j, ch in enumerate(group.get("ChannelDefinitionSequence") or []):
        src = (ch.get("ChannelSourceSequence") or [None])[0]
        code = str(src.get("CodeValue", "")).strip() if src is not None else ""
        meaning = str(src.get("CodeMeaning", "")).strip() if src is not None else ""
        names.append(_SCPECG_LEADS.get(code) or normalise_lead_name(meaning.replace("Lead ", "")) or f"ch{j}")
        unit = (ch.get("ChannelSensitivityUnitsSequence") or [None])[0]
        units.append(str(unit.get("CodeValue", "uV")) if unit is not None else "uV")
    if len(names) != raw.shape[1]:
        names = [f"ch{j}" for j in range(raw.shape[1])]
        units = ["uV"] * raw.shape[1]
    scale = np.array([_UNIT_TO_MV.get(u.strip().lower(), 1e-3) for u in units])
    signals = raw * scale[None, :]
    return Recording(signals=signals, fs=fs, lead_names=names, record_id=p.stem,
                     duration_s=signals.shape[0] / fs, units=["mV"] * len(names))


def read_recording(path: str | os.PathLike) -> Recording:
    """A DICOM waveform (``.dcm``) or WFDB record (``.hea`` / base path), by its name."""
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        return read_dicom_ecg(p)
    return read_wfdb(p)
