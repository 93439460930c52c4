"""The processing chains as a web service: OGC API – Processes over a job store, with worker processes.

Layout (each module imports only those above it in this list, never the app factory):

- :mod:`~geodeform.service.errors`: OGC exception documents (``OGCError``, ``Problem``); imports nothing
  of ours;
- :mod:`~geodeform.service.settings`, :mod:`~geodeform.service.safety`
  (what inputs may point to), :mod:`~geodeform.service.store` (SQLAlchemy job store, alembic migrations);
- :mod:`~geodeform.service.processes`: the processes offered (registry, validation, ``offsets``, presets);
- :mod:`~geodeform.service.deps`, :mod:`~geodeform.service.auth` (bearer tokens),
  :mod:`~geodeform.service.documents`, :mod:`~geodeform.service.middleware`: what the routers share;
- :mod:`~geodeform.service.routes`: the routers (landing, processes, jobs, map page);
- :mod:`~geodeform.service.app`: ``create_app``, which wires them; :mod:`~geodeform.service.worker`: worker
  processes and the reaper.
"""

from __future__ import annotations

__all__: list[str] = []
