"""Error-model variants and the moving-ice error decomposition on replayed calibration series.

    python benchmarks/replay_errors.py cells DIR 'JSON-OPTS' 'JSON-VARIANTS' [SETUP ...]
    python benchmarks/replay_errors.py decompose DIR 'JSON-OPTS' [SETUP ...]

DIR is a capture of ``replay_smoothing.py capture``; JSON-OPTS the ``NccOptions`` overrides replayed (e.g.
``'{"smoothing_model": "quadratic-sided"}'``; ``"_kink"`` sets the ``-split`` models' test, σ).
Each setup's pairs are replayed twice, with the options and with ``smoothing=0`` (cached under
DIR/replayed/), which gives each node's **smoothing gain**: the reported error of the smoothed value over
that of the node's own chip (how much of a per-chip random error the smoothing's filter leaves; about 1 at
step 8, where the quadratic's windows hardly grow, 0.6-0.7 at step 16).

``cells`` prints, per variant, the cells (moving / still vx / vy of each setup) of ``bench_calibration.py``
in the 60-75 % band (stable-ground noise scale cross-validated by halves, as there), ``*`` marking those
out. A variant is a JSON object with the keys:

- ``kd``, ``ks``: displacement and strain coefficients (the timeseries ``ErrorModel``'s 0.002 / 0.025);
- ``iso``: both components get the vector's term (``ErrorModel(isotropic=True)``), else each its own;
- ``gain``: the systematic terms (pair and velocity) times the node's smoothing gain (at most 1);
- ``pure_noise``: the per-date image noise of ``add_node_errors`` from the matcher's noise alone (the
  library takes it from the pair 1-sigma, systematic terms included);
- ``oracle``: still nodes within this many nodes of the ice take their unsmoothed value and error (what a
  smoothing that stopped exactly at the margin would give there at best; truth-aided, not a method);
- ``margin``: ``[nodes, k]``, the same with the ice detected from the series instead of the truth: nodes
  whose speed in the unsmoothed series' inversion exceeds ``k`` times its noise-only 1-sigma.

``decompose`` regresses, on moving ice, the squared velocity error less the model's noise part
(inversion + image noise) on the candidate systematic terms: ``(chip · |∇v|)²`` (vector footprint gradient)
and ``|v|²`` (vector speed), with and without the smoothing gain, per component and setup; and prints the
bias and scatter of the error by quartile of the library's strain term.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_calibration as bc
import replay_smoothing as rs

from geodeform.timeseries import (
    ErrorModel,
    add_node_errors,
    footprint_gradient,
    invert,
    stable_noise_scale,
)

F64 = NDArray[np.float64]
Captured = rs.Captured  # the capture's pickles name the class in ``__main__`` (replay_smoothing's)
ZERO = ErrorModel(0.0, 0.0)


def replayed(cap: Path, over: dict, name: str) -> tuple[bc.Series, bc.Series]:
    """(series with ``over``, the same pairs unsmoothed) of one setup, cached under ``cap/replayed``."""
    key = json.dumps(over, sort_keys=True).encode().hex()[:48]
    f = cap / "replayed" / f"{name}_{key}.pkl"
    if f.exists():
        return pickle.loads(f.read_bytes())  # type: ignore[no-any-return]
    s, store = pickle.loads((cap / f"setup_{name}.pkl").read_bytes())
    over = dict(over)
    if "_kink" in over:  # the "-split" models' kink test, σ
        rs._ncc_run.KINK_SIGMA = over.pop("_kink")
    out = []
    for o in (over, {**over, "smoothing": 0}):
        parts = [rs._replay(c, dict(o)) for c in store]
        out.append(
            dataclasses.replace(
                s,
                dx=np.stack([p[0] for p in parts]),
                dy=np.stack([p[1] for p in parts]),
                error=np.stack([p[2] for p in parts]).astype(np.float64),
                chip=np.stack([p[3] for p in parts]).astype(np.float64),
            )
        )
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(pickle.dumps(tuple(out)))
    return out[0], out[1]


def detected_motion(raw: bc.Series, k: float) -> NDArray[np.bool_]:
    """Nodes whose speed in the unsmoothed series exceeds ``k`` times its noise-only 1-sigma (the margin
    seen at the velocity level, where a kink of a few hundredths of a pixel per pair is several σ)."""
    nz = np.where(np.isfinite(raw.dx) & np.isfinite(raw.dy), raw.error / np.sqrt(2), np.nan)
    w = np.where(np.isfinite(nz), 1 / nz**2, 0)
    ts = invert(raw.dates, raw.pairs, raw.dx, raw.dy, weights=w)
    cm = np.nanmedian(np.where(np.isfinite(raw.chip), raw.chip, 32.0), axis=0)
    ts = add_node_errors(ts, raw.pairs, nz, step=raw.step, chip=cm, model=ZERO)
    vx, vy = ts.velocity_x.astype(np.float64), ts.velocity_y.astype(np.float64)  # type: ignore[union-attr]
    sx = ts.sigma_velocity_x.astype(np.float64)  # type: ignore[union-attr]
    sy = ts.sigma_velocity_y.astype(np.float64)  # type: ignore[union-attr]
    with np.errstate(invalid="ignore"):
        return np.asarray(np.hypot(vx, vy) > k * np.hypot(sx, sy), bool)


def with_oracle(
    s: bc.Series, raw: bc.Series, nodes: float, moving: NDArray[np.bool_] | None = None
) -> bc.Series:
    """Still nodes within ``nodes`` of the moving ones (the truth's, or ``moving``) take their unsmoothed
    value and error."""
    moving = s.moving if moving is None else moving
    near = ~moving & (ndimage.distance_transform_edt(~moving) <= nodes)
    pick = {k: np.where(near, getattr(raw, k), getattr(s, k)) for k in ("dx", "dy", "error")}
    return dataclasses.replace(s, **pick)


def _gradient(a: F64, b: F64, step: tuple[float, float], chip: F64, iso: bool) -> F64:
    g = footprint_gradient(a, step, chip)
    return np.hypot(g, footprint_gradient(b, step, chip)) if iso else g


def velocity(s: bc.Series, gain: F64, stable: F64, v: dict) -> tuple[F64, F64, F64, F64]:
    """(vx, vy, vx 1-sigma, vy 1-sigma) of the series under variant ``v``, noise scale from ``stable``."""
    kd, ks, iso = v.get("kd", 0.002), v.get("ks", 0.025), v.get("iso", False)
    k = stable_noise_scale(s.dx, s.dy, s.error, stable)
    noise = s.error / np.sqrt(2) * np.where(np.isfinite(k) & (k > 0), k, 1.0)[:, None, None]
    chip = np.where(np.isfinite(s.chip), s.chip, 32.0)
    st = (float(s.step), float(s.step))
    g = np.where(np.isfinite(gain), np.minimum(gain, 1.0), 1.0) if v.get("gain") else np.ones(s.dx.shape)
    valid = np.isfinite(s.dx) & np.isfinite(s.dy)
    sig = {}
    for c, a, b in (("x", s.dx, s.dy), ("y", s.dy, s.dx)):
        mag = np.hypot(a, b) if iso else np.abs(a)
        extra = np.hypot(kd * mag, ks * chip * _gradient(a, b, st, chip, iso)) * g
        sig[c] = np.where(valid, np.sqrt(noise**2 + extra**2), np.nan)
    w = np.sqrt((sig["x"] ** 2 + sig["y"] ** 2) / 2)
    ts = invert(s.dates, s.pairs, s.dx, s.dy, weights=np.where(np.isfinite(w), 1 / w**2, 0))
    cm = {"max": np.nanmax, "mean": np.nanmean}.get(v.get("vchip", ""), np.nanmedian)(chip, axis=0)
    date = {c: np.where(valid, noise, np.nan) if v.get("pure_noise") else sig[c] for c in sig}
    ts = add_node_errors(ts, s.pairs, date["x"], sigma_y=date["y"], step=s.step, chip=cm, model=ZERO)
    vx, vy = ts.velocity_x.astype(np.float64), ts.velocity_y.astype(np.float64)  # type: ignore[union-attr]
    gv = np.nanmedian(g, axis=0)
    out = []
    for c, a, b in (("x", vx, vy), ("y", vy, vx)):
        mag = np.hypot(a, b) if iso else np.abs(a)
        sys_ = np.hypot(kd * mag, ks * cm * _gradient(a, b, st, cm, iso)) * gv
        out.append(np.sqrt(getattr(ts, f"sigma_velocity_{c}").astype(np.float64) ** 2 + sys_**2))
    return vx, vy, out[0], out[1]


def cells(s: bc.Series, raw: bc.Series, v: dict) -> tuple[list[float], str]:
    """Moving vx, vy, still vx, vy coverage (%, cross-validated noise scale) and the margin bands."""
    if "oracle" in v:
        s = with_oracle(s, raw, float(v["oracle"]))
    if "margin" in v:  # detected, not truth-aided: [nodes, k]
        s = with_oracle(s, raw, float(v["margin"][0]), detected_motion(raw, float(v["margin"][1])))
    gain = s.error / raw.error
    still = ~s.moving
    left = np.zeros_like(still)
    left[:, : still.shape[1] // 2] = True
    vx, vy, exl, eyl = velocity(s, gain, still & ~left, v)
    _, _, exr, eyr = velocity(s, gain, still & left, v)
    ex, ey = np.where(left, exl, exr), np.where(left, eyl, eyr)
    res = []
    for where in (s.moving, still):
        _, cx, cy = bc._cover(where, s, vx, vy, ex, ey)
        res += [100 * cx, 100 * cy]
    return res, bc.margin_bands(s, vx, vy, ex, ey)


def run_cells(cap: Path, over: dict, variants: list[dict], names: list[str]) -> None:
    data = {n: replayed(cap, over, n) for n in names}
    for v in variants:
        total = tuning = 0
        row = []
        for n in names:
            r, _ = cells(*data[n], v)
            ok = [60 <= x <= 75 for x in r]
            total += sum(ok)
            tuning += sum(ok) if n in "ABC" else 0
            row.append(f"{n} " + " ".join(f"{x:.1f}{'' if o else '*'}" for x, o in zip(r, ok, strict=True)))
        print(f"{json.dumps(v)}: {total} ({tuning}) | " + " | ".join(row), flush=True)
        if os.environ.get("BANDS"):
            for n in names:
                print(f"  {n} vx by distance (still >3, 3, 2, 1 | ice 1, 2, 3, >3): {cells(*data[n], v)[1]}")


def decompose(cap: Path, over: dict, names: list[str]) -> None:
    for n in names:
        s, raw = replayed(cap, over, n)
        gain = np.minimum(np.nanmedian(s.error / raw.error, axis=0), 1.0)
        k = stable_noise_scale(s.dx, s.dy, s.error, ~s.moving)
        noise = s.error / np.sqrt(2) * np.where(np.isfinite(k), k, 1.0)[:, None, None]
        full = bc.pair_sigma(s.dx, s.dy, s.error, step=s.step, chip=s.chip, noise_scale=k)
        ts = invert(s.dates, s.pairs, s.dx, s.dy, weights=np.where(np.isfinite(full), 1 / full**2, 0))
        nz = np.where(np.isfinite(s.dx), noise, np.nan)
        cm = np.nanmedian(np.where(np.isfinite(s.chip), s.chip, 32.0), axis=0)
        base = add_node_errors(ts, s.pairs, nz, step=s.step, chip=cm, model=ZERO)
        vx, vy = ts.velocity_x.astype(np.float64), ts.velocity_y.astype(np.float64)  # type: ignore[union-attr]
        st = (float(s.step), float(s.step))
        big_g = cm * _gradient(vx, vy, st, cm, True)
        print(
            f"== {n} (step {s.step}): median smoothing gain on moving ice {np.nanmedian(gain[s.moving]):.2f}"
        )
        for c, i, a in (("x", 0, vx), ("y", 1, vy)):
            e = a - s.truth[i]
            sb = getattr(base, f"sigma_velocity_{c}").astype(np.float64)
            m = s.moving & np.isfinite(e) & np.isfinite(sb) & np.isfinite(gain)
            need = (e**2 - sb**2)[m]
            fits = []
            for f in (np.ones(gain.shape), gain**2):
                coef, _ = nnls(np.stack([(big_g**2 * f)[m], ((vx**2 + vy**2) * f)[m]], 1), need)
                fits.append(f"k_strain {np.sqrt(coef[0]):.4f} k_speed {np.sqrt(coef[1]):.4f}")
            print(f" v{c}: without gain {fits[0]}; with gain {fits[1]}")
            own = 0.025 * cm * footprint_gradient(a, st, cm)
            q = np.quantile(own[m], [0, 0.25, 0.5, 0.75, 1.0])
            for lo, hi in itertools.pairwise(q):
                b = m & (own >= lo) & (own <= hi)
                needed = np.sqrt(max(np.mean(e[b] ** 2) - np.mean(sb[b] ** 2), 0.0))
                pred = np.sqrt(np.mean(own[b] ** 2 + (0.002 * np.abs(a[b])) ** 2))
                print(
                    f"   strain term {lo:.3f}-{hi:.3f} px/yr: bias {np.mean(e[b]):+.3f} scatter "
                    f"{np.std(e[b]):.3f} noise part {np.sqrt(np.mean(sb[b] ** 2)):.3f} systematic needed "
                    f"{needed:.3f} predicted {pred:.3f} gain {np.median(gain[b]):.2f}"
                )


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", bc.TimeSeriesWarning)
    mode, cap, over = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    if mode == "cells":
        run_cells(cap, over, json.loads(sys.argv[4]), sys.argv[5:] or list(bc.SETUPS))
    else:
        decompose(cap, over, sys.argv[4:] or list("ABCD"))


if __name__ == "__main__":
    main()
