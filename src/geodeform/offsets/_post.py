"""Grid-level post-processing of chip matches: neighbourhood statistics and strain-bias correction."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geodeform.offsets import _grid, _smooth
from geodeform.offsets._layout import H_INV, M_COL, M_ROW, Q, nan_to

F = npt.NDArray[np.float64]

SIGMA_FLOOR = 1e-3  # px: smallest predicted error a node is given weight for in the plane fits

__all__ = [
    "adaptive_plane",
    "adaptive_poly",
    "linear_residual",
    "neighbour_agreement",
    "neighbour_median",
    "neighbour_views",
    "strain_bias",
]


def neighbour_views(a: F, radius: int = 1, *, self_too: bool = False) -> list[tuple[tuple[int, int], F]]:
    """((drow, dcol), view) for every neighbour offset in a (2r+1)² window: ``view[i, j]`` is
    ``a[i + drow, j + dcol]`` (NaN outside the grid). The node itself (0, 0) only with ``self_too``."""
    pad = np.pad(a, radius, constant_values=np.nan)
    h, w = a.shape
    return [
        ((i, j), pad[radius + i : radius + i + h, radius + j : radius + j + w])
        for i in range(-radius, radius + 1)
        for j in range(-radius, radius + 1)
        if self_too or (i, j) != (0, 0)
    ]


def nanmedian_filter(a: F, radius: int) -> F:
    """Median of the finite values in the (2r+1)² window around every node, itself included (NaN where
    there are none)."""
    return _grid.nanmedian_filter(_f64(a), radius, _grid.sorting_network((2 * radius + 1) ** 2))


def neighbour_median(
    dy: F, dx: F, *, radius: int = 1, min_count: int = 3
) -> tuple[F, F, npt.NDArray[np.int64]]:
    """Median of the valid neighbours of every node (self excluded) and their count."""
    net = _grid.sorting_network((2 * radius + 1) ** 2 - 1)
    return _grid.neighbour_median_nodes(_f64(dy), _f64(dx), int(radius), int(min_count), net)


def neighbour_agreement(
    dy: F, dx: F, *, radius: int = 2, tol: float = 1.0
) -> tuple[F, npt.NDArray[np.int64]]:
    """Fraction of valid neighbours within ``tol`` px of each node (autoRIFT's NDC test) and their count."""
    return _grid.neighbour_agreement_nodes(_f64(dy), _f64(dx), int(radius), float(tol))


def _f64(a: F) -> F:
    return np.ascontiguousarray(a, np.float64)


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
    return nan_to(g)


def _second_difference(a: F, spacing: tuple[int, int]) -> tuple[F, F, F]:
    """NaN-aware second derivatives (rr, rc, cc) of a node field, 0 where neighbours are missing,
    smoothed over 5×5 nodes to tame the noise that second differences amplify."""
    p = np.pad(a, 1, constant_values=np.nan)
    c = p[1:-1, 1:-1]
    krr = (p[2:, 1:-1] - 2 * c + p[:-2, 1:-1]) / spacing[0] ** 2
    kcc = (p[1:-1, 2:] - 2 * c + p[1:-1, :-2]) / spacing[1] ** 2
    krc = (p[2:, 2:] - p[2:, :-2] - p[:-2, 2:] + p[:-2, :-2]) / (4 * spacing[0] * spacing[1])
    out = []
    for k in (krr, krc, kcc):
        # median over 5×5 nodes: robust to a wrong node, which second differences would spread around
        out.append(nan_to(nanmedian_filter(k, 2)))
    return out[0], out[1], out[2]


def strain_bias(dy: F, dx: F, lk: F, step: tuple[int, int]) -> tuple[F, F]:
    """First- and second-order bias of translation estimates inside deforming chips.

    A chip whose true displacement varies as d(p) = d0 + G Δ + ½ Δᵀ K Δ (Δ = p - c) is matched by
    Gauss–Newton at d0 + H⁻¹ Σ w g gᵀ (G Δ + ½ Δᵀ K Δ), where H = Σ w g gᵀ. The texture moments
    M = Σ w g gᵀ Δ (columns ``M_ROW``, ``M_COL`` of ``lk``) and Q = Σ w g gᵀ Δ Δᵀ (columns ``Q``) come
    from the reference chip, H⁻¹ from columns ``H_INV`` (:mod:`geodeform.offsets._layout`); G and K
    (gradient and curvature of the field) from the neighbouring nodes. Returns the (bias_dy, bias_dx), px,
    to subtract.
    """
    gyr = _gradient(dy, step[0], 0)
    gyc = _gradient(dy, step[1], 1)
    gxr = _gradient(dx, step[0], 0)
    gxc = _gradient(dx, step[1], 1)
    mr00, mr01, mr11 = (lk[..., M_ROW + k] for k in range(3))
    mc00, mc01, mc11 = (lk[..., M_COL + k] for k in range(3))
    i00, i01, i11 = (lk[..., H_INV + k] for k in range(3))
    # v = M_r @ (gyr, gxr) + M_c @ (gyc, gxc)  in (row, col) order
    v0 = mr00 * gyr + mr01 * gxr + mc00 * gyc + mc01 * gxc
    v1 = mr01 * gyr + mr11 * gxr + mc01 * gyc + mc11 * gxc
    if lk.shape[-1] >= Q + 9:
        ky = _second_difference(dy, step)
        kx = _second_difference(dx, step)
        qq = nan_to(lk[..., Q : Q + 9])
        q = [qq[..., k] for k in range(9)]

        # Σ (g gᵀ)_{ab} ½ (K_b,rr Δr² + 2 K_b,rc Δr Δc + K_b,cc Δc²), b = row (dy) or col (dx) component
        def curv(qrr: F, qrc: F, qcc: F, k: tuple[F, F, F]) -> F:
            return 0.5 * (qrr * k[0] + 2 * qrc * k[1] + qcc * k[2])

        v0 = v0 + curv(q[0], q[1], q[2], ky) + curv(q[3], q[4], q[5], kx)
        v1 = v1 + curv(q[3], q[4], q[5], ky) + curv(q[6], q[7], q[8], kx)
    by = i00 * v0 + i01 * v1
    bx = i01 * v0 + i11 * v1
    return nan_to(by), nan_to(bx)


def _independent_fraction(
    r: int, step: tuple[int, int], chip: tuple[int, int], *, spans: tuple[int, int] | None = None
) -> float:
    """Overlapping chips share pixels, hence errors: a (2r+1)² window of nodes (or one of ``spans``
    nodes along rows and columns) holds only about (union of the chips / one chip) independent
    measurements. Returns that number / node count (≤ 1)."""
    spans = spans or (2 * r + 1, 2 * r + 1)
    n_eff = float(np.prod([((n - 1) * st + ch) / ch for n, st, ch in zip(spans, step, chip, strict=True)]))
    return min(n_eff / (spans[0] * spans[1]), 1.0)


def adaptive_plane(
    dy: F,
    dx: F,
    sigma: F,
    *,
    step: tuple[int, int] = (1, 1),
    chip: tuple[int, int] = (1, 1),
    radii: tuple[int, ...] = (1, 2, 3),
    gamma: float = 2.0,
    max_chi2: float = 1.0,
) -> _grid.PlaneFit:
    """Error-weighted local-plane smoothing, the window chosen per node by the ICI rule.

    For every node, planes ``d = a + b·Δrow + c·Δcol`` are fitted by weighted least squares (weights
    1/σ², σ the nodes' predicted errors) to its (2r+1)² neighbourhood for each ``r`` in ``radii``; ``a``
    estimates the node's offset. The window kept is the largest whose confidence interval (± ``gamma``
    σ) still intersects those of all smaller ones, the node's own measurement included (intersection of
    confidence intervals: Katkovnik 1999, after Lepski), and whose neighbours scatter about the plane no
    more than their errors say (χ² per degree of freedom ≤ ``max_chi2``). On a smooth field the noise
    drops as the window grows; a step, an outlier or a curvature the plane cannot follow moves ``a`` out
    of the narrower intervals or raises χ², and stops the growth, so faults and outliers keep their own
    values. A plane, not a mean: a uniform gradient (glacier shear) is not biased.

    ``step`` and ``chip`` (px) give the overlap of neighbouring chips, whose shared pixels make their
    errors correlated: the fit's variance is inflated by the node count over the number of independent
    chips in the window. Returns the smoothed (dy, dx), their predicted 1-σ vector error (px) and the
    radius used per node (int, 0: its own measurement) as a :class:`geodeform.offsets._grid.PlaneFit`.
    NaN nodes stay NaN and carry no weight; predicted errors are floored at ``SIGMA_FLOOR`` (a
    noise-free match predicts 0).
    """
    rs = np.array(sorted(radii), np.int64)
    inflation = np.array([1.0 / _independent_fraction(int(r), step, chip) for r in rs])
    fit = _grid.adaptive_plane_nodes(
        _f64(dy),
        _f64(dx),
        _f64(sigma),
        rs,
        inflation,
        float(gamma),
        float(max_chi2),
        SIGMA_FLOOR,
    )
    return fit._replace(radius=nan_to(fit.radius).astype(np.int64))


def adaptive_poly(
    dy: F,
    dx: F,
    sigma: F,
    *,
    step: tuple[int, int] = (1, 1),
    chip: tuple[int, int] = (1, 1),
    radii: tuple[int, ...] = (1, 2, 3),
    gamma: float = 2.0,
    max_chi2: float = 1.0,
    degree: int = 2,
    sided: bool = False,
    kink: float = 0.0,
) -> _grid.PlaneFit:
    """:func:`adaptive_plane` with a choice of the local model and of the window shapes.

    ``degree`` 1 fits planes (as :func:`adaptive_plane`), 2 full quadratics ``a + b·Δr + c·Δc + d·Δr² +
    e·Δr·Δc + f·Δc²``, whose centre value is not biased by the field's curvature nor, much less than a
    plane's, by a change of gradient inside the window (a glacier's margin), at the cost of more noise at
    the same radius. ``sided`` adds the four half-windows that hold the node on one edge (rows -r..0,
    0..r, columns -r..0, 0..r), each with its own ICI-chosen radius; the estimates of the five shapes are
    fused by inverse variance, with the exact variance of the fused filter. ``kink`` > 0 (with
    ``sided``): where two opposite half-windows disagree on the slope along their direction by more than
    ``kink`` σ (a change of gradient, e.g. a glacier's margin, within reach), the node keeps the estimate
    of the half-window of those that fits its neighbours best instead of the fusion. Same units, tests
    and outputs as :func:`adaptive_plane` (radius: the largest kept over the shapes).
    """
    rs = np.array(sorted(radii), np.int64)
    inflation = np.array(
        [
            [1.0 / _independent_fraction(int(r), step, chip) for r in rs],
            [1.0 / _independent_fraction(int(r), step, chip, spans=(r + 1, 2 * r + 1)) for r in rs],
        ]
    )
    fit = _smooth.adaptive_poly_nodes(
        _f64(dy),
        _f64(dx),
        _f64(sigma),
        rs,
        inflation,
        gamma=gamma,
        max_chi2=max_chi2,
        floor=SIGMA_FLOOR,
        degree=degree,
        sided=sided,
        kink=kink,
    )
    return fit._replace(radius=nan_to(fit.radius).astype(np.int64))
