"""Step checkpoints that always include the state training ends with.

Lightning's `ModelCheckpoint` saves at validation ends or every N updates, and at the end of
training refreshes `last.ckpt` only if this process has not saved a last checkpoint before. A run
of 8,000 updates that saves every 110 therefore ends with `last.ckpt` at update 7,920: its
final updates are missing from evaluation, from checkpoint averaging and from a resume. This
callback saves the final step as one more top-k checkpoint and as `last.ckpt`.
"""

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (same arguments, meant for `monitor="step"`) plus the final state."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            candidates: dict[str, Any] = self._monitor_candidates(trainer)
            if self.monitor is None or self.monitor in candidates:
                self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)
