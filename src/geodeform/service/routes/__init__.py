"""The service's routers, one module each, with module-level handlers.

- :mod:`~geodeform.service.routes.landing`: ``/``, ``/conformance``;
- :mod:`~geodeform.service.routes.processes`: ``/processes``, execution;
- :mod:`~geodeform.service.routes.jobs`: ``/jobs``, status, results, downloads, dismissal;
- :mod:`~geodeform.service.routes.page`: the map page ``/map`` and its ``/map/api`` endpoints.
"""

from __future__ import annotations

__all__: list[str] = []
