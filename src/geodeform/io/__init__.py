"""Reading georeferenced rasters and writing offset products (COG GeoTIFF, CF-1.8 NetCDF, STAC items).

Sign conventions: pixel offsets are reference -> secondary (a feature at (row, col) in the reference appears
at (row + dy, col + dx) in the secondary); written products are in metres / m/yr with +x = increasing map x
(east for UTM) and +y = increasing map y (north for UTM).
"""

from __future__ import annotations

from geodeform.io.atomic import atomic_output
from geodeform.io.dates import (
    DAYS_PER_YEAR,
    AcquisitionDates,
    acquisition_date,
    parse_date,
    parse_dates_option,
)
from geodeform.io.grid import GeoGrid, MapOffsets, apply_transform, node_grid, pixel_offsets_to_map
from geodeform.io.product import OffsetField, composite_dataset, dataset_grid, offset_dataset
from geodeform.io.raster import (
    CorruptRasterError,
    NoOverlapError,
    NotGeoreferencedError,
    RasterBand,
    RasterPair,
    read_band,
    read_pair,
)
from geodeform.io.writers import COG_BANDS, write_cog, write_netcdf, write_stac_item

__all__ = [
    "COG_BANDS",
    "DAYS_PER_YEAR",
    "AcquisitionDates",
    "CorruptRasterError",
    "GeoGrid",
    "MapOffsets",
    "NoOverlapError",
    "NotGeoreferencedError",
    "OffsetField",
    "RasterBand",
    "RasterPair",
    "acquisition_date",
    "apply_transform",
    "atomic_output",
    "composite_dataset",
    "dataset_grid",
    "node_grid",
    "offset_dataset",
    "parse_date",
    "parse_dates_option",
    "pixel_offsets_to_map",
    "read_band",
    "read_pair",
    "write_cog",
    "write_netcdf",
    "write_stac_item",
]
