"""Stage timing of the workflows: one decorator, not hand-written timer pairs (dolphin's log_runtime)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["log_runtime"]

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("geodeform.workflows")


def log_runtime(stage: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator logging ``stage <stage>: <seconds> s`` (INFO, ``geodeform.workflows``) when the call returns.

    A call that raises logs nothing here: the caller logs the failure.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            result = func(*args, **kwargs)
            log.info("stage %s: %.1f s", stage, time.perf_counter() - start)
            return result

        return timed

    return decorate
