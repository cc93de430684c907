"""Lightning's CSV logger, except that a run resumed in its own directory keeps its curve.

Lightning's writer deletes an existing metrics.csv when a logger opens the directory, so
`train.py ckpt_path=<run>/checkpoints/last.ckpt hydra.run.dir=<run>` used to lose every row
logged before the stop. Here the rows stay and new ones are appended under the same header
(extended when new metrics appear). Steps between the checkpoint and the stop are logged again
by the resumed run, with the same values since resuming is exact: readers keep a step's last row.
"""

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Start from the existing file's header instead of deleting the file."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that appends to an existing metrics.csv."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
