"""Large blocks back to the system when freed: a fixed glibc mmap threshold.

Ingest allocates large, short-lived blocks all the time: 256 KiB socket reads, the message
payloads of a burst, line-protocol bodies of several MiB. glibc serves a block above its *mmap
threshold* (128 KiB at start) with its own ``mmap`` and returns it to the system on ``free``. But
the threshold is dynamic: each such block freed raises it to that block's size (up to 32 MiB), after
which blocks that size come from the heap, whose freed memory glibc keeps. Under load the heap so
grows to the largest burst and stays there: in the bench's workload (a), ingest's peak RSS was
100.9–105.8 MiB over three rounds; with the threshold fixed at 128 KiB (which also stops the dynamic
adjustment), 87.6–88.4 MiB at the same rates (measured with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072``, which sets it before the process starts;
through :func:`fix_mmap_threshold`, 88.6–89.0 MiB). Under an ``LD_PRELOAD``ed allocator (jemalloc,
tcmalloc) glibc's setting has no effect.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter number for the mmap threshold (glibc's ``malloc.h``)."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's initial threshold, kept: above it every block is mapped and unmapped on its own."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where the C library is not glibc.

    Called first thing, before start-up has freed a large block (which raises the trim threshold
    along with the mmap threshold, and this does not lower it again)."""
    libc = ctypes.CDLL(None)  # the C library this process runs on (no ldconfig needed to find it)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:  # musl: no such knob
        log.debug("not glibc: its mmap threshold left alone")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        log.warning("glibc refused an mmap threshold of %d bytes: freed memory may stay resident", threshold)
        return False
    return True
