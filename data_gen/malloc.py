"""Process memory tuning: keep freed large arrays for reuse instead of handing them back to the OS.

glibc serves a large request (above a threshold that starts at 128 KB and adapts up to 32 MB) with a
fresh ``mmap`` and unmaps it when freed, so the next array of the same size faults in and zeroes every
page again. Array code that makes many short-lived megabyte-sized temporaries pays more for those page
faults than for its arithmetic: a 512×512 textile sample 50 → 20 ms (``benchmarks/generator_speed.py
--textile``), a CPU training step of the earlier 3-block ``fast`` character network 7–25 % (steps on a batch
of 32).
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Serve requests below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold``
    bytes of freed heap for reuse, for the rest of this process (applied once; later calls do nothing).

    The cost: the process holds on to freed memory up to ``trim_threshold`` instead of returning it.

    Returns:
        Whether the setting is in effect: False off glibc (macOS, Windows, musl), where it is a no-op.
    """
    global _done
    if not _done:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
            _done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                       trim_threshold))
        except (OSError, AttributeError):
            return False
    return _done
