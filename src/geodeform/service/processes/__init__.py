"""The processes the service offers: the only part of the service that knows geodeform's processing chains.

- :mod:`~geodeform.service.processes.base`: what a process is, strict input validation and descriptions;
- :mod:`~geodeform.service.processes.checks`: limits every process's inputs obey (data scope, catalogue
  hosts, image size, search area, matcher nodes);
- :mod:`~geodeform.service.processes.offsets`: ``offsets``, one image pair (the library's one-pair chain,
  :func:`geodeform.workflows.process_pair`);
- :mod:`~geodeform.service.processes.presets`: one process per workflow preset (``geodeform run``).
"""

from __future__ import annotations

from geodeform.service.errors import Problem
from geodeform.service.processes.base import (
    InputContext,
    JobCancelled,
    LimitExceeded,
    Process,
    ProgressFn,
    ResultFile,
    RunContext,
    RunOutcome,
    input_descriptions,
    validate_inputs,
)
from geodeform.service.processes.checks import bbox_area_km2
from geodeform.service.processes.offsets import OffsetsInputs, offsets_process
from geodeform.service.processes.presets import preset_processes

__all__ = [
    "InputContext",
    "JobCancelled",
    "LimitExceeded",
    "OffsetsInputs",
    "Problem",
    "Process",
    "ProgressFn",
    "ResultFile",
    "RunContext",
    "RunOutcome",
    "bbox_area_km2",
    "build_registry",
    "input_descriptions",
    "validate_inputs",
]


def build_registry() -> dict[str, Process]:
    """All processes this installation offers, by id: ``offsets`` and one per workflow preset."""
    procs = [offsets_process(), *preset_processes()]
    return {p.id: p for p in procs}
