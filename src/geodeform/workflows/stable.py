"""Job-level co-registration: pairs with too little stable ground take the estimate of their dates.

A pair's co-registration bias is, to first order, the misregistration of its secondary image minus that of
its reference. The pairs co-registered on their own stable ground give one equation each; their least-squares
solution gives every date's misregistration (up to a constant per connected group of dates), and a pair left
``pending`` by :mod:`geodeform.workflows.screening` (clouds over its stable ground, a small mask) gets
``bias(secondary) - bias(reference)``. Its product is rewritten with that bias removed, the error of the
estimate added to ``v_error``, and the pair is marked degraded with the reason (product attribute
``geodeform_degraded``, STAC item, report). A pending pair whose dates no co-registered pair links is not
used (failed, with the reason): its offsets would carry an unknown bias.

Biases are planes ``a + b * (col - col0) + c * (row - row0)`` over the node grid, metres east / north.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.io import write_netcdf, write_stac_item
from geodeform.workflows.pair import PairOutcome, failed_product_path
from geodeform.workflows.screening import PairCoregistration

__all__ = ["DateBiases", "coregister_pending", "date_biases", "set_aside"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateBiases:
    """Per-date misregistration solved from the co-registered pairs (:func:`date_biases`).

    Attributes
    ----------
    east, north
        ``(n_dates, 3)`` plane coefficients per date, metres (defined up to a constant per group).
    group
        Connected group of every date (-1: no co-registered pair touches it).
    sigma_east, sigma_north
        1-sigma scatter of the pairs' biases about the solution, metres (at the grid centre).
    """

    east: NDArray[np.float64]
    north: NDArray[np.float64]
    group: NDArray[np.int64]
    sigma_east: float
    sigma_north: float

    def pair(self, i: int, j: int) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """The bias of the pair (reference date ``i``, secondary date ``j``), or None when not linked."""
        if self.group[i] < 0 or self.group[i] != self.group[j]:
            return None
        return self.east[j] - self.east[i], self.north[j] - self.north[i]


def _groups(n: int, links: list[tuple[int, int]]) -> NDArray[np.int64]:
    parent = list(range(n))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j in links:
        parent[root(i)] = root(j)
    touched = {k for link in links for k in link}
    roots = {r: g for g, r in enumerate(sorted({root(k) for k in touched}))}
    return np.array([roots[root(k)] if k in touched else -1 for k in range(n)], dtype=np.int64)


def date_biases(n_dates: int, pairs: list[tuple[int, int]], models: list[PairCoregistration]) -> DateBiases:
    """Least-squares misregistration per date from the biases of co-registered pairs.

    Parameters
    ----------
    n_dates
        Number of dates.
    pairs
        ``(reference, secondary)`` date indices of the co-registered pairs.
    models
        Their fitted biases (metres east / north).
    """
    a = np.zeros((len(pairs), n_dates))
    for k, (i, j) in enumerate(pairs):
        a[k, i], a[k, j] = -1.0, 1.0
    east = np.array([m.model_east for m in models], dtype=np.float64).reshape(len(pairs), 3)
    north = np.array([m.model_north for m in models], dtype=np.float64).reshape(len(pairs), 3)
    if pairs:
        be = np.linalg.lstsq(a, east, rcond=None)[0]
        bn = np.linalg.lstsq(a, north, rcond=None)[0]
    else:
        be = bn = np.zeros((n_dates, 3))
    group = _groups(n_dates, pairs)
    dof = len(pairs) - (int((group >= 0).sum()) - len(set(group[group >= 0].tolist())))
    sig = []
    for b, obs in ((be, east), (bn, north)):
        res = (a @ b - obs)[:, 0] if pairs else np.zeros(0)
        if dof > 0:
            sig.append(float(np.sqrt(np.sum(res**2) / dof)))
        else:  # a tree of pairs fits exactly: the spread of the pairs' own biases is the honest scale
            sig.append(float(np.std(obs[:, 0])) if len(obs) > 1 else 0.0)
    return DateBiases(be, bn, group, sig[0], sig[1])


def _plane(coef: NDArray[np.float64], shape: tuple[int, int]) -> NDArray[np.float64]:
    rows, cols = np.indices(shape, dtype=np.float64)
    r0, c0 = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return coef[0] + coef[1] * (cols - c0) + coef[2] * (rows - r0)


def _apply(path: Path, east: NDArray[np.float64], north: NDArray[np.float64], record: PairCoregistration,
           degraded: str) -> dict[str, float]:  # fmt: skip
    """Remove the bias from a pair product on disk (atomically); return its updated stats."""
    with xr.open_dataset(path, engine="h5netcdf") as src:
        ds = src.load()
    shape = ds["dx"].shape
    ds["dx"].values = (ds["dx"].values - _plane(east, shape)).astype(np.float32)
    ds["dy"].values = (ds["dy"].values - _plane(north, shape)).astype(np.float32)
    stats = json.loads(ds.attrs["geodeform_pair_stats"])
    if "vx" in ds.variables and "date_dt" in ds.variables:
        per_year = DAYS_PER_YEAR / float(ds["date_dt"])
        ds["vx"].values = (ds["dx"].values * per_year).astype(np.float32)
        ds["vy"].values = (ds["dy"].values * per_year).astype(np.float32)
        ds["v"].values = np.hypot(ds["vx"].values, ds["vy"].values).astype(np.float32)
        extra = float(np.hypot(record.sigma_east, record.sigma_north)) * per_year
        ds["v_error"].values = np.hypot(ds["v_error"].values, extra).astype(np.float32)
        for comp, sigma in (("vx", record.sigma_east), ("vy", record.sigma_north)):
            own = float(ds[comp].attrs.get("error", np.nan))
            ds[comp].attrs["error"] = float(np.hypot(own, sigma * per_year))
        stats["stable_nmad_x"] = float(ds["vx"].attrs["error"])
        stats["stable_nmad_y"] = float(ds["vy"].attrs["error"])
    stats["degraded"] = degraded
    for key in ("geodeform_status", "geodeform_failed"):  # set aside by an earlier run, used now
        ds.attrs.pop(key, None)
    ds.attrs["geodeform_pair_stats"] = json.dumps(stats)
    ds.attrs["geodeform_coregistration"] = record.to_json()
    ds.attrs["geodeform_degraded"] = degraded
    write_netcdf(ds, path)
    _restac(ds, path)
    return stats


def _siblings(path: Path) -> list[Path]:
    """The product and its STAC item (``<name>.stac.json``), when written."""
    return [path, path.with_suffix(".stac.json")]


def _restac(ds: xr.Dataset, path: Path) -> None:
    """Rewrite the STAC item of a product rewritten here (when the job writes items, i.e. it has one), so
    that it tells the product's new state (degraded reason, co-registration, status) and links its file
    where it now is."""
    if path.with_suffix(".stac.json").is_file():
        write_stac_item(ds, path)


def set_aside(path: Path, reason: str) -> Path:
    """Move a pair product the job cannot use to :func:`~geodeform.workflows.pair.failed_product_path`.

    The product is marked there (``geodeform_status = "failed"``, ``geodeform_failed`` and
    ``geodeform_degraded`` = the reason; its co-registration stays ``pending``) and leaves the pairs folder
    with its STAC item (rewritten: the reason, ``geodeform:status``, the asset at the new path), so that
    nothing there looks finished while it is not. Idempotent: a product already
    set aside is marked again with the new reason. Returns the new path.
    """
    target = failed_product_path(path)
    source = path if path.is_file() else target
    with xr.open_dataset(source, engine="h5netcdf") as src:
        ds = src.load()
    ds.attrs["geodeform_status"] = "failed"
    ds.attrs["geodeform_failed"] = reason
    ds.attrs["geodeform_degraded"] = reason
    target.parent.mkdir(exist_ok=True)
    write_netcdf(ds, target)
    for old, new in zip(_siblings(path)[1:], _siblings(target)[1:], strict=True):
        if old.is_file():
            old.replace(new)
    _restac(ds, target)
    if source != target:
        path.unlink()
    return target


def _take_back(path: Path) -> Path:
    """A product set aside by an earlier run (:func:`set_aside`) back into the pairs folder; its path."""
    aside = failed_product_path(path)
    if path.is_file() or not aside.is_file():
        return path
    for old, new in zip(_siblings(aside), _siblings(path), strict=True):
        if old.is_file():
            old.replace(new)
    return path


def coregister_pending(outcomes: list[PairOutcome], dates: NDArray[np.datetime64]) -> list[PairOutcome]:
    """Give every ``pending`` pair the job-level co-registration of its dates (see the module notes).

    Parameters
    ----------
    outcomes
        The job's pair outcomes (products on disk).
    dates
        The job's acquisition dates (``outcome.reference`` / ``secondary`` are ISO dates among them).

    Returns
    -------
    list of PairOutcome
        The same outcomes; pending ones now ``degraded`` (co-registration ``job``), or ``failed`` when no
        co-registered pair links their dates.
    """
    pending = [k for k, o in enumerate(outcomes) if o.status == "ok" and o.coregistration == "pending"]
    if not pending:
        return outcomes
    index = {str(d): n for n, d in enumerate(dates)}
    pairs, models = [], []
    for o in outcomes:
        if o.status == "ok" and o.coregistration == "mask":
            with xr.open_dataset(o.path, engine="h5netcdf") as ds:
                models.append(PairCoregistration.from_json(ds.attrs["geodeform_coregistration"]))
            pairs.append((index[o.reference], index[o.secondary]))
    solved = date_biases(len(dates), pairs, models)
    out = list(outcomes)
    for k in pending:
        o = out[k]
        bias = solved.pair(index[o.reference], index[o.secondary])
        if bias is None:
            message = (
                f"{o.degraded}; but no co-registered pair links {o.reference} and {o.secondary} to the "
                "others: not used (its offsets would carry an unknown co-registration bias)"
            )
            log.warning("pair %s_%s: %s", o.reference, o.secondary, message)
            aside = set_aside(Path(o.path), message)
            out[k] = replace(o, status="failed", message=message, path=str(aside), files=(str(aside),))
            continue
        record = PairCoregistration(
            "job",
            tuple(bias[0]),
            tuple(bias[1]),
            0,
            solved.sigma_east,
            solved.sigma_north,  # type: ignore[arg-type]
        )
        degraded = (
            f"{o.degraded}; job-level estimate from {len(pairs)} co-registered pairs "
            f"(±{solved.sigma_east:.2g} m east, ±{solved.sigma_north:.2g} m north)"
        )
        stats = _apply(_take_back(Path(o.path)), bias[0], bias[1], record, degraded)
        log.warning("pair %s_%s degraded: %s", o.reference, o.secondary, degraded)
        out[k] = replace(
            o,
            degraded=degraded,
            coregistration="job",
            stable_nmad_x=stats["stable_nmad_x"],
            stable_nmad_y=stats["stable_nmad_y"],
        )
    return out
