"""One ``match`` call's inputs, grid and no-data rules, and the strips its matchers walk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from geodeform.errors import InvalidInputError
from geodeform.offsets._buffers import buffer
from geodeform.offsets._common import texture, to_float32
from geodeform.offsets.prefilters import apply_prefilter, prefilter_margin

__all__ = ["MatchJob", "Strip", "image_stats"]

F32 = npt.NDArray[np.float32]


def image_stats(img: npt.NDArray[np.floating]) -> tuple[float, float]:
    """Mean and standard deviation of the finite pixels of ``img`` (strided sample; std 1 if flat)."""
    sample = img[::3, ::3]
    sample = sample[np.isfinite(sample)]
    if sample.size < 16:
        sample = img[np.isfinite(img)]
    if sample.size == 0:
        return 0.0, 1.0
    std = float(sample.std())
    return float(sample.mean()), std if std > 0 else 1.0


class Strip(NamedTuple):
    """Rows [a, b) of the images covering the node rows ``idx`` (indices into the grid), with ``pad`` rows
    of margin around the chips."""

    a: int
    b: int
    idx: npt.NDArray[np.int64]
    pad: int


@dataclass(frozen=True, kw_only=True)
class MatchJob:
    """Images, node grid and no-data rules of one :func:`geodeform.offsets.match` call.

    Built by the driver after validation (keyword arguments only); the matchers read their strips
    through :meth:`strips`, :meth:`prepare` and :meth:`stats`.

    Attributes
    ----------
    ref, sec : ndarray, shape (H, W)
        Reference and secondary images, as given (any real dtype).
    ref_mask, sec_mask : ndarray of bool or None
        True where a pixel must be ignored.
    nodata : float or None
        No-data value of both images.
    fill_values : tuple of float or None
        Values treated as no-data (None: 0 and the dtype maximum for integer images).
    saturation : float or None
        Pixels at or above it are ignored.
    prefilter : str or None
        Pre-filter applied to both images (:data:`geodeform.offsets.PREFILTERS`).
    chip, step : (int, int)
        Chip size and node spacing, px (rows, cols).
    rs, cs : ndarray of int64
        Row and column origins of the chips (the node grid, :func:`geodeform.offsets.node_grid`).
    search : ndarray of int64, shape (len(rs), len(cs))
        Search half-width per node, px.
    strip_rows : int
        Image rows prepared at once.
    halo_rows : int
        Node rows above and below its own that each strip also holds (0 by default): the ``ncc``
        matcher's sparse-then-dense first pass predicts a node's start from lattice nodes up to
        ``sparse_stride`` + 1 rows away, and must see them in every strip to start (hence end) as on the
        whole image.
    """

    ref: npt.NDArray[Any]
    sec: npt.NDArray[Any]
    ref_mask: npt.NDArray[np.bool_] | None
    sec_mask: npt.NDArray[np.bool_] | None
    nodata: float | None
    fill_values: tuple[float, ...] | None
    saturation: float | None
    prefilter: str | None
    chip: tuple[int, int]
    step: tuple[int, int]
    rs: npt.NDArray[np.int64]
    cs: npt.NDArray[np.int64]
    search: npt.NDArray[np.int64]
    strip_rows: int
    halo_rows: int = 0
    # memoised per-call state: the global statistics and the last prepared strip (see :meth:`cached`)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check_not_empty()

    @property
    def grid(self) -> tuple[int, int]:
        """Shape (nr, nc) of the node grid."""
        return self.rs.size, self.cs.size

    def prepare(
        self, img: npt.NDArray[Any], m: npt.NDArray[np.bool_] | None, a: int, b: int, key: str | None = None
    ) -> F32:
        """Rows [a, b) as float32 with NaN at every invalid pixel, pre-filtered.

        With ``key`` the result lives in a reused per-thread buffer (valid until the next call with that key).
        """
        part = img[a:b]
        out = np.empty(part.shape, np.float32) if key is None else buffer(key, part.shape, np.float32)
        to_float32(
            part,
            out,
            nodata=self.nodata,
            mask=None if m is None else m[a:b],
            fill_values=self.fill_values,
            saturation=self.saturation,
        )
        return apply_prefilter(out, self.prefilter)

    def check_not_empty(self) -> None:
        """Raise :class:`InvalidInputError` when an image has no valid pixel or is constant."""
        for name, img, m in (("reference", self.ref, self.ref_mask), ("secondary", self.sec, self.sec_mask)):
            found, first, differs = texture(img, mask=m, nodata=self.nodata, fill_values=self.fill_values)
            if not found:
                raise InvalidInputError(
                    f"{name} has no valid pixel (all NaN, no-data, fill values or masked); check the nodata/"
                    "fill_values arguments and the input file"
                )
            if not differs:
                value = img.dtype.type(first)
                raise InvalidInputError(
                    f"{name} is constant ({value!r}): there is no texture to match; check the band and the "
                    "scaling of the input"
                )

    def stats(
        self,
        ref_strip: npt.NDArray[np.floating],
        sec_strip: npt.NDArray[np.floating],
        *,
        transform: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None,
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Global (mean, std) of both prepared images, from a central window (or the only strip).

        Computed on the first call and kept: every strip is normalised with the same statistics.
        ``transform`` is the per-strip transform the caller applied to its strips (e.g. a rank filter):
        the central window gets it too, so that the statistics describe the values being normalised.
        """
        key = "stats" if transform is None else f"stats:{transform!r}"
        if key not in self._memo:
            h = self.ref.shape[0]
            if h > self.strip_rows:
                a = max(0, h // 2 - self.strip_rows // 2)
                b = min(h, a + self.strip_rows)
                ref_strip = self.prepare(self.ref, self.ref_mask, a, b)
                sec_strip = self.prepare(self.sec, self.sec_mask, a, b)
                if transform is not None:
                    ref_strip, sec_strip = transform(ref_strip), transform(sec_strip)
            self._memo[key] = (image_stats(ref_strip), image_stats(sec_strip))
        stats: tuple[tuple[float, float], tuple[float, float]] = self._memo[key]
        return stats

    def cached(self, key: tuple[int, int]) -> Any:
        """The object stored by :meth:`keep` under ``key``, or None."""
        kept = self._memo.get("strip")
        return kept[1] if kept is not None and kept[0] == key else None

    def keep(self, key: tuple[int, int], value: Any) -> None:
        """Remember one prepared strip (bounded memory), reused by later passes over the same rows."""
        self._memo["strip"] = (key, value)

    def strips(self, node_rows: npt.NDArray[np.int64] | None = None, extra_pad: int = 0) -> Iterator[Strip]:
        """The strips covering the requested node rows (all by default).

        A strip's rows [a, b) depend only on its index, with a margin wide enough for every pass
        (search, nested chips, shifted chips), so later passes reuse the prepared strip.
        """
        nr = self.rs.size
        rows_per = max(1, (self.strip_rows - self.chip[0]) // self.step[0] + 1)
        wanted = np.arange(nr) if node_rows is None else np.unique(node_rows)
        pad = int(self.search.max(initial=0)) + 8 + prefilter_margin(self.prefilter) + 2 * max(self.chip)
        pad += self.halo_rows * self.step[0]  # the node rows around the strip's own (see ``halo_rows``)
        if extra_pad > 2 * max(self.chip):
            pad += extra_pad
        for i0 in range(0, nr, rows_per):
            idx = wanted[(wanted >= i0) & (wanted < i0 + rows_per)]
            if idx.size == 0:
                continue
            i1 = min(nr, i0 + rows_per) - 1
            # a multiple of 8: the strip's pyramid levels (≤ 3) then average the same pixel blocks as
            # the whole image's, so strips do not change the coarse-level answers
            a = max(0, (int(self.rs[i0]) - pad) // 8 * 8)
            b = min(self.ref.shape[0], int(self.rs[i1]) + self.chip[0] + pad)
            yield Strip(a, b, idx, pad)
