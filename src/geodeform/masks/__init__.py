"""Cloud and cloud-shadow masks where a product has none (Sentinel-2 L1C, Landsat Collection-2 L1).

:func:`detect_clouds` is the kernel (FMask-style spectral tests on reflectance arrays);
:func:`scene_cloud_mask` reads the bands of a catalogue scene on a grid and runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.masks.scene import (
        SceneBands,
        reflectance_scaling,
        scene_cloud_mask,
        scene_reflectances,
        sun_angles,
    )
    from geodeform.masks.spectral import CloudMask, CloudOptions, Reflectances, clear_reference, detect_clouds

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "scene": (
            "SceneBands",
            "reflectance_scaling",
            "scene_cloud_mask",
            "scene_reflectances",
            "sun_angles",
        ),
        "spectral": (
            "CloudMask",
            "CloudOptions",
            "Reflectances",
            "clear_reference",
            "detect_clouds",
        ),
    },
)

__all__ = [
    "CloudMask",
    "CloudOptions",
    "Reflectances",
    "SceneBands",
    "clear_reference",
    "detect_clouds",
    "reflectance_scaling",
    "scene_cloud_mask",
    "scene_reflectances",
    "sun_angles",
]
