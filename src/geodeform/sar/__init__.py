"""Sentinel-1 SAR chain: reading GRD/SLC products, amplitude and coherence tracking, LOS products.

>>> from geodeform.sar import open_s1, match_amplitude, radar_offsets, sar_dataset  # doctest: +SKIP
>>> ref, sec = open_s1(path1, polarisation="VV"), open_s1(path2, polarisation="VV")  # doctest: +SKIP
>>> field = match_amplitude(ref, sec, chip_size=64, step=32, search_range=8)  # doctest: +SKIP
>>> product = sar_dataset(radar_offsets(field, ref), ref, resolution=100.0)  # doctest: +SKIP

* :func:`open_s1` reads a measurement (SAFE folder or loose TIFF) with its annotation: orbit direction,
  heading, incidence per pixel, pixel spacing, GCPs, calibration to sigma0 and thermal-noise removal when the
  LUTs are there, SLC bursts.
* :func:`match_amplitude` tracks speckled amplitude images (log-amplitude, optional speckle filter,
  oversampled detection of SLC data) with :func:`geodeform.offsets.match`;
  :func:`match_coherence` tracks complex SLC pairs by maximising the coherence.
* :func:`radar_window` finds the part of a product covering a map grid; :func:`onto_reference`
  resamples a secondary of the same track onto the reference's radar grid through the GCPs.
* :func:`radar_offsets` converts pixel offsets to range / azimuth / line-of-sight metres with the geometry;
  :func:`sar_dataset` geocodes them through the GCPs (and a DEM) and :func:`write_sar_product` writes
  a COG or NetCDF.
* :func:`grd_track` and :func:`write_safe` (:mod:`geodeform.sar.safe`) write synthetic SAFE products with a
  known motion, to try the chain and its settings against a truth (the tutorial "Radar amplitude, step by
  step" uses them).

Pixel offsets follow geodeform's convention (a feature at (row, col) of the reference is at (row + dy,
col + dx) of the secondary): +dx towards increasing range (away from the satellite), +dy along the flight.
Line of sight is + towards the satellite. See the concepts page "Geometry and 3-D decomposition".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.sar.annotation import Annotation, Burst, read_annotation, read_calibration, read_noise
    from geodeform.sar.coherence import CoherenceOptions, match_coherence
    from geodeform.sar.coregister import Resampled, footprint, onto_reference, radar_window
    from geodeform.sar.errors import IncompatiblePairError, MissingAnnotationError, SarProductError
    from geodeform.sar.geocode import map_grid, radar_coordinates, sample_nodes
    from geodeform.sar.geometry import RadarOffsets, radar_offsets
    from geodeform.sar.products import SAR_BANDS, sar_dataset, write_sar_product
    from geodeform.sar.reader import BurstImage, S1Image, check_pair, find_measurements, open_s1
    from geodeform.sar.safe import SafeSpec, SyntheticTrack, grd_track, write_safe
    from geodeform.sar.tracking import amplitude_features, match_amplitude

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "annotation": (
            "Annotation",
            "Burst",
            "read_annotation",
            "read_calibration",
            "read_noise",
        ),
        "coherence": (
            "CoherenceOptions",
            "match_coherence",
        ),
        "coregister": (
            "Resampled",
            "footprint",
            "onto_reference",
            "radar_window",
        ),
        "errors": (
            "IncompatiblePairError",
            "MissingAnnotationError",
            "SarProductError",
        ),
        "geocode": (
            "map_grid",
            "radar_coordinates",
            "sample_nodes",
        ),
        "geometry": (
            "RadarOffsets",
            "radar_offsets",
        ),
        "products": (
            "SAR_BANDS",
            "sar_dataset",
            "write_sar_product",
        ),
        "reader": (
            "BurstImage",
            "S1Image",
            "check_pair",
            "find_measurements",
            "open_s1",
        ),
        "safe": (
            "SafeSpec",
            "SyntheticTrack",
            "grd_track",
            "write_safe",
        ),
        "tracking": (
            "amplitude_features",
            "match_amplitude",
        ),
    },
)

__all__ = [
    "SAR_BANDS",
    "Annotation",
    "Burst",
    "BurstImage",
    "CoherenceOptions",
    "IncompatiblePairError",
    "MissingAnnotationError",
    "RadarOffsets",
    "Resampled",
    "S1Image",
    "SafeSpec",
    "SarProductError",
    "SyntheticTrack",
    "amplitude_features",
    "check_pair",
    "find_measurements",
    "footprint",
    "grd_track",
    "map_grid",
    "match_amplitude",
    "match_coherence",
    "onto_reference",
    "open_s1",
    "radar_coordinates",
    "radar_offsets",
    "radar_window",
    "read_annotation",
    "read_calibration",
    "read_noise",
    "sample_nodes",
    "sar_dataset",
    "write_safe",
    "write_sar_product",
]
