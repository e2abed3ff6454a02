"""Torch datasets over the generators and labelled folders, with deterministic loading.

Every sample is a pure function of (seed, index), so a DataLoader gives the same batches whatever its
number of workers. :class:`CharacterDataset` also implements ``__getitems__``: a DataLoader then asks
for a whole batch at once and the generator composes it in one vectorised call (the fast path).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_gen.characters import CharacterBatch, CharacterConfig, CharacterGenerator


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W)`` uint8 → ``(B, 1, H, W)`` float32 in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise TypeError(f"expected a (B, H, W) uint8 array, got {images.dtype} with shape {images.shape}")
    return torch.from_numpy(images).unsqueeze(1).float().div_(255.0)


def batch_to_dict(batch: CharacterBatch) -> dict[str, torch.Tensor]:
    """A generated batch as tensors: ``image`` (B, 1, S, S) float in [0, 1], ``label`` (B,) int64,
    ``boxes`` (B, K, 4) int32 (-1 rows unused), ``index`` (B,) int64 and, when present, ``mask``
    (B, S, S) bool."""
    out = {"image": to_tensor_images(batch.images),
           "label": torch.from_numpy(batch.labels.astype(np.int64)),
           "boxes": torch.from_numpy(batch.boxes),
           "index": torch.from_numpy(batch.indices)}
    if batch.masks is not None:
        out["mask"] = torch.from_numpy(batch.masks)
    return out


class CharacterDataset(Dataset):
    """A map-style, sized view of the character generator: samples ``start … start+length-1`` of one
    split.

    Args:
        config: generator knobs (default: the paper's description).
        seed: the split's seed (train, validation and test use different seeds).
        length: number of samples.
        start: first sample index.
        masks: also return the truth masks.
        generator: an existing :class:`CharacterGenerator` to share its glyph cache.

    ``dataset[i]`` is a dict of one sample (``image`` (1, S, S) float32, ``label``, ``boxes`` (K, 4),
    ``index``); ``dataset.__getitems__(indices)`` the same keys for a whole batch.
    """

    def __init__(self, config: CharacterConfig | None = None, seed: int = 0, length: int = 100_000,
                 start: int = 0, masks: bool = False, generator: CharacterGenerator | None = None):
        if length < 1 or start < 0:
            raise ValueError(f"length must be >= 1 and start >= 0, got length={length}, start={start}")
        self.generator = generator or CharacterGenerator(config)
        self.config = self.generator.config
        self.seed, self.length, self.start, self.masks = int(seed), int(length), int(start), masks

    def __len__(self) -> int:
        return self.length

    def _indices(self, items: Sequence[int]) -> np.ndarray:
        idx = np.asarray(items, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.length):
            raise IndexError(f"index out of range for a dataset of {self.length} samples")
        return idx + self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        b = batch_to_dict(self.generator.generate(self.seed, self._indices([int(i)]), masks=self.masks))
        return {k: v[0] for k, v in b.items()}

    def __getitems__(self, items: Sequence[int]) -> dict[str, torch.Tensor]:
        return batch_to_dict(self.generator.generate(self.seed, self._indices(items), masks=self.masks))

    def batch(self, items: Sequence[int]) -> CharacterBatch:
        """The raw uint8 batch (numpy) of dataset positions ``items``."""
        return self.generator.generate(self.seed, self._indices(items), masks=self.masks)

    def labels(self) -> np.ndarray:
        """``(length,)`` uint8 labels of the whole dataset, without drawing images."""
        return self.generator.labels(self.seed, np.arange(self.start, self.start + self.length))


def collate(batch: Any) -> dict[str, torch.Tensor]:
    """DataLoader collate: passes through a batch made by ``__getitems__``, stacks a list of samples."""
    if isinstance(batch, dict):
        return batch
    return {k: torch.stack([s[k] for s in batch]) for k in batch[0]}


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose batches depend only on (dataset, batch_size, shuffle, seed), never on the
    number of workers: shuffling uses its own seeded generator, samples are pure functions of their
    index."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate,
                      num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
