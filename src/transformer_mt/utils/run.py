"""Run bookkeeping for the entry points: config tree, callbacks and loggers, W&B lifecycle."""

import functools
import logging
import netrc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rich.syntax
import rich.tree
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

log = logging.getLogger(__name__)
R = TypeVar("R")

TREE_ORDER = ("data", "model", "module", "optimizer", "scheduler", "decoding", "trainer",
              "callbacks", "logger", "paths")  # fmt: skip


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the composed config as a rich tree (main groups first) and save it as text."""
    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    keys = [k for k in TREE_ORDER if k in cfg] + [k for k in cfg if k not in TREE_ORDER]
    for key in keys:
        branch = tree.add(str(key), guide_style="dim")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    Console().print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as f:
            Console(file=f, width=120, color_system=None).print(tree)


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Every ``_target_`` node of the ``callbacks`` group (a null entry disables one)."""
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Every ``_target_`` node of the ``logger`` group."""
    return [instantiate(lg) for lg in (cfg or {}).values() if lg is not None and "_target_" in lg]


def wandb_key_available() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def default_wandb_offline() -> None:
    """Without a W&B key, run offline (sync later) so nothing ever waits for a login."""
    if not wandb_key_available():
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def finish_wandb(failed: bool) -> None:
    """Close the current W&B run, if any, so the next job of a sweep starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        log.info("closing the W&B run")
        wandb.finish(exit_code=1 if failed else 0)


def task_wrapper(task: Callable[..., R]) -> Callable[..., R]:
    """Log a failure with the output dir, and always finish the W&B run, then re-raise."""

    @functools.wraps(task)
    def wrapped(*args: Any, **kwargs: Any) -> R:
        failed = True
        try:
            result = task(*args, **kwargs)
            failed = False
            return result
        except Exception:
            log.exception("the task failed")
            raise
        finally:
            finish_wandb(failed)

    return wrapped


def log_hyperparameters(loggers: Sequence[Logger], cfg: DictConfig) -> None:
    """Send the whole resolved config to every logger."""
    params = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(params)
