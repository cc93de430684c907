"""Train a Transformer: compose the config, check it, build everything, fit, test.

Examples:
  python train.py experiment=multi30k_tiny
  python train.py model=base trainer=gpu logger=wandb
  python train.py -m pos_enc=sinusoidal,rope          # one job (and directory) per setting
  python train.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # resume exactly
"""

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.formats import LoadedModel
from transformer_mt.model import TransformerConfig
from transformer_mt.training.embedding_init import EmbeddingInit, split_model_config
from transformer_mt.training.module import TranslationModule
from transformer_mt.training.preemption import preempted
from transformer_mt.training.pretrained import load_start, split_init_from, start_fields
from transformer_mt.utils.config_check import ConfigError, check_config
from transformer_mt.utils.errors import exit_on_user_error
from transformer_mt.utils.run import (
    default_wandb_offline,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    one_distributed_job,
    route_ddp_children_to_this_job,
    run_header,
    save_config_tree,
    task_wrapper,
)
from transformer_mt.utils.startup import (
    NothingToTrain,
    check_prepared_splits,
    missing_values,
    optimized_metric_problem,
    optimized_value,
    preflight,
    range_errors,
)

log = logging.getLogger(__name__)


def check(cfg: DictConfig) -> None:
    """Fail at start on unset, unknown, mistyped or out-of-range settings, invalid model,
    tokenizer or decoding settings, and an optimized_metric this config never logs."""
    if missing := missing_values(cfg):
        raise ConfigError("invalid config:\n  " + "\n  ".join(missing))
    container = OmegaConf.to_container(cfg, resolve=True)
    container["model"], init_from = split_init_from(container["model"])
    if init_from is not None and not Path(init_from).is_dir():
        raise ConfigError(
            f"invalid config: model.init_from={init_from}: no such folder (a release folder "
            "or a Hugging Face Marian folder)"
        )
    check_config(container, {"model": TransformerConfig, "model.embeddings": EmbeddingInit})
    errors = range_errors(container)
    if problem := optimized_metric_problem(container):
        errors.append(problem)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    # the objects' own checks (choices, divisibility, sizes) before any data is prepared
    fields, _ = split_model_config(container["model"])
    for node, build in (
        ("model", lambda: TransformerConfig(src_vocab_size=8, tgt_vocab_size=8, **fields)),
        ("data.tokenizer", lambda: instantiate(cfg.data.tokenizer)),
        ("decoding", lambda: instantiate(cfg.decoding)),
    ):
        try:
            build()
        except (ValueError, InstantiationException) as err:
            raise ConfigError(f"invalid config: {node}: {err.__cause__ or err}") from None


def build_module(cfg: DictConfig, start: LoadedModel | None = None) -> TranslationModule:
    """The LightningModule, with the partial optimizer, scheduler and search completed later;
    from `start`'s architecture and weights when the run fine-tunes a pretrained model."""
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    fields, embedding_init = split_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    fields, _ = split_init_from(fields)
    if start is not None:
        fields = start_fields(start, fields)
    # built objects are passed to the partial, not through instantiate (which would turn the
    # search's dataclass back into a config node)
    module = instantiate(cfg.module, _partial_=True, _convert_="all")(
        transformer=fields,
        embedding_init=embedding_init.to_dict(),
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        search=instantiate(cfg.decoding),
        seed=cfg.seed,
        src_lang=OmegaConf.select(cfg, "data.corpus.src_lang"),
        tgt_lang=OmegaConf.select(cfg, "data.corpus.tgt_lang"),
    )
    if start is not None:  # a resumed run then restores its checkpoint over these
        module.model.load_state_dict(start.model.state_dict())
    return module


@task_wrapper
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test when the data has test sets); return the logged metrics, or nothing
    when the resumed checkpoint has no update left to train (or the run was preempted)."""
    with one_distributed_job():
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    tree = Path(cfg.paths.output_dir) / "config_tree.log"
    save_config_tree(cfg, tree)
    log.info("%s", run_header(cfg, tree))
    check(cfg)
    try:
        ckpt_path = preflight(cfg)
    except NothingToTrain as done:
        log.info("%s", done)
        return {}
    if "wandb" in (cfg.get("logger") or {}):
        default_wandb_offline()
    L.seed_everything(cfg.seed, workers=True)
    route_ddp_children_to_this_job()
    start = load_start(OmegaConf.select(cfg, "model.init_from"))
    # a pretrained model's corpus is encoded with its own tokenizer (its pieces and ids)
    datamodule = instantiate(cfg.data, **({"tokenizer": start.tokenizer} if start else {}))
    datamodule.setup("fit")  # prepared once per corpus (other processes wait for it)
    check_prepared_splits(datamodule, validate=cfg.train)
    module = build_module(cfg, start)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer, callbacks=instantiate_callbacks(cfg.get("callbacks")), logger=loggers or False
    )
    log_hyperparameters(loggers, cfg)
    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if preempted(trainer):  # saved, and requeued on SLURM: the next start goes on
        log.info("output directory: %s (preempted; start again to resume)", cfg.paths.output_dir)
        return {}
    for name, reason in datamodule.missing_test_splits.items():
        log.warning("test set %s absent, not scored: %s", name, reason)
    if cfg.test and datamodule.test_splits:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    log.info("output directory: %s", cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``optimized_metric`` for sweepers."""
    return optimized_value(cfg.get("optimized_metric"), train(cfg))


if __name__ == "__main__":
    main()
