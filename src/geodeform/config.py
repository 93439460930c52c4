"""Job configuration: pydantic v2 models, presets, YAML in and out.

A job is one YAML file (``geodeform init --preset ice > job.yaml``, then ``geodeform run job.yaml``). Its
sections follow the chain: where the images come from (``search`` or local ``inputs``), how they are
paired (``pairs``), matched (``matching``), masked (``masks``), corrected (``corrections``), inverted
(``inversion``), written (``output``) and where the work runs (``compute``). Every field has a unit and a
default; unknown keys are errors.

Presets (:data:`PRESETS`) are partial configs laid under the user's file: ``ice`` (glacier flow, Sentinel-2
B04, pairs of 5-100 days), ``slide`` (slow landslides, long same-season pairs), ``quake`` (pre x post
pairs around ``quake.event_date`` per tile and orbit, stacked; 24 px chips; one shift fitted on every node;
tiles mosaicked, also across UTM zones; rupture trace and slip profiles; no inversion),
``survey`` (several MGRS tiles and orbits, pairs per orbit, mosaics of adjacent tiles), ``sar``
(Sentinel-1 GRD amplitude tracking in radar geometry per relative orbit, geocoded range / azimuth /
line-of-sight products, optional ascending + descending combination to east/north/up; options in
:class:`SarConfig`).
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geodeform.config_quake import QuakeConfig
from geodeform.config_yaml import config_to_yaml
from geodeform.conventions import ProductFormat, date_in_path
from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.pairs import coseismic_pairs, parse_months, parse_season, search_range_px

__all__ = [
    "MAX_JOB_IMAGES",
    "PRESETS",
    "SERVICE_MAX_IMAGES",
    "AOIConfig",
    "ClusterKind",
    "ComputeConfig",
    "CorrectionsConfig",
    "InputImage",
    "InversionConfig",
    "JobConfig",
    "MasksConfig",
    "MatchingConfig",
    "OrthoConfig",
    "OutputConfig",
    "PairsConfig",
    "PreflightConfig",
    "QuakeConfig",
    "SarConfig",
    "SearchConfig",
    "SlurmConfig",
    "config_to_yaml",
    "deep_merge",
    "load_config",
    "preset_config",
    "search_range_px",
]


MAX_JOB_IMAGES = 100_000
"""Most images one job may read (``inputs`` or ``search.max_images``): ten-year daily archives fit."""

SERVICE_MAX_IMAGES = 100
"""Default cap on the images of one web-service job (the form's 2-100); the operator may change it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)


def _tile_epsg(tile: str) -> int | None:
    """EPSG code of the UTM zone of an MGRS tile id; None without the geo extra (pyproj), which the run
    needs anyway.

    Raises
    ------
    InvalidInputError
        Not an MGRS tile id, or one naming no square.
    """
    try:  # pyproj places the squares: imported here so that configs load without the geo extra
        from geodeform.search.mgrs import mgrs_square
    except ImportError:  # pragma: no cover - base install
        return None
    return mgrs_square(tile).epsg


class AOIConfig(_Model):
    """Area of interest: exactly one of a bbox, a vector file or MGRS tiles (tiles may restrict a bbox)."""

    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(west, south, east, north) in degrees (EPSG:4326)."
    )
    geojson: str | None = Field(
        None,
        description="Path of the AOI polygons: any vector file (GeoJSON, KML, shapefile or zipped "
        "shapefile, GeoPackage, FlatGeobuf), in its own CRS.",
    )
    tiles: list[str] = Field(
        default_factory=list,
        description="Sentinel-2 MGRS tile ids, e.g. ['07VCG']. Alone, the (union of the) tiles is the AOI; "
        "with a bbox/GeoJSON they restrict the scenes to those tiles.",
    )

    @field_validator("bbox")
    @classmethod
    def _bbox_order(cls, v: tuple[float, float, float, float] | None) -> Any:
        if v is not None:
            w, s, e, n = v
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError(
                    "bbox must be (west, south, east, north) in degrees with west < east, south < north"
                )
        return v

    @field_validator("tiles")
    @classmethod
    def _tile_ids(cls, v: list[str]) -> list[str]:
        for tile in v:
            _tile_epsg(tile)  # InvalidInputError (a ValueError) names a bad id
        return v

    @model_validator(mode="after")
    def _one_area(self) -> AOIConfig:
        if self.bbox is not None and self.geojson is not None:
            raise ValueError("give either aoi.bbox or aoi.geojson, not both")
        if self.bbox is None and self.geojson is None and not self.tiles:
            raise ValueError("no area of interest: set aoi.bbox, aoi.geojson or aoi.tiles")
        zones = {_tile_epsg(t) for t in self.tiles} - {None}
        if self.bbox is None and self.geojson is None and len(zones) > 1:
            # the tiles alone are the area, and one job has one grid
            raise ValueError(
                f"aoi.tiles {', '.join(self.tiles)} span several UTM zones (EPSG {sorted(zones)}); one job "
                "needs one grid: split the job per zone, or give a bbox"
            )
        return self


class SearchConfig(_Model):
    """Catalogue search: which scenes over the AOI (web form: collection, dates, filters)."""

    collection: str = Field(
        "sentinel-2-l2a",
        description="Collection: sentinel-2-l2a, sentinel-2-l1c, landsat-c2-l2, sentinel-1-grd (or the "
        "catalogue's own id).",
    )
    catalog: str = Field(
        "earth-search",
        description="earth-search, cdse, a STAC API URL, or a local folder of scenes indexed on the fly.",
    )
    start: dt.date = Field(..., description="First acquisition date (inclusive), YYYY-MM-DD.")
    end: dt.date = Field(..., description="Last acquisition date (inclusive), YYYY-MM-DD.")
    aoi: AOIConfig = Field(..., description="Area of interest.")
    months: str | None = Field(
        None, description="Season within each year, e.g. '6-9' (June-September); '11-2' wraps the new year."
    )
    max_cloud: float = Field(90.0, ge=0, le=100, description="Maximum scene-wide cloud cover, percent.")
    max_aoi_cloud: float = Field(
        20.0, ge=0, le=100, description="Maximum cloud cover computed on the AOI (SCL / QA_PIXEL), percent."
    )
    min_valid: float = Field(60.0, ge=0, le=100, description="Minimum valid data on the AOI, percent.")
    orbits: list[int] = Field(
        default_factory=list, description="Relative orbits (or WRS-2 paths) to keep; empty keeps all."
    )
    max_images: int = Field(
        20,
        ge=2,
        le=MAX_JOB_IMAGES,
        description="Number of images kept: the clearest over the AOI, per orbit (the web service caps it, "
        "100 by default).",
    )
    band: str = Field("B04", description="Band matched (Sentinel-2 B04 = red, 10 m).")
    resolution: float | None = Field(
        None, gt=0, description="Pixel size of the common grid, metres (default: the band's own)."
    )
    mask_clouds: bool = Field(
        True, description="Mask cloudy / no-data pixels of each image with its SCL / QA_PIXEL band."
    )

    @field_validator("months")
    @classmethod
    def _months(cls, v: str | None) -> str | None:
        parse_months(v)  # InvalidInputError (a ValueError) says what is wrong
        return v

    @model_validator(mode="after")
    def _dates(self) -> SearchConfig:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}; swap them")
        try:  # the search package needs the geo extra, which the run needs anyway
            from geodeform.search.catalogs import CATALOGS, resolve_collection
        except ImportError:  # pragma: no cover - base install
            return self
        if self.catalog.lower() in CATALOGS:  # a named catalogue: is the collection offered there?
            resolve_collection(self.collection, self.catalog.lower())  # InvalidInputError says where it is
        return self


class InputImage(_Model):
    """One local image (instead of a catalogue search).

    In YAML, an item is either a mapping (``- path: a.tif`` with the optional keys below) or just the path
    (``- S2B_33TWM_20230813_0_L2A/B04.tif``) when the date is in the file or folder name.
    """

    path: str = Field(..., description="GeoTIFF (or any raster GDAL reads) of one acquisition.")
    date: dt.date | None = Field(
        None,
        description="Acquisition date, YYYY-MM-DD. Default: the first YYYYMMDD in the file name, else in "
        "the folders above it (Sentinel-2 and Landsat product names carry it).",
    )
    band: int | str = Field(
        1,
        description="Band in the file: 1-based number, or name (band description, BANDNAME tag or colour "
        "such as 'red') for multi-band files.",
    )

    @field_validator("band")
    @classmethod
    def _band(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"band numbers start at 1, got {v}")
        if isinstance(v, str) and not v.strip():
            raise ValueError("band name is empty")
        return v

    orbit: int | None = Field(None, description="Orbit / track label: pairs are formed within one orbit.")
    tile: str | None = Field(
        None,
        description="Tile label (quake preset): images of one tile share a grid; tiles are matched apart "
        "and mosaicked, also across UTM zones. Other presets take one tile.",
    )
    mask: str | None = Field(
        None,
        description="Cloud / no-data mask of this image: a Sentinel-2 SCL or Landsat QA_PIXEL raster, a "
        "raster with 1 = masked, or polygons; 'none' for no mask. Default: the scene's own SCL / QA_PIXEL "
        "when it sits next to the band (Earth Search folder, SAFE, Landsat product), else none.",
    )

    @model_validator(mode="after")
    def _date_from_name(self) -> InputImage:
        if self.date is None:
            self.date = date_in_path(self.path)
            if self.date is None:
                raise ValueError(
                    f"no date for {self.path}: none given and no YYYYMMDD in its name or folders; "
                    "add date: YYYY-MM-DD to this item"
                )
        return self

    @property
    def day(self) -> dt.date:
        """The acquisition date (given or read from the name; always set after validation)."""
        assert self.date is not None
        return self.date


class PairsConfig(_Model):
    """Pair selection (web form: matching mode, min/max matching range, direction)."""

    mode: Literal["acquisitions", "days"] = Field(
        "days", description="Matching range counted in acquisitions (1 = consecutive) or in days."
    )
    min_range: float = Field(5, ge=0, description="Minimum matching range (acquisitions or days).")
    max_range: float = Field(100, gt=0, description="Maximum matching range (acquisitions or days).")
    direction: Literal["forward", "backward", "both"] = Field(
        "forward", description="forward: earlier image as reference; backward: later; both: the two."
    )
    season: tuple[str, str] | None = Field(
        None, description="Both images of a pair in this window ('MM-DD', 'MM-DD'), e.g. ('07-01', '09-30')."
    )
    same_orbit: bool = Field(
        True, description="Pair only images of the same relative orbit (same view geometry, no parallax)."
    )

    @field_validator("season")
    @classmethod
    def _season(cls, v: tuple[str, str] | None) -> tuple[str, str] | None:
        if v is not None:
            parse_season(v)  # InvalidInputError (a ValueError) says what is wrong
        return v

    @model_validator(mode="after")
    def _range(self) -> PairsConfig:
        if self.min_range > self.max_range:
            raise ValueError(f"min_range {self.min_range} is larger than max_range {self.max_range}")
        if self.mode == "acquisitions" and (self.min_range != int(self.min_range) or self.min_range < 1):
            raise ValueError("in 'acquisitions' mode min_range is a whole number >= 1")
        return self


class MatchingConfig(_Model):
    """Offset tracking (``geodeform.offsets.match``)."""

    method: Literal["ncc", "phase", "flow"] = Field("ncc", description="Matcher: ncc, phase or flow.")
    chip_size: int = Field(32, ge=4, le=512, description="Correlation window, pixels.")
    step: int = Field(16, ge=1, le=512, description="Grid spacing of the output nodes, pixels.")
    search_range: int | None = Field(
        None,
        ge=1,
        le=512,
        description="Search radius, pixels. Default: derived per pair from expected_max_speed x dt / pixel "
        "size (x1.5 + 2 px), or per node from reference_velocity. Never zero.",
    )
    expected_max_speed: float = Field(
        1000.0, gt=0, description="Largest expected ground speed, m/yr (sets the search range)."
    )
    expected_max_displacement: float = Field(
        0.0,
        ge=0,
        description="Largest expected displacement of any pair regardless of dt (e.g. co-seismic), metres; "
        "added to the speed-derived range.",
    )
    reference_velocity: str | None = Field(
        None,
        description="Velocity map (NetCDF with vx/vy or a speed GeoTIFF, m/yr) giving a per-node search "
        "range; expected_max_speed then only bounds it.",
    )
    prefilter: Literal["wallis", "highpass", "gradient", "rank"] | None = Field(
        None, description="Pre-filter both images (radiometric change, shadows)."
    )
    max_search_range: int = Field(
        128,
        ge=1,
        le=1024,
        description="Cap on the derived search radius, pixels (a wider one fails preflight).",
    )
    smoothing_model: Literal["plane", "quadratic-sided"] = Field(
        "plane",
        description="ncc's adaptive smoothing: plane (default) or quadratic-sided (no curvature bias at a "
        "glacier's margin; the inversion then uses the error model calibrated for it: isotropic, scaled by "
        "the smoothing gain, unsmoothed values on still ground next to the ice).",
    )

    @model_validator(mode="after")
    def _smoothing(self) -> MatchingConfig:
        if self.smoothing_model != "plane" and self.method != "ncc":
            raise ValueError(f"smoothing_model: {self.smoothing_model} is ncc's; method is {self.method}")
        return self


class MasksConfig(_Model):
    """Masks: glacier outlines (moving ice) and stable ground (co-registration reference)."""

    glacier: str | None = Field(
        None,
        description="Glacier outlines: polygons in any vector format (shapefile, GeoPackage, GeoJSON, "
        "KML...) or a raster (1 = ice); outside = stable.",
    )
    stable: str | None = Field(
        None,
        description="Stable-ground polygons or raster (1 = stable); default: outside the glacier mask. "
        "Without any mask (nor dem), corrections.reference says which ground is used.",
    )
    water: str | None = Field(
        None,
        description="Water (lakes, fjords: no ground, drifting ice): polygons or a raster (1 = water), "
        "'scl' (Sentinel-2 SCL water class of the images) or 'ndwi' (green/NIR bands next to the images); "
        "water nodes are left out of the products and the stable ground.",
    )


class CorrectionsConfig(_Model):
    """Corrections and filters applied to each pair (``geodeform.corrections.correct_offsets``)."""

    enabled: bool = Field(True, description="Apply co-registration and filters.")
    plane: bool = Field(True, description="Remove a plane (not only a shift) fitted on stable ground.")
    reference: Literal["auto", "all"] = Field(
        "auto",
        description="Ground the co-registration is fitted on when the job gives no mask (masks.stable, "
        "masks.glacier, dem): auto = the nodes near the dominant offset of each pair (right when most "
        "of the scene is static), all = every node (robust fit; both sides of an earthquake move). With "
        "a mask it is never used: a pair with too little stable ground takes the job-level estimate.",
    )
    min_stable: int = Field(
        20,
        ge=3,
        description="Fewest stable-ground nodes with data for a pair's own co-registration; below it the "
        "pair takes the job-level estimate (other pairs of its dates) and is marked degraded.",
    )
    min_quality: float = Field(0.2, ge=0, le=1, description="Drop nodes whose match quality is below this.")
    max_error_px: float = Field(
        1.0,
        gt=0,
        description="Drop nodes whose predicted 1-sigma error exceeds this, pixels (ambiguous, flat or "
        "ridge-shaped correlation peak).",
    )
    consistency_px: float = Field(
        1.0,
        gt=0,
        description="Neighbourhood-consistency (NDC) tolerance, pixels: a node farther than this from most "
        "of its neighbours is dropped (grows with the expected displacement).",
    )
    mad_threshold: float = Field(
        4.0, gt=0, description="Neighbourhood median/MAD outlier filter threshold, robust sigmas."
    )
    stripes: bool = Field(
        False, description="Remove along-track stripes (jitter), estimated on stable ground."
    )
    track_angle_deg: float = Field(
        12.0, ge=-90, le=90, description="Along-track direction for stripes, degrees clockwise from north."
    )


class PreflightConfig(_Model):
    """Checks of the images before matching (``geodeform.workflows.preflight``)."""

    drop_bad_images: bool = Field(
        True,
        description="Drop unusable images (no data on the AOI, constant or textureless, duplicates) with a "
        "warning naming each and go on; false stops the job listing them all.",
    )
    min_valid: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Smallest share of the AOI an image needs with data and contrast (not cloud, haze, "
        "shadow), 0-1; partly usable images above it are kept with a warning.",
    )


class InversionConfig(_Model):
    """Time-series inversion (``geodeform.timeseries.invert``)."""

    enabled: bool = Field(True, description="Invert the pair network into time series and mean velocity.")
    smoothing: float = Field(0.1, ge=0, description="Temporal Laplacian weight (0 = none).")
    robust: bool = Field(True, description="Reject outlier pairs per pixel.")
    weights: Literal["none", "dt", "error"] = Field(
        "error", description="Pair weights: equal, growing variance with dt, or 1/error^2 of each map."
    )


_DEFAULT_FORMATS: tuple[ProductFormat, ...] = ("netcdf", "cog")


class OutputConfig(_Model):
    """What is written in the run folder."""

    formats: list[ProductFormat] = Field(
        default_factory=lambda: list(_DEFAULT_FORMATS), description="Product formats of the velocity maps."
    )
    stac: bool = Field(True, description="Write a STAC catalogue of the products.")
    report: bool = Field(True, description="Write the HTML report with PNG quicklooks.")


class SlurmConfig(_Model):
    """SLURM through dask-jobqueue (``--cluster slurm``): one Dask worker job per SLURM job."""

    queue: str | None = Field(None, description="Partition (default: the cluster's default partition).")
    account: str | None = Field(None, description="Account charged.")
    walltime: str = Field("01:00:00", description="Wall time of each worker job, HH:MM:SS.")
    cores: int = Field(4, ge=1, description="Cores per worker job.")
    memory: str = Field("16GB", description="Memory per worker job (e.g. 16GB), shared by its processes.")
    jobs: int = Field(2, ge=1, description="Worker jobs to start.")
    job_extra_directives: list[str] = Field(default_factory=list, description="Extra #SBATCH lines.")
    start_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds to wait for the first worker job to start (queue wait included) before the "
        "run stops with the jobs' state.",
    )


ClusterKind = Literal["local", "slurm", "sync", "address"]
"""Where the pairs run: a Dask LocalCluster, SLURM jobs, this process, or an existing Dask scheduler."""


class SarConfig(_Model):
    """Sentinel-1 chain (preset ``sar``): reading, amplitude tracking in radar geometry, geocoding, E/N/U.

    Inputs are Sentinel-1 GRD products with their annotation XML: SAFE folders or measurement TIFFs (local
    ``inputs``), or ``search.collection: sentinel-1-grd``. Pairs are formed within one relative orbit;
    offsets are measured in the reference's radar grid (the secondary resampled onto it through the two
    products' ground control points), converted to range / azimuth / line-of-sight metres and geocoded onto
    one map grid shared by every track.
    """

    polarisation: Literal["VV", "VH", "HH", "HV"] = Field(
        "VV", description="Polarisation matched (the measurement of that polarisation in each product)."
    )
    radiometry: Literal["sigma0", "beta0", "gamma0", "dn"] = Field(
        "sigma0", description="Calibrate to this backscatter with the product's LUT (dn: raw amplitude)."
    )
    denoise: bool = Field(True, description="Subtract the thermal noise LUT before calibration.")
    speckle_filter: Literal["none", "boxcar", "gaussian", "lee"] = Field(
        "none", description="Speckle filter on intensity before the logarithm (none: the chips average it)."
    )
    filter_size: int = Field(3, ge=1, le=31, description="Speckle filter window, radar pixels.")
    looks: float = Field(4.4, gt=0, description="Equivalent number of looks of the input (for lee), 1.")
    resolution: float = Field(20.0, gt=0, description="Pixel size of the geocoded products, metres (UTM).")
    geocoding: Literal["tps", "polynomial"] = Field(
        "tps", description="GCP transformer: thin-plate spline through the GCPs, or a polynomial fit."
    )
    combine: Literal["none", "enu"] = Field(
        "none",
        description="enu: combine the mean line-of-sight and azimuth velocities of every track (ascending "
        "+ descending) into east/north/up (geodeform.decompose.solve_enu).",
    )
    use_azimuth: bool = Field(
        True, description="Use the azimuth (along-track) offsets in the east/north/up combination."
    )
    assume_zero: list[Literal["east", "north", "up"]] = Field(
        default_factory=list,
        description="Components taken as zero in the combination (e.g. [north] for range-only tracks).",
    )


class ComputeConfig(_Model):
    """Where the pairs are matched."""

    cluster: ClusterKind = Field(
        "local",
        description="local: Dask LocalCluster; slurm: dask-jobqueue; sync: this process, no Dask; address: "
        "an existing Dask cluster (compute.address or compute.scheduler_file), never closed by geodeform.",
    )
    workers: int | None = Field(None, ge=1, description="Worker processes (default: cores).")
    threads: int = Field(1, ge=1, description="Threads per worker (matcher threads).")
    slurm: SlurmConfig = Field(default_factory=lambda: SlurmConfig(), description="SLURM options.")
    address: str | None = Field(
        None,
        pattern=r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$",
        description="Scheduler address of an existing Dask cluster (cluster: address), e.g. "
        "tcp://10.0.0.5:8786. Its workers must run geodeform and see the run folder.",
    )
    scheduler_file: str | None = Field(
        None,
        description="Scheduler file (JSON written by dask scheduler --scheduler-file) of an existing Dask "
        "cluster, instead of compute.address.",
    )
    connect_timeout: float = Field(
        30.0, gt=0, description="Seconds to wait for an existing scheduler (cluster: address) to answer."
    )

    @model_validator(mode="after")
    def _address(self) -> ComputeConfig:
        if self.cluster == "address" and (self.address is None) == (self.scheduler_file is None):
            raise ValueError(
                "cluster 'address' needs exactly one of compute.address (tcp://host:port) or "
                "compute.scheduler_file"
            )
        return self


class OrthoConfig(_Model):
    """Input images that come with RPCs or only GCPs (Pléiades, SPOT 6/7, WorldView, PlanetScope basic):
    orthorectified onto the job grid with the job's ``dem``."""

    refine: bool = Field(
        True,
        description="Refine each RPC model against the first (reference) image on stable ground "
        "(masks.stable, else outside masks.glacier, else the whole image): an image-space shift or affine.",
    )
    model: Literal["shift", "affine"] = Field(
        "shift", description="Refinement model: shift (2 parameters, the usual RPC bias) or affine (6)."
    )
    height: float | None = Field(
        None,
        description="Constant terrain height (m, as the RPCs expect) used without a dem, for flat areas "
        "only; default: the RPC mean height, refused when the terrain parallax exceeds 0.5 px.",
    )


class JobConfig(_Model):
    """One geodeform job (``geodeform run job.yaml``)."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Job name (letters, digits, . _ -); the default run folder is runs/<name>.",
    )
    preset: Literal["ice", "slide", "quake", "survey", "sar", "custom"] = Field(
        "custom", description="Preset the defaults came from (recorded in the products)."
    )
    search: SearchConfig | None = Field(None, description="Catalogue search (or give inputs).")
    inputs: list[InputImage] = Field(
        default_factory=list,
        description=f"Local images on one grid, instead of a search (2-{MAX_JOB_IMAGES:,}): paths, or items "
        "with path, date, band, orbit, mask.",
    )
    roi: tuple[float, float, float, float] | None = Field(
        None,
        description="Region of interest processed, (west, south, east, north) in degrees: the images are "
        "cropped to it (default: the whole AOI / the first input image).",
    )
    dem: str | None = Field(
        None, description="DEM raster (m); stable ground then excludes slopes steeper than steep_slope_deg."
    )
    steep_slope_deg: float = Field(
        30.0, gt=0, le=90, description="Stable ground excludes slopes steeper than this when a DEM is given."
    )
    three_d: bool = Field(
        False,
        description="Slope-parallel 3-D (needs dem): also write east/north/up velocities, up from the DEM "
        "slope and aspect assuming flow parallel to the ground surface (velocity_3d.nc/.tif).",
    )
    pairs: PairsConfig = Field(default_factory=lambda: PairsConfig(), description="Pair selection.")
    matching: MatchingConfig = Field(default_factory=lambda: MatchingConfig(), description="Offset tracking.")
    masks: MasksConfig = Field(default_factory=lambda: MasksConfig(), description="Masks.")
    ortho: OrthoConfig = Field(
        default_factory=lambda: OrthoConfig(), description="Orthorectification of RPC / GCP input images."
    )
    preflight: PreflightConfig = Field(
        default_factory=lambda: PreflightConfig(), description="Image checks before matching."
    )
    corrections: CorrectionsConfig = Field(
        default_factory=lambda: CorrectionsConfig(), description="Corrections."
    )
    inversion: InversionConfig = Field(default_factory=lambda: InversionConfig(), description="Time series.")
    output: OutputConfig = Field(default_factory=lambda: OutputConfig(), description="Products.")
    quake: QuakeConfig | None = Field(
        None, description="Earthquake chain options (preset quake only; quake.event_date is required)."
    )
    compute: ComputeConfig = Field(default_factory=lambda: ComputeConfig(), description="Execution.")
    sar: SarConfig | None = Field(None, description="Sentinel-1 chain options (preset sar).")

    @field_validator("roi")
    @classmethod
    def _roi_order(cls, v: tuple[float, float, float, float] | None) -> Any:
        return AOIConfig._bbox_order(v)

    @field_validator("inputs", mode="before")
    @classmethod
    def _plain_paths(cls, v: Any) -> Any:
        """``inputs: [a.tif, b.tif]``: a bare path is the item ``{path: a.tif}``."""
        if isinstance(v, (list, tuple)):
            return [{"path": str(i)} if isinstance(i, (str, os.PathLike)) else i for i in v]
        if isinstance(v, (str, os.PathLike)):
            raise ValueError("inputs is a list: write one image per line, '- path/to/image.tif'")
        return v

    @model_validator(mode="after")
    def _source(self) -> JobConfig:
        if (self.search is None) == (not self.inputs):
            raise ValueError("give either 'search' (catalogue) or 'inputs' (local images), exactly one")
        if self.inputs:
            if not 2 <= len(self.inputs) <= MAX_JOB_IMAGES:
                raise ValueError(
                    f"inputs: {len(self.inputs)} images given; 2 to {MAX_JOB_IMAGES:,} are allowed"
                )
            days = [(i.tile, i.date) for i in self.inputs]
            # SAR: an ascending and a descending pass may share a date (checked per orbit by the chain)
            if len(set(days)) != len(days) and self.sar is None:
                raise ValueError(
                    "inputs: two images of one tile share one date; keep one per date (or mosaic them "
                    "first; images of different tiles need different inputs[].tile labels)"
                )
            if self.preset != "quake" and len({i.tile for i in self.inputs}) > 1:
                raise ValueError(
                    "inputs of several tiles (inputs[].tile) need preset: quake; other presets match "
                    "every image on one grid: drop the tile labels"
                )
        if self.three_d and self.dem is None:
            raise ValueError("three_d needs a dem (the slope and aspect give the up component)")
        if self.preset == "sar" and self.sar is None:
            self.sar = SarConfig()
        if self.sar is not None:
            _check_sar(self)
        return self

    @model_validator(mode="after")
    def _quake(self) -> JobConfig:
        if self.preset != "quake":
            if self.quake is not None:
                raise ValueError("the quake section is only used by preset: quake; remove it")
            return self
        q = self.quake
        if q is None:
            raise ValueError("quake.event_date is required with preset: quake (the date of the earthquake)")
        if self.corrections.stripes:
            raise ValueError(
                "corrections.stripes is off for quake jobs: destriping on every node would take the slip "
                "into the correction where the fault runs along the track; quake.track_correction removes "
                "stripes and jitter against the trace instead"
            )
        if self.search is not None and not self.search.start < q.event_date < self.search.end:
            raise ValueError(
                f"quake.event_date {q.event_date} is outside the search period {self.search.start}.."
                f"{self.search.end}: the job needs images before and after the event; set search.start "
                "before it and search.end after it"
            )
        tiles: dict[str | None, list[InputImage]] = {}
        for item in self.inputs:
            tiles.setdefault(item.tile, []).append(item)
        for tile, items in tiles.items():
            items = sorted(items, key=lambda i: i.date)
            try:
                coseismic_pairs(
                    [i.date for i in items],
                    q.event_date,
                    orbits=[i.orbit for i in items] if self.pairs.same_orbit else None,
                    pre=q.pre_images,
                    post=q.post_images,
                    max_days=q.max_days,
                    label="inputs" + (f" of tile {tile}" if tile is not None else "") + ": ",
                )
            except GeodeformError as exc:
                raise ValueError(str(exc)) from None
        return self


def _check_sar(job: JobConfig) -> None:
    """What the Sentinel-1 chain cannot do, said at config time."""
    if job.preset not in ("sar", "custom"):
        raise ValueError(f"sar: the sar section belongs to preset sar, not {job.preset}")
    if not job.pairs.same_orbit:
        raise ValueError(
            "pairs.same_orbit: the sar chain matches in radar geometry, which needs one relative orbit per "
            "pair; set it to true (tracks are combined after geocoding with sar.combine: enu)"
        )
    if job.search is not None and job.search.collection.lower() not in ("sentinel-1-grd", "s1-grd", "s1grd"):
        raise ValueError(
            f"search.collection: the sar chain reads Sentinel-1 GRD, not {job.search.collection!r}; set "
            "search.collection: sentinel-1-grd"
        )
    if job.three_d:
        raise ValueError(
            "three_d: slope-parallel 3-D is for optical east/north; the sar chain combines tracks with "
            "sar.combine: enu"
        )


_ICE: dict[str, Any] = {
    "preset": "ice",
    "pairs": {"mode": "days", "min_range": 5, "max_range": 100, "direction": "forward"},
    "matching": {"method": "ncc", "chip_size": 32, "step": 16, "expected_max_speed": 1500.0},
    "corrections": {"plane": True, "min_quality": 0.2},
    "inversion": {"smoothing": 0.1, "weights": "error"},
}
_SLIDE: dict[str, Any] = {
    "preset": "slide",
    "pairs": {"mode": "days", "min_range": 20, "max_range": 800, "direction": "forward"},
    "matching": {"method": "ncc", "chip_size": 32, "step": 8, "expected_max_speed": 50.0, "prefilter": None},
    "corrections": {"plane": True, "min_quality": 0.2},
    "inversion": {"smoothing": 0.3, "weights": "dt"},
}
# Matching as geodeform.quake.FAULT_MATCHING (chip 24, step 8, ncc; two_motion_px in the quake section):
# small chips blend a narrow band at the fault, see docs/benchmarks.md. Pairs are pre x post around
# quake.event_date (pairs.same_orbit is honoured; the other pairs fields are not used). One shift fitted on
# every node (no plane, no destriping): a constant leaves the slip as it is.
_QUAKE: dict[str, Any] = {
    "preset": "quake",
    "pairs": {"mode": "acquisitions", "min_range": 1, "max_range": 2, "direction": "forward"},
    "matching": {
        "method": "ncc",
        "chip_size": 24,
        "step": 8,
        "expected_max_speed": 1.0,
        "expected_max_displacement": 20.0,
    },
    "corrections": {"plane": False, "min_quality": 0.2, "stripes": False, "reference": "all"},
    "inversion": {"enabled": False},
}
_SURVEY: dict[str, Any] = {
    **_ICE,
    "preset": "survey",
    "pairs": {"mode": "days", "min_range": 5, "max_range": 60, "direction": "forward"},
}

_SAR: dict[str, Any] = {
    "preset": "sar",
    "pairs": {"mode": "days", "min_range": 5, "max_range": 60, "direction": "forward", "same_orbit": True},
    "matching": {"method": "ncc", "chip_size": 64, "step": 32, "expected_max_speed": 100.0},
    "corrections": {"plane": True, "min_quality": 0.1},
    "inversion": {"smoothing": 0.1, "weights": "error"},
    "sar": {"polarisation": "VV", "resolution": 20.0},
}

PRESETS: dict[str, dict[str, Any]] = {
    "ice": _ICE,
    "slide": _SLIDE,
    "quake": _QUAKE,
    "survey": _SURVEY,
    "sar": _SAR,
}
"""Partial configs per preset; :func:`load_config` lays the user's file over them."""

_EXAMPLE_SEARCH: dict[str, dict[str, Any]] = {
    "ice": {"start": "2023-06-01", "end": "2023-09-30", "aoi": {"bbox": [-138.7, 60.68, -138.3, 60.82]}},
    "slide": {
        "start": "2019-07-01",
        "end": "2023-09-30",
        "months": "7-9",
        "aoi": {"bbox": [6.66, 44.37, 6.70, 44.40]},
    },
    "quake": {
        "start": "2023-01-01",
        "end": "2023-03-31",
        "aoi": {"bbox": [37.0, 37.2, 37.4, 37.5]},
    },
    "survey": {
        "start": "2023-06-01",
        "end": "2023-09-30",
        "max_images": 40,
        "aoi": {"tiles": ["07VCG", "07VDG"]},
    },
    "sar": {
        "collection": "sentinel-1-grd",
        "start": "2023-06-01",
        "end": "2023-09-30",
        "max_images": 10,
        "aoi": {"bbox": [-138.7, 60.68, -138.3, 60.82]},
    },
}


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base``: nested sections merge key by key, other values of ``top`` replace.

    Neither argument is modified (the result holds deep copies), so presets stay pristine.
    """
    out = copy.deepcopy(dict(base))
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        where = where or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (geodeform init --preset ice lists every key)"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            msg = f"expected a path or a mapping of keys, got {err.get('input')!r}"
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def load_config(source: str | os.PathLike[str] | dict[str, Any]) -> JobConfig:
    """Load and validate a job config (YAML file or mapping), with its preset's defaults underneath.

    Raises
    ------
    InvalidInputError
        Missing or unreadable file, malformed YAML, unknown preset, or any invalid field; the message lists
        every problem with the field's path and the allowed values.
    """
    name = "config"
    if isinstance(source, dict):
        data: Any = copy.deepcopy(source)
    else:
        import yaml

        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise InvalidInputError(f"config file {path} not found; create one with: geodeform init > {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{name}: expected a mapping of sections (name, search, pairs, ...)")
    preset = data.get("preset", "custom")
    if preset not in (*PRESETS, "custom"):
        raise InvalidInputError(
            f"{name}: preset {preset!r} unknown; allowed: {', '.join([*PRESETS, 'custom'])}"
        )
    merged = deep_merge(PRESETS.get(preset, {}), data)
    try:
        return JobConfig.model_validate(merged)
    except ValidationError as exc:
        raise InvalidInputError(_format_errors(exc, name)) from None


_EXAMPLE_EXTRA: dict[str, dict[str, Any]] = {"quake": {"quake": {"event_date": "2023-02-06"}}}


def preset_config(preset: str, *, name: str | None = None) -> JobConfig:
    """The preset's full config with an example search (edit its dates and AOI)."""
    if preset not in PRESETS:
        raise InvalidInputError(f"preset {preset!r} unknown; allowed: {', '.join(PRESETS)}")
    example = {"name": name or f"my-{preset}-job", "search": _EXAMPLE_SEARCH[preset]}
    data = deep_merge(PRESETS[preset], {**example, **_EXAMPLE_EXTRA.get(preset, {})})
    return load_config(data)
