"""keep_freed_memory: applied once, harmless, and a no-op where glibc is absent."""

from __future__ import annotations

import platform

import numpy as np

from data_gen import malloc


def test_keep_freed_memory_is_idempotent_and_leaves_results_alone(monkeypatch):
    a = np.random.default_rng(0).standard_normal((512, 512))
    first = malloc.keep_freed_memory()
    assert first is (platform.libc_ver()[0] == "glibc")
    assert malloc.keep_freed_memory() == first  # a second call changes nothing
    b = np.random.default_rng(0).standard_normal((512, 512))
    assert np.array_equal(a, b)


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(malloc, "_done", False)
    monkeypatch.setattr(malloc.ctypes, "CDLL", no_libc)
    assert malloc.keep_freed_memory() is False
