"""Figures of the run report, rendered with matplotlib's Agg canvas to PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, never through ``pyplot``: no global backend switch
(a caller in Jupyter keeps its own), no figure registry to leak, safe in worker threads.

Map conventions: axes in km of the grid's CRS, +x east to the right, +y north up; arrows point in the
direction of motion (+vx east, +vy north).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
STATUS_COLOURS = {"ok": "#0072B2", "failed": "#D55E00", "skipped": "#999999"}
STATUS_STYLES = {"ok": "-", "failed": "--", "skipped": ":"}
_EAST_COLOUR, _NORTH_COLOUR, _TRUTH_COLOUR = "#0072B2", "#E69F00", "black"
_DPI = 100
_ARROWS = 25  # arrows per side of the map
_NO_DATA = "0.82"  # colour of NaN pixels


@dataclass(frozen=True)
class MapGrid:
    """Where the pixels of a map are: imshow extent and pixel-centre coordinates, in axis units (km)."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    extent: tuple[float, float, float, float]
    origin: Literal["upper", "lower"]
    xlabel: str
    ylabel: str

    @property
    def spacing(self) -> float:
        return abs(self.extent[1] - self.extent[0]) / self.x.size


@dataclass(frozen=True)
class Marker:
    """A labelled point on the map (axis units)."""

    name: str
    x: float
    y: float


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` as PNG (Agg); no timestamp in the metadata so reruns give identical files."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _cmap(name: str) -> Colormap:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=_NO_DATA)


def _map_axes(grid: MapGrid, panels: int) -> tuple[Figure, list[tuple[Axes, Axes]]]:
    """A figure of ``panels`` maps side by side, each with its colour-bar axes, sized to the map's aspect.

    Fixed margins in inches instead of constrained layout, which doubles the drawing time.
    """
    w = abs(grid.extent[1] - grid.extent[0])
    h = abs(grid.extent[3] - grid.extent[2])
    aspect = h / w if w > 0 and h > 0 else 1.0
    map_w = 6.2 if panels == 1 else 4.6
    map_h = min(max(map_w * aspect, 2.6), 7.5)
    map_w = min(map_w, map_h / aspect) if aspect > 0 else map_w
    left, gap, bar, bar_label, bottom, top = 1.15, 0.15, 0.18, 0.95, 0.65, 0.55
    panel_w = left + map_w + gap + bar + bar_label
    width, height = panel_w * panels, bottom + map_h + top
    fig = Figure(figsize=(width, height))
    pairs = []
    for i in range(panels):
        x0 = i * panel_w + left
        ax = fig.add_axes((x0 / width, bottom / height, map_w / width, map_h / height))
        cax = fig.add_axes(((x0 + map_w + gap) / width, bottom / height, bar / width, map_h / height))
        pairs.append((ax, cax))
    return fig, pairs


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")


def _robust_max(values: NDArray[Any], q: float = 99.5) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(finite, q))
    if top <= 0:
        top = float(finite.max())
    return top if top > 0 else 1.0


def _nice(value: float) -> float:
    """1, 2 or 5 times a power of ten, the nearest below ``value``."""
    if not value > 0 or not math.isfinite(value):
        return 0.0
    k = math.floor(math.log10(value))
    for m in (5, 2, 1):
        if m * 10**k <= value:
            return float(m * 10**k)
    return float(10**k)


def _show(
    axes: tuple[Axes, Axes],
    data: NDArray[Any],
    grid: MapGrid,
    cmap: str,
    label: str,
    vmin: float,
    vmax: float,
) -> None:
    ax, cax = axes
    im = ax.imshow(
        np.ma.masked_invalid(data),
        extent=grid.extent,
        origin=grid.origin,
        cmap=_cmap(cmap),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    finite = np.isfinite(data)
    over = finite.any() and float(data[finite].max()) > vmax
    ax.figure.colorbar(im, cax=cax, label=label, extend="max" if over else "neither")
    ax.set_xlabel(grid.xlabel)
    ax.set_ylabel(grid.ylabel)
    ax.ticklabel_format(useOffset=False, style="plain")  # full km values, no "+6.7e3" offset
    ax.set_xlim(grid.extent[0], grid.extent[1])
    ax.set_ylim(grid.extent[2], grid.extent[3])
    if not finite.any():
        _empty_note(ax, "no valid pixel")


def _quiver(ax: Axes, grid: MapGrid, vx: NDArray[Any], vy: NDArray[Any]) -> None:
    ny, nx = vx.shape
    sy, sx = max(1, math.ceil(ny / _ARROWS)), max(1, math.ceil(nx / _ARROWS))
    r0, c0 = sy // 2, sx // 2
    u, v = vx[r0::sy, c0::sx], vy[r0::sy, c0::sx]
    speed = np.hypot(u, v)
    ok = np.isfinite(speed)
    if not ok.any():
        return
    typical = float(np.percentile(speed[ok], 95))
    ref = _nice(typical)
    if ref <= 0:
        return
    xx, yy = np.meshgrid(grid.x[c0::sx], grid.y[r0::sy])
    # an arrow of the 95th-percentile speed spans 90 % of the distance between two arrows
    scale = typical / (0.9 * grid.spacing * min(sx, sy))
    q = ax.quiver(
        xx[ok],
        yy[ok],
        u[ok],
        v[ok],
        angles="xy",
        pivot="middle",
        scale_units="xy",
        scale=scale,
        color="white",
        edgecolor="black",
        linewidth=0.4,
        width=0.004,
    )
    ax.quiverkey(q, 0.9, 1.035, ref, f"{ref:g} m/yr", labelpos="W", coordinates="axes")


def _mark(ax: Axes, grid: MapGrid, markers: Sequence[Marker]) -> None:
    x0, x1, y0, y1 = grid.extent
    for m in markers:
        ax.plot(m.x, m.y, "o", ms=8, mfc="none", mec="black", mew=2.2)
        ax.plot(m.x, m.y, "o", ms=8, mfc="none", mec="#F0E442", mew=1.2)
        # labels point inward near the right / top edges so they stay on the map
        right = (m.x - x0) / (x1 - x0) > 0.8 if x1 != x0 else False
        high = (m.y - y0) / (y1 - y0) > 0.9 if y1 != y0 else False
        ax.annotate(
            m.name,
            (m.x, m.y),
            xytext=(-7 if right else 7, -7 if high else 7),
            textcoords="offset points",
            ha="right" if right else "left",
            va="top" if high else "bottom",
            fontsize=9,
            color="black",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    ax.set_xlim(x0, x1)  # a point off the grid must not widen the map
    ax.set_ylim(y0, y1)


def velocity_figure(
    grid: MapGrid,
    v: NDArray[Any],
    vx: NDArray[Any] | None,
    vy: NDArray[Any] | None,
    markers: Sequence[Marker],
    scale: NDArray[Any] | None = None,
) -> bytes:
    """Speed map with flow arrows; the colour scale from the pixels of ``scale`` (default: all)."""
    fig, [axes] = _map_axes(grid, 1)
    top = _robust_max(v if scale is None else np.where(scale, v, np.nan))
    _show(axes, v, grid, "viridis", "speed |v| (m/yr)", 0.0, top)
    if vx is not None and vy is not None:
        _quiver(axes[0], grid, vx, vy)
    _mark(axes[0], grid, markers)
    axes[0].set_title("Mean velocity", loc="left")
    return png_bytes(fig)


def error_figure(grid: MapGrid, v_error: NDArray[Any]) -> bytes:
    fig, [axes] = _map_axes(grid, 1)
    _show(axes, v_error, grid, "magma", "speed error, 1σ (m/yr)", 0.0, _robust_max(v_error, 99))
    axes[0].set_title("Speed uncertainty (v_error)", loc="left")
    return png_bytes(fig)


def truth_figure(grid: MapGrid, v: NDArray[Any], truth: NDArray[Any]) -> bytes:
    fig, panels = _map_axes(grid, 2)
    _show(panels[0], truth, grid, "viridis", "known speed (m/yr)", 0.0, _robust_max(v))
    panels[0][0].set_title("Known speed (truth)", loc="left")
    err = v - truth
    lim = _robust_max(np.abs(err), 99)
    _show(panels[1], err, grid, "RdBu_r", "estimated − known speed (m/yr)", -lim, lim)
    panels[1][0].set_title("Estimate − truth", loc="left")
    return png_bytes(fig)


def network_figure(
    dates: Sequence[datetime], pairs: Sequence[tuple[datetime, datetime, str]], title: str
) -> bytes:
    """Each pair an arc from its reference to its secondary date; arc height = Δt (days)."""
    fig = Figure(figsize=(9.0, 4.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.9)
    ax = fig.add_subplot()
    theta = np.linspace(0.0, np.pi, 40)
    top = 1.0
    for status in ("skipped", "ok", "failed"):  # failures drawn last, on top
        arcs = []
        for ref, sec, st in pairs:
            if st == status or (status == "skipped" and st not in STATUS_COLOURS):
                t0, t1 = mdates.date2num(ref), mdates.date2num(sec)
                span = abs(t1 - t0)
                arcs.append(
                    np.column_stack([(t0 + t1) / 2 + (t1 - t0) / 2 * np.cos(theta), span * np.sin(theta)])
                )
                top = max(top, span)
        if arcs:  # one collection per status: fast with hundreds of pairs
            lc = LineCollection(
                arcs,
                colors=STATUS_COLOURS[status],
                linestyles=STATUS_STYLES[status],
                linewidths=1.6 if status == "failed" else 1.1,
                alpha=0.9,
            )
            ax.add_collection(lc)
    x = mdates.date2num(list(dates)) if dates else np.array([])
    if x.size:
        ax.plot(x, np.zeros(x.size), "|", ms=14, mew=1.5, color="black", clip_on=False)
        pad = max(1.0, 0.03 * float(x.max() - x.min()))
        ax.set_xlim(float(x.min()) - pad, float(x.max()) + pad)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylim(0, top * 1.3)  # room for the legend
    ax.set_ylabel("pair time span Δt (days)")
    ax.set_xlabel("acquisition date")
    counts = {s: sum(1 for p in pairs if p[2] == s) for s in STATUS_COLOURS}
    handles = [
        Line2D([], [], color=STATUS_COLOURS[s], ls=STATUS_STYLES[s], label=f"{s} ({counts[s]})")
        for s in STATUS_COLOURS
    ]
    handles.append(Line2D([], [], color="black", marker="|", ls="none", ms=10, label="acquisition"))
    ax.legend(handles=handles, loc="upper left", fontsize=9, ncols=4)
    ax.set_title(title, loc="left")
    if not pairs:
        _empty_note(ax, "no image pair")
    return png_bytes(fig)


def _bars(ax: Axes, x: NDArray[Any], heights: NDArray[Any], width: float, **kw: Any) -> None:
    """Bars as one line collection (``ax.bar`` makes one patch per bar: slow for many pairs)."""
    ok = np.isfinite(heights)
    ax.vlines(x[ok], 0, heights[ok], linewidth=width, **kw)


def pair_errors_figure(
    labels: Sequence[str],
    nmad_x: NDArray[Any],
    nmad_y: NDArray[Any],
    coverage: NDArray[Any],
    rejected: NDArray[Any],
    statuses: Sequence[str],
) -> bytes:
    """Stable-ground NMAD per pair (grouped bars) above coverage / rejected share per pair; ``statuses``
    are ``ok``, ``degraded`` (ok, marked with a triangle), ``failed`` or ``skipped`` (crosses)."""
    n = len(labels)
    width = max(7.0, min(0.2 * n + 3.0, 16.0))
    fig = Figure(figsize=(width, 6.0))
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.1, top=0.93, hspace=0.12)
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    idx = np.arange(1, n + 1, dtype=np.float64)
    # bar width: 35 % of the distance between pairs, in points
    lw = max(0.8, min(12.0, 0.35 * (width - 1.1) * 72 / max(n, 1)))
    off = 0.2
    _bars(ax, idx - off, nmad_x, lw, color=_EAST_COLOUR, label="east (vx)")
    _bars(ax, idx + off, nmad_y, lw, color=_NORTH_COLOUR, label="north (vy)")
    failed = np.array([s not in ("ok", "degraded") for s in statuses], dtype=bool)
    if failed.any():
        ax.plot(
            idx[failed], np.zeros(failed.sum()), "x", color="#D55E00", ms=9, mew=2, label="failed / skipped"
        )
    degraded = np.array([s == "degraded" for s in statuses], dtype=bool)
    if degraded.any():
        ax.plot(idx[degraded], np.zeros(degraded.sum()), "^", color="#E69F00", ms=8, label="degraded")
    ax.set_ylabel("stable-ground NMAD (m/yr)")
    ax.set_title("Noise on stable ground, per pair (after corrections)", loc="left")
    finite = np.concatenate([nmad_x, nmad_y])
    finite = finite[np.isfinite(finite)]
    ax.set_ylim(0, float(finite.max()) * 1.15 if finite.size and finite.max() > 0 else 1.0)
    if not finite.size:
        _empty_note(ax, "no stable-ground statistics")
    ax.legend(fontsize=9, loc="upper right", ncols=3)
    _bars(ax2, idx - off, 100 * coverage, lw, color="#009E73", label="valid nodes")
    _bars(ax2, idx + off, 100 * rejected, lw, color="#CC79A7", label="rejected by filters")
    ax2.set_ylabel("share of nodes (%)")
    ax2.set_ylim(0, 118)
    ax2.legend(fontsize=9, loc="upper right", ncols=2)
    ax2.set_xlabel("pair (number in the table)")
    ax2.set_xlim(0.4, n + 0.6)
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(n, 25)))
    return png_bytes(fig)


@dataclass(frozen=True)
class SeriesPanel:
    name: str
    dates: list[datetime]
    east: NDArray[Any]
    north: NDArray[Any]
    sigma_east: NDArray[Any] | None
    sigma_north: NDArray[Any] | None
    truth_east: NDArray[Any] | None
    truth_north: NDArray[Any] | None


def series_figure(panels: Sequence[SeriesPanel]) -> bytes:
    """One panel per point (two per row): east and north cumulative displacement (m) vs date with 1-σ bars,
    truth as a black line (solid east, dashed north)."""
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    height = 1.0 + 2.9 * nrows
    fig = Figure(figsize=(10.0 if ncols == 2 else 7.5, height))
    fig.subplots_adjust(
        left=0.09 if ncols == 2 else 0.12,
        right=0.98,
        bottom=0.5 / height,
        top=1 - 0.6 / height,
        hspace=0.35,
        wspace=0.22,
    )
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, p in zip(axes[: len(panels)], panels, strict=True):
        comps = (
            ("east", p.east, p.sigma_east, p.truth_east, _EAST_COLOUR, "-"),
            ("north", p.north, p.sigma_north, p.truth_north, _NORTH_COLOUR, "--"),
        )
        for comp, val, sig, truth, colour, ls in comps:
            ax.errorbar(
                p.dates, val, yerr=sig, fmt="o-", ms=3.5, lw=1.0, capsize=2.5, color=colour, label=comp
            )
            if truth is not None:
                ax.plot(p.dates, truth, ls, color=_TRUTH_COLOUR, lw=1.1, label=f"{comp}, truth")
        ax.set_ylabel("displacement (m)")
        ax.set_title(p.name, loc="left", fontsize=10)
        if not (np.isfinite(p.east).any() or np.isfinite(p.north).any()):
            _empty_note(ax, "no estimate")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, loc="upper left")  # "best" is slow: it tests every data point
    for ax in axes[-ncols:]:
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    for ax in axes[len(panels) - ncols : len(panels)]:
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(
        "Cumulative displacement since the first date (+east, +north), error bars 1σ", x=0.01, ha="left"
    )
    return png_bytes(fig)
