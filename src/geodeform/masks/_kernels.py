"""Numba kernels of the cloud-shadow search: depression filling (FMask's flood fill) and shadow matching."""

from __future__ import annotations

import heapq

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["fill_depressions", "match_shadows"]


@numba.njit(cache=True, nogil=True)
def fill_depressions(image: NDArray[np.float64]) -> NDArray[np.float64]:  # pragma: no cover - numba
    """Fill every local depression of ``image`` up to its spill level (priority flood, 8-connected).

    The result is the morphological reconstruction by erosion seeded on the border (``imfill`` of FMask):
    a pixel darker than all paths to the border rises to the lowest pass. ``filled - image`` is the depth
    of the depression, large in cloud shadows (dark pools in the near infrared).
    """
    h, w = image.shape
    out = image.copy()
    seen = np.zeros((h, w), np.bool_)
    heap = [(0.0, 0, 0)]
    heap.pop()
    for r in range(h):
        for c in range(w):
            if r == 0 or c == 0 or r == h - 1 or c == w - 1:
                heapq.heappush(heap, (image[r, c], r, c))
                seen[r, c] = True
    while len(heap) > 0:
        v, r, c = heapq.heappop(heap)
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and not seen[rr, cc]:
                    seen[rr, cc] = True
                    nv = max(image[rr, cc], v)
                    out[rr, cc] = nv
                    heapq.heappush(heap, (nv, rr, cc))
    return out


@numba.njit(cache=True, nogil=True)
def match_shadows(  # pragma: no cover - numba
    labels: NDArray[np.int64],
    n_objects: int,
    candidate: NDArray[np.bool_],
    cloud: NDArray[np.bool_],
    first: int,
    last: int,
    step_row: float,
    step_col: float,
    min_similarity: float,
    min_size: int,
) -> NDArray[np.bool_]:
    """Project each cloud object away from the sun and keep the shift where it falls on dark pixels.

    For each labelled cloud object (at least ``min_size`` pixels), shifts ``k * (step_row, step_col)``
    pixels for ``k`` in ``first..last`` are tried (a cloud-top height range); the similarity of a shift is
    the share of the projected pixels, outside any cloud, that are ``candidate`` shadows. The best shift is
    kept when its similarity reaches ``min_similarity`` and at least half of the object lands outside
    clouds (FMask's object matching, Zhu & Woodcock 2012, without the view-angle parallax term). Returns
    the projected objects (outside clouds).
    """
    h, w = labels.shape
    counts = np.zeros(n_objects + 2, np.int64)
    for r in range(h):
        for c in range(w):
            counts[labels[r, c] + 1] += 1
    starts = np.cumsum(counts)  # pixels of object i are starts[i]..starts[i + 1]
    rows = np.empty(starts[-1], np.int64)
    cols = np.empty(starts[-1], np.int64)
    fill = starts.copy()
    for r in range(h):
        for c in range(w):
            lab = labels[r, c]
            rows[fill[lab]] = r
            cols[fill[lab]] = c
            fill[lab] += 1
    shadow = np.zeros((h, w), np.bool_)
    for lab in range(1, n_objects + 1):
        a, b = starts[lab], starts[lab + 1]
        if b - a < min_size:
            continue
        best, best_k = -1.0, -1
        for k in range(first, last + 1):
            sr = int(np.rint(k * step_row))
            sc = int(np.rint(k * step_col))
            hit = 0
            total = 0
            for i in range(a, b):
                rr = rows[i] + sr
                cc = cols[i] + sc
                if rr < 0 or rr >= h or cc < 0 or cc >= w or cloud[rr, cc]:
                    continue
                total += 1
                if candidate[rr, cc]:
                    hit += 1
            if total < 0.5 * (b - a) or total == 0:
                continue
            sim = hit / total
            if sim > best:
                best, best_k = sim, k
        if best >= min_similarity:
            sr = int(np.rint(best_k * step_row))
            sc = int(np.rint(best_k * step_col))
            for i in range(a, b):
                rr = rows[i] + sr
                cc = cols[i] + sc
                if 0 <= rr < h and 0 <= cc < w and not cloud[rr, cc]:
                    shadow[rr, cc] = True
    return shadow
