"""Replay the ``ncc`` matcher's last step (strain correction, smoothing, reported error) on captured pairs.

    python benchmarks/replay_smoothing.py capture DIR [SETUP ...]     # match once, keep the state
    python benchmarks/replay_smoothing.py replay DIR 'JSON-OPTS' [SETUP ...]

``capture`` runs the pairs of ``bench_calibration.py``'s setups (default A-E) or (``peers``) the peer
benchmark's five synthetic cases (seeds 0 and 1, 1024², chip 32, step 16; needs
``/work/shared/peerbench``), keeping each pair's node state as it enters
``geodeform.offsets._ncc_run._finish`` (pickles under DIR).
``replay`` reruns ``_finish`` on that state with the ``NccOptions`` overrides in JSON (e.g.
``'{"smoothing_model": "quadratic"}'``) and prints the calibration table of ``bench_calibration.py`` and the
peer cases' RMSE (px) and coverage: a smoothing variant is judged in seconds instead of re-matching. The
replay of the capture's own options gives ``match``'s offsets and errors bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_calibration as bc

from geodeform.offsets import _ncc_run, driver
from geodeform.timeseries import ErrorModel

PEERBENCH = Path("/work/shared/peerbench")
PEER_CASES = ("shift_const_30dB", "shift_const_10dB", "glacier_20dB", "landslide_20dB", "fault_20dB")


@dataclasses.dataclass
class Captured:
    field: object
    opts: object
    step: tuple[int, int]
    chip: tuple[int, int]


def _capturing(store: list[Captured]):  # type: ignore[no-untyped-def]
    original = _ncc_run._finish

    def finish(job, opts, field):  # type: ignore[no-untyped-def]
        store.append(Captured(pickle.loads(pickle.dumps(field)), opts, job.step, job.chip))
        return original(job, opts, field)

    return original, finish


def _replay(c: Captured, over: dict) -> tuple[np.ndarray, ...]:
    """(dx, dy, error, chip height, unsmoothed dx, dy, error) of one captured pair with ``over`` applied to
    its options."""
    job = dataclasses.make_dataclass("J", ["step", "chip"])(c.step, c.chip)
    field = pickle.loads(pickle.dumps(c.field))
    res = _ncc_run._finish(job, dataclasses.replace(c.opts, **over), field)  # type: ignore[arg-type]
    shape = res.dy.shape
    f = driver._offset_field(res, np.zeros(shape[0]), np.zeros(shape[1]), "ncc", {}, c.chip)
    own_error = f.error if f.error_unsmoothed is None else f.error_unsmoothed
    return f.dx, f.dy, f.error, f.chip_height, f.dx_unsmoothed, f.dy_unsmoothed, own_error


def capture(out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "peers" in names:
        capture_peers(out)
        names = [n for n in names if n != "peers"]
    for name in names:
        store: list[Captured] = []
        original, finish = _capturing(store)
        _ncc_run._finish = finish
        try:
            s = bc.make(bc.SETUPS[name])
        finally:
            _ncc_run._finish = original
        (out / f"setup_{name}.pkl").write_bytes(pickle.dumps((s, store)))
        print("captured", name, len(store), flush=True)


def capture_peers(out: Path) -> None:
    """The peer benchmark's cases (run as ``capture DIR peers``, in a process of its own: the peer
    benchmark sets the thread count on import)."""
    sys.path.insert(1, str(PEERBENCH))
    import peerbench as pb

    tex = pb.read_image(pb.find_texture(None))
    for seed in (0, 1):
        for case in PEER_CASES:
            c = pb.make_synthetic(case, tex, 1024, seed=seed)
            search = int(np.ceil(c["dmax"])) + 4
            store = []
            original, finish = _capturing(store)
            _ncc_run._finish = finish
            try:
                res = driver.match(c["ref"], c["sec"], chip_size=32, step=16, search_range=search, threads=1)
            finally:
                _ncc_run._finish = original
            crlb = pb.crlb(c, 32, 16, search)["crlb_px_median"]
            rr, cc = np.meshgrid(res.rows, res.cols, indexing="ij")
            lo = search + (32 - 1) / 2.0 - 1e-6
            h, w = c["ref"].shape
            inside = (rr >= lo) & (rr <= h - 1 - lo) & (cc >= lo) & (cc <= w - 1 - lo)
            tdx, tdy = (np.broadcast_to(t, rr.shape) for t in c["truth"](rr, cc))
            meta = {"inside": inside, "tdx": np.array(tdx), "tdy": np.array(tdy), "crlb": crlb}
            (out / f"peer_{case}_{seed}.pkl").write_bytes(pickle.dumps((meta, store[0])))
            print("captured", case, seed, flush=True)


def replay(out: Path, over: dict, names: list[str]) -> None:
    """Keys of ``over`` starting with ``_`` set the timeseries' :class:`ErrorModel` (``_strain_fraction``,
    ``_displacement_fraction``) in the calibration's error model (where the smoothing model has no
    calibrated one of its own: ``NodeErrors.calibrated``), or ``_kink`` the ``-split`` smoothing models'
    slope test (``_ncc_run.KINK_SIGMA``); the others are ``NccOptions``."""
    model = {k[1:]: over.pop(k) for k in list(over) if k.startswith("_")}
    if "kink" in model:  # the "-split" models' slope test, σ
        _ncc_run.KINK_SIGMA = model.pop("kink")
    if model:
        em = ErrorModel(**model)
        bc.pair_sigma = functools.partial(bc.pair_sigma, model=em)
        bc.add_node_errors = functools.partial(bc.add_node_errors, model=em)
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", bc.TimeSeriesWarning)
    bc.SMOOTHING = over.get("smoothing_model", "plane")  # the error model run uses for it
    for name in [n for n in names if n in bc.SETUPS]:  # "peers" alone: only the peer cases
        s, store = pickle.loads((out / f"setup_{name}.pkl").read_bytes())
        parts = [_replay(c, over) for c in store]
        s = dataclasses.replace(
            s,
            dx=np.stack([p[0] for p in parts]),
            dy=np.stack([p[1] for p in parts]),
            error=np.stack([p[2] for p in parts]).astype(np.float64),
            chip=np.stack([p[3] for p in parts]).astype(np.float64),
            dx_own=np.stack([p[4] for p in parts]).astype(np.float64),
            dy_own=np.stack([p[5] for p in parts]).astype(np.float64),
            error_own=np.stack([p[6] for p in parts]).astype(np.float64),
        )
        bc.report(name, bc.SETUPS[name], s)
    for p in sorted(out.glob("peer_*.pkl")):
        meta, c = pickle.loads(p.read_bytes())
        dx, dy = _replay(c, over)[:2]
        ok = meta["inside"] & np.isfinite(dx) & np.isfinite(dy)
        rmse = float(np.sqrt(np.mean(np.hypot(dx - meta["tdx"], dy - meta["tdy"])[ok] ** 2)))
        cov = 100.0 * ok.sum() / meta["inside"].sum()
        print(f"{p.stem:28s} RMSE {rmse:.5f} px ({rmse / meta['crlb']:.2f}x CRB) coverage {cov:.1f} %")


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "capture":
        capture(out, sys.argv[3:] or list(bc.SETUPS))
    else:
        replay(out, json.loads(sys.argv[3]), sys.argv[4:] or list(bc.SETUPS))


if __name__ == "__main__":
    main()
