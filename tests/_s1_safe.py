"""Synthetic Sentinel-1 SAFE products for the tests: the public writer :mod:`geodeform.sar.safe` under
the names the tests have used (``SlcSpec``, ``write_slc_safe``)."""

from geodeform.sar.safe import SafeSpec as SlcSpec
from geodeform.sar.safe import ground_position
from geodeform.sar.safe import write_safe as write_slc_safe

__all__ = ["SlcSpec", "ground_position", "write_slc_safe"]
