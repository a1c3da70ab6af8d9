"""Torch datasets over a built split: ImageNet-normalised images and their SDF grids.

Arrays are memory-mapped, so opening a split is instant and worker processes share the page cache.
Augmentation is a pure function of a per-sample seed that the sampler hands in, which makes a resumed run
see exactly the batches an uninterrupted run would have seen, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SDFViews(Dataset):
    """One split of a built dataset: item = (normalised image ``(3, H, W)``, sdf ``(R, R, R)``), float32.

    Indices may be ints or ``(index, seed)`` pairs; with ``augment`` the seed drives the augmentation.
    """

    def __init__(self, root: Path, split: str, augment: bool = False) -> None:
        """Open ``root/split``.

        Args:
            root: dataset folder (the builder's ``--out``).
            split: ``train``, ``val`` or ``test``.
            augment: apply colour jitter (brightness, contrast, per-channel gain). No geometric augmentation:
                flipping the image would have to flip the SDF grid too, and the grid lives in camera axes.
        """
        d = Path(root) / split
        self.images = np.load(d / "images.npy", mmap_mode="r")
        self.sdf = np.load(d / "sdf.npy", mmap_mode="r")
        self.sdf_index = np.load(d / "sdf_index.npy")
        self.view_mesh = np.load(d / "view_mesh.npy")
        self.augment = augment
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1).float() / 255.0  # (3, H, W)
        if self.augment:
            image = self._jitter(image, seed)
        image = (image - self._mean) / self._std
        sdf = torch.from_numpy(np.array(self.sdf[self.sdf_index[index]], dtype=np.float32))  # (R, R, R)
        return image, sdf

    @staticmethod
    def _jitter(image: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(5, generator=g)
        brightness = 0.8 + 0.4 * u[0]
        contrast = 0.8 + 0.4 * u[1]
        gains = (0.9 + 0.2 * u[2:5]).view(3, 1, 1)
        mean = image.mean()
        return ((image - mean) * contrast + mean).mul(brightness * gains).clamp(0.0, 1.0)


class ResumableSampler(Sampler[tuple[int, int]]):
    """An endless stream of ``(index, seed)``: epoch ``e`` is a permutation seeded by ``(seed, e)``.

    Position ``k`` of the stream depends only on ``(seed, k)``, so resuming at step ``s`` with batch ``b``
    is ``start=s * b``: no sampler state beyond one integer has to be checkpointed.
    """

    def __init__(self, length: int, seed: int, start: int = 0) -> None:
        """Args: ``length`` dataset size, ``seed`` run seed, ``start`` first stream position."""
        if length <= 0:
            raise ValueError("cannot sample from an empty split")
        self.length, self.seed, self.start = length, seed, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        while True:
            epoch, offset = divmod(pos, self.length)
            gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            perm = torch.randperm(self.length, generator=gen)
            for i in range(offset, self.length):
                yield int(perm[i]), (self.seed * 1_000_003 + pos) % (2**62)
                pos += 1

    def __len__(self) -> int:  # DataLoader only needs it to exist; the stream is endless
        return 2**62


def mean_sdf_grid(root: Path, split: str = "train", max_grids: int = 4096) -> torch.Tensor:
    """Mean SDF grid ``(R, R, R)`` of a split (over at most ``max_grids`` evenly spaced grids, in float64).

    This is both the model's prior and the evaluation's mean-grid baseline.
    """
    sdf = np.load(Path(root) / split / "sdf.npy", mmap_mode="r")
    rows = np.unique(np.linspace(0, len(sdf) - 1, min(len(sdf), max_grids)).astype(np.int64))
    total = np.zeros(sdf.shape[1:], dtype=np.float64)
    for start in range(0, len(rows), 256):  # bounded memory on large splits
        total += np.asarray(sdf[rows[start : start + 256]], dtype=np.float64).sum(axis=0)
    return torch.from_numpy((total / len(rows)).astype(np.float32))
