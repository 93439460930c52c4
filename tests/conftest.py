"""Shared fixtures of the test suite, one section per area."""

from __future__ import annotations

import numpy as np
import pytest

from geodeform.demo import load_texture

# engine -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def texture() -> np.ndarray:
    """The shipped 576 × 576 Landsat-8 B4 crop (courtesy of the U.S. Geological Survey) as float64 DN,
    read-only (copy it to modify it): real texture for offset-tracking tests with imposed shifts."""
    tex = load_texture().astype(np.float64)
    tex.flags.writeable = False
    return tex
