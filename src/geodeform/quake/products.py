"""Products of the earthquake chain: slip profiles as CSV, the slip-along-strike figure."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geodeform.errors import InvalidInputError
from geodeform.io import atomic_output
from geodeform.quake.profiles import COLUMNS, SlipProfiles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CSV_HEADER", "plot_slip", "write_profiles_csv"]

CSV_HEADER: tuple[str, ...] = (
    "distance_m",
    "row",
    "col",
    "strike_deg",
    "parallel_m",
    "parallel_sigma_m",
    "normal_m",
    "normal_sigma_m",
    "n_left",
    "n_right",
    "misfit_m",
)
"""CSV column names (the :data:`geodeform.quake.COLUMNS` with their units, for fields in metres)."""


def write_profiles_csv(path: str | os.PathLike[str], profiles: SlipProfiles) -> Path:
    """Write slip profiles as CSV (one row per profile, :data:`CSV_HEADER`), atomically.

    Parameters
    ----------
    path
        Output file; its folder must exist.
    profiles
        Output of :func:`geodeform.quake.slip_profiles` on fields in metres. Fault-parallel slip: + =
        right-lateral; fault-normal: + = opening. Empty cells are profiles without a fit.

    Returns
    -------
    pathlib.Path
    """
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        for k in range(len(profiles)):
            row = []
            for name in COLUMNS:
                v = getattr(profiles, name)[k]
                if isinstance(v, (np.integer, int)):
                    row.append(str(int(v)))
                else:
                    row.append("" if not np.isfinite(v) else f"{float(v):.4f}")
            w.writerow(row)
    return Path(path)


def plot_slip(
    profiles: SlipProfiles,
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    truth: dict[str, Any] | None = None,
    sigmas: float = 2.0,
) -> Figure:
    """Slip along strike: fault-parallel and fault-normal slip with error bars against distance.

    Parameters
    ----------
    profiles
        Output of :func:`geodeform.quake.slip_profiles` on fields in metres.
    path
        If given, the figure is also written there (PNG, atomically).
    title
        Figure title.
    truth
        Optional reference curves: ``{"distance": metres, "parallel": m, "normal": m}`` (e.g. a
        synthetic model or field measurements), drawn as lines.
    sigmas
        Half-length of the error bars in standard deviations.

    Returns
    -------
    matplotlib.figure.Figure
        An Agg figure (no pyplot state).
    """
    if len(profiles) == 0:
        raise InvalidInputError("no slip profiles to plot: the trace is shorter than one profile spacing")
    # matplotlib is heavy and only needed here
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    km = profiles.distance / 1000.0
    axes = fig.subplots(2, 1, sharex=True)
    panels = (
        ("parallel", "fault-parallel slip (m)\n+ right-lateral", "tab:red"),
        ("normal", "fault-normal slip (m)\n+ opening", "tab:blue"),
    )
    for ax, (name, label, colour) in zip(axes, panels, strict=True):
        value, sigma = getattr(profiles, name), getattr(profiles, f"{name}_sigma")
        ok = np.isfinite(value)
        ax.errorbar(
            km[ok],
            value[ok],
            yerr=sigmas * sigma[ok],
            fmt="o",
            ms=3,
            color=colour,
            capsize=2,
            label=f"profiles (±{sigmas:g}σ)",
        )
        if truth is not None and name in truth:
            ax.plot(np.asarray(truth["distance"]) / 1000.0, truth[name], "k-", lw=1, label="reference")
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set_ylabel(label)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("distance along the trace (km)")
    meta = profiles.meta
    fig.suptitle(
        title
        or f"slip along strike: profiles every {meta.get('spacing', 0):g} m, "
        f"±{meta.get('half_width', 0):g} m, gap {meta.get('gap', 0):g} m"
    )
    if path is not None:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    return fig
