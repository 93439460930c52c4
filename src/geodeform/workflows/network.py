"""After the inversion: every pair checked against the rest of the network, disagreeing pairs marked degraded.

The test is :mod:`geodeform.timeseries.consistency` (each pair's motion over its moving nodes against the
series' motion over its interval, the pair's own dates left out). A pair outside the bounds is marked
degraded the way the job marks the others (:mod:`geodeform.workflows.stable`): the reason, naming the ratio
and the node count, in the product (``geodeform_degraded``, with the verdict in ``geodeform_network_check``),
its STAC item, the report and the console. The pair's own reason (``geodeform_pair_stats``) is kept apart,
so a resumed run checks again without repeating itself. A date most of whose pairs disagree is named, with
the share of pixels in which the robust inversion flagged it (:attr:`TimeSeriesResult.date_flag`), when the
series is in memory.

Flagged pairs stay in the inversion and the composite: an error of one date is absorbed by that date's
displacement, which the composite (a mean velocity over the whole span) does not use unless it is the first
or last date (measured on the Perito Moreno series in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.io import update_netcdf_attrs, write_stac_item
from geodeform.timeseries import TimeSeriesResult
from geodeform.timeseries.consistency import (
    DEFAULT_BOUNDS,
    date_disagreement,
    leave_date_out,
    pair_ratio,
    suspect_dates,
)
from geodeform.workflows.pair import PairOutcome

__all__ = ["NetworkCheck", "check_network"]

log = logging.getLogger(__name__)

MIN_NODES = 50
"""Fewest moving nodes for a pair's verdict."""


@dataclass(frozen=True)
class NetworkCheck:
    """What :func:`check_network` found.

    Attributes
    ----------
    pairs
        The outcomes, flagged ones now degraded.
    ratios
        ``{"<reference>_<secondary>": (ratio, nodes)}`` of every ok pair checked (ratio NaN: too few nodes).
    flagged
        Keys of the pairs marked.
    warnings
        Sentences for the report and the console (dates whose pairs mostly disagree, a summary).
    """

    pairs: list[PairOutcome]
    ratios: dict[str, tuple[float, int]]
    flagged: list[str]
    warnings: list[str]


def _noise_m(o: PairOutcome) -> float:
    """A pair's 1-sigma displacement error (m) from its stable-ground scatter (m/yr)."""
    return float(np.hypot(o.stable_nmad_x, o.stable_nmad_y) * abs(o.dt_days) / DAYS_PER_YEAR)


def _read(path: Path) -> tuple[dict[str, object], NDArray[np.float32], NDArray[np.float32]]:
    """The product's global attributes and its ``dx``, ``dy`` (m, NaN = none), read with h5py: opening the
    whole product through xarray costs ~150 ms CPU, these ~10. A product whose offsets are packed
    (scale, offset, a fill value other than NaN) is decoded by xarray instead."""
    with h5py.File(path, "r") as f:
        plain = all(
            f[v].dtype.kind == "f"
            and not {"scale_factor", "add_offset"} & set(f[v].attrs)
            and np.isnan(f[v].attrs.get("_FillValue", np.nan))
            for v in ("dx", "dy")
        )
        if plain:
            return {str(k): v for k, v in f.attrs.items()}, f["dx"][()], f["dy"][()]
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return dict(ds.attrs), ds["dx"].values, ds["dy"].values


def _mark(attrs: dict[str, object], path: Path, own: str, verdict: dict[str, object]) -> str:
    """Write the verdict into the product at ``path`` (global attributes ``attrs``) and its STAC item when
    there is one, unless it holds that verdict already; return its degraded text.

    Only the two attributes change: they are set in the file (:func:`~geodeform.io.update_netcdf_attrs`),
    the variables are not decoded and written again. The item is written again when the degraded text
    changes; otherwise what it says is unchanged and it is only touched, so that it stays newer than its
    product (``write_products`` rewrites older items)."""
    reason = str(verdict.get("reason", ""))
    combined = "; ".join(t for t in (own, reason) if t)
    if attrs.get("geodeform_degraded", "") == combined and "geodeform_network_check" in attrs:
        if json.loads(str(attrs["geodeform_network_check"])).get("reason", "") == reason:
            return combined
    update_netcdf_attrs(
        path, {"geodeform_degraded": combined, "geodeform_network_check": json.dumps(verdict)}
    )
    item = path.with_suffix(".stac.json")
    if item.is_file():
        if "geodeform_degraded" in attrs and attrs["geodeform_degraded"] == combined:
            os.utime(item)
        else:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                write_stac_item(ds, path)
    return combined


def _date_warnings(
    dates: NDArray[np.datetime64], pairs: list[tuple[int, int]], flagged: NDArray[np.bool_],
    series: TimeSeriesResult | None,
) -> list[str]:  # fmt: skip
    total, bad = date_disagreement(pairs, flagged, len(dates))
    share = series.flagged_date_fraction if series is not None else None
    out = []

    def inv(k: int) -> str:
        return f"; the inversion flagged it in {100 * share[k]:.0f} % of pixels" if share is not None else ""

    for k in np.flatnonzero((total >= 3) & (2 * bad > total)):
        out.append(
            f"date {str(dates[k])[:10]}: {bad[k]} of its {total[k]} pairs disagree with the network: its "
            f"image is likely wrong on the moving area (haze, thin cloud){inv(int(k))}"
        )
    if flagged.sum() >= 2:
        common = set.intersection(*({i, j} for (i, j), f in zip(pairs, flagged, strict=True) if f))
        for k in sorted(common):
            if not (2 * bad[k] > total[k]):
                out.append(
                    f"date {str(dates[k])[:10]}: every pair that disagrees with the network goes through it "
                    f"({bad[k]} of its {total[k]} pairs){inv(int(k))}"
                )
    return out


def check_network(
    outcomes: list[PairOutcome],
    store: Path,
    *,
    series: TimeSeriesResult | None = None,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    min_nodes: int = MIN_NODES,
) -> NetworkCheck:
    """Check every ok pair against the inverted series in ``store`` and mark those that disagree.

    Parameters
    ----------
    outcomes
        The job's pair outcomes (products on disk, ``dx``/``dy`` in m).
    store
        The series' Zarr store (``east``/``north``, m, per date).
    series
        The series in memory, if kept (its per-date flags name the suspect dates).
    bounds, min_nodes
        A pair disagrees when its median ratio to the network is outside ``bounds`` over at least
        ``min_nodes`` moving nodes (network motion above 5 x the pair's 1-sigma error).
    """
    with xr.open_zarr(store) as ds:
        dates = ds["time"].values.astype("datetime64[D]")
        east, north = ds["east"].values, ds["north"].values
    skip = suspect_dates(dates, east, north)
    east, north = leave_date_out(dates, east, skip=skip), leave_date_out(dates, north, skip=skip)
    index = {str(d): n for n, d in enumerate(dates)}
    out = list(outcomes)
    ratios: dict[str, tuple[float, int]] = {}
    keys, pairs, flags = [], [], []
    for k, o in enumerate(out):
        if o.status != "ok" or o.reference not in index or o.secondary not in index:
            continue
        i, j = index[o.reference], index[o.secondary]
        key = f"{o.reference}_{o.secondary}"
        attrs, dx, dy = _read(Path(o.path))  # read once: the verdict joins its attributes
        own = json.loads(str(attrs.get("geodeform_pair_stats", "{}"))).get("degraded", o.degraded)
        ratio, nodes = pair_ratio(east[j] - east[i], north[j] - north[i], dx, dy, _noise_m(o))
        ratios[key] = (ratio if nodes >= min_nodes else float("nan"), nodes)
        bad = nodes >= min_nodes and not (bounds[0] <= ratio <= bounds[1])
        verdict: dict[str, object] = {"ratio": ratio, "nodes": nodes, "bounds": list(bounds), "flagged": bad}
        if bad:
            verdict["reason"] = (
                f"disagrees with the network: its motion is {ratio:.2f}x what the other pairs give over "
                f"{nodes} moving nodes (outside {bounds[0]:.2f}-{bounds[1]:.2f}; its dates left out)"
            )
            log.warning("pair %s degraded: %s", key, verdict["reason"])
        out[k] = replace(o, degraded=_mark(attrs, Path(o.path), own, verdict))
        keys.append(key)
        pairs.append((i, j))
        flags.append(bad)
    flagged = np.array(flags, dtype=bool)
    warnings = _date_warnings(dates, pairs, flagged, series)
    finite = [r for r, n in ratios.values() if np.isfinite(r)]
    if finite:
        warnings.insert(
            0,
            f"network check: {int(flagged.sum())} of {len(ratios)} pairs disagree with the network (ratio "
            f"outside {bounds[0]:.2f}-{bounds[1]:.2f}; median ratio {np.median(finite):.2f} over "
            f"{len(finite)} pairs with >= {min_nodes} moving nodes)",
        )
    for w in warnings:
        log.warning(w)
    return NetworkCheck(out, ratios, [k for k, f in zip(keys, flags, strict=True) if f], warnings)
