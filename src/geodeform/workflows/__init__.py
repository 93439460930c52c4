"""Workflows: the chains that wire search, reading, matching, corrections, inversion and products.

``process_pair(PairSpec(...))`` runs one image pair end to end (``geodeform offsets``, the service's
``offsets`` process and every pair of a job); ``run_job(config)`` runs one job end to end
(``geodeform run job.yaml``); see :mod:`geodeform.config` for the config and its presets.
"""

from __future__ import annotations

from geodeform.workflows.job import RunResult, StageProgress, run_job
from geodeform.workflows.pair import (
    ErrorPolicy,
    PairOutcome,
    PairProgress,
    PairSpec,
    process_pair,
)
from geodeform.workflows.plan import pair_specs, search_ranges, stable_nodes
from geodeform.workflows.preflight import ResourceEstimate, check_files, estimate_resources, preflight
from geodeform.workflows.stack import Acquisition, ImageStack, stack_from_inputs, stack_from_search

__all__ = [
    "Acquisition",
    "ErrorPolicy",
    "ImageStack",
    "PairOutcome",
    "PairProgress",
    "PairSpec",
    "ResourceEstimate",
    "RunResult",
    "StageProgress",
    "check_files",
    "estimate_resources",
    "pair_specs",
    "preflight",
    "process_pair",
    "run_job",
    "search_ranges",
    "stable_nodes",
    "stack_from_inputs",
    "stack_from_search",
]
