"""Workflows: the chains that wire search, reading, matching, corrections, inversion and products.

``process_pair(PairSpec(...))`` runs one image pair end to end (``geodeform offsets``, the service's
``offsets`` process and every pair of a job); ``run_job(config)`` runs one job end to end
(``geodeform run job.yaml``); see :mod:`geodeform.config` for the config and its presets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.workflows.job import RunResult, StageProgress, run_job
    from geodeform.workflows.pair import (
        ErrorPolicy,
        PairOutcome,
        PairProgress,
        PairSpec,
        process_pair,
    )
    from geodeform.workflows.plan import build_network, pair_specs, search_ranges, stable_nodes
    from geodeform.workflows.preflight import ResourceEstimate, check_files, estimate_resources, preflight
    from geodeform.workflows.stack import Acquisition, ImageStack, stack_from_inputs, stack_from_search

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "job": (
            "RunResult",
            "StageProgress",
            "run_job",
        ),
        "pair": (
            "ErrorPolicy",
            "PairOutcome",
            "PairProgress",
            "PairSpec",
            "process_pair",
        ),
        "plan": (
            "build_network",
            "pair_specs",
            "search_ranges",
            "stable_nodes",
        ),
        "preflight": (
            "ResourceEstimate",
            "check_files",
            "estimate_resources",
            "preflight",
        ),
        "stack": (
            "Acquisition",
            "ImageStack",
            "stack_from_inputs",
            "stack_from_search",
        ),
    },
)

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
    "build_network",
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
