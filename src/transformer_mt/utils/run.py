"""Run bookkeeping for the entry points: config tree, callbacks and loggers, W&B lifecycle."""

import contextlib
import functools
import io
import logging
import netrc
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rich.syntax
import rich.tree
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from transformer_mt.utils.errors import log_to_files

log = logging.getLogger(__name__)
R = TypeVar("R")

TREE_ORDER = ("data", "model", "module", "optimizer", "scheduler", "decoding", "trainer",
              "callbacks", "logger", "paths")  # fmt: skip


def _config_tree(cfg: DictConfig) -> rich.tree.Tree:
    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    keys = [k for k in TREE_ORDER if k in cfg] + [k for k in cfg if k not in TREE_ORDER]
    for key in keys:
        branch = tree.add(str(key), guide_style="dim")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    return tree


def save_config_tree(cfg: DictConfig, save_to: Path) -> None:
    """Write the composed config as a tree (main groups first) to `save_to` and to the run's
    log file; the console gets `run_header` instead (the tree is ~165 lines)."""
    save_to.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    Console(file=text, width=120, color_system=None).print(_config_tree(cfg))
    save_to.write_text(text.getvalue())
    log_to_files(logging.INFO, "config:\n" + text.getvalue())


def run_header(cfg: DictConfig, tree_file: Path) -> str:
    """A few lines saying what this run is: direction, model, length, where it writes."""
    get = functools.partial(OmegaConf.select, cfg, default=None)
    corpus = str(get("data.corpus._target_") or "?").rsplit(".", 1)[-1]
    model = ", ".join(
        f"{k}={get(f'model.{k}')}"
        for k in ("d_model", "num_encoder_layers", "num_decoder_layers", "pos_enc")
    )
    lines = [
        f"{get('task_name')}: {corpus} {get('data.corpus.src_lang')}->"
        f"{get('data.corpus.tgt_lang')}, model {model}",
        f"  trainer.max_steps={get('trainer.max_steps')} on {get('trainer.accelerator')}"
        + (f", resuming {get('ckpt_path')}" if get("ckpt_path") else ""),
        f"  run directory: {get('paths.output_dir')} (full config: {tree_file})",
    ]
    return "\n".join(lines)


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
    """Log a failure with its traceback to the run's log file (the console gets it once, from
    the entry point), and always finish the W&B run, then re-raise."""

    @functools.wraps(task)
    def wrapped(*args: Any, **kwargs: Any) -> R:
        failed = True
        try:
            result = task(*args, **kwargs)
            failed = False
            return result
        except Exception:
            log_to_files(logging.ERROR, "the task failed", exc_info=sys.exc_info())
            raise
        finally:
            finish_wandb(failed)

    return wrapped


def log_hyperparameters(loggers: Sequence[Logger], cfg: DictConfig) -> None:
    """Send the whole resolved config to every logger."""
    params = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(params)


def ddp_child_command(local_rank: int) -> tuple[list[str], str]:
    """The command Lightning's DDP launcher starts each further rank with, under Hydra.

    Lightning's own (`subprocess_script._hydra_subprocess_cmd`) repeats the parent's
    ``sys.argv`` with ``hydra.run.dir`` set: in a ``-m`` multirun that argv still holds ``-m``
    and the sweep, so every second rank started the whole sweep again, and ``run.dir`` is not
    the job's directory. This one runs exactly this job: its own overrides, in run mode, into
    the job's output directory (one directory per job, not per rank).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_config = HydraConfig.get()
    script = (
        [sys.executable, to_absolute_path(sys.argv[0])]
        if __main__.__spec__ is None
        else [sys.executable, "-m", __main__.__spec__.name]
    )
    overrides = list(hydra_config.overrides.task)
    placement = [
        f"hydra.run.dir={hydra_config.runtime.output_dir}",
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return [*script, *overrides, *placement], get_original_cwd()


def route_ddp_children_to_this_job() -> None:
    """Make Lightning start further DDP ranks with `ddp_child_command` (both its launchers,
    Fabric's and the Trainer's, hold their own reference to the function)."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    for launcher in (fabric_launcher, trainer_launcher):
        launcher._hydra_subprocess_cmd = ddp_child_command  # noqa: SLF001


DISTRIBUTED_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE",
                         "RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")  # fmt: skip


@contextlib.contextmanager
def one_distributed_job() -> Iterator[None]:
    """Within the block, this job may start DDP; after it, its process group is destroyed and
    the environment variables Lightning set for it (LOCAL_RANK, MASTER_PORT, ...) are undone,
    so the next job of a ``-m`` multirun in this process starts its own ranks again."""
    import torch.distributed as dist

    before = {key: os.environ.get(key) for key in DISTRIBUTED_VARIABLES}
    was_initialized = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if not was_initialized and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
