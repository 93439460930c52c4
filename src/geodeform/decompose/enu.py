"""Per-pixel least squares from radar range / azimuth and optical east / north observations to east/north/up.

See :mod:`geodeform.decompose.geometry` for the convention (heading clockwise from north, right-looking,
range positive towards the satellite). Every observation ``i`` is ``value_i = u_i · d + noise_i`` with ``u_i``
its unit vector, ``d = [E, N, U]`` the displacement and ``noise_i`` of standard deviation ``sigma_i``; the
solution is the weighted least-squares ``d`` with covariance ``(Aᵀ W A)⁻¹``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.decompose.geometry import azimuth_vector, los_vector, surface_normal
from geodeform.errors import InvalidInputError

__all__ = [
    "COMPONENTS",
    "EnuReason",
    "EnuResult",
    "Observation",
    "ObservationKind",
    "slope_parallel",
    "solve_enu",
]

ObservationKind = Literal["range", "azimuth", "east", "north", "up", "vector"]
COMPONENTS: tuple[str, str, str] = ("east", "north", "up")
_BASIS = {"east": (1.0, 0.0, 0.0), "north": (0.0, 1.0, 0.0), "up": (0.0, 0.0, 1.0)}
# A component is estimable when its squared share in the null space of the design is below this (exact
# symmetries of the geometry give ~1e-16; anything larger is a genuine lack of information).
_ESTIMABLE_TOL = 1e-8


class EnuReason(IntEnum):
    """Why a pixel's east/north/up (or some of them) is NaN (``OK`` where all three are resolved)."""

    OK = 0
    NO_DATA = 1  #: no valid observation at this pixel
    UNCONSTRAINED = 2  #: the observations leave a direction free: ``EnuResult.unconstrained`` says which


@dataclass(frozen=True)
class Observation:
    """One displacement observation map and its viewing geometry.

    Attributes
    ----------
    value
        Observed displacement, metres (any unit, the same for every observation), scalar or array; NaN =
        missing. ``range``: projection on the ground-to-satellite vector, + towards the satellite (the
        ``los`` variable of :mod:`geodeform.sar` products); ``azimuth``: + along the flight direction;
        ``east``/``north``/``up``: + east / north / up (optical products' ``dx`` / ``dy`` on disk);
        ``vector``: projection on ``vector``.
    kind
        ``"range"``, ``"azimuth"``, ``"east"``, ``"north"``, ``"up"`` or ``"vector"``.
    heading_deg
        Flight direction, degrees clockwise from north (``range``, ``azimuth``), scalar or per pixel.
    incidence_deg
        Incidence angle, degrees from the vertical (``range``), scalar or per pixel.
    sigma
        1-σ noise of ``value`` in its unit, > 0; scalar or per pixel (NaN = missing).
    vector
        ``(..., 3)`` unit vector [E, N, U] of a ``vector`` observation (see :func:`slope_parallel`).
    name
        Label used in messages (e.g. ``"asc 44 range"``).
    """

    value: ArrayLike
    kind: ObservationKind
    heading_deg: ArrayLike | None = None
    incidence_deg: ArrayLike | None = None
    sigma: ArrayLike = 1.0
    vector: ArrayLike | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """``name`` or, without one, the kind."""
        return self.name or self.kind

    def unit_vector(self) -> NDArray[np.float64]:
        """``(..., 3)`` unit vector [E, N, U] on which ``value`` is the projection of the displacement.

        Raises
        ------
        InvalidInputError
            An unknown kind or a missing angle / vector for the kind.
        """
        if self.kind not in get_args(ObservationKind):
            raise InvalidInputError(
                f"observation {self.label!r}: kind={self.kind!r} is not known; use one of "
                f"{list(get_args(ObservationKind))}"
            )
        if self.kind == "range":
            if self.heading_deg is None or self.incidence_deg is None:
                raise InvalidInputError(
                    f"observation {self.label!r}: a range observation needs heading_deg and incidence_deg"
                )
            return los_vector(self.heading_deg, self.incidence_deg)
        if self.kind == "azimuth":
            if self.heading_deg is None:
                raise InvalidInputError(
                    f"observation {self.label!r}: an azimuth observation needs heading_deg"
                )
            return azimuth_vector(self.heading_deg)
        if self.kind == "vector":
            if self.vector is None:
                raise InvalidInputError(f"observation {self.label!r}: kind='vector' needs vector=(..., 3)")
            v = np.asarray(self.vector, dtype=np.float64)
            if v.shape[-1:] != (3,):
                raise InvalidInputError(f"observation {self.label!r}: vector must end in 3, got {v.shape}")
            return v
        return np.asarray(_BASIS[self.kind], dtype=np.float64)


def slope_parallel(slope_deg: ArrayLike, aspect_deg: ArrayLike, *, sigma: ArrayLike = 0.01) -> Observation:
    """A surface-parallel flow constraint from terrain slope and aspect (landslides, glaciers).

    The displacement is assumed parallel to the ground surface: its projection on the surface normal
    (:func:`geodeform.decompose.geometry.surface_normal`) is zero within ``sigma``. With optical east and
    north observations it gives the up component, ``U = −tan(s) (E sin a + N cos a)``.

    Parameters
    ----------
    slope_deg, aspect_deg
        Terrain slope (degrees from horizontal) and downslope direction (degrees clockwise from north),
        e.g. from :func:`geodeform.decompose.geometry.slope_aspect`; NaN = no constraint.
    sigma
        Allowed departure from surface-parallel motion, metres (same unit as the other observations), > 0.

    Returns
    -------
    Observation
        ``kind="vector"``, ``value=0``, to append to the observation list of :func:`solve_enu`.
    """
    n = surface_normal(slope_deg, aspect_deg)
    s = np.asarray(slope_deg, dtype=np.float64)
    value = np.where(np.isfinite(s), 0.0, np.nan)
    return Observation(value=value, kind="vector", vector=n, sigma=sigma, name="slope-parallel")


@dataclass(frozen=True)
class EnuResult:
    """East/north/up displacement solved per pixel, with its covariance.

    Attributes
    ----------
    east, north, up
        Displacement, the observations' unit (metres), +east/+north/+up; NaN where the component is not
        resolved (see ``reason`` and ``unconstrained``).
    covariance
        ``(..., 3, 3)`` covariance of [E, N, U] propagated from the observations' ``sigma``; NaN rows and
        columns for unresolved components.
    condition
        Condition number of the weighted design (sqrt of the largest over the smallest eigenvalue of the
        normal matrix); inf where a direction is free, NaN without data.
    reason
        :class:`EnuReason` code per pixel (uint8).
    unconstrained
        ``(..., 3)`` bool: the component (east, north, up) is not determined by the observations.
    n_obs
        Number of valid observations per pixel.
    chi2
        Weighted sum of squared residuals per pixel (χ² with ``n_obs - rank`` degrees of freedom); NaN
        without redundancy.
    dof
        Residual degrees of freedom per pixel (``n_obs - rank``).
    free_direction
        ``(..., 3)`` unit vector [E, N, U] of the least-constrained direction where the geometry leaves one
        free (NaN elsewhere): its largest component is the one the observations miss most (e.g. mostly
        north for an ascending + a descending range track).
    """

    east: NDArray[np.float64]
    north: NDArray[np.float64]
    up: NDArray[np.float64]
    covariance: NDArray[np.float64]
    condition: NDArray[np.float64]
    reason: NDArray[np.uint8]
    unconstrained: NDArray[np.bool_]
    n_obs: NDArray[np.int32]
    chi2: NDArray[np.float64]
    dof: NDArray[np.int32]
    free_direction: NDArray[np.float64]

    def sigma(self, component: Literal["east", "north", "up"]) -> NDArray[np.float64]:
        """1-σ of one component, same unit as the displacement."""
        k = COMPONENTS.index(component)
        return np.sqrt(self.covariance[..., k, k])

    def summary(self) -> str:
        """One line per problem, e.g. ``"north unconstrained at 1200 of 1200 pixels"``; ``"all resolved"``."""
        total = self.reason.size
        lines = []
        no_data = int((self.reason == EnuReason.NO_DATA).sum())
        if no_data:
            lines.append(f"no observation at {no_data} of {total} pixels")
        for k, name in enumerate(COMPONENTS):
            n = int((self.unconstrained[..., k] & (self.reason == EnuReason.UNCONSTRAINED)).sum())
            if n:
                lines.append(f"{name} unconstrained at {n} of {total} pixels")
        d = self.free_direction.reshape(-1, 3)
        d = d[np.isfinite(d).all(axis=1)]
        if d.size:
            main = np.bincount(np.argmax(np.abs(d), axis=1), minlength=3)
            lines.append(f"the free direction is mostly {COMPONENTS[int(np.argmax(main))]}")
        return "; ".join(lines) if lines else "all resolved"


def _stack(observations: Sequence[Observation]) -> tuple[NDArray[np.float64], ...]:
    """Values (..., m), unit vectors (..., m, 3) and weights (..., m) broadcast to one spatial shape."""
    if len(observations) == 0:
        raise InvalidInputError("observations: empty; give at least one Observation")
    vals, vecs, sigs = [], [], []
    for ob in observations:
        if not isinstance(ob, Observation):
            raise InvalidInputError(f"observations: expected Observation objects, got {type(ob).__name__}")
        u = ob.unit_vector()
        s = np.asarray(ob.sigma, dtype=np.float64)
        if (np.isfinite(s) & (s <= 0)).any():
            raise InvalidInputError(
                f"observation {ob.label!r}: sigma must be > 0 (1-σ noise in the value's unit); "
                "use NaN to drop a pixel"
            )
        vals.append(np.asarray(ob.value, dtype=np.float64))
        vecs.append(u)
        sigs.append(s)
    try:
        shape = np.broadcast_shapes(
            *(v.shape for v in vals), *(u.shape[:-1] for u in vecs), *(s.shape for s in sigs)
        )
    except ValueError as exc:
        raise InvalidInputError(
            "observations: value, sigma and geometry arrays have shapes that do not broadcast to one map: "
            + ", ".join(f"{o.label}: {np.shape(o.value)}" for o in observations)
        ) from exc
    b = np.stack([np.broadcast_to(v, shape) for v in vals], axis=-1)
    a = np.stack([np.broadcast_to(u, (*shape, 3)) for u in vecs], axis=-2)
    s = np.stack([np.broadcast_to(x, shape) for x in sigs], axis=-1)
    return b, a, s


def solve_enu(
    observations: Sequence[Observation],
    *,
    max_condition: float = 1e3,
    assume_zero: Sequence[Literal["east", "north", "up"]] = (),
) -> EnuResult:
    """Solve every pixel's east/north/up displacement from any set of observations.

    Parameters
    ----------
    observations
        :class:`Observation` maps (range, azimuth, east, north, up, or constraints such as
        :func:`slope_parallel`), broadcastable to one spatial shape; NaN values or sigmas drop an
        observation at that pixel.
    max_condition
        Largest condition number of the weighted design accepted as a resolved geometry; directions whose
        eigenvalue is below ``1 / max_condition²`` of the largest count as free.
    assume_zero
        Components taken as exactly zero instead of estimated (e.g. ``("north",)``: the usual assumption
        that lets an ascending and a descending range track give east and up). They are returned as 0 with
        zero variance; state the assumption with the product.

    Returns
    -------
    EnuResult
        Components, covariance, condition, reason codes and the unconstrained components per pixel.

    Raises
    ------
    InvalidInputError
        Unknown kinds, missing angles, non-positive sigmas, shapes that do not broadcast.

    Notes
    -----
    Where the observations leave a direction ``v`` free (fewer than three independent directions, e.g.
    range only from one track, or range from an ascending and a descending track, whose free direction is
    mostly north), a component ``k`` is still returned when it is estimable (``v`` has no share of it, up
    to round-off), and is NaN with ``unconstrained[..., k]`` True otherwise.
    """
    if not max_condition > 1:
        raise InvalidInputError(f"max_condition: must be > 1, got {max_condition}")
    bad_names = [c for c in assume_zero if c not in COMPONENTS]
    if bad_names:
        raise InvalidInputError(f"assume_zero: unknown component(s) {bad_names}; use east, north or up")
    fixed = np.array([c in assume_zero for c in COMPONENTS])
    b, a, s = _stack(observations)
    a = np.where(fixed, 0.0, a)
    ok = np.isfinite(b) & np.isfinite(s) & np.isfinite(a).all(axis=-1)
    w = np.where(ok, 1.0 / np.where(ok, s, 1.0) ** 2, 0.0)
    a0 = np.where(ok[..., None], a, 0.0)
    b0 = np.where(ok, b, 0.0)
    normal = np.einsum("...mi,...m,...mj->...ij", a0, w, a0)
    rhs = np.einsum("...mi,...m,...m->...i", a0, w, b0)
    if fixed.any():  # a unit pivot at the scale of the data keeps the fixed components out of the null space
        scale = np.maximum(np.einsum("...ii->...", normal), np.finfo(float).tiny)
        normal = normal + np.einsum("...,ij->...ij", scale, np.diag(fixed.astype(float)))
    evals, evecs = np.linalg.eigh(normal)
    top = evals[..., -1:]
    free = evals <= top / max_condition**2
    n_obs = ok.sum(axis=-1).astype(np.int32)
    empty = n_obs == 0
    free[empty] = True
    inv_e = np.where(free, 0.0, 1.0 / np.where(free, 1.0, evals))
    cov = np.einsum("...ik,...k,...jk->...ij", evecs, inv_e, evecs)
    x = np.einsum("...ij,...j->...i", cov, rhs)
    null_share = np.einsum("...ik,...k->...i", evecs**2, free.astype(np.float64))
    unconstrained = null_share > _ESTIMABLE_TOL
    rank = (~free).sum(axis=-1).astype(np.int32)
    resid = np.where(ok, b0 - np.einsum("...mi,...i->...m", a0, x), 0.0)
    dof = np.where(empty, 0, n_obs - rank).astype(np.int32)
    chi2 = np.where(dof > 0, np.einsum("...m,...m,...m->...", resid, w, resid), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.sqrt(top[..., 0] / evals[..., 0])
    cond = np.where(free.any(axis=-1), np.inf, cond)
    cond = np.where(empty, np.nan, cond)
    v0 = evecs[..., :, 0]  # eigenvector of the smallest eigenvalue; sign: largest component positive
    big = np.take_along_axis(v0, np.argmax(np.abs(v0), axis=-1)[..., None], axis=-1)
    free_dir = np.where(free[..., :1], v0 * np.sign(np.where(big == 0, 1.0, big)), np.nan)
    x = np.where(unconstrained, np.nan, np.where(fixed, 0.0, x))
    bad2 = unconstrained[..., :, None] | unconstrained[..., None, :]
    cov = np.where(bad2, np.nan, cov)
    fix2 = fixed[:, None] | fixed[None, :]
    cov = np.where(fix2, 0.0, cov)
    reason = np.where(
        empty, EnuReason.NO_DATA, np.where(unconstrained.any(axis=-1), EnuReason.UNCONSTRAINED, 0)
    )
    return EnuResult(
        east=x[..., 0],
        north=x[..., 1],
        up=x[..., 2],
        covariance=cov,
        condition=cond,
        reason=reason.astype(np.uint8),
        unconstrained=unconstrained,
        n_obs=n_obs,
        chi2=chi2,
        dof=dof,
        free_direction=np.where(empty[..., None], np.nan, free_dir),
    )
