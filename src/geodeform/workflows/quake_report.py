"""The quake chain's section of the run report: the offset mosaic with the trace, the slip along strike, and
what each tile contributed (pairs stacked, bias, stripe/jitter correction).

Figures are rendered on matplotlib's Agg canvas (no pyplot); matplotlib is imported when a figure is made.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from geodeform.io import apply_transform
from geodeform.quake import Mosaic, SlipProfiles, plot_slip
from geodeform.workflows.quake_products import CoseismicField
from geodeform.workflows.report_section import ReportSection

__all__ = ["offsets_figure", "quake_section", "slip_summary"]

F64 = npt.NDArray[np.float64]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def offsets_figure(m: Mosaic, trace: F64 | None) -> bytes:
    """East and north displacement of the mosaic (m, km axes of its CRS) with the trace, as PNG bytes."""
    # matplotlib is heavy and only needed for the report
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    x0, y0, x1, y1 = m.grid.bounds
    extent = (x0 / 1e3, x1 / 1e3, y0 / 1e3, y1 / 1e3)
    values = np.r_[m.east[np.isfinite(m.east)], m.north[np.isfinite(m.north)]]
    lim = float(np.percentile(np.abs(values), 99)) if values.size else 1.0
    if trace is not None:
        tx, ty = apply_transform(m.grid.transform, trace[:, 1] + 0.5, trace[:, 0] + 0.5)
    for ax, (name, field) in zip(fig.subplots(1, 2), (("east", m.east), ("north", m.north)), strict=True):
        im = ax.imshow(field, extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_facecolor("0.82")
        if trace is not None:
            ax.plot(np.asarray(tx) / 1e3, np.asarray(ty) / 1e3, "k-", lw=1.0, label="trace")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"{name} displacement (m, + {name})")
        ax.set_xlabel(f"easting (km, {m.grid.crs.to_string()})")
        ax.set_ylabel("northing (km)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    return _png(fig)


def slip_summary(profiles: SlipProfiles) -> str:
    """One line: median and range of the fault-parallel slip over the valid profiles."""
    ok = profiles.valid
    if not ok.any():
        return "no valid profile"
    p = profiles.parallel[ok]
    return f"median {np.median(p):+.2f} m (min {p.min():+.2f}, max {p.max():+.2f}) over {ok.sum()} profiles"


def quake_section(
    *,
    mosaic: Mosaic,
    trace: F64,
    trace_source: str,
    profiles: SlipProfiles,
    fields: list[CoseismicField],
    pixel_m: float,
    event_date: str,
) -> ReportSection:
    """The report section of a quake run."""
    cell = float(math.hypot(mosaic.grid.transform.a, mosaic.grid.transform.d))
    length = float(np.hypot(*np.diff(trace, axis=0).T).sum()) * cell
    ok = profiles.valid
    worst = max((abs(v) for o in mosaic.overlaps for v in o.after), default=math.nan)
    normal = profiles.normal[ok]
    facts = [
        ("event date", event_date),
        (
            "mosaic",
            f"{mosaic.grid.height} × {mosaic.grid.width} cells of {cell:g} m, {mosaic.grid.crs.to_string()}, "
            f"{len(fields)} tile field(s)",
        ),
        (
            "seams",
            f"largest median disagreement of overlapping tiles after the bias adjustment {worst:.3f} m "
            f"({worst / pixel_m:.4f} px) over {len(mosaic.overlaps)} overlap(s)",
        ),
        ("trace", f"{trace_source}, {length / 1e3:.2f} km, {len(trace)} vertices"),
        ("fault-parallel slip (+ right-lateral)", slip_summary(profiles)),
        (
            "fault-normal slip (+ opening)",
            f"median {np.median(normal):+.2f} m" if normal.size else "no valid profile",
        ),
        (
            "profiles",
            f"{ok.sum()} of {len(profiles)} valid, every {profiles.meta['spacing']:g} m, "
            f"±{profiles.meta['half_width']:g} m, gap {profiles.meta['gap']:g} m",
        ),
    ]
    rows = []
    for f in fields:
        b = mosaic.biases.get(f.name, (math.nan, math.nan))
        valid = np.isfinite(f.east).mean()
        rows.append(
            [
                f.name,
                f.grid.crs.to_string(),
                str(f.pairs),
                f"{100 * valid:.1f}",
                f"{b[0]:+.3f} / {b[1]:+.3f}",
                "—" if math.isnan(f.correction_rms) else f"{f.correction_rms:.3f}",
            ]
        )
    head = [
        "field",
        "CRS",
        "pairs stacked",
        "valid nodes (%)",
        "bias east / north (m)",
        "stripes + jitter removed, rms (m)",
    ]
    slip_png = _png(plot_slip(profiles))
    figures = [
        (
            "offsets.png",
            offsets_figure(mosaic, trace),
            "Co-seismic displacement of the mosaic (metres along +x east and +y north of its CRS), every "
            "tile stacked, corrected and adjusted to its neighbours; black: the rupture trace.",
        ),
        (
            "slip.png",
            slip_png,
            "Slip along strike from stacked swath profiles across the trace (±2σ error bars): fault-parallel "
            "(+ right-lateral) and fault-normal (+ opening), metres.",
        ),
    ]
    return ReportSection("quake", "Co-seismic offsets and slip", figures, facts, head, rows)
