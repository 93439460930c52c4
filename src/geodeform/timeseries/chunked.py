"""Time-series inversion of pair products on disk, in spatial chunks: memory set by the chunk, not the dates.

:func:`invert_products` reads the ``dx``/``dy`` of every pair product one block of node rows at a time,
inverts the block with :func:`geodeform.timeseries.invert`, adds the per-date image noise, and streams the
block's series and mean velocity into a chunked Zarr store (:class:`geodeform.io.SeriesStore`). Each pixel's
fit only uses that pixel's pairs, so the blocks give exactly what one call on the whole map would.

Sign convention: the one of the products (metres, +x east, +y north, reference -> secondary); cumulative
displacements are relative to the first date.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from geodeform.errors import InvalidInputError
from geodeform.io import SeriesStore
from geodeform.timeseries._invert import TimeSeriesResult, TimeSeriesWarning, invert
from geodeform.timeseries.margin import margin_nodes, moving_nodes
from geodeform.timeseries.noise import add_date_noise
from geodeform.timeseries.products import VelocityComposite, velocity_composite
from geodeform.timeseries.uncertainty import ErrorModel, add_node_errors, pair_sigma

__all__ = ["INVERSION_MEMORY_BYTES", "ChunkedInversion", "NodeErrors", "chunk_rows", "invert_products"]

log = logging.getLogger(__name__)

INVERSION_MEMORY_BYTES = 1 << 30
"""Default memory budget of one block of :func:`invert_products`, bytes."""

_INVERT_CHUNK = 4096  # pixels per chunk inside invert(): its working memory is ~60 B x pairs x this


@dataclass(frozen=True)
class ChunkedInversion:
    """What :func:`invert_products` wrote.

    Attributes
    ----------
    store
        The Zarr store (series ``(time, y, x)`` in m, composite ``(y, x)`` in m/yr).
    composite
        The mean-velocity composite (whole map: its size is that of one product).
    series
        The whole series in memory when it is small (``keep_bytes``), else None (read it from ``store``).
    dates
        Dates of the series.
    chunk_rows
        Node rows per block.
    seconds
        Wall time.
    n_partial, n_empty
        Pixels with some unconstrained dates, pixels without any estimate.
    """

    store: Path
    composite: VelocityComposite
    series: TimeSeriesResult | None
    dates: NDArray[np.datetime64]
    chunk_rows: int
    seconds: float
    n_partial: int = 0
    n_empty: int = 0


def chunk_rows(n_pairs: int, n_dates: int, width: int, memory_bytes: int = INVERSION_MEMORY_BYTES) -> int:
    """Node rows per block so that one block stays within ``memory_bytes``.

    Per pixel of a block: the pairs' dx and dy (float32, and float64 inside ``invert``), outlier flags,
    and the series' four float32 layers per date; plus ``invert``'s own working memory of its
    4096-pixel chunks.
    """
    per_pixel = n_pairs * (2 * 4 + 2 * 8 + 1) + n_dates * 4 * 4 * 2 + 64
    fixed = 60 * n_pairs * _INVERT_CHUNK
    rows = (memory_bytes - fixed) // max(1, per_pixel * width)
    return int(max(1, rows))


@dataclass(frozen=True)
class NodeErrors:
    """Per-node error weighting of :func:`invert_products` from the products' ``offset_error``.

    Attributes
    ----------
    step
        Node spacing, m.
    chip
        Chip height used where a product has no ``chip_size_height`` (or it is not > 0), m.
    noise_scale
        Per product, the factor on its ``offset_error`` measured on stable ground
        (:func:`geodeform.timeseries.stable_noise_scale`; NaN: 1); None: no scaling.
    model
        The displacement/strain term (default :class:`geodeform.timeseries.ErrorModel`).
    gain
        Multiply that term by each node's ``smoothing_gain`` where the products carry it.
    margin
        Still nodes within this many nodes of moving ground (:func:`geodeform.timeseries.margin_nodes`,
        moving ground from the products' unsmoothed offsets by :func:`geodeform.timeseries.moving_nodes`)
        take their unsmoothed values and errors (``dx_unsmoothed``, ``dy_unsmoothed``,
        ``offset_error_unsmoothed``; gain 1), when every product has them; 0 (default): never.
    margin_sigma
        The motion threshold of :func:`geodeform.timeseries.moving_nodes`, in noise 1-sigma.
    """

    step: float
    chip: float
    noise_scale: tuple[float, ...] | None = None
    model: ErrorModel | None = None
    gain: bool = False
    margin: float = 0.0
    margin_sigma: float = 4.0

    @classmethod
    def calibrated(cls, smoothing_model: str, **kw: Any) -> NodeErrors:
        """The error model calibrated for the ``ncc`` matcher's ``smoothing_model`` (``kw``: the other
        fields): for ``"quadratic-sided"``, ``ErrorModel(0.007, 0.01, isotropic=True)`` times the smoothing
        gain, and the unsmoothed values on still ground within 4.5 nodes of motion detected at 4σ
        (``benchmarks/bench_calibration.py``, with each value's strain term from the chip that measured it:
        19 of its 20 cells in the 60-75 % band, against 15 for the plane); for the others (``"plane"``, the
        default), :class:`ErrorModel`'s defaults, without gain or margin (which take the plane's cells
        down; docs/benchmarks.md)."""
        if smoothing_model == "quadratic-sided":
            return cls(model=ErrorModel(0.007, 0.01, isotropic=True), gain=True, margin=4.5, **kw)
        return cls(**kw)


class _Products:
    """The pair products, each opened once for the whole inversion (not once per block and variable).

    HDF5 decompresses whole chunks: a block of rows that ends inside a chunk would decompress it again for
    the next block. Each dataset's chunk cache holds about one band of chunks (the chunk height times the
    grid's width), so that each chunk is decompressed about once whatever the block height.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._files: list[h5py.File] = []
        self._datasets: dict[str, list[Any]] = {}
        with h5py.File(self.paths[0], "r") as f:
            cache = max(_band_bytes(f[name]) for name in f if isinstance(f[name], h5py.Dataset))
        try:
            for path in self.paths:
                self._files.append(h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=10007, rdcc_w0=1.0))
        except BaseException:
            self.close()
            raise

    def _handles(self, name: str) -> list[Any]:
        if name not in self._datasets:
            self._datasets[name] = [f[name] if name in f else None for f in self._files]
        return self._datasets[name]

    def shapes(self, name: str) -> list[tuple[int, ...]]:
        return [tuple(d.shape) if d is not None else () for d in self._handles(name)]

    def rows(self, name: str, rows: slice, width: int) -> NDArray[np.float32]:
        """Rows ``rows`` of variable ``name`` of every product, ``(nproducts, rows, width)`` float32."""
        out = np.empty((len(self._files), rows.stop - rows.start, width), dtype=np.float32)
        for k, d in enumerate(self._handles(name)):
            d.read_direct(out, np.s_[rows.start : rows.stop, :], np.s_[k])
        return out

    def optional(self, name: str, rows: slice, width: int) -> NDArray[np.float64]:
        """Rows of an optional variable (NaN for a product without it)."""
        out = np.full((len(self._files), rows.stop - rows.start, width), np.nan)
        for k, d in enumerate(self._handles(name)):
            if d is not None:
                out[k] = d[rows.start : rows.stop, :]
        return out

    def close(self) -> None:
        self._datasets.clear()
        for f in self._files:
            f.close()
        self._files.clear()


def _band_bytes(dataset: Any) -> int:
    """Bytes of one band of decompressed chunks (chunk height x whole width) of a 2-D dataset, and a bit."""
    if dataset.ndim != 2 or dataset.chunks is None:
        return 1 << 16
    rows, cols = dataset.chunks
    per_chunk = rows * cols * dataset.dtype.itemsize
    return int(per_chunk * (-(-dataset.shape[1] // cols) + 2))


_UNSMOOTHED = {"dx": "dx_unsmoothed", "dy": "dy_unsmoothed", "offset_error": "offset_error_unsmoothed"}


def _read(products: _Products, name: str, rows: slice, nx: int, margin: NDArray[np.bool_] | None) -> Any:
    """Rows of ``dx``, ``dy`` or ``offset_error`` of every product, the unsmoothed ones on ``margin``."""
    values = products.rows(name, rows, nx)
    if margin is not None and margin[rows].any():
        values = np.where(margin[rows], products.rows(_UNSMOOTHED[name], rows, nx), values)
    return values


def _margin(
    products: _Products,
    d: NDArray[Any],
    p: NDArray[np.int64],
    shape: tuple[int, int],
    rows: int,
    ne: NodeErrors,
) -> NDArray[np.bool_] | None:
    """The still nodes next to moving ground (:func:`margin_nodes`), motion from the products' unsmoothed
    offsets inverted block by block; None when a product lacks them or ``ne.margin`` is 0."""
    if ne.margin <= 0 or any(s != shape for s in products.shapes("dx_unsmoothed")):
        return None
    ny, nx = shape
    moving = np.zeros(shape, bool)
    for r0 in range(0, ny, rows):
        block = slice(r0, min(ny, r0 + rows))
        values = [products.rows(v, block, nx) for v in _UNSMOOTHED.values()]
        moving[block] = moving_nodes(d, p, *values, k=ne.margin_sigma)
    return margin_nodes(moving, nodes=ne.margin)


def _invert_block(
    products: _Products,
    d: NDArray[Any],
    p: NDArray[np.int64],
    block: slice,
    ny: int,
    nx: int,
    *,
    weights: ArrayLike | str | None,
    smoothing: float | None,
    robust: bool,
    pair_errors: tuple[ArrayLike, ArrayLike] | None,
    node_errors: NodeErrors | None,
    margin: NDArray[np.bool_] | None = None,
) -> TimeSeriesResult:
    """One block of rows inverted, with its per-node (``node_errors``) or per-date (``pair_errors``) noise;
    the nodes of ``margin`` take the products' unsmoothed values and errors."""
    dx = _read(products, "dx", block, nx, margin)
    dy = _read(products, "dy", block, nx, margin)
    sigma = sigma_x = sigma_y = chip = gain = None
    if node_errors is not None:
        # per-node errors: the matcher's plus its displacement/strain part (timeseries.uncertainty), the
        # strain's gradient over the chip's footprint taken with the rows it reaches on each side of the
        # block (as on the whole map; the block's largest chip: a grown chip's footprint is its own)
        own = products.optional("chip_size_height", block, nx)
        largest = max(node_errors.chip, float(np.nanmax(np.where(own > 0, own, 0.0), initial=0.0)))
        reach = max(1, round(0.5 * largest / node_errors.step)) + 1
        halo = slice(max(0, block.start - reach), min(ny, block.stop + reach))
        inner = slice(block.start - halo.start, block.stop - halo.start)
        err = _read(products, "offset_error", halo, nx, margin).astype(np.float64)
        chip = products.optional("chip_size_height", halo, nx)
        chip = np.where(np.isfinite(chip) & (chip > 0), chip, node_errors.chip)
        if node_errors.gain:  # the smoothing's gain (1 where the node's own chip is used; NaN -> 1)
            gain = products.optional("smoothing_gain", halo, nx)
            if margin is not None:
                gain = np.where(margin[halo], 1.0, gain)
        hx = dx if halo == block else _read(products, "dx", halo, nx, margin)
        hy = dy if halo == block else _read(products, "dy", halo, nx, margin)
        scale = None if node_errors.noise_scale is None else np.asarray(node_errors.noise_scale, np.float64)
        kw = {"step": node_errors.step, "chip": chip, "noise_scale": scale, "model": node_errors.model}
        kw["gain"] = gain
        sigma = pair_sigma(hx, hy, err, **kw)[:, inner]  # type: ignore[arg-type]
        sigma_x = pair_sigma(hx, hy, err, component="x", **kw)[:, inner]  # type: ignore[arg-type]
        sigma_y = pair_sigma(hx, hy, err, component="y", **kw)[:, inner]  # type: ignore[arg-type]
        chip = chip[:, inner]
        gain = None if gain is None else gain[:, inner]
        del hx, hy, err
        weights = np.where(np.isfinite(sigma), 1.0 / np.fmax(sigma, 1e-6) ** 2, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)  # summed over the blocks by the caller
        ts = invert(d, p, dx, dy, weights=weights, smoothing=smoothing, robust=robust, return_residuals=False)
    del dx, dy
    plist = [tuple(map(int, q)) for q in p]
    if sigma is not None and chip is not None and node_errors is not None:
        return add_node_errors(
            ts,
            plist,
            sigma_x,
            sigma_y=sigma_y,
            step=node_errors.step,
            chip=chip,
            model=node_errors.model,
            gain=gain,
        )
    if pair_errors is not None:
        ex, ey = (np.asarray(e, dtype=np.float64) for e in pair_errors)
        return add_date_noise(ts, plist, ex, ey)
    return ts


def _check_grids(products: _Products, shape: tuple[int, int]) -> None:
    for path, got in zip(products.paths, products.shapes("dx"), strict=True):
        if got != shape:
            raise InvalidInputError(
                f"{path} has {got} nodes, {products.paths[0]} has {shape}: products of one grid only"
            )


def _write_block(
    sink: SeriesStore, block: slice, ts: TimeSeriesResult, maps: dict[str, list[NDArray[Any]]]
) -> None:
    """Write one block's series and composite into the store; append its composite maps to ``maps``."""
    comp = velocity_composite(ts)
    layers = {"east": ts.dx, "north": ts.dy, "east_error": ts.sigma_dx, "north_error": ts.sigma_dy}
    for name in ("vx", "vy", "v", "vx_error", "vy_error", "v_error", "count"):
        layers[name] = getattr(comp, name)
        maps.setdefault(name, []).append(getattr(comp, name))
    sink.write(block, layers)


def _concat(parts: list[TimeSeriesResult]) -> TimeSeriesResult:
    """One series from blocks of node rows (axis 1 of the per-date layers, axis 0 of the maps)."""

    def cat(name: str, axis: int) -> Any:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values, axis=axis)

    first = parts[0]
    return replace(
        first,
        dx=cat("dx", 1),
        dy=cat("dy", 1),
        sigma_dx=cat("sigma_dx", 1),
        sigma_dy=cat("sigma_dy", 1),
        residual_dx=None,
        residual_dy=None,
        outlier=cat("outlier", 1),
        n_pairs_used=cat("n_pairs_used", 0),
        velocity_x=cat("velocity_x", 0),
        velocity_y=cat("velocity_y", 0),
        sigma_velocity_x=cat("sigma_velocity_x", 0),
        sigma_velocity_y=cat("sigma_velocity_y", 0),
        n_partial=sum(p.n_partial for p in parts),
        n_empty=sum(p.n_empty for p in parts),
    )


def invert_products(
    products: Sequence[str | os.PathLike[str]],
    dates: ArrayLike,
    pairs: ArrayLike,
    store: str | os.PathLike[str],
    *,
    weights: ArrayLike | str | None = None,
    smoothing: float | None = None,
    robust: bool = True,
    pair_errors: tuple[ArrayLike, ArrayLike] | None = None,
    node_errors: NodeErrors | None = None,
    memory_bytes: int = INVERSION_MEMORY_BYTES,
    keep_bytes: int = 256 * 2**20,
    progress: Callable[[int, int], Any] | None = None,
) -> ChunkedInversion:
    """Invert pair products (NetCDF with ``dx``, ``dy`` in m on one node grid) block by block into a store.

    Parameters
    ----------
    products
        One product per pair (:func:`geodeform.io.offset_dataset`, written by
        :func:`geodeform.io.write_netcdf`).
    dates
        ``(ndates,)`` strictly increasing dates.
    pairs
        ``(npairs, 2)`` indices (reference, secondary) into ``dates``, one row per product.
    store
        Zarr store to write (``timeseries.zarr``), atomically.
    weights, smoothing, robust
        As in :func:`geodeform.timeseries.invert` (per-pair weights only: a block holds every pair).
    pair_errors
        ``(ex, ey)`` 1-sigma error of each pair along x and y (m), for the per-date noise
        (:func:`geodeform.timeseries.add_date_noise`); None leaves the series' sigmas as fitted.
    node_errors
        Weight each node of each pair by its own 1-sigma error (:func:`geodeform.timeseries.pair_sigma` on the
        products' ``offset_error`` and chip height), replacing ``weights``, and put image noise and the
        displacement/strain part into the series' sigmas and ``v_error``
        (:func:`geodeform.timeseries.add_node_errors`) instead of ``pair_errors``. Every product needs
        ``offset_error``. A block's strain part is computed with one more row on each side (the gaps are
        filled with the block's median before the gradient, so nodes next to a gap may differ slightly from
        a one-block inversion). Gain and ice margin: see :class:`NodeErrors` (a first pass over the blocks).
    memory_bytes
        Memory budget of one block (:func:`chunk_rows`).
    keep_bytes
        Also return the whole series in memory when its layers take at most this.
    progress
        ``progress(done_rows, total_rows)`` after each block.

    Raises
    ------
    InvalidInputError
        Products of different grids, or counts of products and pairs that differ (and what ``invert``
        raises for bad dates, pairs or weights).
    """
    t0 = time.perf_counter()
    paths = [Path(p) for p in products]
    p = np.asarray(pairs, dtype=np.int64)
    d = np.asarray(dates, dtype="datetime64[D]")
    if len(paths) != len(p) or len(paths) == 0:
        raise InvalidInputError(f"{len(paths)} products for {len(p)} pairs; give one product per pair")
    with xr.open_dataset(paths[0], engine="h5netcdf") as first:
        template = first.drop_vars([v for v in first.data_vars if v != "mapping"]).load()
        template["dx"] = first["dx"].load()
    ny, nx = int(template.sizes["y"]), int(template.sizes["x"])
    source = _Products(paths)
    try:
        _check_grids(source, (ny, nx))
        rows = chunk_rows(len(p), len(d), nx, memory_bytes)
        margin = None if node_errors is None else _margin(source, d, p, (ny, nx), rows, node_errors)
        keep = len(d) * ny * nx * 4 * 4 + len(p) * ny * nx <= keep_bytes
        sink = SeriesStore(store, template, d, chunk_rows=rows)
        parts: list[TimeSeriesResult] = []
        maps: dict[str, list[NDArray[Any]]] = {}
        n_partial = n_empty = 0
        try:
            for r0 in range(0, ny, rows):
                block = slice(r0, min(ny, r0 + rows))
                ts = _invert_block(
                    source,
                    d,
                    p,
                    block,
                    ny,
                    nx,
                    weights=weights,
                    smoothing=smoothing,
                    robust=robust,
                    pair_errors=pair_errors,
                    node_errors=node_errors,
                    margin=margin,
                )
                n_partial += ts.n_partial
                n_empty += ts.n_empty
                _write_block(sink, block, ts, maps)
                if keep:
                    parts.append(ts)
                if progress is not None:
                    progress(block.stop, ny)
            path = sink.close()
        except BaseException:
            sink.abort()
            raise
    finally:
        source.close()
    if n_partial or n_empty:
        warnings.warn(
            f"{n_partial} pixel(s) have unconstrained dates (NaN) and {n_empty} pixel(s) have no estimate, "
            f"out of {ny * nx}: too few valid pairs there",
            TimeSeriesWarning,
            stacklevel=2,
        )
    composite = VelocityComposite(
        **{k: np.concatenate(v, axis=0) for k, v in maps.items()}, start=d[0], end=d[-1]
    )
    seconds = time.perf_counter() - t0
    log.info("inverted %d pairs x %d x %d nodes in blocks of %d rows: %.1f s", len(p), ny, nx, rows, seconds)
    return ChunkedInversion(
        path, composite, _concat(parts) if keep else None, d, rows, seconds, n_partial, n_empty
    )
