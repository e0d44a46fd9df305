"""ingest.memory: a fixed glibc mmap threshold, seen through glibc's own accounting (``mallinfo2``)."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from ingest.memory import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in names.split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytearray(4 << 20)
del big  # freed: glibc's dynamic threshold would now rise to 4 MiB
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)  # bytes mapped for the 1 MiB block (0: it came from the heap)
"""


def mapped_for_a_block(mode: str) -> int:
    """Run the probe in a fresh process whose environment sets no malloc tunables of its own."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def _glibc_with_mallinfo2() -> bool:
    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(None), "mallinfo2")  # glibc ≥ 2.33


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc 2.33 or later only (mallinfo2)")
def test_a_large_block_is_mapped_on_its_own_even_after_a_larger_one_was_freed() -> None:
    assert mapped_for_a_block("dynamic") == 0  # glibc's default: the heap serves it, and keeps it
    assert mapped_for_a_block("fixed") >= 1 << 20
