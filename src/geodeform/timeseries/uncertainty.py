"""Per-node error model of pair offsets and its propagation into a series' 1-sigma and velocity error.

The matcher predicts each node's random error from its chip's texture and the fit's residual
(``OffsetField.error``). Two parts of the real error are missing from what an inversion can see:

- **Image errors** (sensor noise and radiometric change of one date, seen through a node's texture): the same
  in every pair that uses that date, so they close around every loop of the network and leave no residual.
  Per node, each date gets the noise ``s_k² = median over its pairs of σ_p² / 2`` (σ_p² = s_i² + s_j²).
- **Displacement- and strain-dependent errors** of the matcher (interpolation of a moved texture, a chip
  deformed by the flow or reaching into moving ice from still ground): they grow with the pair's
  displacement, so they too close around loops and bias the velocity in proportion to the speed and to its
  variation across the chip. Each component gets its own: the error of ``dx`` grows with ``|dx|`` and with
  the largest gradient of ``dx`` within half a chip of the node (the chip's footprint), not with the
  vector's, so an along-flow error is not spread into the across-flow component, and a still node whose
  chip reaches moving ice gets the error of the ice's shear.

The matcher's predicted error is a noise model with one calibration for all textures; on a given texture
it can be too large or too small by a constant factor. :func:`stable_noise_scale` measures that factor per
pair on stable ground (the spread of the offsets there over their predicted error), and :func:`pair_sigma`
takes it as ``noise_scale``.

:func:`pair_sigma` gives a pair's per-node 1-sigma (matcher error plus the displacement/strain terms: the
inversion weights); :func:`add_node_errors` adds the image and displacement/strain parts to an inverted
series' displacement and velocity 1-sigma (and so to ``v_error`` of :func:`velocity_composite`). The model's
two coefficients were calibrated on a synthetic glacier series on a real Landsat-8 texture (see
docs/benchmarks.md, "Calibration of the velocity error").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError
from geodeform.timeseries._invert import TimeSeriesResult

__all__ = [
    "ErrorModel",
    "add_node_errors",
    "footprint_gradient",
    "node_date_noise",
    "pair_sigma",
    "stable_noise_scale",
]


@dataclass(frozen=True)
class ErrorModel:
    """Displacement- and strain-dependent part of a matcher's per-node error.

    Attributes
    ----------
    displacement_fraction : float
        1-sigma error per unit of displacement (dimensionless): a component moved by ``d`` px gets
        ``displacement_fraction * |d|`` px more error.
    strain_fraction : float
        1-sigma error per px of displacement change across the chip (dimensionless): a chip of ``c`` px
        on a component of gradient ``g`` (px/px, the largest within half a chip of the node) gets
        ``strain_fraction * c * g`` px more error.
    isotropic : bool
        False (default): each component's term from its own magnitude and gradient (``|d_c|``, the
        largest gradient of ``d_c`` within half a chip). True: both components get the term of the
        vector (``|d|``, the largest gradient magnitude of the vector field within half a chip): the error
        of a chip moved and deformed by the flow, the same along and across it. Calibrated with the
        ``"quadratic-sided"`` smoothing, whose values carry no curvature bias along the flow (see
        docs/benchmarks.md, "The error on moving ice without the smoothing's bias").
    """

    displacement_fraction: float = 0.002
    strain_fraction: float = 0.025
    isotropic: bool = False

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


def _component_gradient(comp: NDArray[np.float64], step: tuple[float, float]) -> NDArray[np.float64]:
    """Gradient magnitude of one component over the last two axes (px/px; NaN filled with the median)."""
    total = np.zeros(comp.shape)
    filled = np.where(np.isfinite(comp), comp, np.nanmedian(comp, axis=(-2, -1), keepdims=True))
    for axis, spacing in ((-2, step[0]), (-1, step[1])):
        if comp.shape[axis] > 1:
            total += np.gradient(filled, spacing, axis=axis) ** 2
    return np.sqrt(total)


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, to) == to
    except ValueError:
        return False


def footprint_gradient(
    comp: NDArray[np.float64], step: tuple[float, float], chip: NDArray[np.float64] | float
) -> NDArray[np.float64]:
    """Largest gradient magnitude of one displacement component within half a chip of each node.

    A chip measures the motion of all its pixels: a node whose chip reaches a shear zone (a still node next
    to moving ice, a node beside a glacier margin) has the error of that shear, even where the field is
    flat at the node itself. The half-chip radius is that of each node's own chip when ``chip`` is an array
    like ``comp`` (a value measured by a grown 128 px chip sees the gradient 64 px away; NaN: the median
    chip), else that of the median chip; at least one node.

    Parameters
    ----------
    comp
        ``(..., ny, nx)`` one component of the displacement (px) or velocity (px/yr).
    step
        Node spacing (rows, cols), px.
    chip
        Chip size, px: a number, or an array (``OffsetField.chip_height`` per node, broadcastable to
        ``comp``'s shape for a per-node radius; otherwise its median sets the radius).

    Returns
    -------
    numpy.ndarray
        Like ``comp``: px/px (or px/yr per px).
    """
    g = _component_gradient(comp, step)
    c = np.asarray(chip, np.float64)
    finite = c[np.isfinite(c)] if c.size else c
    median = float(np.median(finite)) if finite.size else 32.0
    per_node = c.ndim > 0 and c.size > 1 and _broadcasts(c.shape, g.shape)
    if per_node:
        c = np.broadcast_to(np.where(np.isfinite(c), c, median), g.shape)
    # one filter per window (half a chip in nodes, at least one): chips of 24-32 px share 3 x 3 at step 16
    windows: dict[tuple[int, int], list[float]] = {}
    for size in np.unique(c) if per_node else [median]:
        radius = tuple(max(1, round(0.5 * float(size) / s)) for s in step)
        windows.setdefault((radius[0], radius[1]), []).append(float(size))
    out = np.empty_like(g)
    for (ry, rx), sizes in windows.items():
        window = [1] * (g.ndim - 2) + [2 * ry + 1, 2 * rx + 1]
        grown = np.asarray(ndimage.maximum_filter(g, size=window, mode="nearest"), np.float64)
        if len(windows) == 1:
            return grown
        np.copyto(out, grown, where=np.isin(c, sizes))
    return out


def _systematic(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    step: tuple[float, float],
    chip: NDArray[np.float64],
    model: ErrorModel,
    components: tuple[str, ...] = ("x", "y"),
) -> dict[str, NDArray[np.float64]]:
    """The displacement/strain term of each of ``components`` (``"x"``, ``"y"``): from the component's own
    magnitude and footprint gradient, or (``model.isotropic``) from the vector's, one term for both."""
    if model.isotropic:
        gradient = np.hypot(footprint_gradient(x, step, chip), footprint_gradient(y, step, chip))
        return dict.fromkeys(components, model.extra(np.hypot(x, y), gradient, chip))
    own = {"x": x, "y": y}
    return {k: model.extra(np.abs(own[k]), footprint_gradient(own[k], step, chip), chip) for k in components}


def _gain(gain: ArrayLike | None, shape: tuple[int, ...]) -> NDArray[np.float64] | float:
    """The smoothing gain as a factor on the systematic term: at most 1, NaN or None -> 1."""
    if gain is None:
        return 1.0
    g = np.asarray(gain, np.float64)
    try:
        g = np.broadcast_to(g, shape)
    except ValueError:
        raise InvalidInputError(f"gain {g.shape} does not match the grid {shape}") from None
    return np.where(np.isfinite(g), np.minimum(g, 1.0), 1.0)


def _steps(step: float | tuple[float, float]) -> tuple[float, float]:
    if np.isscalar(step):
        return (float(step), float(step))  # type: ignore[arg-type]
    a, b = (float(v) for v in step)  # type: ignore[union-attr]
    return (a, b)


def pair_sigma(
    dx: ArrayLike,
    dy: ArrayLike,
    error: ArrayLike,
    *,
    step: float | tuple[float, float],
    chip: ArrayLike | float = 32.0,
    model: ErrorModel | None = None,
    component: Literal["both", "x", "y"] = "both",
    noise_scale: ArrayLike | float | None = None,
    gain: ArrayLike | None = None,
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
        (NaN: 32). A value measured by a grown chip gets the strain term of that chip: its size times
        the largest gradient within half of it (:func:`footprint_gradient`).
    model
        Displacement/strain coefficients (default :class:`ErrorModel`).
    component
        ``"x"`` / ``"y"``: the 1-sigma of ``dx`` / ``dy`` (its own displacement/strain term);
        ``"both"`` (default): the RMS of the two, one weight for both components.
    noise_scale
        Factor on the matcher's error, one per pair (``(npairs,)``) or one number, e.g.
        :func:`stable_noise_scale`; NaN or None: 1.
    gain
        The matcher's smoothing gain at each node, like ``dx`` (``OffsetField.smoothing_gain``: the share
        of a per-chip error the smoothing leaves in the value): the displacement/strain term, an error of
        each chip that the smoothing averages like its noise, is multiplied by it (at most 1; NaN or None:
        1).

    Returns
    -------
    numpy.ndarray
        ``sqrt((s · error / sqrt 2)² + (g · extra)²)`` per component (``s`` the noise scale, ``g`` the gain,
        ``extra`` the component's :class:`ErrorModel` term), px, like ``dx`` (NaN where ``dx`` or ``error``
        is).
    """
    model = model or ErrorModel()
    x = np.asarray(dx, np.float64)
    y = np.asarray(dy, np.float64)
    e = np.asarray(error, np.float64)
    if x.shape != y.shape or x.shape != e.shape or x.ndim < 2:
        raise InvalidInputError(
            f"dx, dy and error must be grids of one shape, got {x.shape}, {y.shape}, {e.shape}"
        )
    if component not in ("both", "x", "y"):
        raise InvalidInputError(f"component must be 'both', 'x' or 'y', got {component!r}")
    st = _steps(step)
    c = np.asarray(chip, np.float64)
    c = np.where(np.isfinite(c), c, 32.0)
    noise = e / np.sqrt(2.0)
    if noise_scale is not None:
        k = np.asarray(noise_scale, np.float64)
        if k.ndim == 1 and x.ndim > 2 and k.shape[0] == x.shape[0]:
            k = k.reshape((-1,) + (1,) * (x.ndim - 1))
        elif k.ndim != 0:
            raise InvalidInputError(f"noise_scale must be a number or one per pair, got shape {k.shape}")
        noise = noise * np.where(np.isfinite(k) & (k > 0), k, 1.0)
    terms = _systematic(x, y, st, c, model, ("x", "y") if component == "both" else (component,))
    g = _gain(gain, x.shape)
    var = sum(noise**2 + (g * t) ** 2 for t in terms.values()) / len(terms)
    out = np.sqrt(var)
    out[~(np.isfinite(x) & np.isfinite(y))] = np.nan
    return out


def stable_noise_scale(
    dx: ArrayLike, dy: ArrayLike, error: ArrayLike, stable: ArrayLike, *, min_nodes: int = 20
) -> NDArray[np.float64]:
    """Per pair, how much larger the offsets' scatter on stable ground is than the matcher predicts.

    The matcher's predicted error (``OffsetField.error``) is a noise model calibrated once for all
    textures; on a given texture and noise it is too large or too small by a factor. On ground that does
    not move, the offsets are that noise (about a common shift: the co-registration): the factor is the
    normalised median absolute deviation of ``(d - median d) / (error / sqrt 2)`` over the stable nodes,
    both components pooled (robust to a few bad nodes, and to a minority of stable nodes that do move).

    Parameters
    ----------
    dx, dy, error
        ``(npairs, ny, nx)`` offsets and the matcher's predicted vector error, px.
    stable
        ``(ny, nx)`` boolean: nodes on stable ground.
    min_nodes
        Fewest stable nodes with a value for a pair's factor (NaN below: no scaling).

    Returns
    -------
    numpy.ndarray
        ``(npairs,)`` factors (NaN where too few stable nodes), to pass as ``noise_scale`` to
        :func:`pair_sigma`.
    """
    x = np.asarray(dx, np.float64)
    y = np.asarray(dy, np.float64)
    e = np.asarray(error, np.float64)
    m = np.asarray(stable, bool)
    if x.ndim != 3 or x.shape != y.shape or x.shape != e.shape or m.shape != x.shape[1:]:
        raise InvalidInputError(
            f"dx, dy, error must be (npairs, ny, nx) and stable (ny, nx), got {x.shape}, {y.shape}, "
            f"{e.shape}, {m.shape}"
        )
    out = np.full(x.shape[0], np.nan)
    for p in range(x.shape[0]):
        z = []
        for comp in (x[p], y[p]):
            ok = m & np.isfinite(comp) & np.isfinite(e[p]) & (e[p] > 0)
            if ok.sum() >= min_nodes:
                z.append((comp[ok] - np.median(comp[ok])) / (e[p][ok] / np.sqrt(2.0)))
        if len(z) == 2:
            zz = np.concatenate(z)
            out[p] = 1.4826 * float(np.median(np.abs(zz - np.median(zz))))
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
    sigma_y: ArrayLike | None = None,
    gain: ArrayLike | None = None,
) -> TimeSeriesResult:
    """The series with the image noise and the displacement/strain error of each node in its 1-sigma.

    ``sigma_dx``/``sigma_dy`` of date k get ``s_0² + s_k²`` added (image noise of the first date and of date
    k, :func:`node_date_noise`); the velocity 1-sigma gets ``(s_0² + s_N²) / T²`` (the velocity is the
    displacement at the last date N over its time T since date 0) and each component's systematic term
    ``model.extra(|v_c|, footprint |∇v_c|, chip)`` (:func:`footprint_gradient`; the vector's ``|v|`` and
    gradient for both components with ``model.isotropic``), which the pairs share and which no inversion
    residual shows.

    Parameters
    ----------
    ts
        Inverted series with both components (its unit: pixels times ``unit_per_px``).
    pairs
        ``(npairs, 2)`` indices into ``ts.dates`` of the pairs that were inverted.
    sigma
        ``(npairs, ny, nx)`` per-component 1-sigma of each pair and node in the series' unit, e.g.
        :func:`pair_sigma` times ``unit_per_px``: of both components, or of ``dx`` when ``sigma_y`` is
        given (``pair_sigma(..., component="x")``).
    step
        Node spacing (rows, cols), px.
    chip
        Chip size, px: a number, ``(ny, nx)``, or per pair ``(npairs, ny, nx)`` (``OffsetField.chip_height``
        of each pair; then the largest over the pairs: a velocity that any pair measured with a grown chip
        carries that chip's term). Each node's footprint is its own chip's (:func:`footprint_gradient`).
    unit_per_px
        Series unit per pixel (e.g. the pixel size in metres for a series in metres).
    model
        Displacement/strain coefficients (default :class:`ErrorModel`).
    sigma_y
        ``(npairs, ny, nx)`` 1-sigma of ``dy`` (``pair_sigma(..., component="y")``); None: ``sigma`` for
        both.
    gain
        The matcher's smoothing gain (``OffsetField.smoothing_gain``), ``(ny, nx)`` or per pair
        ``(npairs, ny, nx)`` (then its median over the pairs): the velocity's systematic term is
        multiplied by it (at most 1; NaN or None: 1), as in :func:`pair_sigma`.

    Raises
    ------
    InvalidInputError
        The series has no ``dy`` component, or the shapes disagree.
    """
    if ts.dy is None or ts.sigma_dy is None or ts.velocity_y is None or ts.sigma_velocity_y is None:
        raise InvalidInputError("ts: add_node_errors needs dx and dy; invert both components")
    model = model or ErrorModel()
    sigmas = {"x": np.asarray(sigma, np.float64)}
    sigmas["y"] = sigmas["x"] if sigma_y is None else np.asarray(sigma_y, np.float64)
    for s in sigmas.values():
        if s.shape[1:] != ts.dx.shape[1:]:
            raise InvalidInputError(f"sigma {s.shape} does not match the series' grid {ts.dx.shape[1:]}")
    n = len(ts.dates)
    years = float((ts.dates[-1] - ts.dates[0]) / np.timedelta64(1, "D")) / DAYS_PER_YEAR
    st = _steps(step)
    c = np.asarray(chip, np.float64)
    if c.ndim == 3:
        if c.shape[1:] != ts.dx.shape[1:]:
            raise InvalidInputError(f"chip {c.shape} does not match the series' grid {ts.dx.shape[1:]}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nodes without any pair: 32
            c = np.nanmax(c, axis=0)
    c = np.where(np.isfinite(c), c, 32.0)
    # px/yr and (px/yr)/px: the term is per year of displacement
    velocity = [getattr(ts, f"velocity_{k}").astype(np.float64) / unit_per_px for k in ("x", "y")]
    systematic = _systematic(*velocity, st, c, model)
    if gain is not None:
        g = np.asarray(gain, np.float64)
        if g.ndim == 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # nodes without any pair: gain 1
                g = np.nanmedian(g, axis=0)
        if g.shape != ts.dx.shape[1:]:
            raise InvalidInputError(f"gain {g.shape} does not match the series' grid {ts.dx.shape[1:]}")
        factor = _gain(g, g.shape)
        systematic = {k: v * factor for k, v in systematic.items()}
    changes: dict[str, Any] = {}
    for comp in ("x", "y"):
        noise2 = node_date_noise(pairs, sigmas[comp], n) ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nodes without any value stay without noise
            noise2 = np.where(np.isfinite(noise2), noise2, np.nanmedian(noise2, axis=0, keepdims=True))
        noise2 = np.nan_to_num(noise2)
        add_d = noise2 + noise2[:1]
        add_d[0] = 0.0
        add_v = (noise2[0] + noise2[-1]) / years**2 if years > 0 else np.zeros_like(noise2[0])
        sd = getattr(ts, f"sigma_d{comp}").astype(np.float64)
        sv = getattr(ts, f"sigma_velocity_{comp}").astype(np.float64)
        changes[f"sigma_d{comp}"] = np.sqrt(sd**2 + add_d).astype(np.float32)
        extra = systematic[comp] * unit_per_px
        changes[f"sigma_velocity_{comp}"] = np.sqrt(sv**2 + add_v + extra**2).astype(np.float32)
    return replace(ts, **changes)
