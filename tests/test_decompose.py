"""ICA decomposition: recover trend and seasonal signals of synthetic landslide series with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from geodeform.decompose import ica
from geodeform.errors import InvalidInputError, NoDataError


def _best_corr(funcs: np.ndarray, truth: np.ndarray) -> float:
    return max(abs(np.corrcoef(funcs[:, c], truth)[0, 1]) for c in range(funcs.shape[1]))


def _landslide(seed: int, nd: int = 60, shape=(40, 50)):
    """A creeping body (trend) next to a groundwater-driven lobe (seasonal), px, noise 0.03 px."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2.6 * 365.25, nd))
    rows, cols = np.indices(shape)
    trend_map = ((((rows - 15) / 9.0) ** 2 + ((cols - 18) / 11.0) ** 2) < 1).astype(float)
    season_map = np.exp(-(((rows - 26) / 9.0) ** 2 + ((cols - 32) / 9.0) ** 2))
    trend = t / 365.25
    season = np.sin(2 * np.pi * t / 365.25 + 0.5)
    stack = trend[:, None, None] * trend_map + season[:, None, None] * season_map
    return stack + rng.normal(0, 0.03, stack.shape), trend, season


@pytest.mark.parametrize("seed", [0, 1])
def test_spatial_ica_separates_trend_and_seasonal_signals(seed: int) -> None:
    stack, trend, season = _landslide(seed)
    stack[:, 0, 0] = np.nan  # a pixel with a gap is left out
    res = ica(stack, 2)
    assert res.converged
    assert _best_corr(res.time_functions, trend) > 0.99
    assert _best_corr(res.time_functions, season) > 0.99
    assert np.isnan(res.maps[:, 0, 0]).all()
    assert np.nanstd(res.reconstruct() - stack) < 0.04  # two components down to the noise level


def test_ica_recovers_sources_that_pca_mixes() -> None:
    """Overlapping independent maps with correlated time functions: PCA cannot separate them."""
    rng = np.random.default_rng(3)
    nd, shape = 50, (60, 60)
    t = np.sort(rng.uniform(0, 2.6 * 365.25, nd))
    maps = [gaussian_filter(rng.laplace(size=shape), 1.0) for _ in range(2)]
    maps = [np.sign(m) * m**2 / np.std(m**2) for m in maps]  # heavy-tailed, unit scale
    a1, a2 = t / 365.25, 1 - np.cos(2 * np.pi * t / 365.25)
    stack = a1[:, None, None] * maps[0] + a2[:, None, None] * maps[1] + rng.normal(0, 0.02, (nd, *shape))
    res = ica(stack, 2)
    assert _best_corr(res.time_functions, a1) > 0.995 and _best_corr(res.time_functions, a2) > 0.995
    X = stack.reshape(nd, -1)
    u = np.linalg.svd(X - X.mean(axis=1, keepdims=True), full_matrices=False)[0][:, :2]
    assert min(_best_corr(u, a1), _best_corr(u, a2)) < 0.95  # the peer fails here
    # Maps are recovered up to sign and scale.
    for m in maps:
        assert max(abs(np.corrcoef(res.maps[c].ravel(), m.ravel())[0, 1]) for c in range(2)) > 0.99


def test_temporal_mode_reconstructs_the_series() -> None:
    stack, trend, _ = _landslide(1, nd=120)
    res = ica(stack, 2, mode="temporal")
    assert np.nanstd(res.reconstruct() - stack) < 0.04
    assert _best_corr(res.time_functions, trend) > 0.9


def test_bad_inputs() -> None:
    stack, *_ = _landslide(2, nd=10)
    with pytest.raises(InvalidInputError, match="n_components"):
        ica(stack, 10)
    with pytest.raises(InvalidInputError, match="mode"):
        ica(stack, 2, mode="both")
    with pytest.raises(InvalidInputError, match="series"):
        ica(stack[:, 0, 0], 1)
    stack[:, :, :] = np.nan
    with pytest.raises((NoDataError, InvalidInputError)):
        ica(stack, 2)
