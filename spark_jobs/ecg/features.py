"""One ECG recording → its features, signal quality and triage flags (the work of one Spark task).

:func:`analyse` is the whole per-recording computation; the Spark job (:mod:`spark_jobs.ecg.job`)
and the plain loop of the benchmark both call it, and nothing else, on each recording.

1. R peaks: :func:`spark_jobs.ecg.detect.detect_r_peaks` on every lead the recording has (the
   same detector ``lakehouse ecg evaluate`` measures). Its per-lead weights are the per-lead
   signal quality (0 = unusable: flat, lead off, mostly missing).
2. Rhythm: heart rate from the median RR; RR statistics; HRV (SDNN, RMSSD) from ``nk.hrv_time``;
   premature beats (an RR under 80 % of the median followed by a compensatory one); irregularity as
   the coefficient of variation of the RR intervals left after removing premature and pause
   intervals.
3. Delineation, when the quality allows: ``nk.ecg_delineate`` (discrete wavelet method) on the
   cleaned best lead (lead II when usable); PR (P onset → QRS onset), QRS duration, QT (QRS onset →
   T offset) as medians over beats; QTc by Bazett (QT/√RR) and Fridericia (QT/∛RR). No PR in an
   irregular rhythm (atrial fibrillation has no P waves to measure).
4. Frontal QRS axis from the net QRS deflections of leads I and aVF (aVF derived from II and I when
   absent).
5. Triage flags (:data:`FLAGS`) with a Chinese reason and their evidence.

Never raises on a bad signal: an unusable recording gets ``quality = 'unusable'`` with a reason and
the ``poor_quality`` flag (retake).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from spark_jobs.ecg.detect import ALGORITHM as DETECTOR, detect_r_peaks

ALGORITHM = f"jiceng-ecg-features-v1+{DETECTOR}"
BRADY_BPM, TACHY_BPM = 60, 100          # the textbook limits of a normal resting rate
PAUSE_S = 2.0                           # an RR interval longer than this is a pause (sinus arrest, block)
PREMATURE = 0.80                        # RR < 80 % of the median: premature
COMPENSATORY = 1.10                     # ... followed by RR > 110 % of the median: compensatory pause
IRREGULAR_CV = 0.10                     # RR coefficient of variation (ectopy and pauses removed) above this
LONG_QTC_MS = 500                       # QTc (Fridericia) at or above this: markedly long QT, the level
                                        # that needs a reader first (automatic QT ends are ±20 ms at best)
MIN_USABLE_LEADS = 1
MIN_BEATS = 3
GOOD_QUALITY = 0.5                      # mean weight of the usable leads for a 'good' recording
POOR_QUALITY = 0.25                     # below: 'poor', retake

FLAGS = {   # flag → (priority for the reading worklist, 1 = most urgent; Chinese label)
    "pause": (1, "长间歇（>2秒）"),
    "bradycardia": (2, "心动过缓"),
    "tachycardia": (2, "心动过速"),
    "irregular_rhythm": (2, "节律不齐（疑似房颤）"),
    "long_qtc": (2, "QTc延长"),
    "frequent_ectopy": (3, "早搏"),
    "poor_quality": (4, "信号质量差，需重新采集"),
}


@dataclass
class Analysis:
    quality: str                          # good | acceptable | poor | unusable
    quality_reason: str | None
    n_leads: int
    usable_leads: int
    lead_quality: dict[str, float]
    excluded_leads: dict[str, str]
    n_beats: int = 0
    heart_rate_bpm: float | None = None
    rr_mean_ms: float | None = None
    rr_min_ms: float | None = None
    rr_max_ms: float | None = None
    rr_cv: float | None = None
    sdnn_ms: float | None = None
    rmssd_ms: float | None = None
    premature_beats: int = 0
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_bazett_ms: float | None = None
    qtc_fridericia_ms: float | None = None
    qrs_axis_deg: float | None = None
    delineation_lead: str | None = None
    flags: list[dict] = field(default_factory=list)     # {flag, priority, reason, evidence}
    algorithm: str = ALGORITHM
    versions: dict = field(default_factory=dict)


def _rounded(x, digits: int = 1):
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _rhythm(a: Analysis, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Fill the rate, RR and HRV figures; returns the RR intervals (s) of regular beats."""
    import neurokit2 as nk

    rr = np.diff(peaks) / fs
    med = float(np.median(rr))
    a.heart_rate_bpm = _rounded(60.0 / med)
    a.rr_mean_ms, a.rr_min_ms, a.rr_max_ms = (_rounded(1000 * v) for v in (rr.mean(), rr.min(), rr.max()))
    premature = np.zeros(rr.size, dtype=bool)        # the premature interval and its compensatory one
    for i in range(rr.size - 1):
        if rr[i] < PREMATURE * med and rr[i + 1] > COMPENSATORY * med:
            premature[i] = premature[i + 1] = True
            a.premature_beats += 1
    regular = rr[~premature & (rr <= PAUSE_S)]
    if regular.size >= 3:
        a.rr_cv = _rounded(float(np.std(regular, ddof=1) / np.mean(regular)), 3)
    if peaks.size >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hrv = nk.hrv_time(peaks, sampling_rate=fs)
        a.sdnn_ms = _rounded(float(hrv["HRV_SDNN"].iloc[0]))
        a.rmssd_ms = _rounded(float(hrv["HRV_RMSSD"].iloc[0]))
    return regular


def _delineate(a: Analysis, rec, peaks: np.ndarray, regular_rr: np.ndarray) -> None:
    import neurokit2 as nk

    names = rec.lead_names
    usable = {n: q for n, q in a.lead_quality.items() if q > 0}
    lead = "ii" if usable.get("ii", 0) >= GOOD_QUALITY else max(usable, key=usable.get)
    a.delineation_lead = lead
    fs = rec.fs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(rec.signals[:, names.index(lead)], sampling_rate=fs)
        try:
            marks, _ = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method="dwt")
        except Exception:  # noqa: BLE001 - too few beats or a degenerate signal: no intervals
            return
    # pair every wave boundary with its own beat by position, not by list index (neurokit's
    # per-wave lists can differ in length when a wave is missing at an edge)
    at = {k: np.flatnonzero(marks[k].to_numpy() == 1) for k in
          ("ECG_P_Onsets", "ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets") if k in marks}
    ms = 1000.0 / fs

    def nearest(key: str, lo: float, hi: float):
        """Per beat: the sample of ``key`` in [r + lo, r + hi] seconds (closest to r), or NaN."""
        out = np.full(peaks.size, np.nan)
        xs = at.get(key, np.zeros(0, dtype=int))
        for i, r in enumerate(peaks):
            cand = xs[(xs >= r + lo * fs) & (xs <= r + hi * fs)]
            if cand.size:
                out[i] = cand[np.argmin(np.abs(cand - r))]
        return out

    def median_ms(start, end, lo: float, hi: float):
        d = (end - start) * ms
        d = d[np.isfinite(d) & (d >= lo) & (d <= hi)]
        return float(np.median(d)) if d.size >= 2 else None

    qrs_on = nearest("ECG_R_Onsets", -0.15, 0.0)
    qrs_off = nearest("ECG_R_Offsets", 0.0, 0.15)
    rr_next = np.append(np.diff(peaks), np.inf) / fs
    t_off = nearest("ECG_T_Offsets", 0.15, 0.7)
    t_off[(t_off - peaks) / fs > rr_next] = np.nan          # past the next beat: not this beat's T
    p_on = nearest("ECG_P_Onsets", -0.45, -0.05)
    a.qrs_ms = _rounded(median_ms(qrs_on, qrs_off, 40, 200))
    a.qt_ms = _rounded(median_ms(qrs_on, t_off, 200, 700))
    irregular = a.rr_cv is not None and a.rr_cv > IRREGULAR_CV
    a.pr_ms = None if irregular else _rounded(median_ms(p_on, qrs_on, 60, 400))
    if a.qt_ms is not None and regular_rr.size:
        rr = float(np.median(regular_rr))
        a.qtc_bazett_ms = _rounded(a.qt_ms / math.sqrt(rr))
        a.qtc_fridericia_ms = _rounded(a.qt_ms / rr ** (1 / 3))


def _axis(a: Analysis, rec, peaks: np.ndarray) -> None:
    """Frontal QRS axis: atan2 of the mean net QRS deflection in aVF and in I."""
    names, x, fs = rec.lead_names, rec.signals, rec.fs

    def usable(name):
        return name in names and a.lead_quality.get(name, 0) > 0

    if not usable("i") or not (usable("avf") or usable("ii")):
        return
    lead_i = x[:, names.index("i")]
    avf = x[:, names.index("avf")] if usable("avf") else x[:, names.index("ii")] - lead_i / 2
    half = int(0.06 * fs)

    def net(sig):
        vals = []
        for p in peaks:
            seg = sig[max(0, p - half): p + half + 1]
            if seg.size:
                base = np.median(sig[max(0, p - 3 * half): max(1, p - half)]) if p - half > 0 else np.median(seg)
                vals.append(seg.max() - base + seg.min() - base)
        return float(np.median(vals)) if vals else 0.0

    a.qrs_axis_deg = _rounded(math.degrees(math.atan2(net(avf), net(lead_i))))


def _flag(a: Analysis, flag: str, evidence: dict, detail: str = "") -> None:
    priority, label = FLAGS[flag]
    a.flags.append({"flag": flag, "priority": priority, "reason": label + (f"：{detail}" if detail else ""),
                    "evidence": evidence})


def _triage(a: Analysis) -> None:
    if a.quality in ("poor", "unusable"):
        _flag(a, "poor_quality", {"quality": a.quality, "reason": a.quality_reason,
                                  "usable_leads": a.usable_leads}, a.quality_reason or "")
    if a.quality in ("poor", "unusable"):
        return          # rate and rhythm of a signal this bad would be guesses: retake first
    hr = a.heart_rate_bpm
    if a.rr_max_ms is not None and a.rr_max_ms > 1000 * PAUSE_S:
        _flag(a, "pause", {"rr_max_ms": a.rr_max_ms}, f"最长RR间期{a.rr_max_ms / 1000:.1f}秒")
    if hr is not None and hr < BRADY_BPM:
        _flag(a, "bradycardia", {"heart_rate_bpm": hr}, f"心率{hr:.0f}次/分")
    if hr is not None and hr > TACHY_BPM:
        _flag(a, "tachycardia", {"heart_rate_bpm": hr}, f"心率{hr:.0f}次/分")
    if a.rr_cv is not None and a.rr_cv > IRREGULAR_CV:
        _flag(a, "irregular_rhythm", {"rr_cv": a.rr_cv, "rmssd_ms": a.rmssd_ms}, f"RR变异系数{a.rr_cv:.2f}")
    if a.premature_beats and not (a.rr_cv is not None and a.rr_cv > IRREGULAR_CV):
        # in an irregular rhythm a short interval followed by a long one is the rhythm itself
        _flag(a, "frequent_ectopy", {"premature_beats": a.premature_beats, "n_beats": a.n_beats},
              f"{a.premature_beats}次早搏/{a.n_beats}次心搏")
    if a.qtc_fridericia_ms is not None and a.qtc_fridericia_ms >= LONG_QTC_MS:
        _flag(a, "long_qtc", {"qtc_fridericia_ms": a.qtc_fridericia_ms, "qt_ms": a.qt_ms},
              f"QTc(Fridericia) {a.qtc_fridericia_ms:.0f}毫秒")


def analyse(rec) -> Analysis:
    """Features, quality and flags of ``rec`` (a :class:`spark_jobs.ecg.readers.Recording`)."""
    det = detect_r_peaks(rec.signals, rec.fs, rec.lead_names)
    usable = [n for n, q in det.lead_quality.items() if q > 0]
    a = Analysis(quality="good", quality_reason=None, n_leads=rec.n_leads, usable_leads=len(usable),
                 lead_quality={n: float(q) for n, q in det.lead_quality.items()},
                 excluded_leads=dict(det.excluded_leads), n_beats=det.n_beats, versions=det.versions)
    flat = sum(r == "flat" for r in det.excluded_leads.values())
    if len(usable) < MIN_USABLE_LEADS or flat >= rec.n_leads / 2:
        reasons = sorted(set(det.excluded_leads.values()))
        a.quality = "unusable"
        a.quality_reason = ("flat_line" if flat >= rec.n_leads - 1 else "lead_off" if flat >= rec.n_leads / 2
                            else "+".join(reasons) or "no_usable_lead")
    elif det.n_beats < MIN_BEATS:
        a.quality, a.quality_reason = "unusable", "too_few_beats"
    if a.quality == "unusable":
        _triage(a)
        return a
    mean_q = float(np.mean([det.lead_quality[n] for n in usable]))
    if mean_q < POOR_QUALITY:
        a.quality, a.quality_reason = "poor", f"mean_lead_quality_{mean_q:.2f}"
    elif mean_q < GOOD_QUALITY or len(usable) < rec.n_leads / 2:
        a.quality = "acceptable"
    regular = _rhythm(a, det.r_peaks, rec.fs)
    if a.quality != "poor":
        _delineate(a, rec, det.r_peaks, regular)
        _axis(a, rec, det.r_peaks)
    _triage(a)
    return a
