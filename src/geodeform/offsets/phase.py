"""``phase`` matcher: frequency-domain phase correlation with a robust phase-plane fit (COSI-Corr).

After Leprince et al. (2007, IEEE TGRS 45(6)): chips are apodised with a raised-cosine window, the
normalised cross-power spectrum Q(ω) = F_r F_s* / |F_r F_s*| is formed, an integer shift is read from the
peak of its inverse transform, the secondary chip is re-extracted there, and the sub-pixel shift δ is the
phase plane e^{iω·δ} closest to Q in the weighted least-squares sense (no phase unwrapping), solved by
Gauss–Newton with iterative masking of the frequencies whose residual is large (aliasing, noise).
All chips of a strip are processed as one batch of FFTs (``scipy.fft`` with ``workers``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft

from geodeform.errors import InvalidInputError
from geodeform.offsets import _layout as L
from geodeform.offsets._job import MatchJob
from geodeform.offsets._types import MatcherOutput

__all__ = ["PhaseOptions", "phase_chips", "run_phase"]


@dataclass(frozen=True)
class PhaseOptions:
    """Options of the ``phase`` matcher.

    Attributes
    ----------
    window_beta : float
        Raised-cosine (Tukey) roll-off fraction of the apodisation window, 0 (box) .. 1 (Hann). Default 0.5.
    freq_cutoff : float
        Frequencies above this fraction of Nyquist get no weight in the plane fit. Default 0.8.
    iterations : int
        Newton iterations of the plane fit per masking round. Default 4.
    mask_rounds : int
        Rounds of frequency masking (residual above ``mask_k`` × median residual removed). Default 1.
    mask_k : float
        Masking threshold. Default 3.0.
    min_coherence : float
        Minimum phase coherence |Σ W Q e^{-iω·δ}| / Σ W in [0, 1]; below, the node is NaN. Default 0.2.
    min_valid_fraction : float
        Minimum fraction of valid pixels in a chip. Default 0.5.
    min_texture : float
        Minimum chip standard deviation relative to the image's. Default 0.02.
    batch : int
        Chips per FFT batch (memory ≈ batch × chip² × 32 bytes). Default 2048.
    """

    window_beta: float = 0.5
    freq_cutoff: float = 0.8
    iterations: int = 4
    mask_rounds: int = 1
    mask_k: float = 3.0
    min_coherence: float = 0.2
    min_valid_fraction: float = 0.5
    min_texture: float = 0.02
    batch: int = 2048

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on values out of range."""
        checks = {
            "window_beta": 0.0 <= self.window_beta <= 1.0,
            "freq_cutoff": 0.0 < self.freq_cutoff <= 1.0,
            "iterations": int(self.iterations) >= 1,
            "mask_rounds": int(self.mask_rounds) >= 0,
            "mask_k": self.mask_k > 0,
            "min_coherence": 0.0 <= self.min_coherence <= 1.0,
            "min_valid_fraction": 0.0 < self.min_valid_fraction <= 1.0,
            "min_texture": self.min_texture >= 0.0,
            "batch": int(self.batch) >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InvalidInputError(
                f"invalid phase option(s) {bad}; see geodeform.offsets.phase.PhaseOptions for allowed values"
            )


def _tukey(n: int, beta: float) -> npt.NDArray[np.float64]:
    if beta <= 0:
        return np.ones(n)
    x = np.arange(n) / max(n - 1, 1)
    w = np.ones(n)
    edge = beta / 2
    lo = x < edge
    hi = x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (2 * x[lo] / beta - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * (2 * x[hi] / beta - 2 / beta + 1)))
    return w


def _extract(img: npt.NDArray[np.float32], r0: Any, c0: Any, h: int, w: int) -> npt.NDArray[np.float64]:
    """Chips (N, h, w) with origins (r0, c0); positions outside the image read NaN."""
    H, W = img.shape
    rr = r0[:, None] + np.arange(h)[None, :]
    cc = c0[:, None] + np.arange(w)[None, :]
    ok = (rr >= 0) & (rr < H)
    okc = (cc >= 0) & (cc < W)
    out = img[np.clip(rr, 0, H - 1)[:, :, None], np.clip(cc, 0, W - 1)[:, None, :]].astype(np.float64)
    out[~(ok[:, :, None] & okc[:, None, :])] = np.nan
    return out


def _prep(chips: npt.NDArray[np.float64], win: npt.NDArray[np.float64]) -> tuple[Any, Any]:
    valid = np.isfinite(chips)
    n = valid.sum(axis=(1, 2))
    mean = np.where(valid, chips, 0).sum(axis=(1, 2)) / np.maximum(n, 1)
    z = np.where(valid, chips - mean[:, None, None], 0.0)
    return z * win, valid


def phase_chips(
    ref: npt.NDArray[np.float32],
    sec: npt.NDArray[np.float32],
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    chip: tuple[int, int],
    search: npt.NDArray[np.int64],
    opts: PhaseOptions,
    workers: int,
) -> MatcherOutput:
    """Phase correlation of chips (r0, c0) of ``ref`` in ``sec`` (same strip, NaN = invalid).

    Returns per-node (flat) offsets (px), phase coherence and reason codes.
    """
    h, w = chip
    n = r0.size
    win = np.outer(_tukey(h, opts.window_beta), _tukey(w, opts.window_beta))
    fy = (fft.fftfreq(h)[:, None] * 2 * np.pi).astype(np.float32)
    fx = (fft.rfftfreq(w)[None, :] * 2 * np.pi).astype(np.float32)
    wf = ((np.abs(fy) <= np.pi * opts.freq_cutoff) & (np.abs(fx) <= np.pi * opts.freq_cutoff)).astype(
        np.float32
    )
    wf[0, 0] = 0.0  # the mean carries no shift
    dy = np.full(n, np.nan)
    dx = np.full(n, np.nan)
    coh = np.zeros(n)
    reason = np.zeros(n, np.uint8)
    for s0 in range(0, n, opts.batch):
        sl = slice(s0, min(n, s0 + opts.batch))
        a_raw = _extract(ref, r0[sl], c0[sl], h, w)
        b_raw = _extract(sec, r0[sl], c0[sl], h, w)
        a, av = _prep(a_raw, win)
        frac = av.mean(axis=(1, 2))
        std = (
            np.sqrt(np.nanvar(np.where(av, a_raw, np.nan), axis=(1, 2))) if av.any() else np.zeros(len(frac))
        )
        rs = np.zeros(len(frac), np.uint8)
        rs[frac < opts.min_valid_fraction] = L.MASKED
        rs[(rs == 0) & ~(std > opts.min_texture)] = L.TEXTURELESS
        # 1) integer shift from the peak of the phase-correlation surface (at -d for Q = Fa Fb*)
        b, _ = _prep(b_raw, win)
        cross = fft.fft2(a, workers=workers) * np.conj(fft.fft2(b, workers=workers))
        cross /= np.abs(cross) + 1e-12
        surf = np.real(fft.ifft2(cross, workers=workers))
        k = surf.reshape(len(frac), -1).argmax(axis=1)
        py, px = np.unravel_index(k, (h, w))
        iy = -np.where(py > h // 2, py - h, py)
        ix = -np.where(px > w // 2, px - w, px)
        # 2) sub-pixel phase plane on the chips aligned at the integer shift: with θ = arg Q, maximise
        #    Σ W cos(θ - ω·δ)  (= minimise Σ W |Q - e^{iω·δ}|², no unwrapping) by Newton steps
        b2_raw = _extract(sec, r0[sl] + iy, c0[sl] + ix, h, w)
        b2, bv = _prep(b2_raw, win)
        rs[(rs == 0) & (bv.mean(axis=(1, 2)) < opts.min_valid_fraction)] = L.OUTSIDE
        q = fft.rfft2(a, workers=workers) * np.conj(fft.rfft2(b2, workers=workers))
        mag = np.abs(q).astype(np.float32)
        theta = np.angle(q).astype(np.float32)
        wgt = wf[None] * mag / (mag.reshape(len(frac), -1).mean(axis=1)[:, None, None] + 1e-12)
        d = np.zeros((len(frac), 2), np.float32)
        for _round in range(opts.mask_rounds + 1):
            for _ in range(opts.iterations):
                phi = theta - fy[None] * d[:, 0, None, None] - fx[None] * d[:, 1, None, None]
                ws = wgt * np.sin(phi)
                wc = wgt * np.cos(phi)
                g0 = (ws * fy).sum(axis=(1, 2))
                g1 = (ws * fx).sum(axis=(1, 2))
                a00 = (wc * fy * fy).sum(axis=(1, 2))
                a01 = (wc * fy * fx).sum(axis=(1, 2))
                a11 = (wc * fx * fx).sum(axis=(1, 2))
                det = a00 * a11 - a01 * a01
                det = np.where(np.abs(det) > 1e-12, det, np.nan)
                d[:, 0] += (a11 * g0 - a01 * g1) / det
                d[:, 1] += (a00 * g1 - a01 * g0) / det
                d = np.clip(np.nan_to_num(d), -1.0, 1.0)
            phi = theta - fy[None] * d[:, 0, None, None] - fx[None] * d[:, 1, None, None]
            r = 1.0 - np.cos(phi)  # = |Q - model|² / 2 for unit Q
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(np.where(wgt > 0, r, np.nan).reshape(len(frac), -1), axis=1)
            if _round < opts.mask_rounds:
                wgt = np.where(r > opts.mask_k * np.maximum(med, 1e-3)[:, None, None], 0.0, wgt)
        phi = theta - fy[None] * d[:, 0, None, None] - fx[None] * d[:, 1, None, None]
        c = np.abs((wgt * np.cos(phi)).sum(axis=(1, 2))) / (wgt.sum(axis=(1, 2)) + 1e-12)
        ddy = iy + d[:, 0]
        ddx = ix + d[:, 1]
        rs[(rs == 0) & (c < opts.min_coherence)] = L.LOW_CORRELATION
        srch = search[sl]
        rs[(rs == 0) & ((np.abs(ddy) > srch + 0.5) | (np.abs(ddx) > srch + 0.5))] = L.SEARCH_EDGE
        bad = rs != 0
        dy[sl] = np.where(bad, np.nan, ddy)
        dx[sl] = np.where(bad, np.nan, ddx)
        coh[sl] = np.where(bad, 0.0, c)
        reason[sl] = rs
    return MatcherOutput(dy, dx, coh, reason)


def run_phase(job: MatchJob, opts: PhaseOptions, progress: Any, threads: int | None) -> MatcherOutput:
    """Run the ``phase`` matcher: walk the strips of a :func:`geodeform.offsets.match` job with
    :func:`phase_chips` (FFTs on ``threads`` workers, all by default).

    Returns
    -------
    MatcherOutput
        Offsets (px), phase coherence as quality, reason codes; no predicted error.
    """
    nr, nc = job.rs.size, job.cs.size
    dy = np.full((nr, nc), np.nan)
    dx = np.full((nr, nc), np.nan)
    q = np.zeros((nr, nc))
    reason = np.full((nr, nc), L.MASKED, np.uint8)
    strips = list(job.strips())
    for k, (a, b, idx, _pad) in enumerate(strips):
        ref_s = job.prepare(job.ref, job.ref_mask, a, b)
        sec_s = job.prepare(job.sec, job.sec_mask, a, b)
        (mr, sr), (ms, ss) = job.stats(ref_s, sec_s)
        ref_s = (ref_s - mr) / sr
        sec_s = (sec_s - ms) / ss
        ii: Any
        jj: Any
        ii, jj = np.meshgrid(idx, np.arange(nc), indexing="ij")
        ii, jj = ii.ravel(), jj.ravel()
        res = phase_chips(
            ref_s, sec_s, job.rs[ii] - a, job.cs[jj], job.chip, job.search[ii, jj], opts, threads or -1
        )
        dy[ii, jj], dx[ii, jj], q[ii, jj], reason[ii, jj] = res.dy, res.dx, res.quality, res.reason
        if progress is not None:
            progress(k + 1, len(strips))
    return MatcherOutput(dy, dx, q, reason)
