"""Mistakes a user can fix end an entry point with one sentence, not a traceback.

Hydra prints every exception's traceback, and ``task_wrapper`` used to log it once more: a
missing file read as forty lines of frames, twice. Errors of the kinds below carry a message
that names the option or file and what to do; `exit_on_user_error` prints just that (and where
the run's log is), writes the traceback to the run's log file, and exits with status 1.
``HYDRA_FULL_ERROR=1`` shows the traceback, and in a multirun the error is raised as before so
the sweeper records the job as failed and goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from transformer_mt.data.cache import CacheError
from transformer_mt.data.download import DownloadError
from transformer_mt.data.readers import CorpusError
from transformer_mt.formats.lightning import CheckpointError
from transformer_mt.utils.config_check import ConfigError

log = logging.getLogger(__name__)
R = TypeVar("R")


class StartupError(ValueError):
    """A setting that cannot work, found before any work is done; names the option."""


# CorpusError, CheckpointError, ConfigError and StartupError are ValueErrors too: the package
# raises ValueError for a bad setting throughout, with a message that names it
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, CacheError, DownloadError, CorpusError, CheckpointError,
    ConfigError, StartupError,
)  # fmt: skip


def log_to_files(level: int, message: str, exc_info: Any = None) -> None:
    """Write a record to the file handlers only (the run's log), not to the console."""
    root = logging.getLogger()
    record = log.makeRecord(log.name, level, __file__, 0, message, None, exc_info)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _run_dir(cfg: DictConfig) -> Path | None:
    """This run's own directory, if Hydra made one (translate.py runs in place, without)."""
    run_dir = OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=False)
    return Path(run_dir) if run_dir and (Path(run_dir) / ".hydra").is_dir() else None


def _user_error(err: BaseException) -> BaseException | None:
    """`err` if it is a user error, or the one Hydra wrapped while building an object."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, USER_ERRORS) else None


def exit_on_user_error(main: Callable[[DictConfig], R]) -> Callable[[DictConfig], R]:
    """Decorate an entry point's ``main`` (under ``@hydra.main``): a `USER_ERRORS` exception
    becomes ``error: <message>`` on stderr and exit status 1."""

    @functools.wraps(main)
    def wrapped(cfg: DictConfig) -> R:
        try:
            return main(cfg)
        except Exception as err:
            user_error = _user_error(err)
            if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or _multirun():
                raise
            log_to_files(logging.ERROR, "stopped", exc_info=sys.exc_info())
            run_dir = _run_dir(cfg)
            where = f"\n(this run's config and log: {run_dir})" if run_dir else ""
            raise SystemExit(f"error: {user_error}{where}") from None

    return wrapped
