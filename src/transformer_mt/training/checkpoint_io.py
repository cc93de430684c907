"""How the Trainer writes and reads checkpoints: atomically, checksummed, weights only.

Lightning's `TorchCheckpointIO` saves through an fsspec transaction whose temporary file lives in
the system temporary directory; when that is another filesystem (a tmpfs ``/tmp``, a run
directory on NFS) the commit is a copy straight over the old file, so a kill mid-save leaves
``last.ckpt`` truncated, and an orphan temporary file. Here every save (``last.ckpt``, step and
best checkpoints) goes to a temporary file beside its target, is flushed and fsynced, renamed
over the target and the directory fsynced (`transformer_mt.utils.io.atomic_file`): a kill at
any moment leaves the old checkpoint or the new one. Leftover temporary files of a killed
save are removed at the next save into that directory (and by ``train.py`` at start).

Each checkpoint is sealed with a checksum of its content (`formats.lightning.seal`), and every
load (``trainer.fit(ckpt_path=...)``, ``trainer.test(ckpt_path=...)``) is weights-only and
verified (`formats.lightning.load_checkpoint`), whatever torch's default or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say. Selected in ``conf/trainer/default.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from transformer_mt.formats.lightning import load_checkpoint, seal
from transformer_mt.utils.io import atomic_file, remove_stale_temporaries

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with atomic, durable, checksummed saves and verified safe loads."""

    def __init__(self) -> None:
        super().__init__()
        self._cleaned: set[Path] = set()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Write `checkpoint` to `path` so that `path` always holds a complete checkpoint."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        if path.parent not in self._cleaned:
            remove_stale_temporaries(path.parent)
            self._cleaned.add(path.parent)
        with atomic_file(path) as f:
            torch.save(seal(checkpoint), f)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """The verified checkpoint at `path`, on the CPU (Lightning moves what it restores);
        always weights-only: `weights_only=False` is refused rather than obeyed."""
        if weights_only is False:
            raise ValueError(f"{path}: this project loads checkpoints with weights_only=True only")
        return load_checkpoint(path)
