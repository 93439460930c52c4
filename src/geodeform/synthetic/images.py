"""Image series with a known displacement, built from the real Landsat-8 texture shipped with geodeform.

The texture is real (a 576 x 576 Landsat-8 band-4 crop, see ``geodeform/data/README.md``), the motion is
imposed, so every number measured on these images can be checked against the truth. Degradations found on
real images can be added one by one: sensor noise, a radiometric change between dates (gain, offset,
gamma), saturated clouds, and a per-date mis-registration (geolocation error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.synthetic.fields import F64, Field, add, constant

__all__ = ["SyntheticSeries", "image_series", "load_texture", "radiometric_change", "warp"]


def load_texture() -> npt.NDArray[np.uint16]:
    """The shipped 576 x 576 Landsat-8 B4 crop (uint16 DN, 30 m pixels)."""
    with resources.files("geodeform").joinpath("data", "landsat8_b4_crop.npz").open("rb") as fh:
        return np.load(fh)["b4"]


def warp(texture: npt.ArrayLike, field: Field, *, iterations: int = 10) -> F64:
    """The texture moved by ``field``: a feature at (row, col) goes to (row + dy, col + dx).

    Parameters
    ----------
    texture
        2-D image (the reference).
    field
        Displacement in pixels at reference coordinates, see :mod:`geodeform.synthetic.fields`.
    iterations
        Fixed-point iterations of the inverse mapping ``p = q - d(p)`` (10 is exact to 1e-6 px for smooth
        fields below a few pixels).

    Returns
    -------
    ndarray
        float64 image of the texture's shape; quintic spline interpolation, mirrored at the edges.
    """
    tex = np.asarray(texture, dtype=np.float64)
    if tex.ndim != 2:
        raise InvalidInputError(f"texture must be a 2-D image, got shape {tex.shape}")
    rr, cc = np.meshgrid(*(np.arange(n, dtype=float) for n in tex.shape), indexing="ij")
    pr, pc = rr.copy(), cc.copy()
    for _ in range(iterations):
        dx, dy = field(pr, pc)
        pr, pc = rr - dy, cc - dx
    return ndimage.map_coordinates(tex, [pr, pc], order=5, mode="mirror")


def radiometric_change(
    image: npt.ArrayLike, *, gain: float, offset: float, gamma: float, span: tuple[float, float]
) -> F64:
    """Another illumination or sensor: ``lo + (hi - lo) (gain s**gamma + offset)`` with ``s`` the image
    scaled to [0, 1] over ``span = (lo, hi)`` (DN). ``gain=1, offset=0, gamma=1`` changes nothing."""
    lo, hi = span
    s = np.clip((np.asarray(image, float) - lo) / (hi - lo), 0, None)
    return lo + (hi - lo) * (gain * s**gamma + offset)


@dataclass(frozen=True)
class SyntheticSeries:
    """Images of one surface at several dates, and what was done to them.

    Attributes
    ----------
    images
        One uint16 image (DN, 1..65534) per date.
    fields
        ``fields[k]``: the true ground displacement of date k since date 0, pixels (see :meth:`truth`).
    misregistration
        (n_dates, 2) geolocation error (dx, dy) of each date, pixels (0 for date 0): image k shows the
        ground moved by ``fields[k]`` plus this shift. A pair (i, j) has the bias ``m[j] - m[i]``.
    clouds
        One boolean mask per date, True under a (saturated) cloud.
    snr_db
        Signal-to-noise ratio of the Gaussian sensor noise of every image, dB.
    """

    images: tuple[npt.NDArray[np.uint16], ...]
    fields: tuple[Field, ...]
    misregistration: F64
    clouds: tuple[npt.NDArray[np.bool_], ...]
    snr_db: float

    def truth(self, k: int, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[F64, F64]:
        """True ground displacement (dx, dy) of date k since date 0, pixels, at reference (row, col),
        without the mis-registration."""
        return self.fields[k](np.asarray(rows, float), np.asarray(cols, float))

    def pair_truth(self, i: int, j: int, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[F64, F64]:
        """What a matcher should measure on the pair (i, j): ground motion from date i to date j plus the
        pair's mis-registration, pixels, at (row, col) of image i (exact for fields that vary slowly over
        the displacement itself)."""
        xi, yi = self.truth(i, rows, cols)
        xj, yj = self.truth(j, rows, cols)
        m = self.misregistration[j] - self.misregistration[i]
        return xj - xi + m[0], yj - yi + m[1]


def _cloud(shape: tuple[int, int], rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    r0, c0 = rng.uniform(0.2, 0.8, 2) * shape
    radius = 0.1 * min(shape)
    return (rr - r0) ** 2 + (cc - c0) ** 2 < radius**2


def image_series(
    fields: Sequence[Field],
    *,
    snr_db: float = 30.0,
    size: int | None = None,
    texture: npt.ArrayLike | None = None,
    misregistration_px: float = 0.0,
    radiometric: float = 0.0,
    cloudy: Sequence[int] = (),
    seed: int = 0,
) -> SyntheticSeries:
    """One image per displacement field, on a real texture.

    Parameters
    ----------
    fields
        ``fields[k]``: ground displacement of date k since the first date, pixels (``fields[0]`` is usually
        zero, e.g. :func:`~geodeform.synthetic.fields.constant` ``(0, 0)``); build them with
        :mod:`geodeform.synthetic.fields`.
    snr_db
        Signal-to-noise ratio of the independent Gaussian noise of every image, dB (texture std / noise std).
    size
        Use the upper-left ``size`` x ``size`` crop of the texture (default: all of it, 576 px).
    texture
        Another 2-D texture (default: :func:`load_texture`).
    misregistration_px
        Each date after the first is shifted by its own random (dx, dy), uniform in ± this, pixels.
    radiometric
        Strength of the radiometric change of each date after the first: gain 1 ± ``0.1 r``, offset
        ± ``0.03 r``, gamma 1 ± ``0.08 r`` (normal draws, ``r = radiometric``; 1 is the demo's level, 0 none).
    cloudy
        Dates that get a saturated cloud (a disc of radius 10 % of the image side at a random place).
    seed
        Seed of every random draw (noise, mis-registration, radiometry, clouds).

    Returns
    -------
    SyntheticSeries
        The images and the truth.
    """
    tex = np.asarray(load_texture() if texture is None else texture, dtype=np.float64)[:size, :size]
    n = len(fields)
    if n == 0:
        raise InvalidInputError("image_series needs at least one displacement field")
    if any(not 0 <= k < n for k in cloudy):
        raise InvalidInputError(f"cloudy dates {list(cloudy)} must be in 0..{n - 1}")
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # the degradations do not change the noise draws
    sigma = tex.std() / 10 ** (snr_db / 20)
    span = tuple(np.percentile(tex, [0.5, 99.5]))
    misreg = (
        extra.uniform(-misregistration_px, misregistration_px, (n, 2))
        if misregistration_px
        else np.zeros((n, 2))
    )
    misreg[0] = 0.0
    images, clouds = [], []
    for k, field in enumerate(fields):
        mx, my = misreg[k]

        img = warp(tex, add(field, constant(mx, my)))
        if radiometric and k:  # date 0 keeps the texture's radiometry
            g, o, y = extra.standard_normal(3) * radiometric * np.array([0.1, 0.03, 0.08])
            img = radiometric_change(img, gain=1 + g, offset=o, gamma=1 + y, span=span)
        img = img + rng.normal(0, sigma, tex.shape)
        cloud = _cloud(tex.shape, extra) if k in cloudy else np.zeros(tex.shape, bool)
        img = np.where(cloud, 40000.0, img)
        images.append(np.clip(np.rint(img), 1, 65534).astype(np.uint16))
        clouds.append(cloud)
    return SyntheticSeries(tuple(images), tuple(fields), misreg, tuple(clouds), snr_db)
