"""The processing chains as a web service: OGC API – Processes over a job store, with worker processes.

Modules: :mod:`~geodeform.service.app` (FastAPI application), :mod:`~geodeform.service.store` (SQLAlchemy job
store and alembic migrations), :mod:`~geodeform.service.auth` (bearer tokens),
:mod:`~geodeform.service.worker` (worker processes, reaper), :mod:`~geodeform.service.processes` (the
processes offered), :mod:`~geodeform.service.safety` (what inputs may point to).
"""

from __future__ import annotations

__all__: list[str] = []
