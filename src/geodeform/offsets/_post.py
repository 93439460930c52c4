"""Grid-level post-processing of chip matches: neighbourhood statistics and strain-bias correction."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]

__all__ = ["linear_residual", "neighbour_agreement", "neighbour_median", "strain_bias"]


def _shifted(a: F, radius: int) -> list[F]:
    """Every neighbour of every node in a (2r+1)² window (NaN outside the grid), self excluded."""
    pad = np.pad(a, radius, constant_values=np.nan)
    h, w = a.shape
    out = []
    for i in range(2 * radius + 1):
        for j in range(2 * radius + 1):
            if i == radius and j == radius:
                continue
            out.append(pad[i : i + h, j : j + w])
    return out


def _nanmedian0(stack: F) -> F:
    """Median over axis 0 ignoring NaN (NaN where all are NaN); sort-based, no masked arrays."""
    srt = np.sort(stack, axis=0)  # NaN sorts last
    count = np.isfinite(stack).sum(axis=0)
    lo = np.clip((count - 1) // 2, 0, None)[None]
    hi = np.clip(count // 2, 0, None)[None]
    med = 0.5 * (np.take_along_axis(srt, lo, 0)[0] + np.take_along_axis(srt, hi, 0)[0])
    return np.where(count > 0, med, np.nan)


def neighbour_median(
    dy: F, dx: F, *, radius: int = 1, min_count: int = 3
) -> tuple[F, F, npt.NDArray[np.int64]]:
    """Median of the valid neighbours of every node (self excluded) and their count."""
    sy = np.stack(_shifted(dy, radius))
    sx = np.stack(_shifted(dx, radius))
    count = np.isfinite(sy).sum(axis=0)
    my = _nanmedian0(sy)
    mx = _nanmedian0(sx)
    few = count < min_count
    my[few] = np.nan
    mx[few] = np.nan
    return my, mx, count


def neighbour_agreement(
    dy: F, dx: F, *, radius: int = 2, tol: float = 1.0
) -> tuple[F, npt.NDArray[np.int64]]:
    """Fraction of valid neighbours within ``tol`` px of each node (autoRIFT's NDC test) and their count."""
    sy = np.stack(_shifted(dy, radius))
    sx = np.stack(_shifted(dx, radius))
    valid = np.isfinite(sy) & np.isfinite(sx)
    with np.errstate(invalid="ignore"):
        agree = (np.hypot(sy - dy, sx - dx) <= tol) & valid
    count = valid.sum(axis=0)
    frac = np.where(count > 0, agree.sum(axis=0) / np.maximum(count, 1), 0.0)
    return frac, count


def linear_residual(dy: F, dx: F) -> F:
    """Largest departure of each node from the midpoint of two opposite neighbours (4 directions), px.

    Zero for any linear field; about half the step next to a discontinuity. NaN where no direction has
    both neighbours.
    """
    py = np.pad(dy, 1, constant_values=np.nan)
    px = np.pad(dx, 1, constant_values=np.nan)
    h, w = dy.shape
    out = np.full(dy.shape, np.nan)
    for a, b in ((1, 0), (0, 1), (1, 1), (1, -1)):
        y1 = py[1 + a : 1 + a + h, 1 + b : 1 + b + w]
        y2 = py[1 - a : 1 - a + h, 1 - b : 1 - b + w]
        x1 = px[1 + a : 1 + a + h, 1 + b : 1 + b + w]
        x2 = px[1 - a : 1 - a + h, 1 - b : 1 - b + w]
        r = np.hypot(dy - 0.5 * (y1 + y2), dx - 0.5 * (x1 + x2))
        out = np.fmax(out, r)
    return out


def _gradient(a: F, spacing: float, axis: int) -> F:
    """NaN-aware central difference along ``axis`` (one-sided where a neighbour is missing, 0 if none)."""
    pad_width = [(0, 0), (0, 0)]
    pad_width[axis] = (1, 1)
    p = np.pad(a, pad_width, constant_values=np.nan)
    sl = [slice(None), slice(None)]
    sl[axis] = slice(2, None)
    fwd = p[tuple(sl)]
    sl[axis] = slice(None, -2)
    bwd = p[tuple(sl)]
    central = (fwd - bwd) / (2 * spacing)
    forward = (fwd - a) / spacing
    backward = (a - bwd) / spacing
    g = np.where(np.isfinite(central), central, np.where(np.isfinite(forward), forward, backward))
    return np.nan_to_num(g)


def strain_bias(dy: F, dx: F, lk: F, step: tuple[int, int]) -> tuple[F, F]:
    """First-order bias of translation estimates inside strained chips.

    A chip whose true displacement varies linearly, d(p) = d0 + G (p - c), is matched by Gauss–Newton at
    d0 + H⁻¹ (M_r G[:, 0] + M_c G[:, 1]), where H = Σ w g gᵀ and M_r, M_c = Σ w g gᵀ (row - c_r), (col - c_c)
    are texture moments of the reference chip (``lk[..., 5:14]``). G comes from the neighbouring nodes.
    Returns the (bias_dy, bias_dx) to subtract.
    """
    gyr = _gradient(dy, step[0], 0)
    gyc = _gradient(dy, step[1], 1)
    gxr = _gradient(dx, step[0], 0)
    gxc = _gradient(dx, step[1], 1)
    mr00, mr01, mr11, mc00, mc01, mc11, i00, i01, i11 = (lk[..., k] for k in range(5, 14))
    # v = M_r @ (gyr, gxr) + M_c @ (gyc, gxc)  in (row, col) order
    v0 = mr00 * gyr + mr01 * gxr + mc00 * gyc + mc01 * gxc
    v1 = mr01 * gyr + mr11 * gxr + mc01 * gyc + mc11 * gxc
    by = i00 * v0 + i01 * v1
    bx = i01 * v0 + i11 * v1
    return np.nan_to_num(by), np.nan_to_num(bx)
