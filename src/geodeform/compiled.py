"""Small numba helpers shared by the kernels of several stages (offsets, time series).

A leaf module (imports nothing of ours). Numba compiles the numpy functions it supports (``np.median``
and the partition under it) anew inside every kernel whose compile options differ (parallel, fastmath,
nogil): a kernel that calls a dispatcher defined here gets that dispatcher's one compiled version instead,
so a cold first run compiles it once per argument type, not once per calling kernel.

:func:`run_chunks` runs a serial ``nogil`` kernel over chunks of an index range on a pool of threads: the
parallel loops over nodes and pixels use it instead of ``numba.prange``, whose ``parallel=True`` lowering
inlines the loop body and every kernel it calls into one function that LLVM then optimises again (most
of a cold run's compile time; ``docs/benchmarks.md``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numba import njit

__all__ = ["median", "run_chunks"]

_CHUNKS_PER_THREAD = 4  # chunks are taken in turn by the threads: uneven per-node costs even out

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's kernel thread pool, with at least ``workers`` threads."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geodeform-kernel")
            _pool_size = workers
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def run_chunks(kernel: Callable[..., Any], n: int, *args: Any, chunks: int = 0) -> None:
    """Run ``kernel(lo, hi, *args)`` over ``[0, n)`` in chunks, on ``numba.get_num_threads()`` threads.

    Parameters
    ----------
    kernel : numba dispatcher
        A serial ``nogil=True`` kernel doing the indices ``lo <= k < hi`` of its loop; chunks must be
        independent (each writes only its own rows of the outputs), so the result does not depend on the
        chunking or on the number of threads.
    n : int
        Size of the index range.
    *args
        The kernel's other arguments, passed unchanged to every chunk.
    chunks : int, optional
        Number of chunks (default: 4 per thread, at most ``n``). With one thread the kernel is called
        once, over the whole range, in the calling thread.

    Notes
    -----
    The thread count is the calling thread's numba setting (``numba.set_num_threads``, which
    :func:`geodeform.offsets.match`'s ``threads`` sets), so these loops obey it as ``prange`` loops do.
    The calling thread takes chunks too; the others run on a pool kept for the process.
    """
    n = int(n)
    threads = max(1, min(numba.get_num_threads(), n))
    if threads == 1:
        if n > 0:
            kernel(0, n, *args)
        return
    n_chunks = max(threads, min(n, chunks or _CHUNKS_PER_THREAD * threads))
    order = itertools.count()  # next() is atomic under the GIL

    def work() -> None:
        while True:
            c = next(order)
            if c >= n_chunks:
                return
            kernel(c * n // n_chunks, (c + 1) * n // n_chunks, *args)

    pool = _executor(threads - 1)
    futures: list[Future[None]] = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()


@njit(cache=True, nogil=True)
def median(a):  # pragma: no cover - numba
    """``np.median(a)`` of a 1-D float array, compiled once (module docstring)."""
    return np.median(a)
