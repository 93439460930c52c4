"""Lazy package namespaces: a package's public names are imported from their modules on first use.

A stage package (``geodeform.io``, ``geodeform.search``, ...) lists its public names in ``__all__`` and says
which of its modules defines each; ``import geodeform.search`` then loads nothing else, and
``geodeform.search.search`` (or ``from geodeform.search import search``) imports ``geodeform.search.stac`` the
first time it is asked for. Processes that need one small part of a package (the service's worker processes,
the command line's ``--help``) no longer import every chain the package holds. Submodules are reachable as
attributes too (``geodeform.io.raster``), as after an eager import.

The package keeps the same imports under ``if TYPE_CHECKING:`` for type checkers and documentation tools;
``tests/test_layers.py`` checks that the two lists agree. This is the pattern of the Scientific Python
SPEC 1 (``lazy_loader``), written out here without the extra dependency.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package whose public names load on first use.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Module name (relative to the package) -> the public names it defines.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """
    where = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    class LazyPackage(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            # Loading submodule ``preflight`` binds it as the package's attribute; a public name of the same
            # spelling (the function ``preflight``) keeps the attribute, as an eager ``from ... import`` did.
            if (
                isinstance(value, types.ModuleType)
                and name in where
                and value.__name__ == f"{package}.{name}"
            ):
                return
            super().__setattr__(name, value)

    sys.modules[package].__class__ = LazyPackage

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
            namespace[name] = value  # later look-ups are plain attribute reads
            return value
        try:  # a submodule, as ``import package`` then ``package.sub`` gives after an eager __init__
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
