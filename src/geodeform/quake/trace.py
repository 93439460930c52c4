"""Rupture trace detection: the line along which the offset field steps, as an ordered polyline.

Kernel steps (:func:`detect_trace`):

1. **Oriented step filter.** At every node and for ``orientations`` directions, the vector difference of
   the mean displacement on the two halves of a disc of radius ``radius`` (a band of ``gap`` on each side
   of the splitting line left out: chips there see both sides). NaN nodes take the value of their nearest
   valid node; nodes whose disc is less than ``min_fraction`` valid (grid edges, holes) get no strength.
   The step strength is the largest difference over the directions; the best direction is the normal of
   the candidate trace.
2. **Non-maximum suppression** across that normal (Canny) leaves one-node-wide ridges, located to a
   fraction of a node by a parabola through the strengths across the ridge.
3. **Hysteresis thresholds** relative to the background: ``threshold`` times the median strength over
   the field (noise and smooth strain) for the high threshold, 0.6 of it for the low one, and at least a
   fraction of the strongest ridges (so stripes and jitter far weaker than the rupture drop out). Ridge
   pieces shorter than ``min_length`` are dropped.
4. **Ordering.** The Euclidean minimum spanning tree of the ridge points (on their Delaunay graph), cut
   where its edges are longer than a few nodes, gives strands; each strand is the longest path of its
   piece of tree (side branches dropped). The strongest strand (summed strength) is the rupture; strands
   that continue it in the same direction across gaps shorter than ``max_gap`` are joined to it, parallel
   strands and branches are not. A local linear fit along the chain every ``vertex_spacing`` smooths the
   node-scale zigzag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree, shortest_path
from scipy.spatial import Delaunay, QhullError

from geodeform.errors import InvalidInputError
from geodeform.quake.errors import NoRuptureError
from geodeform.quake.grids import field_arrays

__all__ = ["StepStrength", "detect_trace", "order_points", "step_strength"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StepStrength:
    """Output of :func:`step_strength`.

    Attributes
    ----------
    strength
        (nr, nc) norm of the displacement step across the best direction, input units; NaN where either
        half-disc holds too few valid nodes.
    normal
        (nr, nc, 2) unit normal (row, col) of the best splitting line (the candidate trace's normal).
    """

    strength: F64
    normal: F64


def _as_field(dx: npt.ArrayLike, dy: npt.ArrayLike) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
    """The field with its invalid nodes set to 0, and the valid nodes (:func:`field_arrays`)."""
    x, y, valid = field_arrays(dx, dy)
    return np.where(valid, x, 0.0), np.where(valid, y, 0.0), valid


def _step_kernel(radius: float, gap: float, angle: float) -> F64:
    """Mean of the half-disc on the +normal side minus the mean of the other half (the band |along| ≤ gap
    left out), as one correlation kernel."""
    n = int(np.ceil(radius))
    r, c = np.mgrid[-n : n + 1, -n : n + 1].astype(np.float64)
    inside = r**2 + c**2 <= radius**2
    along = r * np.cos(angle) + c * np.sin(angle)
    plus = inside & (along > gap)
    return (plus.astype(np.float64) - plus[::-1, ::-1]) / plus.sum()


def _fill_nearest(a: F64, valid: npt.NDArray[np.bool_]) -> F64:
    if valid.all():
        return a
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return np.asarray(a[tuple(idx)])


def step_strength(
    dx: npt.ArrayLike,
    dy: npt.ArrayLike,
    *,
    radius: float = 4.0,
    gap: float = 0.5,
    orientations: int = 12,
    min_fraction: float = 0.7,
) -> StepStrength:
    """Displacement step across the best of ``orientations`` lines through every node.

    Parameters
    ----------
    dx, dy
        (nr, nc) displacement along +col and +row, any unit; NaN = no data.
    radius
        Radius of the half-discs, nodes.
    gap
        Half-width of the band along the splitting line left out of both halves, nodes.
    orientations
        Number of directions over 180°.
    min_fraction
        Smallest fraction of the disc's nodes that must be valid (nodes next to holes have biased steps);
        no-data nodes inside the disc take the value of the nearest valid node. Nodes closer than
        ``radius - 1`` to the grid's edge get no strength.

    Returns
    -------
    StepStrength
    """
    x, y, valid = _as_field(dx, dy)
    if radius < 1.5 or gap < 0 or gap >= radius - 1 or orientations < 4:
        raise InvalidInputError(
            f"step filter needs radius ≥ 1.5 nodes, 0 ≤ gap < radius - 1 and ≥ 4 orientations "
            f"(got radius={radius}, gap={gap}, orientations={orientations})"
        )
    xf, yf = _fill_nearest(x, valid), _fill_nearest(y, valid)
    disc = np.abs(_step_kernel(radius, gap, 0.0)) > 0
    cover = ndimage.correlate(valid.astype(np.float64), disc.astype(np.float64), mode="constant") / disc.sum()
    best = np.full(x.shape, -1.0)
    normal = np.zeros((*x.shape, 2))
    for angle in np.arange(orientations) * np.pi / orientations:
        k = _step_kernel(radius, gap, angle)
        s = np.hypot(ndimage.correlate(xf, k, mode="nearest"), ndimage.correlate(yf, k, mode="nearest"))
        better = s > best
        best = np.where(better, s, best)
        normal[better] = (np.cos(angle), np.sin(angle))
    ok = cover >= min_fraction - 1e-9
    # beyond the grid's edge there is no field at all (not missing nodes): a disc that crosses it would see
    # the edge padding, and its ridges would bend along the edge
    inner = int(np.ceil(radius)) - 1
    if inner > 0:
        edge = np.ones(x.shape, dtype=bool)
        edge[inner:-inner, inner:-inner] = False
        ok &= ~edge
    return StepStrength(np.where(ok, best, np.nan), normal)


def _ridges(st: StepStrength) -> tuple[F64, F64, F64]:
    """Non-maximum suppression across the normal; returns ridge (row, col) to sub-node and strengths."""
    s = np.nan_to_num(st.strength, nan=0.0)
    rr, cc = np.indices(s.shape, dtype=np.float64)
    nr, nc = st.normal[..., 0], st.normal[..., 1]
    ahead = ndimage.map_coordinates(s, [rr + nr, cc + nc], order=1, mode="constant")
    behind = ndimage.map_coordinates(s, [rr - nr, cc - nc], order=1, mode="constant")
    # a node whose neighbours across the candidate line lack a strength cannot be shown to be a maximum
    known = np.isfinite(st.strength).astype(np.float64)
    checked = np.minimum(
        ndimage.map_coordinates(known, [rr + nr, cc + nc], order=1, mode="constant"),
        ndimage.map_coordinates(known, [rr - nr, cc - nc], order=1, mode="constant"),
    )
    peak = (s > 0) & (s >= ahead) & (s > behind) & (checked > 0.999)
    i, j = np.nonzero(peak)
    s0, sa, sb = s[i, j], ahead[i, j], behind[i, j]
    curv = sa - 2.0 * s0 + sb
    off = np.where(curv < 0, 0.5 * (sb - sa) / np.where(curv < 0, curv, -1.0), 0.0)
    off = np.clip(off, -0.5, 0.5)
    return i + off * nr[i, j], j + off * nc[i, j], s0


def _keep(
    st: StepStrength, ridges: tuple[F64, F64, F64], threshold: float, relative: float, min_length: float
) -> npt.NDArray[np.bool_]:
    """Ridge nodes that pass the hysteresis thresholds and belong to a long enough ridge."""
    s = st.strength
    background = float(np.median(s[np.isfinite(s)]))
    ri, rj, rs = ridges
    peak_level = float(np.percentile(rs, 99.0)) if rs.size else 0.0
    high = max(threshold * background, relative * peak_level)
    low = max(0.6 * threshold * background, 0.6 * relative * peak_level)
    ridge = np.zeros(s.shape, dtype=bool)
    ii, jj = np.rint(ri).astype(int), np.rint(rj).astype(int)
    ridge[ii, jj] = rs >= low
    lab, nlab = ndimage.label(ridge, structure=np.ones((3, 3)))
    keep_lab = np.zeros(nlab + 1, dtype=bool)
    keep_lab[np.unique(lab[ii, jj][rs >= high])] = True
    keep_lab[0] = False
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if keep_lab[k] and sl is not None:
            keep_lab[k] = np.hypot(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) >= min_length
    log.debug("step strength: background %.3g, high %.3g, low %.3g", background, high, low)
    return np.asarray(keep_lab[lab[ii, jj]] & (rs >= low))


def _mst(p: F64) -> Any:
    """Symmetric sparse Euclidean minimum spanning tree of points (on their Delaunay graph)."""
    n = len(p)
    try:
        tri = Delaunay(p, qhull_options="QJ")
        e = np.concatenate([tri.simplices[:, [0, 1]], tri.simplices[:, [1, 2]], tri.simplices[:, [0, 2]]])
    except (QhullError, ValueError):  # fewer than 3 distinct points, or all on one line
        o = np.lexsort((p[:, 1], p[:, 0]))
        e = np.c_[o[:-1], o[1:]]
    w = np.hypot(*(p[e[:, 0]] - p[e[:, 1]]).T) + 1e-9
    tree = minimum_spanning_tree(coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr())
    return tree + tree.T


def _diameter(tree: Any, members: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Longest path (node indices, in order) of the tree restricted to ``members`` (one component)."""
    if members.size < 3:
        return members
    sub = tree[members][:, members]
    d0 = shortest_path(sub, indices=0, directed=False)
    a = int(np.argmax(np.where(np.isfinite(d0), d0, -1)))
    da, pred = shortest_path(sub, indices=a, directed=False, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(da), da, -1)))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return members[np.asarray(path[::-1], dtype=np.intp)]


def order_points(points: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Indices of the longest path through the minimum spanning tree of 2-D points, in path order.

    Parameters
    ----------
    points
        (n, 2) coordinates.

    Returns
    -------
    ndarray of int
        Indices into ``points`` along the tree's diameter (side branches left out).
    """
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        return np.arange(len(p))
    return _diameter(_mst(p), np.arange(len(p)))


def _strands(p: F64, strength: F64, join: float) -> list[tuple[F64, float]]:
    """Ordered strands: the tree's diameters after cutting edges longer than ``join``, with their scores
    (summed strength along the strand)."""
    tree = _mst(p).tocoo()
    short = tree.data <= join
    cut = coo_matrix((tree.data[short], (tree.row[short], tree.col[short])), shape=tree.shape).tocsr()
    ncomp, label = connected_components(cut, directed=False)
    out = []
    for k in range(ncomp):
        members = np.nonzero(label == k)[0]
        path = _diameter(cut, members)
        out.append((p[path], float(strength[path].sum())))
    return sorted(out, key=lambda t: -t[1])


def _end_direction(path: F64, reach: float) -> F64:
    """Unit direction leaving the path at its last point (from the point ``reach`` before it)."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    back = np.cumsum(seg[::-1])
    k = int(np.searchsorted(back, reach))
    ref = path[max(len(path) - 2 - k, 0)]
    v = path[-1] - ref
    n = np.hypot(*v)
    return v / n if n > 0 else v


def _link(strands: list[tuple[F64, float]], bridge: float, max_turn: float, reach: float) -> F64:
    """Grow the best strand by the strands that continue it across gaps shorter than ``bridge``, in the
    same direction (within ``max_turn`` degrees), at either end."""
    chain = strands[0][0]
    rest = [s[0] for s in strands[1:] if len(s[0]) >= 2]
    cos_max = np.cos(np.radians(max_turn))
    grew = True
    while grew and rest:
        grew = False
        for end in (1, 0):
            path = chain if end else chain[::-1]
            tip, out = path[-1], _end_direction(path, reach)
            best, best_d = None, bridge
            for k, cand in enumerate(rest):
                for c in (cand, cand[::-1]):
                    gap = c[0] - tip
                    d = float(np.hypot(*gap))
                    if d >= best_d or d == 0:
                        continue
                    inward = _end_direction(c[::-1], reach)  # direction from c's start into c, reversed
                    if gap @ out / d > cos_max and -inward @ out > cos_max:
                        best, best_d = (k, c), d
            if best is not None:
                k, c = best
                path = np.concatenate([path, c])
                chain = path if end else path[::-1]
                rest.pop(k)
                grew = True
    return chain


def _smooth_path(p: F64, spacing: float) -> F64:
    """Vertices every ``spacing`` along an ordered point chain, by a local linear fit (tricube weights)."""
    seg = np.hypot(*np.diff(p, axis=0).T)
    s = np.r_[0.0, np.cumsum(seg)]
    length = s[-1]
    if length < spacing:
        return p[[0, -1]] if length > 0 else p[:1]
    nv = max(2, round(length / spacing) + 1)
    targets = np.linspace(0.0, length, nv)
    h = 2.0 * spacing
    out = np.empty((nv, 2))
    for k, t in enumerate(targets):
        lo, hi = np.searchsorted(s, [t - h, t + h])
        ds = s[lo:hi] - t
        w = (1.0 - np.clip(np.abs(ds) / h, 0.0, 1.0) ** 3) ** 3 + 1e-12
        a = np.c_[np.ones_like(ds), ds] * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(a, p[lo:hi] * np.sqrt(w)[:, None], rcond=None)
        out[k] = coef[0]
    return out


def detect_trace(
    dx: npt.ArrayLike,
    dy: npt.ArrayLike,
    *,
    pixel_size: float,
    radius: float | None = None,
    gap: float | None = None,
    threshold: float = 4.0,
    relative: float = 0.25,
    min_length: float | None = None,
    vertex_spacing: float | None = None,
    max_gap: float | None = None,
    orientations: int = 12,
) -> F64:
    """Map the rupture trace: the line along which the displacement field steps.

    Parameters
    ----------
    dx, dy
        (nr, nc) displacement along +col and +row of the grid (the offsets convention), any unit (the
        detection is relative to the field's own noise); NaN = no data. On a map product with +y north,
        pass ``dy = -north`` (see :func:`geodeform.quake.grid_components`).
    pixel_size
        Size of one grid cell (node spacing), metres; the lengths below are in metres.
    radius
        Radius of the half-discs of the step filter, metres. Default 4 cells: wide enough to average the
        noise, narrow enough for the trace's bends.
    gap
        Half-width of the band along the candidate trace left out of the step filter, metres. Default half
        a cell; give about half the matching chip when the nodes near the trace blend both sides.
    threshold
        High hysteresis threshold as a multiple of the median step strength over the field (the
        background: noise and smooth strain); the low one is 0.6 of it.
    relative
        Ridges must also reach this fraction of the strongest ridges (99th percentile) at their strongest
        node (0.6 of it along their length), so that stripes and jitter far weaker than the rupture drop
        out.
    min_length
        Ridge pieces shorter than this are dropped, metres. Default 8 cells.
    vertex_spacing
        Spacing of the output vertices along the trace, metres. Default 2 cells.
    max_gap
        Longest gap bridged between two ridge strands that continue each other (same direction within
        35°), metres. Default 20 cells. Parallel strands and branches are not joined.
    orientations
        Directions tried by the step filter over 180°.

    Returns
    -------
    ndarray, shape (N, 2)
        (row, col) vertices of the trace in grid cells (the centre of cell (i, j) is (i, j)), ordered along
        strike: from the end nearer row 0 when the trace runs more along the rows than the columns, else
        from the end nearer column 0. Only the longest strand is returned (side branches dropped).

    Raises
    ------
    EmptyFieldError
        The field holds no finite value.
    NoRuptureError
        No step stands above the thresholds.
    InvalidInputError
        Mismatched shapes, non-positive sizes.
    """
    if not pixel_size > 0:
        raise InvalidInputError(f"pixel_size must be > 0 metres, got {pixel_size!r}")
    cells = {
        "radius": 4.0 if radius is None else radius / pixel_size,
        "gap": 0.5 if gap is None else gap / pixel_size,
        "min_length": 8.0 if min_length is None else min_length / pixel_size,
        "vertex_spacing": 2.0 if vertex_spacing is None else vertex_spacing / pixel_size,
        "max_gap": 20.0 if max_gap is None else max_gap / pixel_size,
    }
    if cells["vertex_spacing"] <= 0:
        raise InvalidInputError(f"vertex_spacing must be > 0 metres, got {vertex_spacing!r}")
    st = step_strength(dx, dy, radius=cells["radius"], gap=cells["gap"], orientations=orientations)
    if not np.isfinite(st.strength).any():
        raise NoRuptureError(
            "the offset field has too few valid nodes for the step filter; use a smaller radius or a "
            "denser field"
        )
    ridges = _ridges(st)
    keep = _keep(st, ridges, threshold, relative, cells["min_length"])
    pts = np.c_[ridges[0], ridges[1]][keep]
    if len(pts) < 2:
        raise NoRuptureError(
            f"no displacement step stands above the noise ({threshold:g} × the median step strength and "
            f"{relative:g} of the strongest ridges): check that the pair brackets the event, lower "
            "threshold=, or give the trace (geodeform.quake.read_trace)"
        )
    strands = _strands(pts, ridges[2][keep], join=2.5)
    path = _link(strands, cells["max_gap"], max_turn=35.0, reach=2.0 * cells["radius"])
    trace = _smooth_path(path, cells["vertex_spacing"])
    along_rows = abs(trace[-1, 0] - trace[0, 0]) >= abs(trace[-1, 1] - trace[0, 1])
    first, last = (trace[0, 0], trace[-1, 0]) if along_rows else (trace[0, 1], trace[-1, 1])
    if last < first:
        trace = trace[::-1]
    log.info("rupture trace: %d vertices from %d ridge nodes", len(trace), len(pts))
    return trace
