"""Coherence tracking of complex SLC pairs: the offset that maximises the interferometric coherence.

For every node, the complex correlation of the reference chip ``s1`` with the secondary at offset τ,

``γ(τ) = |Σ s1(x) conj(s2(x + τ)) e^{−i 2π f·x}| / sqrt(Σ |s1|² Σ |s2(x + τ)|²)``,

is the coherence the pair would have if co-registered with τ; it is largest at the true offset. The local
fringe frequency ``f`` (topography, orbits or deformation make the interferometric phase vary inside a chip,
which lowers |Σ|) is estimated from the interferogram at the integer peak and removed (as CohStack-like
speckle tracking does). The integer search is exact; the sub-pixel peak comes from the band-limited
(matrix-DFT) interpolation of the complex correlation on a grid ``1 / upsample`` px fine around the integer
peak (Guizar-Sicairos et al. 2008), refined by a parabola. The coherence at the peak is the node's quality.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the secondary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from geodeform.errors import InvalidInputError
from geodeform.offsets import OffsetField, Reason, node_grid
from geodeform.sar.reader import S1Image, check_pair

__all__ = ["CoherenceOptions", "match_coherence"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoherenceOptions:
    """Options of :func:`match_coherence`.

    Attributes
    ----------
    upsample
        Sub-pixel grid of the band-limited correlation around the integer peak: 1 / upsample px. Default 16.
    fringe
        Estimate and remove the local fringe frequency of the interferogram before measuring (default True).
    min_coherence
        Nodes whose peak coherence is below this are NaN (``LOW_CORRELATION``). Default 0.1.
    min_valid_fraction
        Minimum fraction of valid (finite, non-zero) reference pixels in a chip (``MASKED``). Default 0.5.
    """

    upsample: int = 16
    fringe: bool = True
    min_coherence: float = 0.1
    min_valid_fraction: float = 0.5


def _as_complex(image: Any, name: str) -> NDArray[np.complex128]:
    data = image.data if isinstance(image, S1Image) else np.asarray(image)
    if data.ndim != 2:
        raise InvalidInputError(f"{name}: need a 2-D image, got shape {data.shape}")
    if not np.iscomplexobj(data):
        raise InvalidInputError(
            f"{name}: coherence tracking needs complex SLC values (dtype {data.dtype} is real); use "
            "geodeform.sar.match_amplitude for amplitude (GRD) images"
        )
    z = data.astype(np.complex128)
    return np.where(np.isfinite(z), z, 0)


def _box_sums(p: NDArray[np.float64], c: tuple[int, int], n: tuple[int, int]) -> NDArray[np.float64]:
    """Sums of ``p`` over every c-sized box at offsets 0..n-1 (an integral image)."""
    s = np.zeros((p.shape[0] + 1, p.shape[1] + 1))
    s[1:, 1:] = p.cumsum(0).cumsum(1)
    i = np.arange(n[0])[:, None]
    j = np.arange(n[1])[None, :]
    return np.asarray(s[i + c[0], j + c[1]] - s[i, j + c[1]] - s[i + c[0], j] + s[i, j])


def _dft_matrix(taus: NDArray[np.float64], m: int) -> NDArray[np.complex128]:
    k = np.fft.fftfreq(m) * m
    return np.exp(-2j * np.pi * np.outer(taus, k) / m)


def _correlation(
    P: NDArray[np.complex128], ty: NDArray[np.float64], tx: NDArray[np.float64]
) -> NDArray[np.complex128]:
    """``Σ s1p(x) conj(s2(x + τ))`` at τ = (ty × tx) from ``P = FFT(s1p) · conj(FFT(s2))``."""
    m0, m1 = P.shape
    # einsum, not BLAS: threaded BLAS on these small complex products oversubscribes busy hosts (10x slower)
    left = np.einsum("ik,kl->il", _dft_matrix(ty, m0), P, optimize=False)
    return np.asarray(np.einsum("il,jl->ij", left, _dft_matrix(tx, m1), optimize=False) / (m0 * m1))


def _fringe(s1: NDArray[np.complex128], s2: NDArray[np.complex128]) -> NDArray[np.complex128]:
    """``s1`` with the dominant fringe of ``s1 · conj(s2)`` removed (peak of its zero-padded spectrum)."""
    ifg = s1 * np.conj(s2)
    pad = (2 * s1.shape[0], 2 * s1.shape[1])
    spec = np.abs(np.fft.fft2(ifg, pad))
    ky, kx = np.unravel_index(int(np.argmax(spec)), pad)
    fy = np.fft.fftfreq(pad[0])[ky]
    fx = np.fft.fftfreq(pad[1])[kx]
    y = np.arange(s1.shape[0])[:, None]
    x = np.arange(s1.shape[1])[None, :]
    return s1 * np.exp(-2j * np.pi * (fy * y + fx * x))


def _parabola(m: float, z: float, p: float) -> float:
    den = m - 2 * z + p
    return 0.0 if den >= 0 else float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))


@dataclass(frozen=True)
class _Node:
    dy: float
    dx: float
    coherence: float
    reason: int


def _measure(
    s1: NDArray[np.complex128], win: NDArray[np.complex128], r: tuple[int, int], opts: CoherenceOptions
) -> _Node:
    """Offset and coherence of one chip ``s1`` in its search window ``win`` (half-widths ``r``)."""
    c = s1.shape
    n = (2 * r[0] + 1, 2 * r[1] + 1)
    e1 = float(np.sum(np.abs(s1) ** 2))
    e2 = _box_sums(np.abs(win) ** 2, c, n)  # e2[a, b]: window box at offset (a - r0, b - r1)

    def surface(chip: NDArray[np.complex128]) -> tuple[NDArray[np.complex128], NDArray[np.float64]]:
        pad = np.zeros(win.shape, dtype=np.complex128)
        pad[r[0] : r[0] + c[0], r[1] : r[1] + c[1]] = chip
        P = np.fft.fft2(pad) * np.conj(np.fft.fft2(win))
        ty = np.arange(-r[0], r[0] + 1, dtype=np.float64)
        tx = np.arange(-r[1], r[1] + 1, dtype=np.float64)
        X = _correlation(P, ty, tx)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = np.where(e2 > 0, np.abs(X) / np.sqrt(e1 * e2), 0.0)
        return P, g

    P, g = surface(s1)
    a, b = np.unravel_index(int(np.argmax(g)), g.shape)
    if opts.fringe:
        s1f = _fringe(s1, win[a : a + c[0], b : b + c[1]])
        P2, g2 = surface(s1f)
        if g2.max() > g.max():
            P, g = P2, g2
            a, b = np.unravel_index(int(np.argmax(g)), g.shape)
    if a in (0, n[0] - 1) or b in (0, n[1] - 1):
        return _Node(np.nan, np.nan, float(g[a, b]), int(Reason.SEARCH_EDGE))
    u = int(opts.upsample)
    fine = np.arange(-u, u + 1, dtype=np.float64) / u
    ty = a - r[0] + fine
    tx = b - r[1] + fine
    X = np.abs(_correlation(P, ty, tx))
    pi, pj = np.unravel_index(int(np.argmax(X)), X.shape)
    i = int(np.clip(pi, 1, X.shape[0] - 2))
    j = int(np.clip(pj, 1, X.shape[1] - 2))
    dy = ty[i] + _parabola(X[i - 1, j], X[i, j], X[i + 1, j]) / u
    dx = tx[j] + _parabola(X[i, j - 1], X[i, j], X[i, j + 1]) / u
    # coherence at the peak: energy of the secondary box interpolated between integer offsets
    e2p = _bilinear(e2, dy + r[0], dx + r[1])
    coh = float(X[i, j] / np.sqrt(e1 * e2p)) if e2p > 0 else 0.0
    return _Node(float(dy), float(dx), min(coh, 1.0), int(Reason.OK))


def _bilinear(a: NDArray[np.float64], y: float, x: float) -> float:
    y0 = int(np.clip(np.floor(y), 0, a.shape[0] - 2))
    x0 = int(np.clip(np.floor(x), 0, a.shape[1] - 2))
    fy, fx = y - y0, x - x0
    return float(
        (1 - fy) * (1 - fx) * a[y0, x0]
        + (1 - fy) * fx * a[y0, x0 + 1]
        + fy * (1 - fx) * a[y0 + 1, x0]
        + fy * fx * a[y0 + 1, x0 + 1]
    )


def match_coherence(
    reference: npt.ArrayLike | S1Image,
    secondary: npt.ArrayLike | S1Image,
    *,
    chip_size: int | tuple[int, int] = 64,
    step: int | tuple[int, int] = 32,
    search_range: int | tuple[int, int] = 4,
    mask: npt.ArrayLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> OffsetField:
    """Coherence (speckle) tracking of two complex SLC images of one track.

    Parameters
    ----------
    reference, secondary
        Complex images of the same size in the same radar grid (arrays or :class:`~geodeform.sar.S1Image`
        SLCs, then checked with :func:`~geodeform.sar.check_pair`). NaN or 0 = no data.
    chip_size, step
        Chip size and node spacing, px (rows, cols), as :func:`geodeform.offsets.match`.
    search_range
        Half-width of the integer search around zero offset, px (rows, cols).
    mask
        True where reference pixels must be ignored.
    progress
        Called as ``progress(done_rows, total_rows)`` after each row of nodes.
    **options
        :class:`CoherenceOptions` fields.

    Returns
    -------
    OffsetField
        ``method="coherence"``; ``quality`` = coherence at the peak (0..1); ``error`` NaN.

    Raises
    ------
    InvalidInputError
        Real-valued images, shapes that differ, bad chip/step/search or unknown options.
    IncompatiblePairError
        Two :class:`~geodeform.sar.S1Image` that cannot be matched in radar geometry.
    """
    if isinstance(reference, S1Image) or isinstance(secondary, S1Image):
        check_pair(reference, secondary)  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(CoherenceOptions.__dataclass_fields__))
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {unknown}; the options are {sorted(CoherenceOptions.__dataclass_fields__)}"
        )
    opts = CoherenceOptions(**options)
    if opts.upsample < 1:
        raise InvalidInputError(f"upsample: need an integer >= 1, got {opts.upsample}")
    s1 = _as_complex(reference, "reference")
    s2 = _as_complex(secondary, "secondary")
    if s1.shape != s2.shape:
        raise InvalidInputError(
            f"reference {s1.shape} and secondary {s2.shape} differ in shape; co-register first"
        )
    chip = _pair(chip_size, "chip_size", 4)
    stp = _pair(step, "step", 1)
    rng = _pair(search_range, "search_range", 1)
    if chip[0] > s1.shape[0] or chip[1] > s1.shape[1]:
        raise InvalidInputError(f"chip_size {chip} is larger than the images {s1.shape}")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != s1.shape:
            raise InvalidInputError(f"mask: shape {m.shape} differs from the images {s1.shape}")
        s1 = np.where(m, 0, s1)
    rs, cs, rows, cols = node_grid(s1.shape, chip, stp)
    padded = np.pad(s2, ((rng[0], rng[0]), (rng[1], rng[1])))
    out = np.full((4, rs.size, cs.size), np.nan)
    out[3] = Reason.OK
    for i, r0 in enumerate(rs):
        for j, c0 in enumerate(cs):
            chip1 = s1[r0 : r0 + chip[0], c0 : c0 + chip[1]]
            node = _node(
                chip1, padded[r0 : r0 + chip[0] + 2 * rng[0], c0 : c0 + chip[1] + 2 * rng[1]], rng, opts
            )
            out[:, i, j] = (node.dy, node.dx, node.coherence, node.reason)
        if progress is not None:
            progress(i + 1, rs.size)
    reason = out[3].astype(np.uint8)
    bad = reason != Reason.OK
    return OffsetField(
        rows=rows.astype(np.float64),
        cols=cols.astype(np.float64),
        dx=np.where(bad, np.nan, out[1]).astype(np.float32),
        dy=np.where(bad, np.nan, out[0]).astype(np.float32),
        quality=np.where(bad, 0.0, np.nan_to_num(out[2])).astype(np.float32),
        reason=reason,
        method="coherence",
        params={"chip_size": chip, "step": stp, "search_range": rng, **opts.__dict__},
        error=np.full(reason.shape, np.nan, dtype=np.float32),
    )


def _node(
    chip1: NDArray[np.complex128], win: NDArray[np.complex128], rng: tuple[int, int], opts: CoherenceOptions
) -> _Node:
    if np.mean(np.abs(chip1) > 0) < opts.min_valid_fraction:
        return _Node(np.nan, np.nan, 0.0, int(Reason.MASKED))
    node = _measure(chip1, win, rng, opts)
    if node.reason == Reason.OK and node.coherence < opts.min_coherence:
        return _Node(np.nan, np.nan, node.coherence, int(Reason.LOW_CORRELATION))
    return node


def _pair(v: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    t: tuple[Any, ...] = (v, v) if np.ndim(v) == 0 else tuple(v)  # type: ignore[arg-type]
    if len(t) != 2 or any(int(x) != x or int(x) < minimum for x in t):
        raise InvalidInputError(f"{name}: need an integer >= {minimum} or a pair of them, got {v!r}")
    return (int(t[0]), int(t[1]))
