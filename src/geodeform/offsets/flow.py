"""``flow`` matcher: dense pyramidal Lucas–Kanade optical flow robust to radiometric change (GeFolki-like).

After Brigot et al. (2016, IEEE JSTARS 9(7)): both images are rank-filtered (a local ordinal transform,
invariant to any monotonic radiometric change, which is what lets GeFolki match optical to SAR), then the
flow is estimated coarse-to-fine on a 2× pyramid; at each level a few fixed-point iterations warp the
secondary by the current flow and solve the windowed Lucas–Kanade normal equations at every pixel, with a
median filter on the flow between iterations. The dense flow is averaged over each chip of the grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.offsets import _layout as L
from geodeform.offsets._job import MatchJob
from geodeform.offsets._types import MatcherOutput
from geodeform.offsets.prefilters import rank

__all__ = ["FlowOptions", "dense_flow", "run_flow"]

F = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FlowOptions:
    """Options of the ``flow`` matcher.

    Attributes
    ----------
    radius : int
        Half-width (px) of the Lucas–Kanade window at the finest level. Default: chip_size // 4.
    iterations : int
        Fixed-point iterations per pyramid level. Default 4.
    rank_size : int
        Size of the rank filter (0 disables it). Default 7.
    min_eigen : float
        Minimum smallest eigenvalue of the window's structure tensor per pixel (in normalised units);
        below, the flow is NaN (textureless). Default 1e-3.
    median : int
        Median filter size applied to the flow between iterations (0 = none). Default 3.
    """

    radius: int | None = None
    iterations: int = 4
    rank_size: int = 7
    min_eigen: float = 1e-3
    median: int = 3

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on values out of range."""
        bad = [
            k
            for k, ok in {
                "radius": self.radius is None or int(self.radius) >= 1,
                "iterations": int(self.iterations) >= 1,
                "rank_size": int(self.rank_size) == 0 or int(self.rank_size) >= 3,
                "min_eigen": self.min_eigen >= 0,
                "median": int(self.median) >= 0,
            }.items()
            if not ok
        ]
        if bad:
            raise InvalidInputError(f"invalid flow option(s) {bad}; see geodeform.offsets.flow.FlowOptions")


def _lk_level(
    ref: F, sec: F, valid: npt.NDArray[np.bool_], u: F, v: F, radius: int, opts: FlowOptions
) -> tuple[F, F, F]:
    """Fixed-point LK iterations at one level; (u, v) = (dy, dx) flow; returns (u, v, lambda_min)."""
    size = 2 * radius + 1
    gy, gx = np.gradient(ref)
    gy = np.where(valid, gy, 0.0)
    gx = np.where(valid, gx, 0.0)
    syy = ndimage.uniform_filter(gy * gy, size)
    sxy = ndimage.uniform_filter(gy * gx, size)
    sxx = ndimage.uniform_filter(gx * gx, size)
    det = syy * sxx - sxy * sxy
    tr = syy + sxx
    lmin = 0.5 * (tr - np.sqrt(np.maximum(tr * tr - 4 * det, 0)))
    ok = lmin > opts.min_eigen
    rr, cc = np.meshgrid(
        np.arange(ref.shape[0], dtype=float), np.arange(ref.shape[1], dtype=float), indexing="ij"
    )
    for _ in range(opts.iterations):
        warped = ndimage.map_coordinates(sec, [rr + u, cc + v], order=1, mode="nearest")
        it = np.where(valid, warped - ref, 0.0)
        by = ndimage.uniform_filter(gy * it, size)
        bx = ndimage.uniform_filter(gx * it, size)
        with np.errstate(invalid="ignore", divide="ignore"):
            du = np.where(ok, -(sxx * by - sxy * bx) / det, 0.0)
            dv = np.where(ok, -(syy * bx - sxy * by) / det, 0.0)
        u = u + du
        v = v + dv
        if opts.median >= 3:
            u = ndimage.median_filter(u, opts.median)
            v = ndimage.median_filter(v, opts.median)
    return u, v, lmin


def dense_flow(
    ref: F, sec: F, valid: npt.NDArray[np.bool_], *, levels: int, radius: int, opts: FlowOptions
) -> tuple[F, F, F]:
    """Pyramidal flow (dy, dx) of ``ref`` to ``sec`` in pixels, plus the per-pixel min eigenvalue."""
    pyr = [(ref, sec, valid)]
    for _ in range(levels):
        r, s, v = pyr[-1]
        if min(r.shape) < 4 * radius:
            break
        pyr.append(
            (
                ndimage.zoom(ndimage.gaussian_filter(r, 1.0), 0.5, order=1),
                ndimage.zoom(ndimage.gaussian_filter(s, 1.0), 0.5, order=1),
                ndimage.zoom(v.astype(float), 0.5, order=0) > 0.5,
            )
        )
    u = np.zeros(pyr[-1][0].shape)
    w = np.zeros(pyr[-1][0].shape)
    lmin = np.zeros(pyr[-1][0].shape)
    for k in range(len(pyr) - 1, -1, -1):
        r, s, v = pyr[k]
        if u.shape != r.shape:
            u = 2 * _resize(u, r.shape)
            w = 2 * _resize(w, r.shape)
        u, w, lmin = _lk_level(r, s, v, u, w, max(2, radius >> k) if k else radius, opts)
    return u, w, lmin


def _resize(a: F, shape: tuple[int, ...]) -> F:
    return ndimage.zoom(a, (shape[0] / a.shape[0], shape[1] / a.shape[1]), order=1, mode="nearest")[
        : shape[0], : shape[1]
    ]


def run_flow(job: MatchJob, opts: FlowOptions, progress: Any) -> MatcherOutput:
    """Run the ``flow`` matcher: dense flow on each strip of a :func:`geodeform.offsets.match` job,
    averaged over each chip's good pixels.

    Returns
    -------
    MatcherOutput
        Offsets (px), the chip's share of good pixels as quality, reason codes; no predicted error.
    """
    nr, nc = job.rs.size, job.cs.size
    h, w = job.chip
    dy = np.full((nr, nc), np.nan)
    dx = np.full((nr, nc), np.nan)
    q = np.zeros((nr, nc))
    reason = np.full((nr, nc), L.MASKED, np.uint8)
    radius = int(opts.radius or max(2, min(h, w) // 4))
    strips = list(job.strips())
    transform = functools.partial(rank, size=opts.rank_size) if opts.rank_size else None
    for k, (a, b, idx, _pad) in enumerate(strips):
        ref_s: npt.NDArray[Any] = job.prepare(job.ref, job.ref_mask, a, b).astype(np.float64)
        sec_s: npt.NDArray[Any] = job.prepare(job.sec, job.sec_mask, a, b).astype(np.float64)
        valid = np.isfinite(ref_s) & np.isfinite(sec_s)
        if transform is not None:
            ref_s, sec_s = transform(ref_s), transform(sec_s)
        (mr, sr), (ms, ss) = job.stats(ref_s, sec_s, transform=transform)
        ref_n = np.where(valid, (ref_s - mr) / sr, 0.0)
        sec_n = np.where(valid, (sec_s - ms) / ss, 0.0)
        smax = int(job.search[idx].max(initial=1))
        levels = max(0, int(np.ceil(np.log2(max(smax, 1) / max(radius / 2, 1)))) + 1)
        u, v, lmin = dense_flow(ref_n, sec_n, valid, levels=levels, radius=radius, opts=opts)
        good = valid & (lmin > opts.min_eigen)
        # chip means of the flow over good pixels (box filter, sampled at the chip centres)
        cnt = ndimage.uniform_filter(good.astype(float), (h, w), origin=(-(h % 2 == 0), -(w % 2 == 0)))
        mu = ndimage.uniform_filter(np.where(good, u, 0.0), (h, w), origin=(-(h % 2 == 0), -(w % 2 == 0)))
        mv = ndimage.uniform_filter(np.where(good, v, 0.0), (h, w), origin=(-(h % 2 == 0), -(w % 2 == 0)))
        ii, jj = np.meshgrid(idx, np.arange(nc), indexing="ij")
        rc = job.rs[ii] - a + h // 2
        cc = job.cs[jj] + w // 2
        frac = cnt[rc, cc]
        with np.errstate(invalid="ignore", divide="ignore"):
            ey = mu[rc, cc] / frac
            ex = mv[rc, cc] / frac
        rs = np.where(frac < 0.5, L.TEXTURELESS, L.OK).astype(np.uint8)
        far = (np.abs(ey) > job.search[ii, jj] + 0.5) | (np.abs(ex) > job.search[ii, jj] + 0.5)
        rs[(rs == L.OK) & far] = L.SEARCH_EDGE
        dy[ii, jj] = np.where(rs == L.OK, ey, np.nan)
        dx[ii, jj] = np.where(rs == L.OK, ex, np.nan)
        q[ii, jj] = np.where(rs == L.OK, frac, 0.0)
        reason[ii, jj] = rs
        if progress is not None:
            progress(k + 1, len(strips))
    return MatcherOutput(dy, dx, q, reason)
