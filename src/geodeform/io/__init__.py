"""Reading georeferenced rasters and writing offset products (COG GeoTIFF, CF-1.8 NetCDF, STAC items).

Sign conventions: pixel offsets are reference -> secondary (a feature at (row, col) in the reference appears
at (row + dy, col + dx) in the secondary); written products are in metres / m/yr with +x = increasing map x
(east for UTM) and +y = increasing map y (north for UTM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.io.atomic import DiskFullError, atomic_output, is_disk_full
    from geodeform.io.dates import (
        DAYS_PER_YEAR,
        AcquisitionDates,
        PairDates,
        acquisition_date,
        date_from_path,
        pair_dates,
        parse_date,
        parse_dates_option,
    )
    from geodeform.io.grid import GeoGrid, MapOffsets, apply_transform, node_grid, pixel_offsets_to_map
    from geodeform.io.masks import raster_on_grid, read_mask, slope_degrees, speed_on_grid
    from geodeform.io.media import MEDIA_TYPES, media_type
    from geodeform.io.product import (
        OffsetField,
        ProductSummary,
        composite_dataset,
        dataset_grid,
        offset_dataset,
        speed,
        summarize_product,
        timeseries_dataset,
    )
    from geodeform.io.raster import (
        READ_THREADS,
        CorruptRasterError,
        NoOverlapError,
        NotGeoreferencedError,
        RasterBand,
        RasterPair,
        band_index,
        fill_values,
        gdal_path,
        read_band,
        read_grid,
        read_on_grid,
        read_pair,
        window_vrt,
    )
    from geodeform.io.writers import (
        COG_BANDS,
        COMPOSITE_VARIABLES,
        PRODUCT_SUFFIXES,
        SERIES_VARIABLES,
        SeriesStore,
        product_format,
        series_netcdf,
        update_netcdf_attrs,
        write_catalog,
        write_cog,
        write_netcdf,
        write_product,
        write_stac_item,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "atomic": (
            "DiskFullError",
            "atomic_output",
            "is_disk_full",
        ),
        "dates": (
            "DAYS_PER_YEAR",
            "AcquisitionDates",
            "PairDates",
            "acquisition_date",
            "date_from_path",
            "pair_dates",
            "parse_date",
            "parse_dates_option",
        ),
        "grid": (
            "GeoGrid",
            "MapOffsets",
            "apply_transform",
            "node_grid",
            "pixel_offsets_to_map",
        ),
        "masks": (
            "raster_on_grid",
            "read_mask",
            "slope_degrees",
            "speed_on_grid",
        ),
        "media": (
            "MEDIA_TYPES",
            "media_type",
        ),
        "product": (
            "OffsetField",
            "ProductSummary",
            "composite_dataset",
            "dataset_grid",
            "offset_dataset",
            "speed",
            "summarize_product",
            "timeseries_dataset",
        ),
        "raster": (
            "READ_THREADS",
            "CorruptRasterError",
            "NoOverlapError",
            "NotGeoreferencedError",
            "RasterBand",
            "RasterPair",
            "band_index",
            "fill_values",
            "gdal_path",
            "read_band",
            "read_grid",
            "read_on_grid",
            "read_pair",
            "window_vrt",
        ),
        "writers": (
            "COG_BANDS",
            "COMPOSITE_VARIABLES",
            "PRODUCT_SUFFIXES",
            "SERIES_VARIABLES",
            "SeriesStore",
            "product_format",
            "series_netcdf",
            "update_netcdf_attrs",
            "write_catalog",
            "write_cog",
            "write_netcdf",
            "write_product",
            "write_stac_item",
        ),
    },
)

__all__ = [
    "COG_BANDS",
    "COMPOSITE_VARIABLES",
    "DAYS_PER_YEAR",
    "MEDIA_TYPES",
    "PRODUCT_SUFFIXES",
    "READ_THREADS",
    "SERIES_VARIABLES",
    "AcquisitionDates",
    "CorruptRasterError",
    "DiskFullError",
    "GeoGrid",
    "MapOffsets",
    "NoOverlapError",
    "NotGeoreferencedError",
    "OffsetField",
    "PairDates",
    "ProductSummary",
    "RasterBand",
    "RasterPair",
    "SeriesStore",
    "acquisition_date",
    "apply_transform",
    "atomic_output",
    "band_index",
    "composite_dataset",
    "dataset_grid",
    "date_from_path",
    "fill_values",
    "gdal_path",
    "is_disk_full",
    "media_type",
    "node_grid",
    "offset_dataset",
    "pair_dates",
    "parse_date",
    "parse_dates_option",
    "pixel_offsets_to_map",
    "product_format",
    "raster_on_grid",
    "read_band",
    "read_grid",
    "read_mask",
    "read_on_grid",
    "read_pair",
    "series_netcdf",
    "slope_degrees",
    "speed",
    "speed_on_grid",
    "summarize_product",
    "timeseries_dataset",
    "update_netcdf_attrs",
    "window_vrt",
    "write_catalog",
    "write_cog",
    "write_netcdf",
    "write_product",
    "write_stac_item",
]
