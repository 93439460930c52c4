"""Self-contained HTML run report: velocity maps, pair network, per-pair error statistics, point time series.

:func:`write_report` writes ``report.html`` (one file: figures embedded as base64 PNG data URIs, inline CSS,
nothing fetched from the network, no JavaScript) and the same figures as PNG quicklooks. Every file is written
atomically (temp + rename).

Sign conventions: ``vx``/``east`` are positive toward increasing map x (east for UTM), ``vy``/``north``
toward increasing map y (north for UTM); velocities in m/yr, displacements in metres.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geodeform import __version__
from geodeform.errors import InvalidInputError
from geodeform.io import speed
from geodeform.io.atomic import atomic_output
from geodeform.workflows._figure_cache import FigureCache
from geodeform.workflows._html import (
    _e,
    _flatten,
    _img,
    _kv_table,
    _num,
    _parse_date,
    _pct,
    _short_date,
    _table,
)
from geodeform.workflows.report_section import ReportSection

__all__ = [
    "PairSummary",
    "PointSeries",
    "ReportInputs",
    "ReportSection",
    "pick_points",
    "well_observed",
    "write_report",
]

log = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "skipped")
QUICKLOOKS = ("velocity.png", "velocity_error.png", "truth.png", "network.png", "errors.png", "series.png")


@dataclass(frozen=True)
class PairSummary:
    """Outcome and quality of one image pair.

    Attributes
    ----------
    reference, secondary
        ISO dates of the two images.
    dt_days
        Time between them, days.
    status
        ``"ok"``, ``"failed"`` or ``"skipped"``.
    coverage
        Share of valid nodes, 0..1.
    stable_nmad_x, stable_nmad_y
        NMAD of vx / vy on stable ground after corrections, m/yr.
    rejected
        Share of nodes removed by the outlier filters, 0..1.
    message
        Why the pair failed or was skipped.
    degraded
        Why an ok pair's numbers are less reliable than the others' (e.g. its co-registration came from the
        other pairs of its dates); empty when they are not.
    """

    reference: str
    secondary: str
    dt_days: float
    status: str
    coverage: float = math.nan
    stable_nmad_x: float = math.nan
    stable_nmad_y: float = math.nan
    rejected: float = math.nan
    message: str = ""
    degraded: str = ""


@dataclass(frozen=True)
class PointSeries:
    """Displacement time series at one map point.

    Attributes
    ----------
    name
        Label shown on the map and the plots.
    x, y
        Map coordinates (metres, CRS of the velocity grid).
    dates
        ISO dates, one per value.
    east, north
        Cumulative displacement since ``dates[0]``, metres, +east / +north.
    sigma_east, sigma_north
        1-sigma uncertainties, metres.
    truth_east, truth_north
        Known displacement (synthetic demo), metres.

    Raises
    ------
    InvalidInputError
        When an array does not have one value per date.
    """

    name: str
    x: float
    y: float
    dates: Sequence[str]
    east: np.ndarray
    north: np.ndarray
    sigma_east: np.ndarray | None = None
    sigma_north: np.ndarray | None = None
    truth_east: np.ndarray | None = None
    truth_north: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.dates)
        for name in ("east", "north", "sigma_east", "sigma_north", "truth_east", "truth_north"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64).ravel()
            if arr.size != n:
                raise InvalidInputError(
                    f"PointSeries {self.name!r}: {name} has {arr.size} values for {n} dates; "
                    "give one per date"
                )
            object.__setattr__(self, name, arr)


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows.

    Attributes
    ----------
    title
        Report title.
    velocity
        Mean-velocity composite (:func:`geodeform.io.composite_dataset`): ``vx``, ``vy``, ``v``, ``v_error``
        (m/yr), optionally ``count``; coords ``x``, ``y`` (m). None when nothing could be computed.
    dates
        All acquisition dates of the series (ISO).
    pairs
        One summary per image pair, failed and skipped ones included.
    points
        Time series to plot (marked on the velocity map).
    parameters
        Full run configuration as a nested mapping.
    summary
        Headline figures shown first, e.g. ``{"velocity error vs truth": "RMSE 12 m/yr"}``.
    crs
        CRS name for the axes, e.g. ``"EPSG:32607"``; read from the grid mapping when empty.
    attribution
        Data credits for the footer.
    speed_truth
        Known speed on the velocity grid (m/yr), shown with the error map.
    notes
        Warnings to show under the summary (e.g. bridged gaps).
    sections
        More sections, shown after the maps (a chain's own products).
    """

    title: str
    velocity: xr.Dataset | None
    dates: Sequence[str]
    pairs: Sequence[PairSummary]
    points: Sequence[PointSeries]
    parameters: Mapping[str, Any]
    summary: Mapping[str, str] = field(default_factory=dict)
    crs: str = ""
    attribution: Sequence[str] = ()
    speed_truth: xr.DataArray | None = None
    notes: Sequence[str] = ()
    sections: Sequence[ReportSection] = ()


# ---------------------------------------------------------------------------------------------- grid helpers


def _figures() -> Any:
    """The figure module, imported on first use so that importing the workflows does not load matplotlib."""
    try:
        from geodeform.workflows import _figures as figs
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(
            f"the run report needs matplotlib ({exc.name} is missing); install it with "
            "pip install 'geodeform[geo]'"
        ) from exc
    return figs


def _field(ds: xr.Dataset | None, name: str) -> NDArray[np.float64] | None:
    if ds is None or name not in ds.variables or ds[name].ndim != 2:
        return None
    return np.asarray(ds[name].values, dtype=np.float64)


def _speed(ds: xr.Dataset | None) -> NDArray[np.float64] | None:
    v = None if ds is None else speed(ds)
    return v if v is not None and v.ndim == 2 else None


def _axis(ds: xr.Dataset, name: str, size: int) -> NDArray[np.float64] | None:
    if name in ds.coords and ds[name].ndim == 1 and ds[name].size == size:
        return np.asarray(ds[name].values, dtype=np.float64)
    return None


def well_observed(ds: xr.Dataset | None) -> tuple[NDArray[np.bool_] | None, int]:
    """Nodes of a composite seen by enough pairs to trust their extremes, and that number of pairs.

    A node counts when its ``count`` (pairs used) is >= 2 and >= a quarter of the median count of the valid
    nodes: over lakes, icebergs or cloud gaps, single-pair artefacts survive. ``(None, 1)`` without ``count``.
    """
    count = _field(ds, "count")
    v = _speed(ds)
    if count is None or v is None or count.shape != v.shape:
        return None, 1
    valid = np.isfinite(v) & np.isfinite(count)
    if not valid.any():
        return None, 1
    need = max(2, math.ceil(0.25 * float(np.median(count[valid]))))
    return valid & (count >= need), need


def _coords(ds: xr.Dataset, shape: tuple[int, int]) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """Pixel-centre map x and y, and whether they are georeferenced (else pixel indices, north up)."""
    ny, nx = shape
    x, y = _axis(ds, "x", nx), _axis(ds, "y", ny)
    if x is None or y is None:
        return np.arange(nx, dtype=np.float64), np.arange(ny - 1, -1, -1, dtype=np.float64), False
    return x, y, True


def _geotransform_step(ds: xr.Dataset) -> tuple[float, float] | None:
    for var in ds.variables.values():
        gt = var.attrs.get("GeoTransform")
        if gt:
            try:
                vals = [float(v) for v in str(gt).split()]
                return vals[1], vals[5]
            except (ValueError, IndexError):
                return None
    return None


def _steps(ds: xr.Dataset, x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    sx = float(x[1] - x[0]) if x.size > 1 else math.nan
    sy = float(y[1] - y[0]) if y.size > 1 else math.nan
    if math.isnan(sx) or math.isnan(sy):
        gt = _geotransform_step(ds)
        if gt is not None:
            sx = gt[0] if math.isnan(sx) else sx
            sy = gt[1] if math.isnan(sy) else sy
    sx = sx if math.isfinite(sx) and sx != 0 else (abs(sy) if math.isfinite(sy) and sy != 0 else 1.0)
    sy = sy if math.isfinite(sy) and sy != 0 else -abs(sx)
    return sx, sy


def _crs_name(inputs: ReportInputs) -> str:
    """The CRS to name on the axes: ``inputs.crs``, else ``EPSG:<code>`` from the grid mapping, else ''."""
    if inputs.crs:
        return inputs.crs
    ds = inputs.velocity
    if ds is None:
        return ""
    for var in ds.variables.values():
        epsg = var.attrs.get("spatial_epsg")
        if epsg is not None:
            return f"EPSG:{int(epsg)}"
    return ""


def _map_grid(ds: xr.Dataset, shape: tuple[int, int], crs: str) -> Any:
    grid_type = _figures().MapGrid
    x, y, geo = _coords(ds, shape)
    sx, sy = _steps(ds, x, y)
    units = str(ds["x"].attrs.get("units", "m")) if geo else ""
    degrees = units.startswith("degree")
    k = 1.0 if (degrees or not geo) else 1e-3
    where = f", {crs}" if crs else ""
    if not geo:
        labels = ("column (pixels)", "row (pixels, from the bottom)")
    elif degrees:
        labels = (f"longitude (°{where})", f"latitude (°{where})")
    else:
        labels = (f"easting (km{where})", f"northing (km{where})")
    left, right = (x[0] - sx / 2) * k, (x[-1] + sx / 2) * k
    # row 0 drawn at the top when y decreases down the rows (north-up), so north is always up
    low, high = sorted(((y[0] - sy / 2) * k, (y[-1] + sy / 2) * k))
    origin = "upper" if sy < 0 else "lower"
    grid = grid_type(x * k, y * k, (left, right, low, high), origin, *labels)
    return grid, k


# ---------------------------------------------------------------------------------------------- pick_points


def pick_points(velocity: xr.Dataset, n: int = 4) -> list[tuple[str, float, float]]:
    """A few telling points of a velocity map, on valid pixels only.

    In order: ``"fastest"`` (the maximum speed), ``"median"`` (median speed of the moving pixels),
    ``"stable"`` (the slowest pixel; named ``"slowest"`` when even it moves), then ``"upper-quartile"``,
    ``"lower-quartile"`` and ``"point-<k>"`` at other quantiles of the moving speeds. After the first, points
    are kept apart by at least 1/8 of the smaller grid side when possible.

    Parameters
    ----------
    velocity
        Dataset with ``v`` (or ``vx`` and ``vy``), m/yr, dims ``("y", "x")``; ``v_error`` helps tell moving
        from stable pixels (moving: speed above 3 x the median ``v_error`` and above 10 % of the maximum);
        with ``count``, only nodes seen by enough pairs are picked (:func:`well_observed`).
    n
        Number of points wanted; fewer are returned when the map has fewer valid pixels.

    Returns
    -------
    list of (name, x, y)
        Pixel-centre map coordinates, CRS units. Without x/y coordinates in the Dataset: the column index
        and the row index counted from the bottom row (the convention of the report's pixel maps).
    """
    v = _speed(velocity)
    if v is None or n <= 0:
        return []
    valid = np.isfinite(v)
    trusted, _ = well_observed(velocity)
    if trusted is not None and trusted.any():
        valid &= trusted
    for name in ("vx", "vy"):
        comp = _field(velocity, name)
        if comp is not None and comp.shape == v.shape:
            valid &= np.isfinite(comp)
    rows, cols = np.nonzero(valid)
    if rows.size == 0:
        return []
    speeds = v[rows, cols]
    err = _field(velocity, "v_error")
    err_ok = err is not None and err.shape == v.shape and bool(np.isfinite(err[valid]).any())
    noise = float(np.nanmedian(err[valid])) if err_ok and err is not None else 0.0
    threshold = max(3.0 * noise, 0.1 * float(speeds.max()))
    moving = speeds[speeds >= threshold] if (speeds >= threshold).any() else speeds
    targets = [("fastest", float(speeds.max())), ("median", float(np.median(moving)))]
    slow = float(speeds.min())
    targets.append(("stable" if slow < threshold else "slowest", slow))
    for i, q in enumerate(_extra_quantiles(max(0, n - 3))):
        name = {0: "upper-quartile", 1: "lower-quartile"}.get(i, f"point-{i + 4}")
        targets.append((name, float(np.quantile(moving, q))))
    min_sep = max(1.0, min(v.shape) / 8.0)
    x, y, _ = _coords(velocity, v.shape)
    taken = np.zeros(rows.size, dtype=bool)
    far = np.ones(rows.size, dtype=bool)
    out: list[tuple[str, float, float]] = []
    for name, target in targets[:n]:
        pool = far & ~taken if (far & ~taken).any() else ~taken
        if not pool.any():
            break
        cost = np.where(pool, np.abs(speeds - target), np.inf)
        i = int(np.argmin(cost))
        taken[i] = True
        far &= np.hypot(rows - rows[i], cols - cols[i]) >= min_sep
        out.append((name, float(x[cols[i]]), float(y[rows[i]])))
    return out


def _extra_quantiles(k: int) -> list[float]:
    base = [0.75, 0.25, 0.9, 0.1]
    if k <= len(base):
        return base[:k]
    return base + [float(q) for q in np.linspace(0.05, 0.95, k - len(base) + 2)[1:-1]]


# ---------------------------------------------------------------------------------------------- formatting


# ---------------------------------------------------------------------------------------------- the report


@dataclass
class _Build:
    """What the section builders gather: figures (quicklook name -> PNG), notices and computed facts."""

    figures: dict[str, bytes] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    stats: list[tuple[str, str]] = field(default_factory=list)
    quicklooks: Path | None = None
    cache: FigureCache | None = None

    def draw(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> bytes:
        """The figure ``name`` drawn by ``fn``, or the quicklook an earlier report drew from the same."""
        if self.cache is None and self.quicklooks is not None:
            figs = _figures()
            salt = str(getattr(sys.modules.get("matplotlib"), "__version__", ""))
            self.cache = FigureCache(self.quicklooks, Path(figs.__file__), salt)
        return self.cache.draw(name, fn, *args, **kwargs) if self.cache else fn(*args, **kwargs)


def write_report(inputs: ReportInputs, out_dir: Path) -> Path:
    """Write the HTML run report and its PNG quicklooks.

    Parameters
    ----------
    inputs
        What to show (see :class:`ReportInputs`).
    out_dir
        Output folder, created if needed. Receives ``report.html`` (self-contained: figures as base64 PNG
        data URIs, inline CSS, no script, nothing fetched from the network) and ``quicklooks/*.png``
        (``velocity.png``, ``velocity_error.png``, ``truth.png``, ``network.png``, ``errors.png``,
        ``series.png``; those without data are not written and stale copies are removed). A figure an
        earlier report of the folder drew from the same inputs is reused, not drawn again
        (:class:`~geodeform.workflows._figure_cache.FigureCache`, index ``quicklooks/.figures.json``).

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.
    """
    out_dir = Path(out_dir)
    quick = out_dir / "quicklooks"
    quick.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    b = _Build(quicklooks=quick)
    maps_html = _maps_section(inputs, b)
    maps_html += "".join(_extra_section(section, b) for section in inputs.sections)
    series_html = _series_section(inputs, b)
    network_html = _network_section(inputs, b)
    pairs_html = _pairs_section(inputs, b)
    sections = [
        _summary_section(inputs, b),
        maps_html,
        series_html,
        network_html,
        pairs_html,
        _parameters_section(inputs),
    ]
    page = _page(inputs, [s for s in sections if s], created)
    for name in dict.fromkeys([*QUICKLOOKS, *b.figures]):
        path = quick / name
        if name in b.figures and not (b.cache and name in b.cache.reused):
            with atomic_output(path) as tmp:
                tmp.write_bytes(b.figures[name])
        elif name not in b.figures and path.exists():
            path.unlink()  # from an earlier run of this folder; it would not match the report
    if b.cache is not None:
        b.cache.save(set(b.figures))
    report = out_dir / "report.html"
    with atomic_output(report) as tmp:
        tmp.write_text(page, encoding="utf-8")
    reused = len(b.cache.reused) if b.cache else 0
    log.info("wrote %s and %d quicklooks (%d unchanged, not drawn again)", report, len(b.figures), reused)
    return report


def _pair_counts(pairs: Sequence[PairSummary]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for p in pairs:
        counts[p.status] = counts.get(p.status, 0) + 1
    return counts


def _summary_section(inputs: ReportInputs, b: _Build) -> str:
    counts = _pair_counts(inputs.pairs)
    n = len(inputs.pairs)
    if n == 0:
        b.notices.insert(0, "No image pair was formed: nothing was measured.")
    elif counts["ok"] == 0:
        b.notices.insert(0, f"All {n} image pairs failed or were skipped: no velocity could be measured.")
    elif counts["failed"]:
        b.notices.append(f"{counts['failed']} of {n} image pairs failed (see the pair table).")
    degraded = [p for p in inputs.pairs if p.status == "ok" and p.degraded]
    if degraded:
        b.notices.append(
            f"{len(degraded)} of {n} image pairs are degraded (e.g. co-registration from the other pairs of "
            "their dates: too little stable ground); see the pair table."
        )
    dates = sorted(d for d in (_parse_date(s) for s in inputs.dates) if d is not None)
    facts: list[tuple[str, str]] = []
    if dates:
        facts.append(
            ("period", f"{dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d} ({len(inputs.dates)} acquisitions)")
        )
    facts.append(("image pairs", ", ".join(f"{counts[s]} {s}" for s in counts) + f" (of {n})"))
    facts.extend(b.stats)
    parts = ['<section id="summary"><h2>Summary</h2>']
    parts += [f'<p class="notice">{_e(msg)}</p>' for msg in b.notices]
    parts += [f'<p class="note">{_e(msg)}</p>' for msg in inputs.notes]
    if inputs.summary:
        cards = "".join(
            f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
            for k, v in inputs.summary.items()
        )
        parts.append(f'<div class="cards">{cards}</div>')
    parts.append(_kv_table(facts))
    parts.append("</section>")
    return "\n".join(parts)


def _maps_section(inputs: ReportInputs, b: _Build) -> str:
    figs = _figures()
    ds = inputs.velocity
    v = _speed(ds)
    if ds is None or v is None:
        if not inputs.sections:
            b.notices.append("No velocity map was produced.")
        return ""
    valid = np.isfinite(v)
    crs = _crs_name(inputs)
    grid, k = _map_grid(ds, v.shape, crs)
    x, y, geo = _coords(ds, v.shape)
    sx, sy = _steps(ds, x, y)
    if not geo:
        size = " (no map coordinates)"
    elif k != 1.0:  # projected, metres
        size = f" of {abs(sx):g} × {abs(sy):g} m"
    else:
        size = f" of {abs(sx):g} × {abs(sy):g}°"
    b.stats.append(("velocity grid", f"{v.shape[0]} × {v.shape[1]} pixels{size}"))
    b.stats.append(("coordinate reference system", crs or "not given"))
    b.stats.append(("valid velocity pixels", f"{100 * valid.mean():.1f} %"))
    if not valid.any():
        b.notices.append("The velocity map has no valid pixel.")
        return ""
    trusted, need = well_observed(ds)
    use = valid if trusted is None or not trusted.any() else trusted
    s = v[use]
    seen = "" if trusted is None else f" over the {use.sum()} pixels seen by ≥ {need} pairs"
    b.stats.append(
        (
            "speed (m/yr)",
            f"median {np.median(s):.3g}, 95th percentile {np.percentile(s, 95):.3g}, 99th percentile "
            f"{np.percentile(s, 99):.3g}{seen}",
        )
    )
    if trusted is not None and (valid & ~trusted).any():
        few = valid & ~trusted
        b.stats.append(
            (
                f"pixels seen by fewer than {need} pairs",
                f"{few.sum()} ({few.mean():.1%} of the map), left out of the statistics and the colour scale "
                f"(their speeds reach {np.nanmax(v[few]):.3g} m/yr)",
            )
        )
    markers = [figs.Marker(p.name, p.x * k, p.y * k) for p in inputs.points]
    vx, vy = _field(ds, "vx"), _field(ds, "vy")
    b.figures["velocity.png"] = b.draw(
        "velocity.png", figs.velocity_figure, grid, v, vx, vy, markers, scale=use
    )
    parts = ['<section id="maps"><h2>Velocity maps</h2>']
    parts.append(
        _img(
            b.figures["velocity.png"],
            "velocity map",
            "Mean speed (colour, m/yr) and flow direction (arrows, subsampled; the key gives the arrow "
            "length of the speed written beside it). Circles: points of the time series below. "
            "Grey: no data. " + (f"Coordinates in {crs}." if crs else ""),
        )
    )
    err = _field(ds, "v_error")
    if err is not None and err.shape == v.shape:
        if np.isfinite(err).any():
            b.stats.append(("median speed error (m/yr)", f"{np.nanmedian(err[use]):.3g}"))
        missing = valid & ~np.isfinite(err)
        if missing.any():
            b.notices.append(f"{missing.sum()} valid pixels have no speed error (v_error NaN).")
        b.figures["velocity_error.png"] = b.draw("velocity_error.png", figs.error_figure, grid, err)
        parts.append(
            _img(
                b.figures["velocity_error.png"],
                "velocity error map",
                "1-sigma speed error (v_error, m/yr): component errors projected on the flow direction.",
            )
        )
    count = _field(ds, "count")
    if count is not None and count.shape == v.shape and valid.any():
        used = count[valid]
        b.stats.append(
            (
                "image pairs used per pixel",
                f"median {np.median(used):.0f} (min {used.min():.0f}, max {used.max():.0f})",
            )
        )
    parts.append(_truth(inputs, v, grid, b))
    parts.append("</section>")
    return "\n".join(parts)


def _truth(inputs: ReportInputs, v: NDArray[np.float64], grid: Any, b: _Build) -> str:
    figs = _figures()
    if inputs.speed_truth is None:
        return ""
    truth = np.asarray(
        inputs.speed_truth.values if hasattr(inputs.speed_truth, "values") else inputs.speed_truth
    )
    if truth.shape != v.shape:
        b.notices.append(
            f"The known speed has shape {truth.shape}, the velocity grid {v.shape}: not compared."
        )
        return ""
    truth = truth.astype(np.float64)
    diff = (v - truth)[np.isfinite(v) & np.isfinite(truth)]
    if diff.size:
        rmse = float(np.sqrt(np.mean(diff**2)))
        nmad = float(1.4826 * np.median(np.abs(diff - np.median(diff))))
        b.stats.append(
            (
                "speed error vs truth (m/yr)",
                f"RMSE {rmse:.3g}, median bias {np.median(diff):+.3g}, NMAD {nmad:.3g} ({diff.size} pixels)",
            )
        )
    b.figures["truth.png"] = b.draw("truth.png", figs.truth_figure, grid, v, truth)
    return _img(
        b.figures["truth.png"],
        "known speed and speed error",
        "Known speed (same colour scale as the estimate) and estimated minus known speed "
        "(m/yr; red: too fast, blue: too slow).",
    )


def _series_section(inputs: ReportInputs, b: _Build) -> str:
    figs = _figures()
    panels, rows = [], []
    v = _speed(inputs.velocity)
    for p in inputs.points:
        dates = [_parse_date(d) for d in p.dates]
        keep = np.array([d is not None for d in dates], dtype=bool)
        if not keep.any():
            continue

        def sel(a: Any, keep: NDArray[np.bool_] = keep) -> Any:
            return None if a is None else np.asarray(a, np.float64)[keep]

        panels.append(
            figs.SeriesPanel(
                p.name,
                [d for d in dates if d is not None],
                sel(p.east),
                sel(p.north),
                sel(p.sigma_east),
                sel(p.sigma_north),
                sel(p.truth_east),
                sel(p.truth_north),
            )
        )
        rows.append(
            [
                _e(p.name),
                _num(p.x, "{:.1f}"),
                _num(p.y, "{:.1f}"),
                _num(_speed_at(inputs.velocity, v, p.x, p.y)),
                _num(_last(p.east)),
                _num(_last(p.north)),
            ]
        )
    if not panels:
        return ""
    b.figures["series.png"] = b.draw("series.png", figs.series_figure, panels)
    head = ["point", "x (m)", "y (m)", "map speed (m/yr)", "east at last date (m)", "north at last date (m)"]
    return "\n".join(
        [
            '<section id="series"><h2>Time series at selected points</h2>',
            _img(
                b.figures["series.png"],
                "displacement time series",
                "Cumulative displacement since the first date (metres, +east / +north) with 1-sigma "
                "error bars"
                + (
                    "; black line: known displacement."
                    if any(p.truth_east is not None for p in panels)
                    else "."
                ),
            ),
            _table(head, rows, "num"),
            "</section>",
        ]
    )


def _last(a: NDArray[np.float64]) -> float:
    finite = a[np.isfinite(a)]
    return float(finite[-1]) if finite.size else math.nan


def _speed_at(ds: xr.Dataset | None, v: NDArray[np.float64] | None, x: float, y: float) -> float:
    if ds is None or v is None:
        return math.nan
    xs, ys, _ = _coords(ds, v.shape)
    return float(v[int(np.argmin(np.abs(ys - y))), int(np.argmin(np.abs(xs - x)))])


def _network_section(inputs: ReportInputs, b: _Build) -> str:
    figs = _figures()
    dates = sorted({d for d in (_parse_date(s) for s in inputs.dates) if d is not None})
    arcs = []
    for p in inputs.pairs:
        ref, sec = _parse_date(p.reference), _parse_date(p.secondary)
        if ref is not None and sec is not None:
            arcs.append((ref, sec, p.status))
    if not dates:
        dates = sorted({d for a in arcs for d in a[:2]})
    if not dates and not arcs:
        return ""
    counts = _pair_counts(inputs.pairs)
    title = f"Pair network: {len(dates)} dates, {len(inputs.pairs)} pairs ({counts['ok']} ok)"
    b.figures["network.png"] = b.draw("network.png", figs.network_figure, dates, arcs, title)
    return "\n".join(
        [
            '<section id="network"><h2>Pair network</h2>',
            _img(
                b.figures["network.png"],
                "pair network",
                "Each image pair is an arc from its reference to its secondary date; arc height is the time "
                "between them. Solid blue: processed; dashed red: failed; dotted grey: skipped.",
            ),
            "</section>",
        ]
    )


def _pairs_section(inputs: ReportInputs, b: _Build) -> str:
    figs = _figures()
    pairs = inputs.pairs
    if not pairs:
        return ""
    rows = []
    for i, p in enumerate(pairs, 1):
        status = _e(p.status)
        shown = f'<span class="st-{status}">{status}</span>'
        if p.status == "ok" and p.degraded:
            shown = '<span class="st-degraded">ok, degraded</span>'
        note = "; ".join(t for t in (p.degraded, p.message) if t)
        rows.append(
            [
                str(i),
                _e(_short_date(p.reference)),
                _e(_short_date(p.secondary)),
                _num(p.dt_days, "{:.0f}"),
                shown,
                _pct(p.coverage),
                _num(p.stable_nmad_x),
                _num(p.stable_nmad_y),
                _pct(p.rejected),
                _e(note),
            ]
        )
    arr = {
        k: np.array([float(getattr(p, k)) for p in pairs], dtype=np.float64)
        for k in ("stable_nmad_x", "stable_nmad_y", "coverage", "rejected")
    }
    b.figures["errors.png"] = b.draw(
        "errors.png",
        figs.pair_errors_figure,
        [str(i) for i in range(1, len(pairs) + 1)],
        arr["stable_nmad_x"],
        arr["stable_nmad_y"],
        arr["coverage"],
        arr["rejected"],
        ["degraded" if p.status == "ok" and p.degraded else p.status for p in pairs],
    )
    head = [
        "#",
        "reference",
        "secondary",
        "Δt (days)",
        "status",
        "coverage (%)",
        "stable NMAD x (m/yr)",
        "stable NMAD y (m/yr)",
        "rejected (%)",
        "message",
    ]
    return "\n".join(
        [
            '<section id="pairs"><h2>Per-pair error statistics</h2>',
            _img(
                b.figures["errors.png"],
                "per-pair stable-ground noise",
                "Top: NMAD of vx and vy on stable ground after corrections (m/yr), a measure of each pair's "
                "noise; crosses mark failed or skipped pairs. Bottom: share of valid nodes and of nodes "
                "removed by the outlier filters.",
            ),
            _table(head, rows, "num pairs"),
            "</section>",
        ]
    )


def _extra_section(section: ReportSection, b: _Build) -> str:
    parts = [f'<section id="{_e(section.id)}"><h2>{_e(section.title)}</h2>']
    for name, png, caption in section.figures:
        b.figures[name] = png
        parts.append(_img(png, name, caption))
    if section.facts:
        parts.append(_kv_table(section.facts))
    if section.rows:
        parts.append(_table(section.head, [[_e(c) for c in r] for r in section.rows], "num"))
    parts.append("</section>")
    return "\n".join(parts)


def _parameters_section(inputs: ReportInputs) -> str:
    rows = [(k, str(v)) for k, v in _flatten(inputs.parameters)]
    if not rows:
        return ""
    return f'<section id="parameters"><h2>Run parameters</h2>\n{_kv_table(rows, "kv params")}\n</section>'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa;line-height:1.45}
header,main,footer{max-width:1100px;margin:0 auto;padding:0 1.2rem}
header{padding-top:1.2rem}h1{margin:.2rem 0;font-size:1.7rem}h2{border-bottom:2px solid #ddd;
padding-bottom:.2rem;margin-top:2rem}
.sub{color:#555;margin:0}nav a{margin-right:1rem;color:#0b5394}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.2rem 1.2rem 1rem;margin:1.2rem 0}
figure{margin:1rem 0}img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#444;font-size:.92rem;margin-top:.3rem}
table{border-collapse:collapse;font-size:.9rem;margin:.6rem 0;width:100%}
th,td{border-bottom:1px solid #e6e6e6;padding:.25rem .5rem;text-align:left;vertical-align:top}
thead th{background:#f0f0f0;position:sticky;top:0}table.num td{font-variant-numeric:tabular-nums}
table.kv th{width:32%;font-weight:600;color:#333}
table.params td{font-family:ui-monospace,Menlo,Consolas,monospace}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:.8rem 0}
.card{background:#eef4fa;border-radius:6px;padding:.6rem .9rem;min-width:12rem}
.card .k{font-size:.85rem;color:#444}.card .v{font-size:1.2rem;font-weight:600}
.notice{background:#fdecea;border-left:4px solid #D55E00;padding:.5rem .8rem}
.note{background:#fff8e1;border-left:4px solid #E69F00;padding:.5rem .8rem}
.st-ok{color:#0072B2;font-weight:600}.st-failed{color:#D55E00;font-weight:600}.st-skipped{color:#777}
.st-degraded{color:#E69F00;font-weight:600}
footer{color:#555;font-size:.85rem;padding-bottom:2rem}
"""


def _page(inputs: ReportInputs, sections: Sequence[str], created: str) -> str:
    present = [s.split('"', 2)[1] for s in sections]
    names = {
        "summary": "Summary",
        "maps": "Maps",
        "series": "Time series",
        "network": "Pair network",
        "pairs": "Pair statistics",
        "parameters": "Parameters",
        **{section.id: section.title for section in inputs.sections},
    }
    nav = " ".join(f'<a href="#{i}">{names[i]}</a>' for i in present if i in names)
    credits = "".join(f"<p>{_e(a)}</p>" for a in inputs.attribution)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(inputs.title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<header><h1>{_e(inputs.title)}</h1>",
            f'<p class="sub">geodeform run report, created {_e(created)}</p>',
            f"<nav>{nav}</nav></header>",
            "<main>",
            *sections,
            "</main>",
            "<footer>",
            credits,
            "<p>Sign convention: vx / east positive toward increasing map x (east), vy / north toward "
            "increasing map y (north); velocities in m/yr (365.25-day year), displacements in metres.</p>",
            f"<p>Made with geodeform {_e(__version__)} on {_e(created)}.</p>",
            "</footer></body></html>",
            "",
        ]
    )
