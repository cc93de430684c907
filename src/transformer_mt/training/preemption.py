"""Saving the run when the cluster stops it, so the job's next start resumes where it was.

SLURM sends SIGUSR1 shortly before a job's time limit (``#SBATCH --signal=USR1@120``, or the
submitit launcher's ``signal_delay_s``) and SIGTERM when it preempts or cancels a job. On
either signal this callback lets the current update finish, writes ``last.ckpt`` (atomically,
through the trainer's CheckpointIO), then hands over:

- under the submitit launcher, to the handler submitit installed (it requeues the same job,
  with the same run directory, and exits);
- under plain ``sbatch``, it requeues the job itself (``scontrol requeue $SLURM_JOB_ID``);
- elsewhere it only stops the run.

A restarted job resumes from its run directory's ``last.ckpt`` by itself (``train.py``'s
``auto_resume``), and exact resume makes its loss curve the uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch import Callback

log = logging.getLogger(__name__)

SIGNALS = ("SIGUSR1", "SIGTERM")


class PreemptionCheckpoint(Callback):
    """On SIGUSR1 / SIGTERM: save `dirpath`/last.ckpt at the end of the current update (the
    state Lightning's own mid-epoch checkpoints have, which it resumes exactly), then, when the
    next update would start, write the logs, requeue on SLURM and exit with status 0 (the
    job's work is saved, not failed). `train.py` skips testing a preempted run."""

    def __init__(self, dirpath: str | Path, signals: tuple[str, ...] = SIGNALS) -> None:
        unknown = [s for s in signals if not hasattr(signal, s)]
        if unknown:
            raise ValueError(f"signals: unknown {unknown}; e.g. {', '.join(SIGNALS)}")
        self.dirpath = Path(dirpath)
        self.signals = tuple(getattr(signal, s) for s in signals)
        self.received: int | None = None
        self.saved = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Only note it: saving inside a signal handler could interrupt an update."""
        log.info("received %s: saving after this update", signal.Signals(signum).name)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Installed here, after Lightning registered its own handlers (its SIGTERM one would
        stop the run at once, mid-validation, before anything is saved)."""
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Training ended right after the signal: hand over now."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if self.received is not None:
            self._hand_over(self.received, previous.get(self.received))

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.received is None or self.saved:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self.saved = True
        log.info("preempted at update %d: saved %s", trainer.global_step, path)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """The saved update's logs are complete now: write them, requeue, end the process."""
        if not self.saved:
            return
        for logger in trainer.loggers:
            logger.save()
        self._hand_over(self.received, self._previous.get(self.received))
        raise SystemExit(0)

    def _hand_over(self, signum: int, previous: Any) -> None:
        """Requeue: submitit's own handler when it installed one, else scontrol on SLURM."""
        if callable(previous) and "submitit" in getattr(previous, "__module__", ""):
            previous(signum, None)  # requeues the job and exits
            return
        job = os.environ.get("SLURM_JOB_ID")
        if job and signum == signal.SIGUSR1:
            subprocess.run(["scontrol", "requeue", job], check=False)
            log.info("requeued SLURM job %s; it resumes from the saved checkpoint", job)
        else:
            log.info("run the same command again to resume from the saved checkpoint")


def preempted(trainer: L.Trainer) -> bool:
    """Whether a `PreemptionCheckpoint` of `trainer` stopped the run on a signal."""
    return any(
        isinstance(c, PreemptionCheckpoint) and c.received is not None for c in trainer.callbacks
    )
