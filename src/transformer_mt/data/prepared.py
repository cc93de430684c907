"""Read-only, memory-mapped view of a prepared split, and the Dataset built on it.

The arrays are opened lazily in each process and never pickled: DataLoader workers receive only
the folder path and map the same files, so the operating system shares the pages among them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from transformer_mt.data.batching import Batch, collate
from transformer_mt.data.cache import CacheError
from transformer_mt.data.prepare import ARRAYS, entry_problem


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if count == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


class PreparedSplit(Dataset):
    """A prepared split; `dataset[indices]` returns the padded `Batch` of those pairs."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        # a truncated .bin would otherwise fail deep in mmap ("mmap length is greater than
        # file size") without saying which file, or map garbage past the end of a shorter one
        problem = entry_problem(self.folder)
        if problem is not None:
            raise CacheError(
                f"prepared data {self.folder} is damaged ({problem}): delete it and run again, "
                "it will be rebuilt"
            )
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.meta["pairs"]

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "meta": self.meta, "_arrays": None}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            n, meta = self.meta["pairs"], self.meta
            dtypes = {
                "src_tokens": (np.dtype(meta["src_dtype"]), meta["src_tokens"]),
                "tgt_tokens": (np.dtype(meta["tgt_dtype"]), meta["tgt_tokens"]),
                "src_offsets": (np.dtype(np.int64), n + 1),
                "tgt_offsets": (np.dtype(np.int64), n + 1),
                "line_numbers": (np.dtype(np.int64), n),
            }
            self._arrays = {
                name: _map(self.folder / f"{name}.bin", *dtypes[name]) for name in ARRAYS
            }
        return self._arrays

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Tensor lengths per pair: source (pieces + </s>), target (pieces + one special)."""
        a = self.arrays
        return np.diff(a["src_offsets"]), np.diff(a["tgt_offsets"]) + 1

    def __getitem__(self, indices: list[int] | np.ndarray) -> Batch:
        a = self.arrays
        return collate(
            a["src_tokens"], a["src_offsets"], a["tgt_tokens"], a["tgt_offsets"],
            np.asarray(indices, dtype=np.int64),
        )  # fmt: skip
