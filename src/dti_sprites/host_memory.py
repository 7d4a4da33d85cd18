"""Keep freed host memory for reuse instead of handing it back to the kernel (glibc only).

A CPU training step allocates and frees the same tens of MB of tensors every time. glibc's
malloc serves each block above its mmap threshold (128 kB, raised only as it sees such blocks
freed) with a fresh mapping and unmaps it on free, so the next step faults every 4 kB page
back in, zeroed by the kernel. Raising the threshold to glibc's ceiling (32 MB on 64-bit)
and never trimming the heap keeps those blocks for reuse: a 20-step `bench` of tetro.yml on
the 2-core AMD EPYC went from 890,000 to 257,000 page faults, and its step from 316-384 ms to
266-282 ms (2 threads, alternating runs). The price: the process keeps its peak resident
memory until it exits.

Set DTI_SPRITES_KEEP_FREED_MEMORY=0 to leave malloc alone; a GLIBC_TUNABLES that already
sets malloc's thresholds is respected as well.
"""

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, malloc.h
_MMAP_THRESHOLD_CEILING = 32 * 1024 * 1024  # glibc refuses more on 64-bit
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int
_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MB; True when it agreed (now or
    before), False where it does not apply (not glibc, turned off, or set by the user)."""
    global _applied
    if _applied:
        return True
    if os.environ.get("DTI_SPRITES_KEEP_FREED_MEMORY", "1") == "0":
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_CEILING) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    return _applied
