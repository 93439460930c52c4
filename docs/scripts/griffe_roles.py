"""Griffe extension used by the docs build: Sphinx roles in docstrings (``:class:`geodeform.x.Y```,
``:func:``, ``:data:``, ...) become plain code spans, so the API pages show ``geodeform.x.Y`` instead of the
raw role markup. Loaded by mkdocstrings (``extensions`` in mkdocs.yml)."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|data|mod|meth|attr|obj|exc|const):`~?([^`]+)`")


class SphinxRolesToCode(griffe.Extension):
    """Rewrite ``:role:`target``` as ```target``` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
