"""Tests of ``geodeform.compiled``: the shared numba median and ``run_chunks``, the threads behind the
parallel node and pixel loops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numba
import numpy as np
import pytest
from numba import njit

from geodeform.compiled import median, run_chunks


@njit(cache=True, nogil=True)
def _square_rows(lo, hi, x, out, visits):  # pragma: no cover - numba
    for k in range(lo, hi):
        out[k] = x[k] * x[k]
        visits[k] += 1


@pytest.fixture
def two_threads() -> Iterator[None]:
    """numba's thread count set to 2 in this thread (as ``match(threads=2)`` does), restored after."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba sees one core")
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(old)


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_run_chunks_does_every_index_once_as_one_serial_call_would(two_threads: None, n: int) -> None:
    x = np.random.default_rng(0).normal(size=n)
    out = np.full(n, np.nan)
    visits = np.zeros(n, np.int64)
    run_chunks(_square_rows, n, x, out, visits)
    assert (visits == 1).all()
    serial = np.full(n, np.nan)
    _square_rows(0, n, x, serial, np.zeros(n, np.int64))
    assert np.array_equal(out, serial)  # bitwise: chunks are independent


def _record_threads(lo: int, hi: int, seen: set[int], gate: threading.Barrier | None) -> None:
    """A Python stand-in for a kernel (``run_chunks`` takes any callable): which threads ran chunks."""
    seen.add(threading.get_ident())
    if gate is not None:
        gate.wait(timeout=10)  # both threads must be busy at once: the chunks run concurrently


def test_run_chunks_uses_the_threads_numba_is_set_to(two_threads: None) -> None:
    seen: set[int] = set()
    # 2 chunks on 2 threads, each waiting for the other: finishes only if they run at the same time
    run_chunks(_record_threads, 2, seen, threading.Barrier(2), chunks=2)
    assert len(seen) == 2 and threading.get_ident() in seen
    numba.set_num_threads(1)
    seen.clear()
    run_chunks(_record_threads, 50, seen, None)
    assert seen == {threading.get_ident()}  # one thread: the caller does the whole range itself


def test_run_chunks_raises_the_kernels_error_after_every_chunk_stopped(two_threads: None) -> None:
    done: list[int] = []

    def kernel(lo: int, hi: int) -> None:
        if lo == 0:
            raise ValueError("chunk 0 failed")
        done.append(lo)

    with pytest.raises(ValueError, match="chunk 0 failed"):
        run_chunks(kernel, 8, chunks=8)
    # the other thread went on taking chunks: every chunk but the failed one ran before the error came out
    assert sorted(done) == [1, 2, 3, 4, 5, 6, 7]


def test_median_is_numpys_median() -> None:
    a = np.random.default_rng(1).normal(size=101)
    assert median(a) == np.median(a)
    assert median(a[:10]) == np.median(a[:10])
