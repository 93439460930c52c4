"""HTML run report: self-contained file, PNG quicklooks, escaping, edge cases, point picking."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("rasterio")
pytest.importorskip("matplotlib")

from affine import Affine  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

from geodeform import __version__  # noqa: E402
from geodeform.errors import InvalidInputError  # noqa: E402
from geodeform.io import GeoGrid, composite_dataset  # noqa: E402
from geodeform.workflows.report import (  # noqa: E402
    PairSummary,
    PointSeries,
    ReportInputs,
    pick_points,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATES = ["2024-06-01", "2024-06-13", "2024-06-25", "2024-07-07"]


def velocity_dataset(ny: int = 30, nx: int = 40, *, nan_cols: int = 5, seed: int = 0) -> xr.Dataset:
    """Glacier-like flow on a 100 m UTM 7N grid: fast east-south-east in the middle, NaN strip on the left."""
    rng = np.random.default_rng(seed)
    yy = np.mgrid[0:ny, 0:nx][0].astype(np.float64)
    vx = 400.0 * np.exp(-((yy - ny / 2) ** 2) / (2 * (ny / 6) ** 2)) + rng.normal(0, 2, (ny, nx))
    vy = -0.25 * vx
    vx[:, :nan_cols] = np.nan
    vy[:, :nan_cols] = np.nan
    v = np.hypot(vx, vy)
    err = np.where(np.isfinite(v), 4.0, np.nan)
    comp = SimpleNamespace(
        vx=vx,
        vy=vy,
        v=v,
        vx_error=err,
        vy_error=err,
        v_error=err,
        count=np.where(np.isfinite(v), 3, 0),
        start=np.datetime64(DATES[0]),
        end=np.datetime64(DATES[-1]),
    )
    grid = GeoGrid(CRS.from_epsg(32607), Affine(100.0, 0, 600000.0, 0, -100.0, 6700000.0), (ny, nx))
    return composite_dataset(comp, grid)


def pairs_ok() -> list[PairSummary]:
    return [
        PairSummary(DATES[0], DATES[1], 12.0, "ok", 0.91, 2.5, 2.1, 0.03),
        PairSummary(DATES[1], DATES[2], 12.0, "ok", 0.88, 3.0, 2.7, 0.05),
        PairSummary(DATES[0], DATES[2], 24.0, "failed", message="too few valid nodes (2 %) <check clouds>"),
        PairSummary(DATES[2], DATES[3], 12.0, "skipped", message="cloud cover 95 %"),
        PairSummary(DATES[1], DATES[3], 24.0, "ok", 0.75, 1.4, 1.6, 0.10),
    ]


def series_at(ds: xr.Dataset) -> list[PointSeries]:
    t = (np.array(DATES, "datetime64[D]") - np.datetime64(DATES[0])).astype(float) / 365.25
    out = []
    for name, x, y in pick_points(ds, 3):
        v = ds.sel(x=x, y=y)
        east, north = float(v["vx"]) * t, float(v["vy"]) * t
        out.append(
            PointSeries(name, x, y, DATES, east + 0.1, north, np.full(4, 0.3), np.full(4, 0.3), east, north)
        )
    return out


def make_inputs(ds: xr.Dataset | None, **kw: object) -> ReportInputs:
    args: dict[str, object] = {
        "title": "Kaskawulsh <Glacier> & co",
        "velocity": ds,
        "dates": DATES,
        "pairs": pairs_ok(),
        "points": series_at(ds) if ds is not None else [],
        "parameters": {
            "offsets": {"method": "ncc", "chip_size": 32, "note": "<script>alert('x')</script>"},
            "pairs": {"max_days": 48},
            "bands": ["B08", "B04"],
        },
        "summary": {"velocity error vs truth": "RMSE 12 m/yr (0.03 px)"},
        "crs": "EPSG:32607",
        "attribution": ["Contains modified Copernicus Sentinel data 2024"],
    }
    args.update(kw)
    return ReportInputs(**args)  # type: ignore[arg-type]


def read_png(data: bytes) -> np.ndarray:
    assert data[:8] == PNG_SIGNATURE
    img = imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def embedded_images(page: str) -> list[bytes]:
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in srcs), [s[:40] for s in srcs]
    return [base64.b64decode(s[len(prefix) :], validate=True) for s in srcs]


def table_rows(page: str, cls: str) -> list[str]:
    m = re.search(rf'<table class="{cls}">(.*?)</table>', page, re.S)
    assert m, f"no table {cls!r}"
    body = m.group(1).split("<tbody>", 1)[1]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def test_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    ds = velocity_dataset()
    truth = ds["v"] * 1.05
    out = write_report(make_inputs(ds, speed_truth=truth), tmp_path / "run")
    assert out == tmp_path / "run" / "report.html" and out.is_file()
    page = out.read_text(encoding="utf-8")

    # nothing fetched: every src/href is an embedded PNG or an in-page anchor; no script, no stylesheet link
    for ref in re.findall(r"\b(?:src|href)\s*=\s*\"([^\"]*)\"", page):
        assert ref.startswith(("data:image/png;base64,", "#")), ref
    assert not re.search(r"<script|<link|@import|url\(|<iframe", page, re.I)
    images = embedded_images(page)
    assert len(images) == 6  # velocity, error, truth, series, network, per-pair errors
    for data in images:
        read_png(data)

    quick = tmp_path / "run" / "quicklooks"
    names = {p.name for p in quick.glob("*.png")}
    assert names == {
        "velocity.png",
        "velocity_error.png",
        "truth.png",
        "network.png",
        "errors.png",
        "series.png",
    }
    for p in quick.glob("*.png"):
        read_png(p.read_bytes())
    assert read_png((quick / "velocity.png").read_bytes()).shape[1] >= 600  # readable size
    assert sorted(images, key=len) == sorted((p.read_bytes() for p in quick.glob("*.png")), key=len)
    assert not list((tmp_path / "run").rglob(".*.tmp"))  # atomic writes left no temp file

    # one table row per pair, in order, with their dates, status and (escaped) messages
    rows = table_rows(page, "num pairs")
    assert len(rows) == 5
    assert "2024-06-01" in rows[0] and "2024-06-13" in rows[0] and "91.0" in rows[0] and "2.5" in rows[0]
    assert "failed" in rows[2] and "&lt;check clouds&gt;" in rows[2]
    assert "skipped" in rows[3] and "cloud cover 95 %" in rows[3]
    for d in DATES:
        assert d in page
    # title, summary, parameters, attribution, version, all escaped
    assert "Kaskawulsh &lt;Glacier&gt; &amp; co" in page and "<Glacier>" not in page
    assert "velocity error vs truth" in page and "RMSE 12 m/yr (0.03 px)" in page
    assert "offsets.method" in page and "ncc" in page and "pairs.max_days" in page and "B08, B04" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Contains modified Copernicus Sentinel data 2024" in page
    assert f"geodeform {__version__}" in page
    assert "EPSG:32607" in page
    # computed statistics: truth comparison and pair counts
    assert "speed error vs truth" in page and "3 ok, 1 failed, 1 skipped" in page
    # one row per time-series point
    assert len(table_rows(page, "num")) == 3


def test_all_pairs_failed_still_writes_a_report(tmp_path: Path) -> None:
    ds = velocity_dataset(nan_cols=40)  # no valid pixel at all
    pairs = [PairSummary(DATES[i], DATES[i + 1], 12.0, "failed", message="no overlap") for i in range(3)]
    out = write_report(make_inputs(ds, pairs=pairs, points=[], summary={}), tmp_path)
    page = out.read_text(encoding="utf-8")
    assert "All 3 image pairs failed" in page
    assert "no valid pixel" in page
    assert len(table_rows(page, "num pairs")) == 3
    names = {p.name for p in (tmp_path / "quicklooks").glob("*.png")}
    assert names == {"network.png", "errors.png"}
    for data in embedded_images(page):
        read_png(data)
    # and without any velocity dataset
    out = write_report(make_inputs(None, pairs=pairs, points=[], dates=[]), tmp_path / "none")
    assert "All 3 image pairs failed" in out.read_text(encoding="utf-8")


@pytest.mark.slow
def test_tiny_grid_single_pair_and_minimal_inputs(tmp_path: Path) -> None:
    ds = velocity_dataset(2, 2, nan_cols=0)
    pair = [PairSummary("2024-06-01T10:12:00Z", "2024-06-13T10:12:00Z", 12.0, "ok")]  # only required fields
    inputs = ReportInputs("tiny", ds, DATES[:2], pair, [], {})
    out = write_report(inputs, tmp_path)
    page = out.read_text(encoding="utf-8")
    assert len(table_rows(page, "num pairs")) == 1
    assert "2024-06-01" in table_rows(page, "num pairs")[0]
    assert "Run parameters" not in page  # empty config: no empty section
    assert "EPSG:32607" in page  # CRS read from the grid mapping when not given
    for name in ("velocity.png", "velocity_error.png", "network.png", "errors.png"):
        read_png((tmp_path / "quicklooks" / name).read_bytes())
    assert not (tmp_path / "quicklooks" / "series.png").exists()
    # single-pixel-wide grid
    out = write_report(
        ReportInputs("line", velocity_dataset(1, 5, nan_cols=0), DATES, pair, [], {}), tmp_path
    )
    read_png((tmp_path / "quicklooks" / "velocity.png").read_bytes())


@pytest.mark.slow
def test_unusual_grids(tmp_path: Path) -> None:
    south_up = velocity_dataset(3, 4, nan_cols=1).isel(y=slice(None, None, -1))  # y increasing
    bad_truth = xr.DataArray(np.ones((2, 2)), dims=("y", "x"))
    out = write_report(ReportInputs("s", south_up, DATES, [], [], {}, speed_truth=bad_truth), tmp_path / "a")
    page = out.read_text(encoding="utf-8")
    assert "No image pair was formed" in page and "not compared" in page
    read_png((tmp_path / "a" / "quicklooks" / "velocity.png").read_bytes())
    # no x/y coordinates: maps in pixels, points in pixel indices
    bare = velocity_dataset(3, 4, nan_cols=0).drop_vars(["x", "y"])
    pts = pick_points(bare, 2)
    assert all(0 <= x < 4 and 0 <= y < 3 for _, x, y in pts)
    out = write_report(ReportInputs("b", bare, DATES, pairs_ok(), [], {}), tmp_path / "b")
    assert "3 × 4 pixels (no map coordinates)" in out.read_text(encoding="utf-8")
    read_png((tmp_path / "b" / "quicklooks" / "velocity.png").read_bytes())


@pytest.mark.slow
def test_rerun_removes_stale_quicklooks(tmp_path: Path) -> None:
    ds = velocity_dataset(3, 3, nan_cols=0)
    write_report(make_inputs(ds, speed_truth=ds["v"], points=[], pairs=[]), tmp_path)
    assert (tmp_path / "quicklooks" / "truth.png").exists()
    write_report(make_inputs(ds, points=[], pairs=[]), tmp_path)
    assert not (tmp_path / "quicklooks" / "truth.png").exists()


def test_rerun_reuses_unchanged_quicklooks_and_redraws_changed_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = velocity_dataset(6, 6, nan_cols=0)
    write_report(make_inputs(ds, points=[], pairs=[]), tmp_path)
    quick = tmp_path / "quicklooks"
    first = (quick / "velocity.png").read_bytes()
    (quick / "velocity_error.png").write_bytes(b"not the figure")  # e.g. a run killed before the index
    caplog.set_level("INFO", logger="geodeform.workflows.report")
    write_report(make_inputs(ds, points=[], pairs=[]), tmp_path)
    assert "3 quicklooks (2 unchanged, not drawn again)" in caplog.text  # the damaged one drawn again
    assert (quick / "velocity.png").read_bytes() == first
    read_png((quick / "velocity_error.png").read_bytes())
    faster = ds.assign(vx=ds["vx"] * 2)
    caplog.clear()
    write_report(make_inputs(faster, points=[], pairs=[]), tmp_path)
    assert "3 quicklooks (2 unchanged, not drawn again)" in caplog.text  # the error map and network
    assert (quick / "velocity.png").read_bytes() != first  # its arrows: drawn again


def test_point_series_checks_lengths() -> None:
    with pytest.raises(InvalidInputError, match="north has 3 values for 4 dates"):
        PointSeries("p", 0.0, 0.0, DATES, np.zeros(4), np.zeros(3))
    p = PointSeries("p", 0.0, 0.0, DATES, [0, 1, 2, 3], np.zeros(4))  # type: ignore[arg-type]
    assert p.east.dtype == np.float64


def test_pick_points_on_valid_pixels() -> None:
    ds = velocity_dataset(seed=4)
    v = ds["v"].values
    pts = pick_points(ds, 5)
    assert [p[0] for p in pts[:3]] == ["fastest", "median", "stable"]
    assert len(pts) == 5 and len({(x, y) for _, x, y in pts}) == 5
    xs, ys = ds["x"].values, ds["y"].values
    for _, x, y in pts:
        assert xs.min() <= x <= xs.max() and ys.min() <= y <= ys.max()
        col, row = int(np.flatnonzero(xs == x)[0]), int(np.flatnonzero(ys == y)[0])
        assert np.isfinite(v[row, col])
    r, c = np.unravel_index(np.nanargmax(v), v.shape)
    assert pts[0][1:] == (float(xs[c]), float(ys[r]))
    speeds = [float(ds["v"].sel(x=x, y=y)) for _, x, y in pts]
    assert speeds[0] > speeds[1] > speeds[2]
    assert speeds[2] < 3 * 4.0  # the stable point is within the noise


def test_pick_points_sparse_and_empty() -> None:
    ds = velocity_dataset(4, 4, nan_cols=0)
    v = ds["v"].values.copy()
    v[:] = np.nan
    v[1, 2], v[3, 0] = 5.0, 50.0
    ds["v"] = (("y", "x"), v)
    pts = pick_points(ds, 4)
    assert [p[1:] for p in pts] == [(float(ds.x[0]), float(ds.y[3])), (float(ds.x[2]), float(ds.y[1]))]
    ds["v"] = (("y", "x"), np.full((4, 4), np.nan))
    assert pick_points(ds) == []
    assert pick_points(velocity_dataset(), 0) == []


def test_extremes_come_from_pixels_seen_by_enough_pairs_and_degraded_pairs_are_named(tmp_path: Path) -> None:
    from geodeform.workflows.report import well_observed

    ds = velocity_dataset()
    count = np.where(np.isfinite(ds["v"].values), 12, 0).astype(np.int32)
    v = ds["v"].values.copy()
    v[3, 20] = 3680.0  # a lake pixel with an iceberg, seen by one pair
    count[3, 20] = 1
    ds["v"].values = v
    ds["count"].values = count
    trusted, need = well_observed(ds)
    assert need == 3 and trusted is not None and not trusted[3, 20] and trusted.sum() == (count >= 3).sum()
    lake = (600000.0 + 100 * 20.5, 6700000.0 - 100 * 3.5)
    assert all((x, y) != lake for _, x, y in pick_points(ds))  # the fastest point is not the iceberg
    degraded = PairSummary(DATES[0], DATES[3], 36.0, "ok", 0.2, 9.0, 8.0, 0.1,
                           degraded="only 4 stable-ground nodes with data: job-level estimate")  # fmt: skip
    notes = ["image dropped, S_0108.tif (2024-06-08): textureless: only 5% of the AOI has contrast"]
    page = write_report(make_inputs(ds, pairs=[*pairs_ok(), degraded], notes=notes), tmp_path).read_text()
    facts = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page))
    speed = facts["speed (m/yr)"]
    assert "seen by ≥ 3 pairs" in speed and "3.68e+03" not in speed
    few = facts["pixels seen by fewer than 3 pairs"]
    assert few.startswith("1 (") and "3.68e+03 m/yr" in few
    assert "1 of 6 image pairs are degraded" in page and "textureless: only 5%" in page
    row = table_rows(page, "num pairs")[-1]
    assert "ok, degraded" in row and "job-level estimate" in row
