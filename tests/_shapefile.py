"""Minimal ESRI shapefile polygon reader for tests (no GDAL/OGR vector driver needed).

Reads Polygon (type 5) records as GeoJSON-like dicts; rings are split into polygons by orientation
(clockwise = outer ring, counter-clockwise = hole of the preceding outer ring), as the format specifies.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path
from typing import Any

import numpy as np


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def read_polygons(path: str | Path) -> list[dict[str, Any]]:
    data = Path(path).read_bytes()
    shapes = []
    off = 100
    while off + 8 <= len(data):
        _, words = struct.unpack(">ii", data[off : off + 8])
        rec = data[off + 8 : off + 8 + 2 * words]
        off += 8 + 2 * words
        (kind,) = struct.unpack("<i", rec[:4])
        if kind != 5:
            raise ValueError(f"{path}: shape type {kind} is not a 2-D polygon")
        nparts, npts = struct.unpack("<ii", rec[36:44])
        parts = [*list(struct.unpack(f"<{nparts}i", rec[44 : 44 + 4 * nparts])), npts]
        pts = np.frombuffer(rec[44 + 4 * nparts : 44 + 4 * nparts + 16 * npts], dtype="<f8").reshape(-1, 2)
        polygons: list[list[list[tuple[float, float]]]] = []
        for a, b in itertools.pairwise(parts):
            ring = pts[a:b]
            coords = [tuple(map(float, p)) for p in ring]
            if _signed_area(ring) < 0 or not polygons:  # clockwise: outer ring
                polygons.append([coords])
            else:
                polygons[-1].append(coords)
        shapes.append({"type": "MultiPolygon", "coordinates": polygons})
    return shapes
