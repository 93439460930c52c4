"""Speckle-robust amplitude offset tracking in the images' own radar grid.

:func:`match_amplitude` takes the arguments of :func:`geodeform.offsets.match` and returns its
:class:`~geodeform.offsets.OffsetField`: it prepares the two SAR images (oversampled detection of complex
SLC data, speckle filter on intensity, logarithm) and matches them with the offset engine. Offsets are in
pixels of the input grid: +dx towards increasing columns (increasing range for Sentinel-1), +dy towards
increasing rows (later azimuth time, i.e. along the flight direction).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from geodeform.errors import InvalidInputError
from geodeform.offsets import OffsetField, match
from geodeform.sar.reader import S1Image, check_pair
from geodeform.sar.speckle import SPECKLE_FILTERS, SpeckleFilter, detect, filter_intensity, oversample_complex

__all__ = ["Transform", "Values", "amplitude_features", "match_amplitude"]

Transform = Literal["log", "amplitude", "intensity"]
Values = Literal["amplitude", "intensity"]


def _intensity(
    image: Any, values: Values, name: str
) -> tuple[NDArray[np.float64] | NDArray[np.complex64], bool]:
    """(intensity or complex data, is_complex) of an array or S1Image."""
    if isinstance(image, S1Image):
        data: Any = image.data
        values = "amplitude" if image.radiometry == "dn" else "intensity"
    else:
        data = np.asarray(image)
    if data.ndim != 2:
        raise InvalidInputError(f"{name}: need a 2-D image, got shape {data.shape}")
    if np.iscomplexobj(data):
        return data.astype(np.complex64), True
    if not np.issubdtype(data.dtype, np.number):
        raise InvalidInputError(f"{name}: need numeric pixels, got dtype {data.dtype}")
    x = data.astype(np.float64)
    if (x[np.isfinite(x)] < 0).any():
        raise InvalidInputError(
            f"{name}: negative {values} values; give linear amplitude or intensity (not dB): 10 ** (dB / 10)"
        )
    return (x * x if values == "amplitude" else x), False


def amplitude_features(
    image: npt.ArrayLike | S1Image,
    *,
    values: Values = "amplitude",
    oversample: int = 1,
    speckle_filter: SpeckleFilter = "none",
    filter_size: int = 3,
    looks: float = 4.4,
    transform: Transform = "log",
    nodata: float | None = 0.0,
) -> NDArray[np.float32]:
    """The image :func:`match_amplitude` correlates: detected, speckle-filtered, log-transformed.

    Parameters
    ----------
    image
        Real amplitude or intensity (linear), complex SLC values, or an :class:`~geodeform.sar.S1Image`.
    values
        Whether a real array holds ``"amplitude"`` (e.g. GRD DN) or ``"intensity"`` (e.g. sigma0, linear).
    oversample
        Band-limited oversampling factor of complex data before detection (ampcor / autoRIFT use 2);
        ignored for real data.
    speckle_filter, filter_size, looks
        See :func:`geodeform.sar.speckle.filter_intensity` (``looks``: ENL of the input, for ``"lee"``).
    transform
        ``"log"`` (dB, default: speckle becomes additive with constant variance), ``"amplitude"`` (√I) or
        ``"intensity"``.
    nodata
        Input value treated as no data (0 = GRD border fill); NaN always is.

    Returns
    -------
    ndarray of float32
        NaN where no data (and where the log of a non-positive intensity is undefined).
    """
    inten, cplx = _intensity(image, values, "image")
    if cplx:
        z = oversample_complex(inten, oversample)
        x = detect(z).astype(np.float64)
    else:
        x = np.asarray(inten, dtype=np.float64)
        if nodata is not None:
            x = np.where(x == (nodata**2 if values == "amplitude" else nodata), np.nan, x)
    x = filter_intensity(x, speckle_filter, size=filter_size, looks=looks).astype(np.float64)
    if transform == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(x > 0, 10.0 * np.log10(x), np.nan)
    elif transform == "amplitude":
        out = np.sqrt(np.maximum(x, 0.0))
    elif transform == "intensity":
        out = x
    else:
        raise InvalidInputError(f"transform={transform!r}; use 'log', 'amplitude' or 'intensity'")
    return out.astype(np.float32)


def match_amplitude(
    reference: npt.ArrayLike | S1Image,
    secondary: npt.ArrayLike | S1Image,
    *,
    method: str = "ncc",
    chip_size: int | tuple[int, int] = 64,
    step: int | tuple[int, int] = 32,
    search_range: int | npt.ArrayLike = 16,
    values: Values = "amplitude",
    oversample: int | None = None,
    speckle_filter: SpeckleFilter = "none",
    filter_size: int = 3,
    looks: float = 4.4,
    transform: Transform = "log",
    nodata: float | None = 0.0,
    mask: npt.ArrayLike | None = None,
    secondary_mask: npt.ArrayLike | None = None,
    threads: int | None = None,
    progress: Any = None,
    **options: Any,
) -> OffsetField:
    """Offset tracking of two SAR amplitude (or SLC) images of one track, robust to speckle.

    Parameters
    ----------
    reference, secondary
        Images of the same size in the same radar grid (same relative orbit): real amplitude or intensity
        arrays, complex SLC arrays, or :class:`~geodeform.sar.S1Image` (then checked with
        :func:`~geodeform.sar.check_pair`: same sensor, mode, polarisation, relative orbit, spacing).
    method, chip_size, step, search_range, mask, secondary_mask, threads, progress, options
        As :func:`geodeform.offsets.match` (chip, step and search in pixels of the input grid; default chip
        64 px because speckle needs larger chips than optical texture). The ``ncc`` matcher's
        ``radiometry`` defaults to ``"linear"`` here: two dates of one track differ by a calibration gain,
        which the gain-and-offset model represents exactly (in intensity, amplitude or, after the
        logarithm, as an offset).
    values
        ``"amplitude"`` or ``"intensity"`` for real arrays (S1Image and complex inputs know theirs).
    oversample
        Oversampling of complex SLC data before detection (default 2, as ampcor and autoRIFT); the offsets
        are returned in input pixels. Ignored for real data. For complex data the ``ncc`` matcher's
        ``min_correlation`` defaults to 0.1 (amplitudes of coherent speckle correlate as the squared
        coherence).
    speckle_filter, filter_size, looks
        Speckle filter applied to both intensities before the logarithm (see
        :func:`geodeform.sar.speckle.filter_intensity`); ``filter_size`` in input pixels. Default
        ``"none"``: when the speckle of the two dates is independent it carries no signal, and the matcher's
        chip weighting already averages it; a filter also blurs the texture that locates the chip.
    transform
        ``"log"`` (default), ``"amplitude"`` or ``"intensity"``.
    nodata
        Input value treated as no data (0: the fill of GRD borders).

    Returns
    -------
    OffsetField
        As :func:`geodeform.offsets.match`; ``params`` also holds the SAR preparation settings.

    Raises
    ------
    InvalidInputError
        Bad images or options (shapes, negative amplitudes, unknown filter or transform).
    IncompatiblePairError
        Two :class:`~geodeform.sar.S1Image` that cannot be matched in radar geometry.
    """
    if isinstance(reference, S1Image) and isinstance(secondary, S1Image):
        check_pair(reference, secondary)
    elif isinstance(reference, S1Image) != isinstance(secondary, S1Image):
        check_pair(reference, secondary)  # type: ignore[arg-type]  # raises: a non-Sentinel-1 image
    if speckle_filter not in SPECKLE_FILTERS:
        raise InvalidInputError(f"speckle_filter={speckle_filter!r}; use one of {list(SPECKLE_FILTERS)}")
    ref_c = np.iscomplexobj(reference.data if isinstance(reference, S1Image) else np.asarray(reference))
    sec_c = np.iscomplexobj(secondary.data if isinstance(secondary, S1Image) else np.asarray(secondary))
    if ref_c != sec_c:
        raise InvalidInputError(
            "reference and secondary: one is complex (SLC), the other real; give two of a kind"
        )
    k = (2 if ref_c else 1) if oversample is None else int(oversample)
    if k < 1:
        raise InvalidInputError(f"oversample: need an integer >= 1, got {oversample!r}")
    k = k if ref_c else 1
    prep = {
        "values": values,
        "oversample": k,
        "speckle_filter": speckle_filter,
        "filter_size": filter_size * k,
        "looks": looks,
        "transform": transform,
        "nodata": nodata,
    }
    if method == "ncc":
        _ncc_defaults(options, complex_data=ref_c)
    ref_f = amplitude_features(reference, **prep)  # type: ignore[arg-type]
    sec_f = amplitude_features(secondary, **prep)  # type: ignore[arg-type]
    field = match(
        ref_f,
        sec_f,
        method=method,
        chip_size=_scale(chip_size, k),
        step=_scale(step, k),
        search_range=np.asarray(search_range) * k
        if np.ndim(search_range)
        else int(np.ceil(float(search_range))) * k,  # type: ignore[arg-type]
        mask=_upsample_mask(mask, k),
        secondary_mask=_upsample_mask(secondary_mask, k),
        threads=threads,
        progress=progress,
        **options,
    )
    params = {**field.params, "sar_preparation": {**prep, "filter_size": filter_size}}
    if k == 1:
        return dataclasses.replace(field, params=params)
    return dataclasses.replace(
        field,
        rows=field.rows / k,
        cols=field.cols / k,
        dx=(field.dx / k).astype(np.float32),
        dy=(field.dy / k).astype(np.float32),
        error=None if field.error is None else (field.error / k).astype(np.float32),
        params=params,
    )


def _ncc_defaults(options: dict[str, Any], *, complex_data: bool) -> None:
    """The ``ncc`` matcher's options that SAR amplitudes change, unless the caller gave them (in place)."""
    if complex_data:
        # amplitudes of coherent speckle correlate as |coherence|²: 0.25 at coherence 0.5
        options.setdefault("min_correlation", 0.1)
    # two dates of one track differ radiometrically by a calibration gain (an offset after the logarithm):
    # the gain-and-offset model is exact, a curvature would only fit the speckle
    options.setdefault("radiometry", "linear")


def _scale(v: int | tuple[int, int], k: int) -> int | tuple[int, int]:
    if isinstance(v, tuple):
        return (int(v[0]) * k, int(v[1]) * k)
    return int(v) * k


def _upsample_mask(mask: npt.ArrayLike | None, k: int) -> Any:
    if mask is None or k == 1:
        return mask
    m = np.asarray(mask, dtype=bool)
    return np.repeat(np.repeat(m, k, axis=0), k, axis=1)
