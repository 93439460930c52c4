"""Slip along a rupture trace from stacked swath profiles across it (COSI-Corr / Milliner et al. style).

Every ``spacing`` metres along the trace, the nodes of a swath ``swath_width`` wide along the trace and
``half_width`` on each side of it are stacked; on each side, beyond a near-fault ``gap`` (nodes whose chips
straddle the trace), a robust straight line of the fault-parallel and of the fault-normal displacement
against the distance to the trace is fitted and evaluated at the trace. The slip is the difference of the
two sides' intercepts. Its 1-σ combines (1) the intercepts' variance from the fit residuals, inflated by
the residuals' spatial correlation area (:func:`correlation_area`: the matcher's chips overlap, so
neighbouring nodes are not independent), and (2) a floor common to all profiles for what the fits do not
see: the scatter of the slip about its along-strike neighbours beyond what (1) predicts (detector stripes
and jitter that cross a profile, trace misplacement, real slip variability shorter than the spacing).

Sign conventions: the trace runs from its first to its last vertex (the strike direction ``s``); "right" and
"left" are as seen on a map with row 0 at the top (north-up grids). Fault-parallel slip is
``(u_left - u_right) · s``: **+ = right-lateral (dextral)**. Fault-normal slip is ``(u_right - u_left) · n``
with ``n`` the right-hand normal: **+ = opening (extension)**, - = shortening. Both are independent of the
direction in which the trace is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from geodeform.corrections import track_coordinates
from geodeform.errors import InvalidInputError
from geodeform.quake.errors import TraceOutsideError
from geodeform.quake.grids import field_arrays

__all__ = [
    "COLUMNS",
    "SlipProfiles",
    "TraceFrame",
    "TrackArtefacts",
    "correlation_area",
    "slip_profiles",
    "trace_frame",
    "track_artefacts",
]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

COLUMNS: tuple[str, ...] = (
    "distance",
    "row",
    "col",
    "strike",
    "parallel",
    "parallel_sigma",
    "normal",
    "normal_sigma",
    "n_left",
    "n_right",
    "misfit",
)
"""Column names of :class:`SlipProfiles`, in table order."""


@dataclass(frozen=True)
class SlipProfiles:
    """Slip along a trace, one row per profile (a table of equal-length columns).

    Attributes
    ----------
    distance
        Along-trace distance of the profile centre from the trace's first vertex, metres.
    row, col
        Profile centre on the grid, cells.
    strike
        Direction of the trace at the profile (first to last vertex), degrees clockwise from the grid's
        "up" (decreasing rows; north on north-up grids), in [0, 360).
    parallel, parallel_sigma
        Fault-parallel slip and its 1-σ, input units (metres for metre fields); + = right-lateral.
        NaN where a side had too few nodes.
    normal, normal_sigma
        Fault-normal slip and its 1-σ, input units; + = opening, - = shortening.
    n_left, n_right
        Nodes used on each side.
    misfit
        Root-mean-square residual of the four line fits, input units.
    meta
        Settings and derived quantities (``spacing``, ``half_width``, ``gap``, ``swath_width``,
        ``pixel_size`` in metres; ``correlation_area`` in cells; ``parallel_scatter_floor`` and
        ``normal_scatter_floor`` in input units).
    """

    distance: F64
    row: F64
    col: F64
    strike: F64
    parallel: F64
    parallel_sigma: F64
    normal: F64
    normal_sigma: F64
    n_left: npt.NDArray[np.int64]
    n_right: npt.NDArray[np.int64]
    misfit: F64
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.distance.size)

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """Profiles with a finite fault-parallel and fault-normal slip."""
        return np.isfinite(self.parallel) & np.isfinite(self.normal)

    def to_records(self) -> npt.NDArray[np.void]:
        """The table as a numpy structured array with the :data:`COLUMNS` fields."""
        cols = {name: getattr(self, name) for name in COLUMNS}
        dtype = [(name, cols[name].dtype) for name in COLUMNS]
        out = np.empty(len(self), dtype=dtype)
        for name in COLUMNS:
            out[name] = cols[name]
        return out

    def to_pandas(self) -> Any:
        """The table as a :class:`pandas.DataFrame` (pandas is an optional dependency)."""
        import pandas as pd  # optional and heavy: only when asked for

        return pd.DataFrame({name: getattr(self, name) for name in COLUMNS})


@dataclass(frozen=True)
class TraceFrame:
    """Curvilinear coordinates of grid nodes about a trace (output of :func:`trace_frame`).

    Attributes
    ----------
    along
        Along-trace coordinate of the node's foot point, cells from the first vertex.
    across
        Signed distance to the trace, cells; + on the right side.
    inside
        Nodes whose foot point lies on the trace (not beyond an end) and within the distance asked.
    length
        Trace length, cells.
    """

    along: F64
    across: F64
    inside: npt.NDArray[np.bool_]
    length: float


def _densify(trace: F64, step: float) -> tuple[F64, F64, F64]:
    """Points every ~``step`` along the polyline, their arc length and unit tangents."""
    seg = np.diff(trace, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    keep = seglen > 1e-9
    seg, seglen = seg[keep], seglen[keep]
    starts = trace[:-1][keep]
    pts, arcs, tans = [], [], []
    s0 = 0.0
    for a, d, ln in zip(starts, seg, seglen, strict=True):
        n = max(1, int(np.ceil(ln / step)))
        f = np.arange(n) / n
        pts.append(a + f[:, None] * d)
        arcs.append(s0 + f * ln)
        tans.append(np.repeat((d / ln)[None], n, axis=0))
        s0 += ln
    pts.append(starts[-1:] + seg[-1:])
    arcs.append(np.array([s0]))
    tans.append((seg[-1] / seglen[-1])[None])
    return np.concatenate(pts), np.concatenate(arcs), np.concatenate(tans)


def _check_trace(trace: npt.ArrayLike) -> F64:
    t = np.asarray(trace, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or len(t) < 2 or not np.isfinite(t).all():
        raise InvalidInputError(
            f"trace must be an (N ≥ 2, 2) array of finite (row, col) vertices, got shape {t.shape}"
        )
    if np.hypot(*(t[-1] - t[0])) == 0 and np.hypot(*np.diff(t, axis=0).T).sum() == 0:
        raise InvalidInputError("trace has zero length: give at least two distinct vertices")
    return t


def trace_frame(
    trace: npt.ArrayLike, rows: npt.ArrayLike, cols: npt.ArrayLike, *, max_distance: float
) -> TraceFrame:
    """Along-trace and signed across-trace coordinates of points near a polyline.

    Parameters
    ----------
    trace
        (N, 2) (row, col) vertices.
    rows, cols
        Point coordinates (any equal shape), cells.
    max_distance
        Points farther than this from the trace are marked outside, cells.

    Returns
    -------
    TraceFrame
    """
    t = _check_trace(trace)
    pts, arcs, tans = _densify(t, 0.25)
    r = np.asarray(rows, dtype=np.float64)
    c = np.asarray(cols, dtype=np.float64)
    q = np.c_[r.ravel(), c.ravel()]
    dist, idx = cKDTree(pts).query(q, distance_upper_bound=max_distance + 1.0)
    near = np.isfinite(dist)
    idx = np.where(near, idx, 0)
    rel = q - pts[idx]
    tr, tc = tans[idx, 0], tans[idx, 1]
    along_off = rel[:, 0] * tr + rel[:, 1] * tc
    across = rel[:, 0] * tc - rel[:, 1] * tr  # right-hand normal (s_col, -s_row)
    along = arcs[idx] + along_off
    length = float(arcs[-1])
    inside = near & (np.abs(across) <= max_distance) & (along >= -0.2) & (along <= length + 0.2)
    shape = r.shape
    return TraceFrame(along.reshape(shape), across.reshape(shape), inside.reshape(shape), length)


def correlation_area(
    field: npt.ArrayLike,
    *,
    exclude: npt.ArrayLike | None = None,
    scale: float | None = 6.0,
    max_lag: int = 8,
) -> float:
    """Integral area (cells) of the autocorrelation of a field's small-scale residuals.

    The variance of a mean of ``n`` correlated nodes is ``σ² A / n`` for ``A`` this area (1 for white
    noise): the factor by which least-squares variances are inflated.

    Parameters
    ----------
    field
        (nr, nc) values, NaN = no data.
    exclude
        Nodes left out (e.g. near a trace, where the step would dominate the residuals).
    scale
        σ of the Gaussian low-pass removed first, cells; None removes only the mean (for fit residuals).
    max_lag
        Largest lag considered, cells.

    Returns
    -------
    float
        Sum of the autocorrelation over the lags within the radius where its ring average stays above
        0.05 (beyond, the estimates are noise), ≥ 1.
    """
    f = np.asarray(field, dtype=np.float64)
    v = np.isfinite(f)
    if exclude is not None:
        v &= ~np.asarray(exclude, dtype=bool)
    if v.sum() < 50:
        return 1.0
    fv = np.where(v, f, 0.0)
    if scale is None:
        res = np.where(v, f - fv.sum() / v.sum(), 0.0)
    else:
        w = ndimage.gaussian_filter(v.astype(np.float64), scale)
        low = ndimage.gaussian_filter(fv, scale) / np.where(w > 1e-6, w, np.inf)
        res = np.where(v, f - low, 0.0)
    shape = [n + max_lag for n in f.shape]  # zero padding: no circular wrap up to max_lag
    fr = np.fft.rfft2(res, shape)
    fm = np.fft.rfft2(v.astype(np.float64), shape)
    idx = np.r_[0 : max_lag + 1, -max_lag:0]
    num = np.fft.irfft2(fr * np.conj(fr), shape)[np.ix_(idx, idx)]
    den = np.fft.irfft2(fm * np.conj(fm), shape)[np.ix_(idx, idx)]
    cov = num / np.where(den > 10, den, np.inf)
    if cov[0, 0] <= 0:
        return 1.0
    rho = cov / cov[0, 0]
    hr, hc = np.meshgrid(idx, idx, indexing="ij")
    radius = np.hypot(hr, hc)
    ring = np.rint(radius).astype(int).ravel()
    prof = np.bincount(ring, rho.ravel()) / np.maximum(np.bincount(ring), 1)
    below = np.nonzero(prof[1:] < 0.05)[0]
    reach = int(below[0]) if below.size else max_lag
    return float(max(1.0, rho[radius <= reach + 0.5].sum()))


class _Fit(NamedTuple):
    intercept: float
    var: float  # variance of the intercept before the correlation inflation
    residual: F64  # NaN for nodes the robust fit rejected


def _line_fit(d: F64, u: F64, w: F64) -> _Fit:
    """Robust (Tukey-reweighted) weighted straight line ``u = a + b d``."""
    a_mat = np.c_[np.ones_like(d), d]
    rw = np.ones_like(d)
    coef = np.zeros(2)
    for _ in range(6):
        sw = np.sqrt(w * rw)
        coef, *_ = np.linalg.lstsq(a_mat * sw[:, None], u * sw, rcond=None)
        res = u - a_mat @ coef
        scale = 1.4826 * np.median(np.abs(res)) + 1e-12
        z = res / (4.685 * scale)
        rw = np.where(np.abs(z) < 1, (1 - z**2) ** 2, 0.0)
    ww = w * rw
    res = u - a_mat @ coef
    dof = max(1.0, float((rw > 0).sum()) - 2.0)
    s2 = float(np.sum(ww * res**2) / dof)
    cov = np.linalg.pinv((a_mat * ww[:, None]).T @ a_mat) * s2
    return _Fit(float(coef[0]), float(cov[0, 0]), np.where(rw > 0, res, np.nan))


class _Profile(NamedTuple):
    parallel: float
    parallel_var: float
    normal: float
    normal_var: float
    n_left: int
    n_right: int
    misfit: float
    res_parallel: F64
    res_normal: F64


def _profile(d: F64, upar: F64, uperp: F64, w: F64, *, gap: float, min_nodes: int) -> _Profile:
    left, right = d < -gap, d > gap
    nl, nr = int(left.sum()), int(right.sum())
    rp, rq = np.full(d.shape, np.nan), np.full(d.shape, np.nan)
    if nl < min_nodes or nr < min_nodes:
        return _Profile(np.nan, np.nan, np.nan, np.nan, nl, nr, np.nan, rp, rq)
    pl, ql, pr, qr = (_line_fit(d[m], u[m], w[m]) for m in (left, right) for u in (upar, uperp))
    for m, fp, fq in ((left, pl, ql), (right, pr, qr)):
        rp[m], rq[m] = fp.residual, fq.residual
    misfit = float(np.sqrt(np.nanmean(np.r_[rp[left | right], rq[left | right]] ** 2)))
    return _Profile(
        pl.intercept - pr.intercept,
        pl.var + pr.var,
        qr.intercept - ql.intercept,
        ql.var + qr.var,
        nl,
        nr,
        misfit,
        rp,
        rq,
    )


def slip_profiles(
    dx: npt.ArrayLike,
    dy: npt.ArrayLike,
    trace: npt.ArrayLike,
    *,
    spacing: float,
    half_width: float,
    pixel_size: float,
    gap: float | None = None,
    swath_width: float | None = None,
    sigma: npt.ArrayLike | None = None,
    min_coverage: float = 0.5,
    track_angle: float | None = None,
) -> SlipProfiles:
    """Fault-parallel and fault-normal slip along a trace, from stacked swath profiles.

    Parameters
    ----------
    dx, dy
        (nr, nc) displacement along +col and +row of the grid (the offsets convention), metres (the slip
        comes out in the unit of the field); NaN = no data. From a map product with +y north, pass
        ``dy = -north`` on a north-up grid (:func:`geodeform.quake.grid_components` does it for any grid).
    trace
        (N, 2) (row, col) vertices of the trace on the same grid (:func:`geodeform.quake.detect_trace` or
        :func:`geodeform.quake.read_trace`).
    spacing
        Distance between profile centres along the trace, metres.
    half_width
        Extent of each profile on each side of the trace, metres.
    pixel_size
        Size of one grid cell (node spacing), metres.
    gap
        Nodes closer to the trace than this are left out of the fits, metres (chips that straddle the
        trace blend both sides: use about half the matching chip). Default 2 cells.
    swath_width
        Width along the trace of the nodes stacked into one profile, metres. Default ``spacing``.
    sigma
        Optional (nr, nc) 1-σ of every node (e.g. ``OffsetField.error`` in metres): weights ``1/σ²``.
    min_coverage
        Fewest nodes on each side for a fit, as a fraction of the nodes a full swath side holds
        (``swath_width × (half_width - gap) / pixel_size²``): profiles cut by the grid's edge, by the trace's
        ends or by holes in the field get NaN slip instead of the slip of wherever their nodes lie.
    track_angle
        Direction of the satellite track on the grid, degrees clockwise from "up" (decreasing rows), as
        :func:`geodeform.corrections.track_coordinates`. When given, detector stripes (constant along the
        track) and attitude jitter (constant across it) are estimated from the residuals of a first pass of
        the field minus a smooth model of the deformation on each side of the trace
        (:func:`track_artefacts`) and removed before the profiles are fitted.

    Returns
    -------
    SlipProfiles
        One row per profile, ordered along the trace. See the module documentation for signs.

    Raises
    ------
    EmptyFieldError
        The field holds no finite value.
    TraceOutsideError
        The trace does not cross the grid, or no node lies within ``half_width`` of it.
    InvalidInputError
        Mismatched shapes, non-positive lengths, ``gap ≥ half_width``.
    """
    if min(spacing, half_width, pixel_size) <= 0:
        raise InvalidInputError(
            f"spacing, half_width, pixel_size must be > 0 metres, got {spacing}, {half_width}, {pixel_size}"
        )
    gap_c = 2.0 if gap is None else gap / pixel_size
    hw_c = half_width / pixel_size
    if not 0 <= gap_c < hw_c:
        raise InvalidInputError(
            f"gap ({gap_c * pixel_size:g} m) must be ≥ 0 and < half_width ({half_width:g} m)"
        )
    x, y, w, valid = _field(dx, dy, sigma)
    t = _check_trace(trace)
    _check_crossing(t, x.shape)
    meta: dict[str, Any] = {
        "spacing": float(spacing),
        "half_width": float(half_width),
        "gap": gap_c * pixel_size,
        "swath_width": float(swath_width or spacing),
        "pixel_size": float(pixel_size),
    }
    if track_angle is not None:
        fix = track_artefacts(
            x, y, t, pixel_size=pixel_size, track_angle=track_angle, near=gap_c * pixel_size
        )
        x, y = x - fix.dx, y - fix.dy
        meta.update(track_angle=float(track_angle), track_artefacts_rms=fix.rms)
    nodes, length = _nodes(x, y, w, valid, t, hw_c)
    if length * pixel_size < meta["swath_width"]:
        raise InvalidInputError(
            f"the trace is {length * pixel_size:.0f} m long, shorter than one swath "
            f"({meta['swath_width']:g} m): give a smaller swath_width (or spacing)"
        )
    full_side = meta["swath_width"] * (half_width - meta["gap"]) / pixel_size**2
    min_nodes = max(6, int(np.ceil(min_coverage * full_side)))
    out = _stack(nodes, t, x.shape, length=length, gap=gap_c, min_nodes=min_nodes, meta=meta).profiles
    bad = int((~out.valid).sum())
    if bad:
        log.warning(
            "%d of %d slip profiles have fewer than %d nodes on a side (grid edge, trace end or holes): NaN",
            bad,
            len(out),
            min_nodes,
        )
    return out


def _field(
    dx: npt.ArrayLike, dy: npt.ArrayLike, sigma: npt.ArrayLike | None
) -> tuple[F64, F64, F64, npt.NDArray[np.bool_]]:
    """The field as float64, its weights (1/σ² or 1) and its valid nodes; refuses empty fields."""
    x, y, valid = field_arrays(dx, dy)
    w = np.ones_like(x)
    if sigma is not None:
        sg = np.asarray(sigma, dtype=np.float64)
        if sg.shape != x.shape:
            raise InvalidInputError(f"sigma has shape {sg.shape}, the field {x.shape}")
        valid &= np.isfinite(sg) & (sg > 0)
        w = 1.0 / np.where(valid, sg, 1.0) ** 2
    return x, y, w, valid


def _nodes(x: F64, y: F64, w: F64, valid: npt.NDArray[np.bool_], t: F64, hw_c: float) -> tuple[_Nodes, float]:
    rows, cols = np.nonzero(valid)
    frame = trace_frame(t, rows, cols, max_distance=hw_c)
    if not frame.inside.any():
        raise TraceOutsideError(
            f"no valid node lies within half_width={hw_c:g} cells of the trace: check that the trace is on "
            "this grid (read_trace maps a vector file onto it) or widen half_width"
        )
    sel = frame.inside
    r, c = rows[sel], cols[sel]
    return _Nodes(r, c, x[r, c], y[r, c], w[r, c], frame.along[sel], frame.across[sel]), frame.length


class _Stacked(NamedTuple):
    profiles: SlipProfiles
    res_dx: F64  # (nr, nc) residuals of the line fits, NaN off the swaths
    res_dy: F64


@dataclass(frozen=True)
class _Nodes:
    row: npt.NDArray[np.intp]
    col: npt.NDArray[np.intp]
    dx: F64
    dy: F64
    weight: F64
    along: F64
    across: F64


def _stack(
    nodes: _Nodes,
    trace: F64,
    shape: tuple[int, ...],
    *,
    length: float,
    gap: float,
    min_nodes: int,
    meta: dict[str, Any],
) -> _Stacked:
    px = meta["pixel_size"]
    step, swath = meta["spacing"] / px, meta["swath_width"] / px
    usable = length - swath  # whole swaths only: none hangs over an end of the trace
    n = int(np.floor(usable / step)) + 1 if usable >= 0 else 0
    centres = 0.5 * swath + 0.5 * (usable - (n - 1) * step) + step * np.arange(n)
    pts, arcs, _ = _densify(trace, 0.25)
    at = lambda s: np.c_[np.interp(s, arcs, pts[:, 0]), np.interp(s, arcs, pts[:, 1])]  # noqa: E731
    half = max(0.5 * swath, 1.0)
    chord = at(np.clip(centres + half, 0, length)) - at(np.clip(centres - half, 0, length))
    strike = chord / np.hypot(chord[:, 0], chord[:, 1])[:, None]
    order = np.argsort(nodes.along)
    along = nodes.along[order]
    res_maps = np.full((2, *shape), np.nan)
    results = []
    for k in range(n):
        lo, hi = np.searchsorted(along, [centres[k] - 0.5 * swath, centres[k] + 0.5 * swath])
        i = order[lo:hi]
        sr, sc = strike[k]
        upar = nodes.dy[i] * sr + nodes.dx[i] * sc
        uperp = nodes.dy[i] * sc - nodes.dx[i] * sr
        p = _profile(nodes.across[i] * px, upar, uperp, nodes.weight[i], gap=gap * px, min_nodes=min_nodes)
        res_maps[0, nodes.row[i], nodes.col[i]] = p.res_parallel * sc - p.res_normal * sr  # back to dx
        res_maps[1, nodes.row[i], nodes.col[i]] = p.res_parallel * sr + p.res_normal * sc  # and dy
        results.append(p)
    # Neighbouring nodes share chip pixels: inflate the variances by the residuals' correlation area.
    inflate = 0.5 * (correlation_area(res_maps[0], scale=None) + correlation_area(res_maps[1], scale=None))
    col = lambda name: np.array([getattr(p, name) for p in results])  # noqa: E731
    sigma = {}
    for name in ("parallel", "normal"):
        var = col(f"{name}_var") * inflate
        floor = _scatter_floor(col(name), var)
        meta[f"{name}_scatter_floor"] = floor
        sigma[name] = np.sqrt(var + floor**2)
    meta["correlation_area"] = inflate
    centre = at(centres)
    table = SlipProfiles(
        distance=centres * px,
        row=centre[:, 0],
        col=centre[:, 1],
        strike=np.degrees(np.arctan2(strike[:, 1], -strike[:, 0])) % 360.0,
        parallel=col("parallel"),
        parallel_sigma=sigma["parallel"],
        normal=col("normal"),
        normal_sigma=sigma["normal"],
        n_left=col("n_left").astype(np.int64),
        n_right=col("n_right").astype(np.int64),
        misfit=col("misfit"),
        meta=meta,
    )
    return _Stacked(table, res_maps[0], res_maps[1])


def _scatter_floor(value: F64, var: F64) -> float:
    """Error common to all profiles that the fits do not see (stripes, jitter, short-wavelength strain),
    from the scatter of the slip about its neighbours' mean along strike: the robust spread of the second
    differences beyond what the fit variances predict (0 with fewer than 5 profiles)."""
    ok = np.isfinite(value) & np.isfinite(var)
    v, w = value[ok], var[ok]
    if v.size < 5:
        return 0.0
    second = v[1:-1] - 0.5 * (v[:-2] + v[2:])
    predicted = w[1:-1] + 0.25 * (w[:-2] + w[2:])
    observed = (1.4826 * np.median(np.abs(second - np.median(second)))) ** 2
    return float(np.sqrt(max(0.0, (observed - np.median(predicted)) / 1.5)))


def _check_crossing(t: F64, shape: tuple[int, ...]) -> None:
    nr, nc = shape
    pts, _, _ = _densify(t, 0.5)
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= nr - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= nc - 0.5)
    if not inside.any():
        raise TraceOutsideError(
            f"the trace (rows {t[:, 0].min():.1f}..{t[:, 0].max():.1f}, cols {t[:, 1].min():.1f}.."
            f"{t[:, 1].max():.1f}) does not cross the offset grid ({nr} × {nc} cells): check the trace's CRS "
            "and that it was mapped onto this grid (read_trace), or pick tiles that cover the rupture"
        )


@dataclass(frozen=True)
class TrackArtefacts:
    """Output of :func:`track_artefacts`: the correction to subtract from a field.

    Attributes
    ----------
    dx, dy
        (nr, nc) stripes + jitter along +col / +row, input units (0 where nothing was estimated).
    rms
        Root-mean-square of the correction where it was estimated, input units.
    """

    dx: F64
    dy: F64
    rms: float


def _bin_medians(values: F64, coord: F64, min_count: int) -> F64:
    """Median of ``values`` (NaN = none) in unit bins of ``coord``, mapped back onto every node."""
    k = np.floor(coord - np.nanmin(coord)).astype(np.int64)
    ok = np.isfinite(values)
    nb = int(k.max()) + 1
    kv, vv = k[ok], values[ok]
    span = float(vv.max() - vv.min()) if vv.size else 0.0
    # one float sort key: the bin, plus the value scaled into [0, 0.5) (faster than a two-key lexsort)
    order = np.argsort(kv + (0.5 * (vv - vv.min()) / span if span > 0 else 0.0), kind="stable")
    kv, vv = kv[order], vv[order]
    count = np.bincount(kv, minlength=nb)
    start = np.r_[0, np.cumsum(count)[:-1]]
    med = np.zeros(nb)
    full = count >= max(min_count, 1)
    lo = start[full] + (count[full] - 1) // 2
    hi = start[full] + count[full] // 2
    med[full] = 0.5 * (vv[lo] + vv[hi])
    return med[k]


def _extend(trace: F64, by: float) -> F64:
    """The polyline lengthened straight by ``by`` at both ends (along its end segments)."""
    out = [trace]
    for end, prev in ((0, 1), (-1, -2)):
        d = trace[end] - trace[prev]
        n = np.hypot(*d)
        if n > 0:
            out.insert(0 if end == 0 else len(out), (trace[end] + d / n * by)[None])
    return np.concatenate(out)


def _moments(a: F64, sigma: float, *, second: bool) -> list[F64]:
    """Gaussian-weighted moments of ``a`` about every node, Δ = neighbour - node: Σw a, Σw a Δr, Σw a Δc
    and, with ``second``, Σw a Δr², Σw a Δr Δc, Σw a Δc² (from Gaussian derivative filters:
    Δ G = σ² G', Δ² G = σ⁴ G'' + σ² G)."""
    s2 = sigma**2

    def gf(order: tuple[int, int]) -> F64:
        return ndimage.gaussian_filter(a, sigma, order=order, truncate=3.0)

    g = gf((0, 0))
    out = [g, s2 * gf((1, 0)), s2 * gf((0, 1))]
    if second:
        out += [s2 * s2 * gf((2, 0)) + s2 * g, s2 * s2 * gf((1, 1)), s2 * s2 * gf((0, 2)) + s2 * g]
    return out


class _SideSmoother:
    """Local-linear Gaussian smoothing that never mixes the two sides of a trace (side -1, +1; 0 = far
    enough for the kernel not to reach across it). First order, so a node next to the trace, whose
    neighbours all lie on one side of it, is not biased by the field's gradient. The weights depend only on
    which nodes are valid, so they are computed once: the fit's value at a node is ``g · (Σw f, Σw f Δr,
    Σw f Δc)`` with ``g`` the first row of the inverse of the node's 3 × 3 moment matrix."""

    def __init__(self, valid: npt.NDArray[np.bool_], side: npt.NDArray[np.int8], sigma: float) -> None:
        self.sigma = sigma
        self.parts = []
        for s in (-1, 1):
            m = valid & (side != -s)
            w0, wr, wc, wrr, wrc, wcc = _moments(m.astype(np.float64), sigma, second=True)
            here = m & (w0 > 0.05 * w0.max())
            a = np.stack(
                [np.stack([w0, wr, wc], -1), np.stack([wr, wrr, wrc], -1), np.stack([wc, wrc, wcc], -1)], -2
            )[here]
            g = np.linalg.inv(a + 1e-9 * np.eye(3))[:, 0, :]
            self.parts.append((m, here, g))

    def __call__(self, f: F64) -> F64:
        out = np.full(f.shape, np.nan)
        for m, here, g in self.parts:
            f0, fr, fc = _moments(np.where(m, f, 0.0), self.sigma, second=False)
            out[here] = g[:, 0] * f0[here] + g[:, 1] * fr[here] + g[:, 2] * fc[here]
        return out


def track_artefacts(
    dx: npt.ArrayLike,
    dy: npt.ArrayLike,
    trace: npt.ArrayLike,
    *,
    pixel_size: float,
    track_angle: float,
    scale: float = 1000.0,
    near: float = 0.0,
    rounds: int = 3,
    min_count: int = 10,
) -> TrackArtefacts:
    """Detector stripes and attitude jitter of a co-seismic field, kept apart from the deformation.

    Stripes depend on the across-track coordinate only, jitter on the along-track coordinate only
    (:func:`geodeform.corrections.track_coordinates`). The deformation is modelled as a smooth field on each
    side of the trace (Gaussian of σ = ``scale``, never mixing the two sides, so the step is kept); the
    artefacts are the medians, in one-cell bins of each track coordinate in turn, of the field minus that
    model; model and artefacts are refined alternately ``rounds`` times. Bin medians of the field itself
    would take the slip into the correction wherever the trace runs along a bin.

    Parameters
    ----------
    dx, dy
        (nr, nc) field along +col / +row, any unit; NaN = no data.
    trace
        (N, 2) (row, col) vertices of the trace.
    pixel_size
        Cell size, metres.
    track_angle
        Track direction, degrees clockwise from "up" (decreasing rows).
    scale
        σ of the smooth deformation model, metres. It must let the model follow the deformation (slip that
        varies along strike, elastic decay) yet not the artefacts: a Gaussian of σ keeps a fraction
        exp(-2π²σ²/P²) of a period P, so jitter periods and stripe widths well above σ leak into the model
        and are only partly removed.
    near
        Nodes closer to the trace than this (metres; chips that straddle it) are left out of the medians.
    rounds
        Alternations of model and artefacts.
    min_count
        Fewest nodes in a bin for it to be estimated (0 elsewhere).

    Returns
    -------
    TrackArtefacts
    """
    fx = np.asarray(dx, dtype=np.float64)
    fy = np.asarray(dy, dtype=np.float64)
    valid = np.isfinite(fx) & np.isfinite(fy)
    sigma = scale / pixel_size
    rr, cc = np.indices(fx.shape)
    frame = trace_frame(_extend(_check_trace(trace), 3.5 * sigma), rr, cc, max_distance=3.5 * sigma)
    side = np.where(frame.inside, np.sign(frame.across), 0).astype(np.int8)
    # nodes whose chips straddle the trace fit neither side's smooth model: left out of the medians
    blended = frame.inside & (np.abs(frame.across) < near / pixel_size)
    across, along = track_coordinates(fx.shape, track_angle)
    smooth = _SideSmoother(valid, side, sigma)
    total = [np.zeros(fx.shape), np.zeros(fx.shape)]
    for _ in range(rounds):
        for k, f in enumerate((fx, fy)):
            res = np.where(blended, np.nan, f - smooth(f - total[k]))
            for coord in (across, along, across):
                total[k] = total[k] + _bin_medians(res - total[k], coord, min_count)
    rms = float(np.sqrt(np.mean(total[0][valid] ** 2 + total[1][valid] ** 2))) if valid.any() else 0.0
    return TrackArtefacts(total[0], total[1], rms)
