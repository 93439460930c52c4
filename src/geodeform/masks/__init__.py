"""Cloud and cloud-shadow masks where a product has none (Sentinel-2 L1C, Landsat Collection-2 L1).

:func:`detect_clouds` is the kernel (FMask-style spectral tests on reflectance arrays);
:func:`scene_cloud_mask` reads the bands of a catalogue scene on a grid and runs it.
"""

from __future__ import annotations

from geodeform.masks.scene import reflectance_scaling, scene_cloud_mask, sun_angles
from geodeform.masks.spectral import CloudMask, CloudOptions, Reflectances, detect_clouds

__all__ = [
    "CloudMask",
    "CloudOptions",
    "Reflectances",
    "detect_clouds",
    "reflectance_scaling",
    "scene_cloud_mask",
    "sun_angles",
]
