"""Per-node error model of pair offsets and its propagation into a series' 1-sigma and velocity error.

The matcher predicts each node's random error from its chip's texture and the fit's residual
(``OffsetField.error``). Two parts of the real error are missing from what an inversion can see:

- **Image errors** (sensor noise and radiometric change of one date, seen through a node's texture): the same
  in every pair that uses that date, so they close around every loop of the network and leave no residual.
  Per node, each date gets the noise ``s_k² = median over its pairs of σ_p² / 2`` (σ_p² = s_i² + s_j²).
- **Displacement- and strain-dependent errors** of the matcher (interpolation of a moved texture, a chip
  deformed by the flow): they grow with the pair's displacement, so they too close around loops and bias
  the velocity in proportion to the speed and to its gradient across the chip.

:func:`pair_sigma` gives a pair's per-node 1-sigma (matcher error plus the displacement/strain terms: the
inversion weights); :func:`add_node_errors` adds the image and displacement/strain parts to an inverted
series' displacement and velocity 1-sigma (and so to ``v_error`` of :func:`velocity_composite`). The model's
two coefficients were calibrated on a synthetic glacier series on a real Landsat-8 texture (see
docs/benchmarks.md, "Calibration of the velocity error").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError
from geodeform.timeseries._invert import TimeSeriesResult

__all__ = ["ErrorModel", "add_node_errors", "node_date_noise", "pair_sigma"]


@dataclass(frozen=True)
class ErrorModel:
    """Displacement- and strain-dependent part of a matcher's per-node error.

    Attributes
    ----------
    displacement_fraction : float
        1-sigma error per unit of displacement (dimensionless): a pair moved by ``d`` px gets
        ``displacement_fraction * |d|`` px more error.
    strain_fraction : float
        1-sigma error per px of displacement change across the chip (dimensionless): a chip of ``c`` px
        on a field of gradient ``g`` (px/px, Frobenius norm) gets ``strain_fraction * c * g`` px more error.
    """

    displacement_fraction: float = 0.002
    strain_fraction: float = 0.025

    def __post_init__(self) -> None:
        if not (self.displacement_fraction >= 0 and self.strain_fraction >= 0):
            raise InvalidInputError(
                "ErrorModel coefficients must be >= 0, got "
                f"{self.displacement_fraction}, {self.strain_fraction}"
            )

    def extra(
        self, speed: NDArray[np.float64], gradient: NDArray[np.float64], chip: NDArray[np.float64] | float
    ) -> NDArray[np.float64]:
        """The displacement/strain term for displacement magnitude ``speed`` and ``gradient`` (px/px)."""
        return np.hypot(self.displacement_fraction * speed, self.strain_fraction * chip * gradient)


def _gradient(
    dx: NDArray[np.float64], dy: NDArray[np.float64], step: tuple[float, float]
) -> NDArray[np.float64]:
    """Frobenius norm of the displacement gradient over the last two axes (px/px; NaN: the median)."""
    total = np.zeros(dx.shape)
    for comp in (dx, dy):
        filled = np.where(np.isfinite(comp), comp, np.nanmedian(comp, axis=(-2, -1), keepdims=True))
        for axis, spacing in ((-2, step[0]), (-1, step[1])):
            if comp.shape[axis] > 1:
                total += np.gradient(filled, spacing, axis=axis) ** 2
    return np.sqrt(total)


def pair_sigma(
    dx: ArrayLike,
    dy: ArrayLike,
    error: ArrayLike,
    *,
    step: float | tuple[float, float],
    chip: ArrayLike | float = 32.0,
    model: ErrorModel | None = None,
) -> NDArray[np.float64]:
    """Per-node, per-component 1-sigma error of pair offsets (px), to weight an inversion (``1 / σ²``).

    Parameters
    ----------
    dx, dy
        ``(npairs, ny, nx)`` (or ``(ny, nx)``) offsets of a grid of nodes, px, NaN = no value.
    error
        The matcher's predicted 1-sigma *vector* error at each node (``OffsetField.error``), px, same shape.
    step
        Node spacing (rows, cols), px.
    chip
        Chip size behind each value (``OffsetField.chip_height``), px: a number or an array like ``dx``
        (NaN: 32).
    model
        Displacement/strain coefficients (default :class:`ErrorModel`).

    Returns
    -------
    numpy.ndarray
        ``sqrt((error / sqrt 2)² + model.extra²)`` per component, px, like ``dx`` (NaN where ``dx`` or
        ``error`` is).
    """
    model = model or ErrorModel()
    x = np.asarray(dx, np.float64)
    y = np.asarray(dy, np.float64)
    e = np.asarray(error, np.float64)
    if x.shape != y.shape or x.shape != e.shape or x.ndim < 2:
        raise InvalidInputError(
            f"dx, dy and error must be grids of one shape, got {x.shape}, {y.shape}, {e.shape}"
        )
    st = (float(step), float(step)) if np.isscalar(step) else tuple(float(s) for s in step)  # type: ignore[arg-type]
    c = np.asarray(chip, np.float64)
    c = np.where(np.isfinite(c), c, 32.0)
    extra = model.extra(np.hypot(x, y), _gradient(x, y, st), c)  # type: ignore[arg-type]
    out = np.hypot(e / np.sqrt(2.0), extra)
    out[~(np.isfinite(x) & np.isfinite(y))] = np.nan
    return out


def node_date_noise(pairs: ArrayLike, sigma: ArrayLike, ndates: int) -> NDArray[np.float64]:
    """Per-date, per-node image noise from per-pair node errors, ``σ_ij² = s_i² + s_j²``.

    Parameters
    ----------
    pairs
        ``(npairs, 2)`` date indices.
    sigma
        ``(npairs, *spatial)`` 1-sigma per pair and node (NaN = unknown).
    ndates
        Number of dates.

    Returns
    -------
    numpy.ndarray
        ``(ndates, *spatial)`` noise ``s_k = sqrt(median over the pairs of date k of σ² / 2)``, in the unit of
        ``sigma`` (NaN where no pair of date k has a value).
    """
    p = np.asarray(pairs, np.int64)
    s = np.asarray(sigma, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or s.shape[0] != p.shape[0]:
        raise InvalidInputError(
            f"pairs must be (npairs, 2) and sigma (npairs, ...), got {p.shape}, {s.shape}"
        )
    out = np.full((ndates, *s.shape[1:]), np.nan)
    for k in range(ndates):
        mine = (p[:, 0] == k) | (p[:, 1] == k)
        if mine.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN nodes stay NaN
                out[k] = np.sqrt(np.nanmedian(s[mine] ** 2, axis=0) / 2.0)
    return out


def add_node_errors(
    ts: TimeSeriesResult,
    pairs: ArrayLike,
    sigma: ArrayLike,
    *,
    step: float | tuple[float, float],
    chip: ArrayLike | float = 32.0,
    unit_per_px: float = 1.0,
    model: ErrorModel | None = None,
) -> TimeSeriesResult:
    """The series with the image noise and the displacement/strain error of each node in its 1-sigma.

    ``sigma_dx``/``sigma_dy`` of date k get ``s_0² + s_k²`` added (image noise of the first date and of date
    k, :func:`node_date_noise`); the velocity 1-sigma gets ``(s_0² + s_N²) / T²`` (the velocity is the
    displacement at the last date N over its time T since date 0) and the systematic term
    ``model.extra(|v|, |∇v|, chip)``, which the pairs share and which no inversion residual shows.

    Parameters
    ----------
    ts
        Inverted series with both components (its unit: pixels times ``unit_per_px``).
    pairs
        ``(npairs, 2)`` indices into ``ts.dates`` of the pairs that were inverted.
    sigma
        ``(npairs, ny, nx)`` per-component 1-sigma of each pair and node in the series' unit, e.g.
        :func:`pair_sigma` times ``unit_per_px``.
    step
        Node spacing (rows, cols), px.
    chip
        Chip size, px (number or ``(ny, nx)`` array, e.g. the median over the pairs).
    unit_per_px
        Series unit per pixel (e.g. the pixel size in metres for a series in metres).
    model
        Displacement/strain coefficients (default :class:`ErrorModel`).

    Raises
    ------
    InvalidInputError
        The series has no ``dy`` component, or the shapes disagree.
    """
    if ts.dy is None or ts.sigma_dy is None or ts.velocity_y is None or ts.sigma_velocity_y is None:
        raise InvalidInputError("ts: add_node_errors needs dx and dy; invert both components")
    model = model or ErrorModel()
    s = np.asarray(sigma, np.float64)
    if s.shape[1:] != ts.dx.shape[1:]:
        raise InvalidInputError(f"sigma {s.shape} does not match the series' grid {ts.dx.shape[1:]}")
    n = len(ts.dates)
    noise2 = node_date_noise(pairs, s, n) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nodes without any value stay without noise
        noise2 = np.where(np.isfinite(noise2), noise2, np.nanmedian(noise2, axis=0, keepdims=True))
    noise2 = np.nan_to_num(noise2)
    add_d = noise2 + noise2[:1]
    add_d[0] = 0.0
    years = float((ts.dates[-1] - ts.dates[0]) / np.timedelta64(1, "D")) / DAYS_PER_YEAR
    st = (float(step), float(step)) if np.isscalar(step) else tuple(float(v) for v in step)  # type: ignore[arg-type]
    vx = ts.velocity_x.astype(np.float64) / unit_per_px
    vy = ts.velocity_y.astype(np.float64) / unit_per_px
    # px/yr and (px/yr)/px: the term is per year of displacement
    systematic = (
        model.extra(np.hypot(vx, vy), _gradient(vx, vy, st), np.asarray(chip, np.float64)) * unit_per_px
    )  # type: ignore[arg-type]
    add_v = (noise2[0] + noise2[-1]) / years**2 if years > 0 else np.zeros_like(noise2[0])
    changes: dict[str, Any] = {}
    for comp in ("x", "y"):
        sd = getattr(ts, f"sigma_d{comp}").astype(np.float64)
        sv = getattr(ts, f"sigma_velocity_{comp}").astype(np.float64)
        changes[f"sigma_d{comp}"] = np.sqrt(sd**2 + add_d).astype(np.float32)
        changes[f"sigma_velocity_{comp}"] = np.sqrt(sv**2 + add_v + systematic**2).astype(np.float32)
    return replace(ts, **changes)
