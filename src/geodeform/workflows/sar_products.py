"""What a finished ``sar`` job writes besides its pairs: per-track series and velocities, east/north/up.

``<run>/track_ORBIT.nc``  (``.tif``: the velocity bands) per relative orbit:

* ``los``, ``azimuth`` (time, y, x): cumulative displacement since the track's first date, metres (line of
  sight + towards the satellite, azimuth + along the flight), from :func:`geodeform.timeseries.invert` of
  the track's pairs, with ``los_error`` / ``azimuth_error`` (1-σ);
* ``los_velocity``, ``azimuth_velocity`` (y, x): mean rates, m/yr, with ``*_velocity_error`` (1-σ: the
  inversion's, else the stable-ground spread of the pairs over √pairs);
* ``incidence``, ``heading``, ``los_east``, ``los_north``, ``los_up``: the geometry (degrees, unit vector).

``<run>/enu_series.nc`` (``sar.combine: enu``, two tracks or more): cumulative ``east``, ``north``, ``up``
(time, y, x; metres since the first date of any track) and their 1-σ, every track's range (and azimuth) pairs
inverted jointly on the union of the dates (:func:`geodeform.decompose.invert_enu`, MSBAS-like, regularised
in time).

``<run>/enu_velocity.nc|.tif`` (``sar.combine: enu``): ``east``, ``north``, ``up`` (m/yr) from every track's
line-of-sight (and azimuth) velocity by per-pixel weighted least squares
(:func:`geodeform.decompose.solve_enu`), their 1-σ, the condition number, ``reason``
(:class:`geodeform.decompose.EnuReason`: 1 no data, 2 a component unconstrained) and ``n_obs``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geodeform.config import JobConfig, SarConfig
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.decompose import COMPONENTS, Observation, PairSet, invert_enu, solve_enu
from geodeform.io import atomic_output, write_catalog, write_cog, write_netcdf, write_stac_item
from geodeform.timeseries import add_date_noise, invert
from geodeform.workflows.pair import PairOutcome
from geodeform.workflows.sar_pair import SarScene
from geodeform.workflows.three_d import enu_reason_variable, enu_variables

__all__ = ["TrackProduct", "enu_dataset", "track_dataset", "write_sar_products"]

log = logging.getLogger("geodeform.workflows")

_KEEP = ("incidence", "heading", "los_east", "los_north", "los_up")


@dataclass
class TrackProduct:
    """The products of one relative orbit."""

    orbit: int
    pass_direction: str
    dataset: xr.Dataset
    path: Path


def _var(values: NDArray[Any], long_name: str, units: str, dims: tuple[str, ...] = ("y", "x")) -> xr.Variable:
    return xr.Variable(
        dims, values.astype(np.float32), {"long_name": long_name, "units": units, "grid_mapping": "mapping"}
    )


def _base(template: xr.Dataset, title: str) -> xr.Dataset:
    """An empty product on the template's grid (coordinates and grid mapping), with its provenance."""
    ds = xr.Dataset(coords={"y": template["y"], "x": template["x"]})
    ds["mapping"] = template["mapping"]
    keep = (
        "Conventions",
        "sar_mission",
        "sar_mode",
        "sar_polarisation",
        "geocoding",
        "geodeform_preset",
        "geodeform_job",
        "sign_convention",
    )
    ds.attrs.update({k: template.attrs[k] for k in keep if k in template.attrs})
    ds.attrs["title"] = title
    return ds


def _track_sigma(ts_sigma: NDArray[Any] | None, fallback: NDArray[np.float64]) -> NDArray[np.float64]:
    s = np.full(fallback.shape, np.nan) if ts_sigma is None else np.asarray(ts_sigma, np.float64)
    return np.where(np.isfinite(s) & (s > 0), s, fallback)


def track_dataset(config: JobConfig, scenes: list[SarScene], outcomes: list[PairOutcome]) -> xr.Dataset:
    """One track's series and mean velocities from its pairs' products (see the module docstring).

    ``outcomes`` are the ok pairs of one relative orbit; ``scenes`` that orbit's acquisitions.
    """
    dates = np.array(
        sorted({o.reference for o in outcomes} | {o.secondary for o in outcomes}), "datetime64[D]"
    )
    index = {str(d): k for k, d in enumerate(dates)}
    los, azi, pairs = [], [], []
    template: xr.Dataset | None = None
    for o in outcomes:
        with xr.open_dataset(o.path, engine="h5netcdf") as ds:
            los.append(ds["los"].values.astype(np.float64))
            azi.append(ds["azimuth"].values.astype(np.float64))
            if template is None:
                template = ds.load()
        pairs.append((index[o.reference], index[o.secondary]))
    assert template is not None
    inc = template["incidence"].values.astype(np.float64)
    sin_inc = float(np.nanmedian(np.sin(np.deg2rad(inc)))) if np.isfinite(inc).any() else 1.0
    years = np.array([abs(o.dt_days) / DAYS_PER_YEAR for o in outcomes])
    # stable-ground spread of each pair (m/yr, ground range / azimuth) -> metres of los / azimuth
    e_los = np.array([o.stable_nmad_x for o in outcomes]) * years * sin_inc
    e_azi = np.array([o.stable_nmad_y for o in outcomes]) * years
    inv = config.inversion
    ts = invert(
        dates,
        np.array(pairs, dtype=np.int64),
        np.stack(los),
        np.stack(azi),
        weights="dt" if inv.weights == "dt" else None,
        smoothing=inv.smoothing or None,
        robust=inv.robust,
    )
    if np.isfinite(e_los).any():
        ts = add_date_noise(ts, pairs, e_los, e_azi)
    n = np.maximum(ts.n_pairs_used, 1)
    fallback_los = (
        np.nanmedian(e_los / years) / np.sqrt(n) if np.isfinite(e_los).any() else np.full(n.shape, np.nan)
    )
    fallback_azi = (
        np.nanmedian(e_azi / years) / np.sqrt(n) if np.isfinite(e_azi).any() else np.full(n.shape, np.nan)
    )
    assert ts.dy is not None and ts.velocity_y is not None and ts.sigma_dy is not None
    ds = _base(
        template,
        f"geodeform SAR track {template.attrs.get('sar_relative_orbit', '')}: line-of-sight "
        "and azimuth series and velocities",
    )
    ds = ds.assign_coords(time=dates.astype("datetime64[ns]"))
    dims3 = ("time", "y", "x")
    ds["los"] = _var(
        ts.dx,
        "cumulative line-of-sight displacement since the first date, + towards the satellite",
        "m",
        dims3,
    )
    ds["azimuth"] = _var(
        ts.dy, "cumulative azimuth displacement since the first date, + along the flight", "m", dims3
    )
    ds["los_error"] = _var(ts.sigma_dx, "1-sigma of los", "m", dims3)
    ds["azimuth_error"] = _var(ts.sigma_dy, "1-sigma of azimuth", "m", dims3)
    ds["los_velocity"] = _var(ts.velocity_x, "mean line-of-sight velocity, + towards the satellite", "m/yr")
    ds["azimuth_velocity"] = _var(ts.velocity_y, "mean azimuth velocity, + along the flight", "m/yr")
    ds["los_velocity_error"] = _var(
        _track_sigma(ts.sigma_velocity_x, fallback_los), "1-sigma of los_velocity", "m/yr"
    )
    ds["azimuth_velocity_error"] = _var(
        _track_sigma(ts.sigma_velocity_y, fallback_azi), "1-sigma of azimuth_velocity", "m/yr"
    )
    ds["count"] = xr.Variable(("y", "x"), ts.n_pairs_used.astype(np.int32), {"long_name": "pairs used"})
    for name in _KEEP:
        ds[name] = template[name]
    ds.attrs.update(
        {
            "sar_relative_orbit": template.attrs.get("sar_relative_orbit", -1),
            "sar_pass": template.attrs.get("sar_pass", ""),
            "geodeform_scenes": json.dumps([s.id for s in scenes]),
            "geodeform_pairs": json.dumps([f"{o.reference}_{o.secondary}" for o in outcomes]),
        }
    )
    return ds


def enu_dataset(tracks: list[TrackProduct], sar: SarConfig) -> xr.Dataset:
    """East/north/up velocity from every track's line-of-sight (and azimuth) velocity."""
    obs = []
    for t in tracks:
        d = t.dataset
        head, inc = d["heading"].values, d["incidence"].values
        label = f"orbit {t.orbit} {t.pass_direction}"
        obs.append(
            Observation(
                d["los_velocity"].values,
                "range",
                heading_deg=head,
                incidence_deg=inc,
                sigma=d["los_velocity_error"].values,
                name=f"{label} los",
            )
        )
        if sar.use_azimuth:
            obs.append(
                Observation(
                    d["azimuth_velocity"].values,
                    "azimuth",
                    heading_deg=head,
                    sigma=d["azimuth_velocity_error"].values,
                    name=f"{label} azimuth",
                )
            )
    res = solve_enu(obs, assume_zero=tuple(sar.assume_zero))
    ds = _base(tracks[0].dataset, "geodeform SAR east/north/up velocity")
    ds.update(enu_variables(res))
    ds["condition"] = _var(res.condition, "condition number of the weighted design", "1")
    ds["reason"] = enu_reason_variable(res.reason, grid_mapping=True)
    ds["n_obs"] = xr.Variable(("y", "x"), res.n_obs, {"long_name": "observations used"})
    ds.attrs.update(
        {
            "sign_convention": "east: + east; north: + north; up: + up (m/yr)",
            "geodeform_tracks": json.dumps([f"{t.orbit} {t.pass_direction}" for t in tracks]),
            "geodeform_observations": json.dumps([o.label for o in obs]),
            "geodeform_assume_zero": json.dumps(list(sar.assume_zero)),
            "geodeform_enu_summary": res.summary(),
        }
    )
    return ds


def _pair_sets(track: TrackProduct, outcomes: list[PairOutcome], sar: SarConfig) -> list[PairSet]:
    """One track's pairs as :class:`~geodeform.decompose.PairSet` (range, and azimuth if used), metres."""
    dates = [str(d)[:10] for d in track.dataset["time"].values.astype("datetime64[D]")]
    index = {d: k for k, d in enumerate(dates)}
    los, azi = [], []
    for o in outcomes:
        with xr.open_dataset(o.path, engine="h5netcdf") as ds:
            los.append(ds["los"].values.astype(np.float64))
            azi.append(ds["azimuth"].values.astype(np.float64))
    pairs = np.array([(index[o.reference], index[o.secondary]) for o in outcomes], dtype=np.int64)
    head, inc = track.dataset["heading"].values, track.dataset["incidence"].values
    years = np.array([abs(o.dt_days) / DAYS_PER_YEAR for o in outcomes])
    sin_inc = float(np.nanmedian(np.sin(np.deg2rad(inc)))) if np.isfinite(inc).any() else 1.0
    e_los = np.array([o.stable_nmad_x for o in outcomes]) * years * sin_inc
    e_azi = np.array([o.stable_nmad_y for o in outcomes]) * years
    label = f"orbit {track.orbit} {track.pass_direction}"
    sets = [
        PairSet(dates, pairs, np.stack(los), "range", head, inc,
                sigma=e_los if np.isfinite(e_los).all() else None, name=f"{label} los"),
    ]  # fmt: skip
    if sar.use_azimuth:
        sets.append(
            PairSet(dates, pairs, np.stack(azi), "azimuth", head,
                    sigma=e_azi if np.isfinite(e_azi).all() else None, name=f"{label} azimuth")
        )  # fmt: skip
    return sets


def enu_series_dataset(
    config: JobConfig, tracks: list[TrackProduct], outcomes: dict[int, list[PairOutcome]]
) -> xr.Dataset:
    """East/north/up series on the union of every track's dates, all tracks' pairs inverted jointly
    (:func:`geodeform.decompose.invert_enu`, smoothing ``inversion.smoothing``, at least 1)."""
    sar = config.sar or SarConfig()
    sets = [s for t in tracks for s in _pair_sets(t, outcomes[t.orbit], sar)]
    res = invert_enu(
        sets, smoothing=max(config.inversion.smoothing or 0.0, 1.0), robust=config.inversion.robust
    )
    ds = _base(tracks[0].dataset, "geodeform SAR east/north/up time series")
    ds = ds.assign_coords(time=res.dates.astype("datetime64[ns]"))
    for c in COMPONENTS:
        ds[c] = _var(getattr(res, c), f"cumulative {c} displacement since the first date, + {c}", "m",
                     ("time", "y", "x"))  # fmt: skip
        ds[f"{c}_error"] = _var(getattr(res, f"sigma_{c}"), f"1-sigma of {c}", "m", ("time", "y", "x"))
    ds.attrs.update(
        {
            "sign_convention": "east: + east; north: + north; up: + up (m)",
            "geodeform_sets": json.dumps([s.name for s in sets]),
        }
    )
    return ds


def write_sar_products(
    config: JobConfig, scenes: list[SarScene], outcomes: list[PairOutcome], orbits: list[int], run_dir: Path
) -> tuple[dict[str, Path], list[TrackProduct], xr.Dataset | None]:
    """Per-track products, the E/N/U velocity (``sar.combine: enu``) and the STAC catalogue.

    ``orbits[k]`` is the relative orbit of ``outcomes[k]``. The per-track series and mean velocities are
    always inverted (with ``config.inversion``'s settings), since they are what the tracks deliver.

    Returns
    -------
    tuple
        (products by name, the track products, the E/N/U dataset or None).
    """
    sar = config.sar or SarConfig()
    products: dict[str, Path] = {}
    items: list[Path] = []
    ok = [(o, orbit) for o, orbit in zip(outcomes, orbits, strict=True) if o.status == "ok"]
    if config.output.stac:
        items += [Path(f) for o, _ in ok for f in o.files if f.endswith(".stac.json")]
    tracks: list[TrackProduct] = []
    for orbit in sorted({s.orbit for s in scenes}):
        mine = [o for o, oo in ok if oo == orbit]
        if not mine:
            continue
        ds = track_dataset(config, [s for s in scenes if s.orbit == orbit], mine)
        name = f"track_{orbit:03d}"
        bands = (
            "los_velocity",
            "azimuth_velocity",
            "los_velocity_error",
            "azimuth_velocity_error",
            "incidence",
            "heading",
        )
        path = _write(ds, run_dir / name, config, bands)
        products.update({f"{name}_{k}": v for k, v in path.items()})
        if config.output.stac and "nc" in path:
            items.append(write_stac_item(ds, path["nc"]))
        tracks.append(TrackProduct(orbit, str(ds.attrs.get("sar_pass", "")), ds, next(iter(path.values()))))
    enu = None
    if sar.combine == "enu" and len(tracks) > 1:
        by_orbit = {t.orbit: [o for o, oo in ok if oo == t.orbit] for t in tracks}
        series = enu_series_dataset(config, tracks, by_orbit)
        products["enu_series_nc"] = write_netcdf(series, run_dir / "enu_series.nc")
    if sar.combine == "enu" and tracks:
        enu = enu_dataset(tracks, sar)
        log.info("east/north/up: %s", enu.attrs["geodeform_enu_summary"])
        bands = ("east", "north", "up", "east_error", "north_error", "up_error")
        path = _write(enu, run_dir / "enu_velocity", config, bands)
        products.update({f"enu_{k}": v for k, v in path.items()})
        if config.output.stac and "nc" in path:
            items.append(write_stac_item(enu, path["nc"]))
    if config.output.stac and items:
        products["catalog"] = write_catalog(run_dir, config.name, items)
    return products, tracks, enu


def _write(ds: xr.Dataset, stem: Path, config: JobConfig, bands: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if "netcdf" in config.output.formats:
        out["nc"] = write_netcdf(ds, stem.with_suffix(".nc"))
    if "cog" in config.output.formats:
        out["tif"] = write_cog(ds, stem.with_suffix(".tif"), bands=bands)
    if not out:
        with atomic_output(stem.with_suffix(".nc")) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
        out["nc"] = stem.with_suffix(".nc")
    return out
