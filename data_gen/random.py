"""Counter-based random numbers: every draw is a pure function of (seed, index, stream, k).

A sample never touches a global random state, so the same (seed, index) gives the same image in any
process, in any DataLoader worker layout and in any batch it is generated with. The hash is SplitMix64,
vectorised over a batch of indices with numpy's wrapping uint64 arithmetic.
"""

from __future__ import annotations

import zlib

import numpy as np

_U64 = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser applied element-wise to a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


class Draws:
    """Uniform draws for a batch of sample indices.

    Args:
        seed: the split's seed (any non-negative integer below 2**63).
        indices: ``(B,)`` sample indices.

    Each named ``stream`` (and sub-index ``k``) gives an independent ``(B,)`` array, so adding a new
    random quantity never changes the existing ones.
    """

    def __init__(self, seed: int, indices: np.ndarray):
        if not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), not {seed}")
        self.seed = int(seed)
        self.indices = np.asarray(indices, dtype=np.uint64)
        self._key = splitmix64(np.array([self.seed], dtype=np.uint64))[0]

    def bits(self, stream: str, k: int = 0) -> np.ndarray:
        """``(B,)`` uint64 hash bits of (seed, index, stream, k)."""
        sk = _U64(zlib.crc32(stream.encode()) * 4096 + k)
        with np.errstate(over="ignore"):
            key = splitmix64(np.array([self._key ^ sk], dtype=np.uint64))
            return splitmix64(self.indices ^ key)

    def uniform(self, stream: str, k: int = 0, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """``(B,)`` float64 uniform in ``[low, high)``."""
        u = (self.bits(stream, k) >> _U64(11)).astype(np.float64) * (1.0 / 2**53)
        return low + (high - low) * u

    def integers(self, stream: str, low: int, high: int, k: int = 0) -> np.ndarray:
        """``(B,)`` int64 uniform in ``[low, high]`` (both ends included)."""
        if high < low:
            raise ValueError(f"empty integer range [{low}, {high}]")
        u = self.uniform(stream, k)
        return np.minimum(low + np.floor(u * (high - low + 1)).astype(np.int64), high)


def ratio_labels(seed: int, indices: np.ndarray, ratio: float) -> np.ndarray:
    """``(B,)`` uint8 image labels (1 = defective) at ``ratio`` defect-free images per defective one.

    An integer ratio is exact in every block of ``ratio + 1`` consecutive indices (the defective one's
    place in its block is drawn); any other ratio is a Bernoulli draw per index. Pure in (seed, index).
    """
    idx = np.asarray(indices, dtype=np.int64)
    if abs(ratio - round(ratio)) < 1e-9:
        period = int(round(ratio)) + 1
        winner = Draws(seed, idx // period).integers("label_block", 0, period - 1)
        return (idx % period == winner).astype(np.uint8)
    return (Draws(seed, idx).uniform("label") < 1.0 / (1.0 + ratio)).astype(np.uint8)
