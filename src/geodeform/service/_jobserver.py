"""Imported once by the fork server of a worker's job processes (``set_forkserver_preload``): warms it up.

Every job process is forked from the fork server, so whatever the server has imported and loaded, a job
finds ready: geodeform's stages, xarray's optional array modules, the GDAL drivers, and numba's compiled
kernels (loaded from their cache by one tiny offsets pair). Without this, each job would spend seconds
importing and loading the same code again.

numba's parallel kernels run on the ``workqueue`` threading layer in this process and its forks: GNU
OpenMP (numba's default here) aborts a forked child of a process that has used it, and ``workqueue`` can be
forked. This is set in-process (``numba.config``), not in the environment, so processes the jobs spawn
(a Dask LocalCluster's workers) keep the default layer, which lets several threads run kernels at once.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numba

numba.config.THREADING_LAYER = "workqueue"

import geodeform.service.jobrun  # noqa: E402,F401 - the job processes' code

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Run one tiny offsets pair (writing every product format) so that lazy imports and kernels load."""
    import matplotlib

    matplotlib.use("Agg")
    import dask.array  # noqa: F401 - xarray looks for it on every new variable
    import matplotlib.pyplot
    import rasterio
    from rasterio.transform import from_origin

    import geodeform.workflows.report  # noqa: F401
    from geodeform.demo import load_texture
    from geodeform.workflows import PairSpec, process_pair

    # Two 64 x 64 crops of the shipped texture one pixel apart: the kernels, readers and writers a job uses
    # load the same as on the synthetic glacier pair, without building that pair (0.8 CPU-s of warping per
    # worker start).
    tex = load_texture()
    images = (tex[:64, 1:65], tex[:64, :64])
    with tempfile.TemporaryDirectory(prefix="geodeform-warm-") as tmp:
        ref, sec = Path(tmp) / "a.tif", Path(tmp) / "b.tif"
        profile = dict(
            driver="GTiff",
            width=64,
            height=64,
            count=1,
            dtype="float32",
            crs="EPSG:32607",
            transform=from_origin(350000.0, 6700000.0, 30.0, 30.0),
        )
        for path, image, date in ((ref, images[0], "2020-01-06"), (sec, images[1], "2020-02-05")):
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(image.astype("float32"), 1)
                dst.update_tags(ACQUISITION_DATE=date)
        spec = PairSpec(
            reference=str(ref),
            secondary=str(sec),
            outputs={"netcdf": str(Path(tmp) / "o.nc"), "cog": str(Path(tmp) / "o.tif")},
            stac=True,
            chip_size=16,
            step=16,
            search_range=4,
        )
        process_pair(spec)


try:
    warm_up()
except Exception:  # a cold start is slower, not wrong
    log.warning("warming up the job fork server failed", exc_info=True)
