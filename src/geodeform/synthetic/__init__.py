"""Synthetic image series with a known displacement field, to test settings against a truth.

Real texture (a Landsat-8 crop shipped with the package), imposed motion (:mod:`.fields`: glacier,
landslide, fault, constant shift), and the degradations of real images (:mod:`.images`: noise,
radiometric change, clouds, mis-registration)::

    from geodeform.synthetic import constant, glacier, image_series, scale

    flow = glacier(576, 0.05, still_ground=True)           # 0.05 px/day on the centre line
    series = image_series([scale(flow, d) for d in (0, 16, 32)], misregistration_px=0.3, cloudy=[2])
    dx, dy = series.truth(2, rows, cols)                   # px since date 0

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; +dx toward increasing columns (east on a north-up image), +dy toward increasing rows (south).
Displacements are in pixels. Other synthetic scenes: :mod:`geodeform.quake.synthetic` (rupture pairs and
georeferenced tiles), :mod:`geodeform.sar.simulate` (speckle and complex SAR pairs),
:mod:`geodeform.sar.safe` (Sentinel-1 GRD/SLC SAFE products of a track with a known motion).
"""

from geodeform.synthetic.fields import (
    Field,
    add,
    constant,
    fault,
    glacier,
    glacier_field,
    landslide,
    scale,
    series_field,
)
from geodeform.synthetic.images import SyntheticSeries, image_series, load_texture, radiometric_change, warp

__all__ = [
    "Field",
    "SyntheticSeries",
    "add",
    "constant",
    "fault",
    "glacier",
    "glacier_field",
    "image_series",
    "landslide",
    "load_texture",
    "radiometric_change",
    "scale",
    "series_field",
    "warp",
]
