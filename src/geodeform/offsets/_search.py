"""Integer ZNCC search of chips on an image pyramid (numba kernels).

The first stage of the ``ncc`` matcher: for each node, the integer displacement that maximises the
zero-normalised cross-correlation (ZNCC) of its reference chip with the secondary, searched exhaustively in
a window, coarse to fine on 2× block-averaged levels (:func:`pyramid_down`). Every sum is masked: pixels
flagged invalid never enter a correlation.

Sign convention: a feature at (row, col) of the reference appears at (row + dr, col + dc) of the
secondary; displacements in pixels of the level searched.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.offsets._layout import FAST

__all__ = [
    "Level",
    "SearchResult",
    "chip_stats",
    "normalise_valid",
    "pyramid_down",
    "search_nodes",
    "zncc_search_node",
]


class Level(NamedTuple):
    """One pyramid level of both images of a strip, as the search kernels read it.

    Attributes
    ----------
    ref, sec : ndarray of float32, shape (h, w)
        Reference and secondary, normalised to zero mean and unit variance (0 where invalid).
    ref_valid, sec_valid : ndarray of uint8, shape (h, w)
        1 where the pixel is valid.
    """

    ref: npt.NDArray[np.float32]
    ref_valid: npt.NDArray[np.uint8]
    sec: npt.NDArray[np.float32]
    sec_valid: npt.NDArray[np.uint8]


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _zncc_at(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc, min_count):
    """Masked ZNCC of ref[r0:r0+h, c0:c0+w] against sec[sr:sr+h, sc:sc+w]; -2 if undefined."""
    n = 0
    sa = 0.0
    sb = 0.0
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(h):
        # branch-free over row slices, float32 within a row, float64 across (vectorised: 4× faster
        # than a branch per pixel on 32 px chips)
        arow = ref[r0 + i, c0 : c0 + w]
        brow = sec[sr + i, sc : sc + w]
        avrow = rvalid[r0 + i, c0 : c0 + w]
        bvrow = svalid[sr + i, sc : sc + w]
        k = np.int32(0)
        ra = np.float32(0.0)
        rb = np.float32(0.0)
        raa = np.float32(0.0)
        rbb = np.float32(0.0)
        rab = np.float32(0.0)
        for j in range(w):
            m = (avrow[j] != 0) & (bvrow[j] != 0)
            k += np.int32(m)
            a = arow[j] if m else np.float32(0.0)
            b = brow[j] if m else np.float32(0.0)
            ra += a
            rb += b
            raa += a * a
            rbb += b * b
            rab += a * b
        n += k
        sa += ra
        sb += rb
        saa += raa
        sbb += rbb
        sab += rab
    if n < min_count:
        return -2.0
    va = saa - sa * sa / n
    vb = sbb - sb * sb / n
    if va <= 1e-12 * (saa + 1e-30) or vb <= 1e-12 * (sbb + 1e-30):
        return -2.0
    return (sab - sa * sb / n) / math.sqrt(va * vb)


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _zncc_full_at(ref, sec, r0, c0, h, w, sr, sc, ra_sum, ra_var):
    """ZNCC with every pixel valid, the reference statistics precomputed (fast path)."""
    # float32 sums within a row (vectorised; inputs are normalised to O(1)), float64 across rows
    sb = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(h):
        # row slices: 2-D indexing inside the loop keeps LLVM from vectorising it (3× slower)
        arow = ref[r0 + i, c0 : c0 + w]
        brow = sec[sr + i, sc : sc + w]
        rb = np.float32(0.0)
        rbb = np.float32(0.0)
        rab = np.float32(0.0)
        for j in range(w):
            a = arow[j]
            b = brow[j]
            rb += b
            rbb += b * b
            rab += a * b
        sb += rb
        sbb += rbb
        sab += rab
    n = h * w
    vb = sbb - sb * sb / n
    if vb <= 1e-12 * (sbb + 1e-30):
        return -2.0
    return (sab - ra_sum * sb / n) / math.sqrt(ra_var * vb)


@nb.njit(cache=True, nogil=True)
def window_all_valid(valid, r0, c0, h, w):
    if r0 < 0 or c0 < 0 or r0 + h > valid.shape[0] or c0 + w > valid.shape[1]:
        return False
    return valid_count(valid, r0, c0, h, w) == h * w


@nb.njit(cache=True, nogil=True, inline="always")
def valid_count(valid, r0, c0, h, w):
    """Number of nonzero ``valid`` pixels in the window (inside the array)."""
    n = 0
    for i in range(h):
        row = valid[r0 + i, c0 : c0 + w]
        k = np.int32(0)
        for j in range(w):  # a branch-free int32 count per row vectorises (8 lanes, twice int64's)
            k += np.int32(row[j])
        n += k
    return n


@nb.njit(cache=True, nogil=True)
def _ref_stats(ref, r0, c0, h, w):
    """Sum and variance × count of the reference chip (all pixels valid), and whether it is flat."""
    ra_sum = 0.0
    saa = 0.0
    for i in range(h):
        for j in range(w):
            a = ref[r0 + i, c0 + j]
            ra_sum += a
            saa += a * a
    ra_var = saa - ra_sum * ra_sum / (h * w)
    return ra_sum, ra_var, ra_var <= 1e-12 * (saa + 1e-30)


@nb.njit(cache=True, nogil=True)
def zncc_search_node(ref, rvalid, sec, svalid, r0, c0, h, w, cr, cc, rad_r, rad_c, min_count):
    """Exhaustive integer ZNCC search of one chip around displacement (cr, cc), radius (rad_r, rad_c).

    Returns (best_dr, best_dc, best_score, on_edge, n_evaluated). ``on_edge`` is True when the maximum
    lies on the border of the searched window (the true peak may be outside it).
    """
    H, W = sec.shape
    ref_full = window_all_valid(rvalid, r0, c0, h, w)
    ra_sum = 0.0
    ra_var = 0.0
    if ref_full:
        ra_sum, ra_var, flat = _ref_stats(ref, r0, c0, h, w)
        if flat:
            return 0, 0, -2.0, False, 0
    sec_full = ref_full and window_all_valid(
        svalid, r0 + cr - rad_r, c0 + cc - rad_c, h + 2 * rad_r, w + 2 * rad_c
    )
    best = -3.0
    bdr = 0
    bdc = 0
    count = 0
    for dr in range(cr - rad_r, cr + rad_r + 1):
        sr = r0 + dr
        if sr < 0 or sr + h > H:
            continue
        for dc in range(cc - rad_c, cc + rad_c + 1):
            sc = c0 + dc
            if sc < 0 or sc + w > W:
                continue
            if sec_full:
                v = _zncc_full_at(ref, sec, r0, c0, h, w, sr, sc, ra_sum, ra_var)
            else:
                v = _zncc_at(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc, min_count)
            count += 1
            if v > best:
                best = v
                bdr = dr
                bdc = dc
    edge = False
    if best > -2.0:
        edge = (rad_r > 0 and (bdr == cr - rad_r or bdr == cr + rad_r)) or (
            rad_c > 0 and (bdc == cc - rad_c or bdc == cc + rad_c)
        )
    return bdr, bdc, best, edge, count


@nb.njit(cache=True, nogil=True)
def _score(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc, min_count):
    if sr < 0 or sc < 0 or sr + h > sec.shape[0] or sc + w > sec.shape[1]:
        return -2.0
    return _zncc_at(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc, min_count)


@nb.njit(cache=True, nogil=True)
def _cross_scores(ref, rvalid, sec, svalid, r0, c0, h, w, br, bc, min_count):
    """ZNCC at the 4 integer neighbours (up, down, left, right) of displacement (br, bc)."""
    sr = r0 + br
    sc = c0 + bc
    if window_all_valid(rvalid, r0, c0, h, w) and window_all_valid(svalid, sr - 1, sc - 1, h + 2, w + 2):
        ra_sum, ra_var, flat = _ref_stats(ref, r0, c0, h, w)
        if not flat:  # all valid: the vectorised path
            return (
                _zncc_full_at(ref, sec, r0, c0, h, w, sr - 1, sc, ra_sum, ra_var),
                _zncc_full_at(ref, sec, r0, c0, h, w, sr + 1, sc, ra_sum, ra_var),
                _zncc_full_at(ref, sec, r0, c0, h, w, sr, sc - 1, ra_sum, ra_var),
                _zncc_full_at(ref, sec, r0, c0, h, w, sr, sc + 1, ra_sum, ra_var),
            )
    return (
        _score(ref, rvalid, sec, svalid, r0, c0, h, w, sr - 1, sc, min_count),
        _score(ref, rvalid, sec, svalid, r0, c0, h, w, sr + 1, sc, min_count),
        _score(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc - 1, min_count),
        _score(ref, rvalid, sec, svalid, r0, c0, h, w, sr, sc + 1, min_count),
    )


class SearchResult(NamedTuple):
    """Per-node answer of :func:`search_nodes`.

    Attributes
    ----------
    dr, dc : ndarray of int64, shape (n,)
        Integer displacement of the best match, px of the level searched.
    score : ndarray of float64, shape (n,)
        Its ZNCC; -2 where the node was skipped or no position had enough valid pixels.
    edge : ndarray of bool, shape (n,)
        The best match lies on the border of the searched window (the true peak may lie outside it).
    frac_r, frac_c : ndarray of float64, shape (n,)
        Sub-pixel vertex of a separable parabola through the peak and its 4 neighbours, in [-0.5, 0.5]
        px (zeros unless asked for).
    """

    dr: npt.NDArray[np.int64]
    dc: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    edge: npt.NDArray[np.bool_]
    frac_r: npt.NDArray[np.float64]
    frac_c: npt.NDArray[np.float64]


@nb.njit(cache=True, nogil=True)
def _search_range(lo, hi, lv, r0, c0, h, w, cen_r, cen_c, rad_r, rad_c, min_count, todo, frac, out):
    """:func:`zncc_search_node` for the nodes ``lo <= k < hi``, into ``out`` (a :class:`SearchResult`;
    one chunk of :func:`search_nodes`)."""
    ref, rvalid, sec, svalid = lv.ref, lv.ref_valid, lv.sec, lv.sec_valid
    out_r, out_c, score, edge, fr, fc = out
    for k in range(lo, hi):
        if not todo[k]:
            continue
        if r0[k] < 0 or c0[k] < 0 or r0[k] + h > ref.shape[0] or c0[k] + w > ref.shape[1]:
            continue
        br, bc, s, e, _cnt = zncc_search_node(
            ref, rvalid, sec, svalid, r0[k], c0[k], h, w, cen_r[k], cen_c[k], rad_r[k], rad_c[k], min_count
        )
        out_r[k] = br
        out_c[k] = bc
        score[k] = s
        edge[k] = e
        if frac and s > -2.0:
            up, dn, lf, rt = _cross_scores(ref, rvalid, sec, svalid, r0[k], c0[k], h, w, br, bc, min_count)
            if up > -2.0 and dn > -2.0:
                den = up - 2.0 * s + dn
                if den < 0.0:
                    fr[k] = min(0.5, max(-0.5, 0.5 * (up - dn) / den))
            if lf > -2.0 and rt > -2.0:
                den = lf - 2.0 * s + rt
                if den < 0.0:
                    fc[k] = min(0.5, max(-0.5, 0.5 * (lf - rt) / den))


def search_nodes(
    lv: Level,
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    size: tuple[int, int],
    centre: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    radius: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    *,
    min_frac: float,
    todo: npt.NDArray[np.bool_],
    frac: bool,
) -> SearchResult:
    """Integer ZNCC search for many nodes in parallel; see :func:`zncc_search_node`.

    Chip k of ``lv`` (a :class:`Level`) has origin (r0[k], c0[k]) and ``size`` (h, w); it is searched at
    displacements centre ± radius (per node, row and column arrays, px). A position counts when at least
    ``min_frac`` of the chip's pixels are valid in both images. With ``frac`` the sub-pixel parabola
    vertex is added. Nodes with ``todo == 0`` are skipped (score -2). Returns a :class:`SearchResult`.
    """
    n = r0.size
    h, w = size
    out = SearchResult(
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, -2.0), np.zeros(n, np.bool_), np.zeros(n),
        np.zeros(n),
    )  # fmt: skip
    min_count = max(4, int(min_frac * h * w))
    run_chunks(
        _search_range, n, lv, r0, c0, h, w, centre[0], centre[1], radius[0], radius[1], min_count, todo,
        bool(frac), out,
    )  # fmt: skip
    return out


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _chip_stats_range(lo, hi, img, valid, r0, c0, h, w, frac, std):
    """:func:`chip_stats` of the chips ``lo <= k < hi``, into ``frac`` and ``std``."""
    for k in range(lo, hi):
        cnt = 0.0
        s1 = 0.0
        s2 = 0.0
        for i in range(h):
            irow = img[r0[k] + i, c0[k] : c0[k] + w]
            vrow = valid[r0[k] + i, c0[k] : c0[k] + w]
            # branch-free float32 sums along the row (vectorised; values are normalised to O(1))
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            for j in range(w):
                m = np.float32(vrow[j])
                v = m * irow[j]
                a0 += m
                a1 += v
                a2 += v * irow[j]
            cnt += a0
            s1 += a1
            s2 += a2
        frac[k] = cnt / (h * w)
        if cnt > 1:
            std[k] = math.sqrt(max(s2 / cnt - (s1 / cnt) ** 2, 0.0))


def chip_stats(
    img: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    h: int,
    w: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Valid fraction and standard deviation of the valid pixels of every chip (in parallel)."""
    n = r0.size
    frac = np.zeros(n)
    std = np.zeros(n)
    run_chunks(_chip_stats_range, n, img, valid, r0, c0, h, w, frac, std)
    return frac, std


@nb.njit(cache=True, nogil=True)
def _normalise_valid_range(lo, hi, img, mean, inv_std, valid):
    """:func:`normalise_valid` of the rows ``lo <= i < hi``."""
    w = img.shape[1]
    m = np.float32(mean)
    s = np.float32(inv_std)
    for i in range(lo, hi):
        row = img[i]
        vrow = valid[i]
        for j in range(w):
            x = row[j]
            ok = x - x == np.float32(0.0)  # finite
            vrow[j] = ok
            row[j] = (x - m) * s if ok else np.float32(0.0)


def normalise_valid(
    img: npt.NDArray[np.float32], mean: float, inv_std: float, valid: npt.NDArray[np.bool_]
) -> None:
    """In place, ``img`` = (img - mean) · inv_std where finite, 0 elsewhere; ``valid`` (bool) = finite."""
    run_chunks(_normalise_valid_range, img.shape[0], img, mean, inv_std, valid)


@nb.njit(cache=True, nogil=True)
def _pyramid_down_range(lo, hi, img, valid, out, ov):
    """:func:`pyramid_down` of the coarse rows ``lo <= i < hi``, into ``out`` and ``ov``."""
    w2 = out.shape[1]
    for i in range(lo, hi):
        r0 = img[2 * i]
        r1 = img[2 * i + 1]
        v0 = valid[2 * i]
        v1 = valid[2 * i + 1]
        orow = out[i]
        ovrow = ov[i]
        for j in range(w2):
            # branch-free (0/1 factors; the same float64 sums in the same order as adding the valid ones)
            a0 = np.int32(v0[2 * j])
            a1 = np.int32(v0[2 * j + 1])
            a2 = np.int32(v1[2 * j])
            a3 = np.int32(v1[2 * j + 1])
            s = 0.0
            s += np.float64(r0[2 * j]) * a0
            s += np.float64(r0[2 * j + 1]) * a1
            s += np.float64(r1[2 * j]) * a2
            s += np.float64(r1[2 * j + 1]) * a3
            c = a0 + a1 + a2 + a3
            ok = c >= 3
            orow[j] = np.float32(s / c) if ok else np.float32(0.0)
            ovrow[j] = ok


def pyramid_down(
    img: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """2× block average of the valid pixels; a coarse pixel is valid when ≥ 3 of its 4 are."""
    h2 = img.shape[0] // 2
    w2 = img.shape[1] // 2
    out = np.empty((h2, w2), np.float32)  # every value is written by the kernel
    ov = np.empty((h2, w2), np.bool_)
    run_chunks(_pyramid_down_range, h2, img, valid, out, ov)
    return out, ov
