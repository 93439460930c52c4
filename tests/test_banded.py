"""The banded SPD kernels shared by the time-series and E/N/U inversions, against dense numpy."""

from __future__ import annotations

import numpy as np
import pytest

from geodeform.banded import band_cholesky, band_entry, band_inverse, band_solve


def _banded_spd(rng: np.random.Generator, m: int, b: int) -> np.ndarray:
    a = np.zeros((m, m))
    for d in range(1, b + 1):
        v = rng.normal(size=m - d)
        a += np.diag(v, d) + np.diag(v, -d)
    return a + np.diag(np.abs(a).sum(axis=1) + rng.uniform(0.5, 2.0, m))  # diagonally dominant: SPD


def _lower_band(a: np.ndarray, b: int) -> np.ndarray:
    m = a.shape[0]
    return np.array([[a[i, i - d] if i - d >= 0 else 0.0 for d in range(b + 1)] for i in range(m)])


@pytest.mark.parametrize(("m", "b"), [(1, 0), (7, 1), (20, 4), (15, 14)])
def test_factor_solve_and_inverse_band_match_dense_numpy(m: int, b: int) -> None:
    rng = np.random.default_rng(m * 31 + b)
    a = _banded_spd(rng, m, b)
    LB, ok = band_cholesky(_lower_band(a, b), 1e-13)
    assert ok
    np.testing.assert_allclose(LB, _lower_band(np.linalg.cholesky(a), b), rtol=1e-12, atol=1e-12)
    rhs = rng.normal(size=m)
    x, y = np.empty(m), np.empty(m)
    band_solve(LB, rhs, x, y)
    np.testing.assert_allclose(x, np.linalg.solve(a, rhs), rtol=1e-10, atol=1e-12)
    z, ZU = np.linalg.inv(a), band_inverse(LB)
    for i in range(m):
        for j in range(max(0, i - b), min(m, i + b + 1)):  # the band, both triangles
            assert band_entry(ZU, i, j) == pytest.approx(z[i, j], rel=1e-10, abs=1e-12)
    if b + 1 < m:
        assert band_entry(ZU, 0, b + 1) == 0.0  # outside the band: not computed


def test_a_singular_matrix_is_refused_at_the_relative_tolerance() -> None:
    a = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-12]])  # pivot 1e-12 after the first column
    assert not band_cholesky(_lower_band(a, 1), 1e-11)[1]
    assert band_cholesky(_lower_band(a, 1), 1e-13)[1]
