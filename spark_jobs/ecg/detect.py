"""Multi-lead R-peak detection built on neurokit2.

Method ("jiceng-multilead-v1"):

1. Per lead: reject flat / lead-off / non-finite leads; suppress narrow spikes
   (pacemaker artefacts) with a ~12 ms median filter; ``nk.ecg_clean``; then
   ``nk.ecg_peaks`` on the cleaned signal **and on its negation** (the neurokit
   detector only picks positive local maxima inside each QRS window, so negative
   QRS complexes - paced beats, many PVCs, aVR/V1 - are otherwise lost). The two
   polarity runs share the same gradient windows and are merged, keeping the larger
   absolute deflection. The signal is edge-padded so beats in the first/last few
   hundred ms are not lost.
2. Per lead and per 10-s block, a quality weight = QRS-to-background ratio of the
   smoothed absolute gradient x stability of QRS energy vs. the lead's own norm x
   coverage (does the lead still see its usual number of beats) x morphological
   consistency of its detections (and, with >= 3 usable leads, F1 agreement with the
   quality-weighted majority).
3. Candidates from all leads are clustered within 75 ms. Each cluster is scored by a
   quality-weighted vote: a lead that detected it votes 0.5-1 (full only if the beat
   has QRS-level energy and resembles that lead's other beats); a lead that did not
   votes in proportion to the QRS-band energy it shows at that instant (so a beat one
   detector skipped but that is plainly present still counts, and an artefact seen in
   one lead only does not). Leads showing a level step (electrode pop) at the instant
   are left out of that vote. Clusters scoring >= ACCEPT are beats.
4. Accepted beats closer than the refractory period (200 ms) are resolved in favour of
   the higher score; each beat is placed on the largest absolute deflection of the
   best-quality lead that detected it (within +-50 ms).
5. A first or last beat within 0.5 s of the record's edge and closer than 0.8 median RR
   to its neighbour is dropped (a cut complex or a filter transient).

If no lead is usable (flat / lead-off / NaN) the result is empty, never an exception.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DetectionResult", "detect_r_peaks", "ALGORITHM"]

ALGORITHM = "jiceng-multilead-v1"
CLUSTER_S = 0.075
REFRACTORY_S = 0.200
REFINE_S = 0.050
ENERGY_WIN_S = 0.060
BLOCK_S = 10.0
ACCEPT = 0.50
SOFT_VOTE = 0.8
OWN_FULL_RATIO = 0.5
MIN_PEAK_RATIO = 0.2
SPIKE_MEDIAN_S = 0.012
PAD_S = 1.0
STEP_MAX = 0.8
FLAT_MV = 0.05    # a lead whose 0.5-99.5 percentile range is below this (mV) shows no ECG
EDGE_S = 0.5
EDGE_SHORT = 0.8
MIN_RR_S = 0.22  # neurokit default 0.3 s would drop ventricular tachycardia beats above 200 bpm


@dataclass
class DetectionResult:
    r_peaks: np.ndarray
    algorithm: str = ALGORITHM
    versions: dict = field(default_factory=dict)
    lead_quality: dict = field(default_factory=dict)   # lead name -> mean weight (0..1); 0 = excluded
    excluded_leads: dict = field(default_factory=dict)  # lead name -> reason
    fs: float = 0.0
    usable_fraction: float = 0.0  # share of 10-s blocks where at least one lead had usable quality

    @property
    def n_beats(self) -> int:
        return int(self.r_peaks.size)

    def heart_rate_bpm(self) -> float | None:
        if self.r_peaks.size < 2 or not self.fs:
            return None
        return float(60.0 * self.fs / np.median(np.diff(self.r_peaks)))


def _versions() -> dict:
    import neurokit2 as nk
    import scipy

    return {"neurokit2": nk.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


def _flat_reason(x: np.ndarray, fs: float) -> str | None:
    finite = np.isfinite(x)
    if finite.mean() < 0.5:
        return "mostly_nan"
    xf = x[finite]
    if xf.size < fs:
        return "flat"
    lo, hi = np.percentile(xf, [0.5, 99.5])
    if hi - lo < FLAT_MV:  # no deflection above electrode noise: flat / lead off
        return "flat"
    d = np.diff(xf)
    if np.mean(d == 0) > 0.95:
        return "flat"
    return None


def _fill_nan(x: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    idx = np.arange(x.size)
    x = x.copy()
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return x


def _boxcar(x: np.ndarray, n: int) -> np.ndarray:
    n = max(int(n), 1)
    if n == 1:
        return x
    c = np.cumsum(np.concatenate(([0.0], x)))
    out = (c[n:] - c[:-n]) / n
    left = (n - 1) // 2
    return np.concatenate((np.full(left, out[0]), out, np.full(x.size - out.size - left, out[-1])))


def _peaks_one_polarity(nk, sig: np.ndarray, fs: float) -> np.ndarray:
    try:
        _, info = nk.ecg_peaks(sig, sampling_rate=fs, correct_artifacts=False, mindelay=MIN_RR_S)
        return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    except Exception:  # noqa: BLE001 - neurokit raises on degenerate input
        return np.zeros(0, dtype=np.int64)


def _lead_candidates(nk, clean: np.ndarray, fs: float) -> np.ndarray:
    """Polarity-agnostic neurokit peaks on an edge-padded cleaned signal."""
    pad = int(PAD_S * fs)
    padded = np.pad(clean, pad, mode="edge")
    pos = _peaks_one_polarity(nk, padded, fs)
    neg = _peaks_one_polarity(nk, -padded, fs)
    allp = np.concatenate((pos, neg))
    if allp.size == 0:
        return allp
    allp = np.sort(allp) - pad
    allp = allp[(allp >= -int(0.05 * fs)) & (allp < clean.size + int(0.05 * fs))]
    allp = np.clip(allp, 0, clean.size - 1)
    # merge pos/neg peaks of the same QRS window (< 150 ms apart): keep larger |amplitude|
    merge = int(0.15 * fs)
    out: list[int] = []
    for p in allp:
        if out and p - out[-1] < merge:
            if abs(clean[p]) > abs(clean[out[-1]]):
                out[-1] = int(p)
        else:
            out.append(int(p))
    return np.asarray(out, dtype=np.int64)


def _window_max(e: np.ndarray, centres: np.ndarray, half: int) -> np.ndarray:
    if centres.size == 0:
        return np.zeros(0)
    # running max via scipy for speed
    from scipy.ndimage import maximum_filter1d

    m = maximum_filter1d(e, size=2 * half + 1, mode="nearest")
    return m[np.clip(centres, 0, e.size - 1)]


def _morph_consistency(c: np.ndarray, peaks: np.ndarray, half: int) -> float:
    """Median over beats of the best correlation with the previous beat, the one before,
    or the block's median template. High for stable morphology (incl. bigeminy), low for
    detections that land on noise/artefact."""
    peaks = peaks[(peaks >= half) & (peaks < c.size - half)]
    if peaks.size < 2:
        return 0.0
    idx = peaks[:, None] + np.arange(-half, half + 1)[None, :]
    beats = c[idx]
    beats = beats - beats.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(beats, axis=1, keepdims=True)
    beats = beats / np.maximum(norm, 1e-12)
    tmpl = np.median(beats, axis=0)
    tmpl = tmpl / max(np.linalg.norm(tmpl), 1e-12)
    best = beats @ tmpl
    for lag in (1, 2):
        if peaks.size > lag:
            cc = np.einsum("ij,ij->i", beats[lag:], beats[:-lag])
            best[lag:] = np.maximum(best[lag:], cc)
            best[:-lag] = np.maximum(best[:-lag], cc)
    return float(np.median(best))


def _step_index(x: np.ndarray, t: np.ndarray, fs: float, typical_ptp: float = 0.0) -> np.ndarray:
    """|median level 100-400 ms after - median level 100-400 ms before| / max(peak-to-peak
    within +-80 ms, the lead's typical QRS peak-to-peak). A QRS returns to its baseline
    (index ~0-0.4); an electrode pop / level step does not (index ~1)."""
    if t.size == 0:
        return np.zeros(0)
    a, b, q = int(0.1 * fs), int(0.4 * fs), int(0.08 * fs)
    n = x.size
    pre = x[np.clip(t[:, None] + np.arange(-b, -a)[None, :], 0, n - 1)]
    post = x[np.clip(t[:, None] + np.arange(a, b)[None, :], 0, n - 1)]
    mid = x[np.clip(t[:, None] + np.arange(-q, q + 1)[None, :], 0, n - 1)]
    d = np.abs(np.median(post, axis=1) - np.median(pre, axis=1))
    out = d / np.maximum(np.maximum(np.ptp(mid, axis=1), typical_ptp), 1e-9)
    out[(t < b) | (t >= n - b)] = 0.0  # not enough context at the record edges
    return out


def _beat_matrix(c: np.ndarray, peaks: np.ndarray, half: int) -> np.ndarray:
    idx = np.clip(peaks[:, None] + np.arange(-half, half + 1)[None, :], 0, c.size - 1)
    beats = c[idx]
    beats = beats - beats.mean(axis=1, keepdims=True)
    return beats / np.maximum(np.linalg.norm(beats, axis=1, keepdims=True), 1e-12)


def _likeness(c: np.ndarray, peaks: np.ndarray, block: np.ndarray, n_blocks: int, half: int) -> np.ndarray:
    """Per detection: best correlation with its block's median beat or with a neighbouring
    detection (lags 1, 2: keeps bigeminy/trigeminy ectopics). Artefact detections score low."""
    if peaks.size == 0:
        return np.zeros(0)
    beats = _beat_matrix(c, peaks, half)
    best = np.full(peaks.size, -1.0)
    for bi in np.unique(block):
        sel = block == bi
        if sel.sum() >= 3:
            t = np.median(beats[sel], axis=0)
            t = t / max(np.linalg.norm(t), 1e-12)
            best[sel] = beats[sel] @ t
    for lag in (1, 2):
        if peaks.size > lag:
            cc = np.einsum("ij,ij->i", beats[lag:], beats[:-lag])
            best[lag:] = np.maximum(best[lag:], cc)
            best[:-lag] = np.maximum(best[:-lag], cc)
    return best


def _drop_edge_artefacts(peaks: list[int], n: int, fs: float) -> list[int]:
    """Drop a first (last) beat within :data:`EDGE_S` of the record's start (end) whose interval
    to its neighbour is under :data:`EDGE_SHORT` of the median RR: a complex cut by the record's
    edge or the cleaning filter's transient, which a 10-s ECG would otherwise read as a premature
    beat."""
    if len(peaks) < 5:
        return peaks
    med = float(np.median(np.diff(peaks[1:-1])))
    edge = EDGE_S * fs
    if peaks[0] < edge and peaks[1] - peaks[0] < EDGE_SHORT * med:
        peaks = peaks[1:]
    if n - 1 - peaks[-1] < edge and peaks[-1] - peaks[-2] < EDGE_SHORT * med:
        peaks = peaks[:-1]
    return peaks


def detect_r_peaks(signals, fs, lead_names=None, _debug: dict | None = None) -> DetectionResult:
    """Detect R peaks using every usable lead. ``signals``: (n_samples,) or (n_samples, n_leads) in mV."""
    import neurokit2 as nk
    from scipy.ndimage import median_filter

    fs = float(fs)
    x = np.asarray(signals, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, n_leads = x.shape
    names = list(lead_names) if lead_names is not None else [f"lead{j}" for j in range(n_leads)]
    res = DetectionResult(r_peaks=np.zeros(0, dtype=np.int64), versions=_versions(), fs=fs)
    if n < int(fs) or fs <= 0:
        res.excluded_leads = {nm: "too_short" for nm in names}
        return res

    cleaned, prepped, energy, cands, used = [], [], [], [], []
    med_n = int(round(SPIKE_MEDIAN_S * fs))
    med_n = (med_n | 1) if med_n >= 3 else 1  # below ~250 Hz a spike filter would blunt the QRS
    grad_n = int(round(0.1 * fs))
    for j in range(n_leads):
        raw = x[:, j]
        reason = _flat_reason(raw, fs)
        if reason:
            res.excluded_leads[names[j]] = reason
            res.lead_quality[names[j]] = 0.0
            continue
        sig = _fill_nan(raw)
        if med_n >= 3:
            sig = median_filter(sig, size=med_n, mode="nearest")
        try:
            c = np.asarray(nk.ecg_clean(sig, sampling_rate=fs), dtype=np.float64)
        except Exception:  # noqa: BLE001
            res.excluded_leads[names[j]] = "clean_failed"
            res.lead_quality[names[j]] = 0.0
            continue
        p = _lead_candidates(nk, c, fs)
        if p.size == 0:
            res.excluded_leads[names[j]] = "no_beats"
            res.lead_quality[names[j]] = 0.0
            continue
        cleaned.append(c)
        prepped.append(sig)
        energy.append(_boxcar(np.abs(np.gradient(c)), grad_n))
        cands.append(p)
        used.append(j)
    if not used:
        return res

    L = len(used)
    n_blocks = max(1, int(n // (BLOCK_S * fs)))
    block_len = n / n_blocks
    ehalf = int(ENERGY_WIN_S * fs)

    def block_of(t):
        return np.minimum((np.asarray(t) / block_len).astype(int), n_blocks - 1)

    # --- per-lead, per-block QRS energy level and SNR weight
    qrs_level = np.zeros((L, n_blocks))
    weight = np.zeros((L, n_blocks))
    for k in range(L):
        e = energy[k]
        pk_e = _window_max(e, cands[k], ehalf)
        b = block_of(cands[k])
        glob_level = np.median(pk_e) if pk_e.size else 0.0
        rr_med = float(np.median(np.diff(cands[k]))) if cands[k].size >= 3 else float(block_len)
        for bi in range(n_blocks):
            lo, hi = int(bi * block_len), int(min(n, (bi + 1) * block_len))
            sel = pk_e[b == bi]
            if sel.size < 2:
                # no rhythm seen by this lead here: its silence is no evidence against beats
                qrs_level[k, bi] = max(glob_level, 1e-12)
                weight[k, bi] = 0.0
                continue
            level = np.median(sel)
            bg = np.median(e[lo:hi]) + 1e-12
            qrs_level[k, bi] = max(level, 1e-12)
            snr = level / bg
            # QRS energy far from the lead's own norm: collapse (electrode loosening, gain drop)
            # or inflation (motion artefact being detected instead of QRS)
            dev = abs(np.log2(max(level, 1e-12) / max(glob_level, 1e-12)))
            amp = np.clip(1.0 - (dev - 0.5) / 1.5, 0.0, 1.0)
            # coverage: a lead that suddenly sees far fewer beats than its own usual rate is
            # losing them (over-counting is left to the SNR / morphology terms)
            cover = np.clip(sel.size / max((hi - lo) / rr_med, 1.0) / 0.7, 0.0, 1.0)
            corr = _morph_consistency(cleaned[k], cands[k][b == bi], int(0.06 * fs))
            corr_w = np.clip((corr - 0.5) / (0.95 - 0.5), 0.0, 1.0)
            snr_w = np.clip((snr - 2.0) / (10.0 - 2.0), 0.0, 1.0)
            weight[k, bi] = snr_w * amp * cover * corr_w

    # --- cluster candidates across leads
    times = np.concatenate(cands)
    leads = np.concatenate([np.full(c.size, k) for k, c in enumerate(cands)])
    order = np.argsort(times, kind="stable")
    times, leads = times[order], leads[order]
    cw = int(CLUSTER_S * fs)
    clusters: list[list[int]] = []
    start = None
    members: list[int] = []
    seen: set[int] = set()
    for i in range(times.size):
        t, k = times[i], leads[i]
        if start is not None and t - start <= cw and k not in seen:
            members.append(i)
            seen.add(k)
        else:
            if members:
                clusters.append(members)
            members, seen, start = [i], {k}, t
    if members:
        clusters.append(members)

    centre = np.array([int(np.median(times[m])) for m in clusters], dtype=np.int64)
    det = np.zeros((L, len(clusters)), dtype=bool)
    det_pos = np.full((L, len(clusters)), -1, dtype=np.int64)
    like = np.zeros((L, len(clusters)))
    cand_like = [_likeness(cleaned[k], cands[k], block_of(cands[k]), n_blocks, int(0.06 * fs)) for k in range(L)]
    cand_index = np.concatenate([np.arange(c.size) for c in cands])[order]
    for ci, m in enumerate(clusters):
        for i in m:
            det[leads[i], ci] = True
            det_pos[leads[i], ci] = times[i]
            like[leads[i], ci] = cand_like[leads[i]][cand_index[i]]
    cb = block_of(centre)

    # agreement factor with the quality-weighted majority (needs >= 3 leads to be meaningful)
    if L >= 3:
        w0 = weight[:, cb]
        w0sum = w0.sum(axis=0)
        majority = np.where(w0sum > 0, (w0 * det).sum(axis=0) / np.maximum(w0sum, 1e-12) > 0.5,
                            det.sum(axis=0) > L / 2.0)
        for k in range(L):
            for bi in range(n_blocks):
                inb = cb == bi
                tp = np.sum(det[k, inb] & majority[inb])
                fp = np.sum(det[k, inb] & ~majority[inb])
                fn = np.sum(~det[k, inb] & majority[inb])
                f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
                weight[k, bi] *= f1
    dead = ~np.any(weight > 0, axis=0)
    res.usable_fraction = round(float(1.0 - dead.mean()), 3)
    weight[:, dead] = 1.0  # every lead equally poor in a block: fall back to plain voting there

    # soft votes
    w = weight[:, cb]  # (L, C)
    ratio = np.zeros((L, len(clusters)))
    for k in range(L):
        ratio[k] = np.clip(_window_max(energy[k], centre, ehalf) / qrs_level[k, cb], 0.0, 1.0)
    # a detecting lead votes 0.5..1 depending on how QRS-like it is there (energy relative to
    # the lead's QRS level, and morphology like the lead's other beats: a T wave, filter
    # transient or motion artefact is weak); a silent lead votes by its QRS-band energy
    own = 0.5 + 0.5 * np.clip(ratio / OWN_FULL_RATIO, 0.0, 1.0) * np.clip((like - 0.5) / 0.4, 0.0, 1.0)
    votes = np.where(det, own, SOFT_VOTE * ratio)
    # a lead showing a level step (electrode pop / motion) at the candidate says nothing
    # about a QRS there; if every lead shows the step the candidate has no support at all
    typ = [float(np.median(np.ptp(prepped[k][np.clip(cands[k][:, None] + np.arange(-int(0.08 * fs), int(0.08 * fs) + 1)[None, :], 0, n - 1)], axis=1)))
           for k in range(L)]
    step = np.vstack([_step_index(prepped[k], centre, fs, typ[k]) for k in range(L)])
    w = np.where(step > STEP_MAX, 0.0, w)
    wsum = w.sum(axis=0)
    score = np.where(wsum > 0, (w * votes).sum(axis=0) / np.maximum(wsum, 1e-12), 0.0)
    # no lead shows even a fifth of its usual QRS-band energy: P/T wave or transient, not a beat
    strongest = np.max(np.where(w > 0, ratio, 0.0), axis=0)
    score = np.where(strongest >= MIN_PEAK_RATIO, score, 0.0)
    acc = np.where(score >= ACCEPT)[0]

    # refine position on the best detecting lead
    refine = int(REFINE_S * fs)
    pos = np.empty(acc.size, dtype=np.int64)
    for a, ci in enumerate(acc):
        cand_w = np.where(det[:, ci], w[:, ci] + 1e-6, -1.0)
        k = int(np.argmax(cand_w))
        p0 = int(det_pos[k, ci])
        lo, hi = max(0, p0 - refine), min(n, p0 + refine + 1)
        seg = cleaned[k][lo:hi]
        pos[a] = lo + int(np.argmax(np.abs(seg - np.median(seg))))

    # refractory resolution: keep higher score
    keep_pos: list[int] = []
    keep_score: list[float] = []
    ref = int(REFRACTORY_S * fs)
    for p, s in sorted(zip(pos.tolist(), score[acc].tolist())):
        if keep_pos and p - keep_pos[-1] < ref:
            if s > keep_score[-1]:
                keep_pos[-1], keep_score[-1] = p, s
        else:
            keep_pos.append(p)
            keep_score.append(s)
    # a peak must be an interior extremum: drop positions pinned to the first/last sample
    keep_pos = [p for p in keep_pos if 0 < p < n - 1]
    keep_pos = _drop_edge_artefacts(keep_pos, n, fs)
    res.r_peaks = np.asarray(keep_pos, dtype=np.int64)
    if _debug is not None:
        _debug.update(centre=centre, det=det, w=w, ratio=ratio, score=score, used=used, weight=weight)
    for k, j in enumerate(used):
        res.lead_quality[names[j]] = round(float(weight[k].mean()), 3)
    return res
