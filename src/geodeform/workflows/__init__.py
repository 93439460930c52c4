"""Workflows: presets that chain search, reading, matching, corrections, inversion and products.

``run_job(config)`` runs one job end to end (``geodeform run job.yaml``); see :mod:`geodeform.config` for the
config and its presets.
"""

from __future__ import annotations

from geodeform.workflows.job import (
    PairOutcome,
    ResourceEstimate,
    RunResult,
    date_noise,
    estimate_resources,
    preflight,
    process_pair,
    run_job,
)
from geodeform.workflows.stack import Acquisition, ImageStack, stack_from_inputs, stack_from_search

__all__ = [
    "Acquisition",
    "ImageStack",
    "PairOutcome",
    "ResourceEstimate",
    "RunResult",
    "date_noise",
    "estimate_resources",
    "preflight",
    "process_pair",
    "run_job",
    "stack_from_inputs",
    "stack_from_search",
]
