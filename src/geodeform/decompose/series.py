"""MSBAS-like 4-D inversion: pair networks of several geometries, on different dates, to east/north/up series.

Each :class:`PairSet` is one geometry's pair network (an ascending track's range offsets, a descending
track's, an optical sensor's east and north offsets...), with its own acquisition dates. The union of all
dates is the time axis; the unknowns are the cumulative displacements ``[E, N, U]`` at every date since the
first one (``d_0 = 0``). A pair ``(i, j)`` of a set with unit vector ``u`` observes ``u · (d_j − d_i)``.
Because the sets do not share dates, the data alone leave the displacement between dates of different sets
free: the temporal regularisation of :func:`geodeform.timeseries.invert` (a penalty on the change of mean
velocity between consecutive intervals, weight ``smoothing``) ties them together, as MSBAS does (Samsonov &
d'Oreye 2012, 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.decompose._kernels import solve_pixels
from geodeform.decompose.enu import COMPONENTS, Observation, ObservationKind
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.pairs import as_dates, check_pairs
from geodeform.timeseries import span_velocity

__all__ = ["EnuSeries", "PairSet", "invert_enu"]

_EPS_REDUNDANCY = 1e-3
_ESTIMABLE_TOL = 1e-6
_SIGMA_SAMPLE = 200  # pixels used to estimate the sets' σ


@dataclass(frozen=True)
class PairSet:
    """The pair network of one observation geometry (one track, one optical component).

    Attributes
    ----------
    dates
        ``(ndates,)`` acquisition dates of this set, strictly increasing (ISO strings, datetime64...).
    pairs
        ``(npairs, 2)`` indices ``(reference, secondary)`` into ``dates``.
    value
        ``(npairs, *spatial)`` displacement from the reference to the secondary date, metres, NaN = missing,
        projected as ``kind`` says (see :class:`geodeform.decompose.Observation`; ``range`` is + towards
        the satellite).
    kind
        ``"range"``, ``"azimuth"``, ``"east"``, ``"north"`` or ``"up"``.
    heading_deg, incidence_deg
        Geometry (degrees; clockwise from north, from the vertical), scalar or ``(*spatial)``.
    sigma
        1-σ noise of ``value`` (metres): scalar, ``(npairs,)`` or ``(npairs, *spatial)``; None to estimate one
        σ for the whole set from the residuals (variance-component estimation).
    name
        Label in messages and in :attr:`EnuSeries.set_sigma`.
    """

    dates: Sequence[Any] | ArrayLike
    pairs: ArrayLike
    value: ArrayLike
    kind: ObservationKind
    heading_deg: ArrayLike | None = None
    incidence_deg: ArrayLike | None = None
    sigma: ArrayLike | None = None
    name: str = ""


@dataclass(frozen=True)
class EnuSeries:
    """East/north/up displacement time series from several pair networks.

    Attributes
    ----------
    dates
        ``(ndates,)`` union of the sets' dates, ``datetime64[D]``.
    east, north, up
        ``(ndates, *spatial)`` float32 cumulative displacement since ``dates[0]``, metres (+east, +north,
        +up); NaN where unconstrained.
    sigma_east, sigma_north, sigma_up
        ``(ndates, *spatial)`` float32 1-σ of each date (0 at ``dates[0]``), propagated from the sets' σ.
    velocity_east, velocity_north, velocity_up
        ``(*spatial)`` float32 mean rate over the constrained span, metres per year (365.25 days).
    sigma_velocity_east, sigma_velocity_north, sigma_velocity_up
        ``(*spatial)`` float32 1-σ of the mean rates.
    set_sigma
        σ of each set's observations (metres): the estimate when the set's ``sigma`` was None, else the
        median of the given σ.
    outlier
        One ``(npairs, *spatial)`` bool array per set: pairs rejected by the robust fit.
    n_obs_used
        ``(*spatial)`` int32 observations used by the final fit.
    unconstrained
        ``(*spatial, 3)`` bool: the component (east, north, up) is free at some date of the pixel.
    names
        Set names, in input order.
    """

    dates: NDArray[np.datetime64]
    east: NDArray[np.float32]
    north: NDArray[np.float32]
    up: NDArray[np.float32]
    sigma_east: NDArray[np.float32]
    sigma_north: NDArray[np.float32]
    sigma_up: NDArray[np.float32]
    velocity_east: NDArray[np.float32]
    velocity_north: NDArray[np.float32]
    velocity_up: NDArray[np.float32]
    sigma_velocity_east: NDArray[np.float32]
    sigma_velocity_north: NDArray[np.float32]
    sigma_velocity_up: NDArray[np.float32]
    set_sigma: dict[str, float]
    outlier: tuple[NDArray[np.bool_], ...]
    n_obs_used: NDArray[np.int32]
    unconstrained: NDArray[np.bool_]
    names: tuple[str, ...]

    def summary(self) -> str:
        """Which components are unconstrained where, e.g. ``"north unconstrained at 400 of 400 pixels"``."""
        total = self.n_obs_used.size
        parts = [
            f"{name} unconstrained at {int(self.unconstrained[..., k].sum())} of {total} pixels"
            for k, name in enumerate(COMPONENTS)
            if self.unconstrained[..., k].any()
        ]
        return "; ".join(parts) if parts else "all resolved"


@dataclass
class _Problem:
    """Every observation of every set, flattened: P observations x npx pixels."""

    dates: NDArray[np.datetime64]
    t: NDArray[np.float64]  # days since dates[0]
    spatial: tuple[int, ...]
    ref: NDArray[np.int64]  # (P,) union date index
    sec: NDArray[np.int64]
    set_of: NDArray[np.int64]  # (P,) set index
    value: NDArray[np.float64]  # (P, npx)
    finite: NDArray[np.bool_]  # (P, npx)
    unit: NDArray[np.float64]  # (nsets, npx, 3)
    sigma_given: list[NDArray[np.float64] | None]  # per set: (npairs_s, npx) or None (estimate)
    names: tuple[str, ...]
    pixel_geometry: bool
    pixel_weights: bool  # some given σ varies between pixels


def _set_arrays(k: int, s: PairSet) -> tuple[Any, ...]:
    if not isinstance(s, PairSet):
        raise InvalidInputError(f"sets[{k}]: expected a PairSet, got {type(s).__name__}")
    name = s.name or f"set {k} ({s.kind})"
    d = as_dates(s.dates, name=f"{name}: dates")
    p = check_pairs(s.pairs, d.size)
    v = np.asarray(s.value, dtype=np.float64)
    if v.ndim < 1 or v.shape[0] != p.shape[0]:
        raise InvalidInputError(
            f"{name}: value must have one map per pair, shape ({p.shape[0]}, ...), got {v.shape}"
        )
    if s.kind not in ("range", "azimuth", "east", "north", "up"):
        raise InvalidInputError(f"{name}: kind={s.kind!r}; use range, azimuth, east, north or up")
    unit = Observation(
        value=0.0, kind=s.kind, heading_deg=s.heading_deg, incidence_deg=s.incidence_deg, name=name
    ).unit_vector()
    return name, d, p, v, unit


def _prepare(sets: Sequence[PairSet]) -> _Problem:
    if len(sets) == 0:
        raise InvalidInputError("sets: empty; give at least one PairSet")
    parsed = [_set_arrays(k, s) for k, s in enumerate(sets)]
    spatial = parsed[0][3].shape[1:]
    for name, _, _, v, _ in parsed:
        if v.shape[1:] != spatial:
            raise InvalidInputError(
                f"{name}: maps of shape {v.shape[1:]} differ from {spatial}; resample every set onto one grid"
            )
    names = tuple(x[0] for x in parsed)
    if len(set(names)) != len(names):
        raise InvalidInputError(f"sets: names must be unique, got {list(names)}")
    union = np.unique(np.concatenate([x[1] for x in parsed]))
    npx = int(np.prod(spatial)) if spatial else 1
    ref, sec, set_of, values, units, sig = [], [], [], [], [], []
    for k, ((name, d, p, v, u), s) in enumerate(zip(parsed, sets, strict=True)):
        idx = np.searchsorted(union, d)
        ref.append(idx[p[:, 0]])
        sec.append(idx[p[:, 1]])
        set_of.append(np.full(p.shape[0], k))
        values.append(v.reshape(p.shape[0], npx))
        try:
            units.append(np.broadcast_to(u, (*spatial, 3)).reshape(npx, 3))
        except ValueError as exc:
            raise InvalidInputError(
                f"{name}: geometry of shape {u.shape[:-1]} does not fit maps {spatial}"
            ) from exc
        sig.append(_given_sigma(name, s.sigma, p.shape[0], spatial, npx))
    value = np.concatenate(values)
    if not np.isfinite(value).any():
        raise NoDataError("sets: every value is NaN; nothing to invert")
    unit = np.stack(units)
    return _Problem(
        dates=union,
        t=(union - union[0]).astype(np.float64),
        spatial=spatial,
        ref=np.concatenate(ref),
        sec=np.concatenate(sec),
        set_of=np.concatenate(set_of),
        value=value,
        finite=np.isfinite(value) & np.isfinite(unit[np.concatenate(set_of)]).all(axis=-1),
        unit=unit,
        sigma_given=sig,
        names=names,
        pixel_geometry=bool(np.ptp(unit, axis=1).max() > 0) if npx > 1 else False,
        pixel_weights=any(_varies(g) for g in sig),
    )


def _varies(sigma: NDArray[np.float64] | None) -> bool:
    """True when a given σ differs between pixels of one pair (ignoring NaN)."""
    if sigma is None or sigma.shape[1] < 2:
        return False
    filled = np.where(np.isfinite(sigma), sigma, sigma[np.isfinite(sigma)].max(initial=1.0))
    return bool((np.ptp(filled, axis=1) > 0).any())


def _given_sigma(
    name: str, sigma: ArrayLike | None, npairs: int, spatial: tuple[int, ...], npx: int
) -> NDArray[np.float64] | None:
    if sigma is None:
        return None
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 1 and s.shape[0] == npairs:
        s = s.reshape((npairs,) + (1,) * len(spatial))
    try:
        full = np.broadcast_to(s, (npairs, *spatial)).reshape(npairs, npx)
    except ValueError as exc:
        raise InvalidInputError(
            f"{name}: sigma must be a scalar, ({npairs},) or ({npairs}, *{spatial}), got {s.shape}"
        ) from exc
    if (np.isfinite(full) & (full <= 0)).any():
        raise InvalidInputError(f"{name}: sigma must be > 0 metres (NaN drops an observation)")
    return np.array(full)


def _regulariser(t: NDArray[np.float64], lam: float, max_gap: float) -> NDArray[np.float64]:
    """``(m, m)`` normal matrix of the smoothing rows (per component), dates 1.. only (d_0 = 0)."""
    n = t.size
    L = np.zeros((n, n))
    for k in range(1, n - 1):
        dm, dp = t[k] - t[k - 1], t[k + 1] - t[k]
        if max(dm, dp) > max_gap:
            continue
        tau = 0.5 * (dm + dp)
        row = np.zeros(n)
        row[k - 1], row[k], row[k + 1] = tau / dm, -tau / dm - tau / dp, tau / dp
        L += np.outer(row, row)
    return np.asarray(lam**2 * np.kron(L[1:, 1:], np.eye(3)), dtype=np.float64)


def _group_pixels(
    prob: _Problem, use: NDArray[np.bool_], w: NDArray[np.float64], pixels: NDArray[np.int64]
) -> tuple[Any, ...]:
    """Pixels (of ``pixels``; ``use``, ``w`` restricted to them) sharing a normal matrix."""
    parts = [np.packbits(use.T, axis=1)]
    if prob.pixel_geometry:
        geom = prob.unit[:, pixels].transpose(1, 0, 2).reshape(pixels.size, -1)
        parts.append(np.ascontiguousarray(geom).view(np.uint8))
    if prob.pixel_weights:
        parts.append(np.ascontiguousarray(np.where(use, w, 0.0).T).view(np.uint8))
    key = np.ascontiguousarray(np.concatenate(parts, axis=1))
    _, first, inverse = np.unique(
        key.view(np.dtype((np.void, key.shape[1]))).ravel(), return_index=True, return_inverse=True
    )
    return first, inverse.ravel()


def _normal_blocks(
    prob: _Problem, use: NDArray[np.bool_], w: NDArray[np.float64], pix: NDArray[np.int64]
) -> NDArray[np.float64]:
    """``(g, n, 3, n, 3)`` normal matrices of the observations at representative pixels ``pix``."""
    n = prob.t.size
    N = np.zeros((pix.size, n, 3, n, 3))
    for p in np.flatnonzero(use[:, pix].any(axis=1)):
        u = prob.unit[prob.set_of[p], pix]  # (g, 3)
        o = (np.where(use[p, pix], w[p, pix], 0.0))[:, None, None] * u[:, :, None] * u[:, None, :]
        i, j = prob.ref[p], prob.sec[p]
        N[:, i, :, i, :] += o
        N[:, j, :, j, :] += o
        N[:, i, :, j, :] -= o
        N[:, j, :, i, :] -= o
    return N


def _dense_inverse(N: NDArray[np.float64], reg: NDArray[np.float64], max_condition: float) -> tuple[Any, Any]:
    """Pseudo-inverse normal matrices ``(g, m, m)`` and the unknowns each leaves free ``(g, m)``."""
    g, n = N.shape[0], N.shape[1]
    m = 3 * (n - 1)
    A = N[:, 1:, :, 1:, :].reshape(g, m, m) + reg
    evals, evecs = np.linalg.eigh(A)
    nul = evals <= np.maximum(evals[:, -1:], 0.0) / max_condition**2
    ie = np.where(nul, 0.0, 1.0 / np.where(nul, 1.0, evals))
    inv = np.einsum("gik,gk,gjk->gij", evecs, ie, evecs)
    free = np.einsum("gik,gk->gi", evecs**2, nul.astype(float)) > _ESTIMABLE_TOL
    return inv, free


@dataclass
class _Fit:
    x: NDArray[np.float64]  # (npx, n, 3) with d_0 = 0
    var: NDArray[np.float64]  # (npx, n, 3)
    free: NDArray[np.bool_]  # (npx, n, 3)
    resid: NDArray[np.float64]  # (P, npx), NaN where not finite
    q: NDArray[np.float64]  # (P, npx) variance of the predicted value u·(d_j − d_i), finite observations


def _band(dense: NDArray[np.float64], b: int) -> NDArray[np.float64]:
    m = dense.shape[0]
    out = np.zeros((m, b + 1))
    for d in range(min(b, m - 1) + 1):
        out[d:, d] = np.diagonal(dense, -d)
    return out


def _solve(
    prob: _Problem,
    use: NDArray[np.bool_],
    w: NDArray[np.float64],
    reg: NDArray[np.float64],
    max_condition: float,
) -> _Fit:
    n, npx = prob.t.size, use.shape[1]
    m = 3 * (n - 1)
    span = int(np.abs(prob.sec - prob.ref)[prob.finite.any(axis=1)].max(initial=1))
    b = min(m - 1, max(3 * span + 2, 8))
    xm = np.zeros((npx, m))
    var = np.zeros((npx, m))
    free = np.zeros((npx, m), dtype=bool)
    q = np.full(use.shape, np.nan)
    failed = np.zeros(npx, dtype=bool)
    solve_pixels(
        prob.ref, prob.sec, prob.set_of, prob.unit, np.nan_to_num(prob.value), w, use, prob.finite,
        _band(reg, b), float(max_condition) ** 2, xm, var, free, q, failed,
    )  # fmt: skip
    if failed.any():
        _dense_fallback(prob, use, w, reg, max_condition, np.flatnonzero(failed), (xm, var, free, q))
    x = np.zeros((npx, n, 3))
    x[:, 1:] = xm.reshape(npx, n - 1, 3)
    step = x[:, prob.sec] - x[:, prob.ref]  # (npx, P, 3)
    pred = np.einsum("spk,psk->ps", step, prob.unit[prob.set_of])
    resid = np.where(prob.finite, prob.value - pred, np.nan)
    out_var = np.zeros((npx, n, 3))
    out_var[:, 1:] = var.reshape(npx, n - 1, 3)
    out_free = np.zeros((npx, n, 3), dtype=bool)
    out_free[:, 1:] = free.reshape(npx, n - 1, 3)
    return _Fit(x=x, var=out_var, free=out_free, resid=resid, q=np.where(prob.finite, q, np.nan))


def _dense_fallback(
    prob: _Problem,
    use: NDArray[np.bool_],
    w: NDArray[np.float64],
    reg: NDArray[np.float64],
    max_condition: float,
    pixels: NDArray[np.int64],
    out: tuple[NDArray[Any], ...],
) -> None:
    """Pixels whose normal matrix is singular: eigen-decomposition, free unknowns flagged."""
    xm, var, free, q = out
    n = prob.t.size
    first, group = _group_pixels(prob, use[:, pixels], w[:, pixels], pixels)
    for a in range(0, first.size, 16):
        gids = np.arange(a, min(a + 16, first.size))
        inv, fr = _dense_inverse(_normal_blocks(prob, use, w, pixels[first[gids]]), reg, max_condition)
        sel = np.flatnonzero((group >= a) & (group < a + gids.size))
        loc = group[sel] - a
        px = pixels[sel]
        rhs = _rhs(prob, use, w, px)
        xm[px] = np.einsum("sij,sj->si", inv[loc], rhs)
        var[px] = np.einsum("sii->si", inv[loc])
        free[px] = fr[loc]
        full = np.zeros((gids.size, n, 3, n, 3))
        full[:, 1:, :, 1:, :] = inv.reshape(gids.size, n - 1, 3, n - 1, 3)
        for p in np.flatnonzero(prob.finite[:, px].any(axis=1)):
            u = prob.unit[prob.set_of[p], px]
            i, j = prob.ref[p], prob.sec[p]
            q[p, px] = (
                np.einsum("si,sij,sj->s", u, full[loc, j, :, j, :], u)
                + np.einsum("si,sij,sj->s", u, full[loc, i, :, i, :], u)
                - 2.0 * np.einsum("si,sij,sj->s", u, full[loc, i, :, j, :], u)
            )


def _rhs(prob: _Problem, use: NDArray[np.bool_], w: NDArray[np.float64], px: NDArray[np.int64]) -> Any:
    n = prob.t.size
    rhs = np.zeros((px.size, n, 3))
    wb = np.where(use[:, px], w[:, px] * np.nan_to_num(prob.value[:, px]), 0.0)
    for p in np.flatnonzero(use[:, px].any(axis=1)):
        contrib = wb[p][:, None] * prob.unit[prob.set_of[p], px]
        rhs[:, prob.sec[p]] += contrib
        rhs[:, prob.ref[p]] -= contrib
    return rhs[:, 1:].reshape(px.size, -1)


def _sigmas(prob: _Problem, set_sigma: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(P, npx)`` σ of every observation: given, or the set's current estimate."""
    parts = []
    for k, given in enumerate(prob.sigma_given):
        npairs = int((prob.set_of == k).sum())
        parts.append(given if given is not None else np.full((npairs, prob.value.shape[1]), set_sigma[k]))
    return np.concatenate(parts)


def _estimate_set_sigma(
    prob: _Problem, fit: _Fit, use: NDArray[np.bool_], w: NDArray[np.float64], current: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Variance-component estimate per set: σ² = Σ r² / Σ (1 − h), over the observations used."""
    out = current.copy()
    redundancy = np.where(use, 1.0 - w * fit.q, 0.0)
    for k, given in enumerate(prob.sigma_given):
        if given is not None:
            continue
        rows = prob.set_of == k
        r = np.where(use[rows], fit.resid[rows], 0.0)
        dof = float(np.clip(redundancy[rows], 0.0, 1.0).sum())
        if dof > 1.0:
            out[k] = max(float(np.sqrt((r**2).sum() / dof)), 1e-12)
    return out


def _flag_outliers(
    prob: _Problem,
    fit: _Fit,
    sig: NDArray[np.float64],
    use: NDArray[np.bool_],
    threshold: float,
    max_fraction: float,
) -> NDArray[np.bool_]:
    """Observations whose standardised residual exceeds ``threshold``, at most ``max_fraction`` per pixel."""
    var_r = np.where(use, sig**2 - fit.q, sig**2 + fit.q)
    z = np.abs(fit.resid) / np.sqrt(np.maximum(var_r, _EPS_REDUNDANCY * sig**2))
    z = np.where(prob.finite & np.isfinite(z), z, -np.inf)
    allowed = np.floor(max_fraction * prob.finite.sum(axis=0))
    rank = np.argsort(np.argsort(-z, axis=0, kind="stable"), axis=0)
    return (z > threshold) & (rank < allowed[None, :])


def invert_enu(
    sets: Sequence[PairSet],
    *,
    smoothing: float = 1.0,
    robust: bool = True,
    outlier_threshold: float = 4.0,
    max_outlier_fraction: float = 0.2,
    max_iterations: int = 6,
    sigma_iterations: int = 8,
    max_gap_days: float = 180.0,
    max_condition: float = 1e3,
) -> EnuSeries:
    """Invert pair networks of several geometries jointly into east/north/up time series (MSBAS-like).

    Parameters
    ----------
    sets
        One :class:`PairSet` per geometry (e.g. ascending range, descending range, optical east, optical
        north), on any dates; maps of one spatial shape.
    smoothing
        Weight λ of the temporal regularisation, as in :func:`geodeform.timeseries.invert`: each interior
        date of the union adds, per component, the row ``λ τ (v_after − v_before)`` (v = mean velocities of
        the two adjacent intervals, τ their mean length), relative to an observation of median weight.
        Needed (> 0) whenever the sets do not share dates. 0 disables it.
    robust
        Reject outlier observations per pixel (standardised residual above ``outlier_threshold``; at most
        ``max_outlier_fraction`` of a pixel's observations), refit, at most ``max_iterations`` times.
    outlier_threshold, max_outlier_fraction, max_iterations
        Robust-fit settings.
    sigma_iterations
        Iterations of the variance-component estimation of the σ of the sets given with ``sigma=None``
        (σ² = Σ r² / Σ redundancy over the set, all pixels together).
    max_gap_days
        Intervals longer than this are not bridged by the smoothing.
    max_condition
        An unknown whose variance-inflation factor exceeds ``max_condition²`` is unconstrained (NaN).

    Returns
    -------
    EnuSeries
        Cumulative east/north/up displacement per date with 1-σ, mean velocities, the sets' σ, outliers.

    Raises
    ------
    InvalidInputError
        Bad sets (dates, pairs, shapes, kinds, geometry, sigma) or options.
    NoDataError
        Every value is NaN.

    Notes
    -----
    The 1-σ of each date is ``sqrt([N⁻¹]_kk)`` with ``N = Aᵀ W A + R`` the regularised normal matrix and
    ``W`` the inverse variances (given, or estimated per set). It covers the random errors of the pairs, not
    the bias the regularisation puts on motion that changes faster than the dates sample it.
    """
    lam = float(smoothing)
    if not np.isfinite(lam) or lam < 0:
        raise InvalidInputError(f"smoothing: must be a finite weight >= 0, got {smoothing!r}")
    if (
        not 0 <= max_outlier_fraction < 1
        or outlier_threshold <= 0
        or max_iterations < 1
        or sigma_iterations < 1
    ):
        raise InvalidInputError(
            "outlier_threshold, max_iterations and sigma_iterations must be positive, "
            "max_outlier_fraction in [0, 1)"
        )
    prob = _prepare(sets)
    reg0 = _regulariser(prob.t, lam, max_gap_days)
    set_sigma = np.array([1.0 if g is None else float(np.nanmedian(g)) for g in prob.sigma_given])
    opts = _Options(robust, outlier_threshold, max_outlier_fraction, max_iterations, max_condition)
    if any(g is None for g in prob.sigma_given):
        sample = _sample_pixels(prob, _SIGMA_SAMPLE)
        sub = _subset(prob, sample)
        flag = np.zeros(sub.finite.shape, dtype=bool)
        for _ in range(sigma_iterations):
            fit, use, flag = _robust_fit(sub, reg0, set_sigma, opts, flag)
            new = _estimate_set_sigma(sub, fit, use, _weights(sub, set_sigma)[1], set_sigma)
            done = np.allclose(new, set_sigma, rtol=1e-3)
            set_sigma = new
            if done:
                break
    fit, use, flag = _robust_fit(prob, reg0, set_sigma, opts)
    return _assemble(prob, fit, use, flag, set_sigma)


@dataclass(frozen=True)
class _Options:
    robust: bool
    threshold: float
    max_fraction: float
    max_iterations: int
    max_condition: float


def _weights(
    prob: _Problem, set_sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    sig = _sigmas(prob, set_sigma)
    good = prob.finite & np.isfinite(sig)
    return sig, np.where(good, 1.0 / np.where(good, sig, 1.0) ** 2, 0.0)


def _robust_fit(
    prob: _Problem,
    reg0: NDArray[np.float64],
    set_sigma: NDArray[np.float64],
    opts: _Options,
    flag: NDArray[np.bool_] | None = None,
) -> tuple[_Fit, NDArray[np.bool_], NDArray[np.bool_]]:
    """Fit (without the ``flag`` ged observations); flag outliers and refit the pixels whose flags changed."""
    sig, w = _weights(prob, set_sigma)
    if not (w > 0).any():
        raise NoDataError("sets: no usable observation (every value or sigma is NaN)")
    # the smoothing weight is relative to an observation of median weight, whatever the σ unit
    reg = reg0 * float(np.median(w[w > 0]))
    flag = np.zeros(prob.finite.shape, dtype=bool) if flag is None else flag
    use = prob.finite & (w > 0) & ~flag
    fit = _solve(prob, use, w, reg, opts.max_condition)
    if not opts.robust:
        return fit, use, flag
    for _ in range(opts.max_iterations):
        new_flag = _flag_outliers(prob, fit, sig, use, opts.threshold, opts.max_fraction)
        changed = np.flatnonzero((new_flag != flag).any(axis=0))
        if changed.size == 0:
            break
        flag = new_flag
        use = prob.finite & (w > 0) & ~flag
        part = _solve(_subset(prob, changed), use[:, changed], w[:, changed], reg, opts.max_condition)
        fit = _merge(fit, part, changed)
    return fit, use, flag


def _sample_pixels(prob: _Problem, size: int) -> NDArray[np.int64]:
    """Up to ``size`` pixels with data, evenly spread, for the variance-component estimation."""
    have = np.flatnonzero(prob.finite.any(axis=0))
    if have.size <= size:
        return have
    return have[np.linspace(0, have.size - 1, size).round().astype(np.int64)]


def _subset(prob: _Problem, pixels: NDArray[np.int64]) -> _Problem:
    return _Problem(
        dates=prob.dates,
        t=prob.t,
        spatial=(pixels.size,),
        ref=prob.ref,
        sec=prob.sec,
        set_of=prob.set_of,
        value=prob.value[:, pixels],
        finite=prob.finite[:, pixels],
        unit=prob.unit[:, pixels],
        sigma_given=[None if g is None else g[:, pixels] for g in prob.sigma_given],
        names=prob.names,
        pixel_geometry=prob.pixel_geometry,
        pixel_weights=prob.pixel_weights,
    )


def _merge(fit: _Fit, part: _Fit, pixels: NDArray[np.int64]) -> _Fit:
    x, var, free = fit.x.copy(), fit.var.copy(), fit.free.copy()
    resid, q = fit.resid.copy(), fit.q.copy()
    x[pixels], var[pixels], free[pixels] = part.x, part.var, part.free
    resid[:, pixels], q[:, pixels] = part.resid, part.q
    return _Fit(x=x, var=var, free=free, resid=resid, q=q)


def _assemble(
    prob: _Problem, fit: _Fit, use: NDArray[np.bool_], flag: NDArray[np.bool_], set_sigma: NDArray[np.float64]
) -> EnuSeries:
    n, sp = prob.t.size, prob.spatial
    no_obs = np.asarray(~use.any(axis=0))
    free = fit.free | no_obs[:, None, None]
    x = np.where(free, np.nan, fit.x)
    s = np.where(free, np.nan, np.sqrt(np.maximum(fit.var, 0.0)))
    series = {}
    for k, name in enumerate(COMPONENTS):
        d = x[:, :, k].T
        sd = s[:, :, k].T
        v, sv = span_velocity(prob.t, d, sd)
        series[name] = d.astype(np.float32).reshape((n, *sp))
        series[f"sigma_{name}"] = sd.astype(np.float32).reshape((n, *sp))
        series[f"velocity_{name}"] = v.reshape(sp)
        series[f"sigma_velocity_{name}"] = sv.reshape(sp)
    outliers = tuple(
        (flag[prob.set_of == k] & prob.finite[prob.set_of == k]).reshape((-1, *sp))
        for k in range(len(prob.names))
    )
    return EnuSeries(
        dates=prob.dates,
        set_sigma={name: float(v) for name, v in zip(prob.names, set_sigma, strict=True)},
        outlier=outliers,
        n_obs_used=use.sum(axis=0).astype(np.int32).reshape(sp),
        unconstrained=free.any(axis=1).reshape((*sp, 3)),
        names=prob.names,
        **series,
    )
