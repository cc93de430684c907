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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.model import TransformerConfig
from transformer_mt.training.embedding_init import EmbeddingInit, split_model_config
from transformer_mt.training.module import TranslationModule
from transformer_mt.utils.config_check import check_config
from transformer_mt.utils.run import (
    default_wandb_offline,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    print_config_tree,
    task_wrapper,
)

log = logging.getLogger(__name__)


def check(cfg: DictConfig) -> None:
    """Fail at start on unknown keys, wrong types or invalid model settings."""
    container = OmegaConf.to_container(cfg, resolve=True)
    check_config(container, {"model": TransformerConfig, "model.embeddings": EmbeddingInit})
    # runs the model's own checks (choices, divisibility) before any data is prepared
    fields, _ = split_model_config(container["model"])
    TransformerConfig(src_vocab_size=8, tgt_vocab_size=8, **fields)


def build_module(cfg: DictConfig) -> TranslationModule:
    """The LightningModule, with the partial optimizer, scheduler and search completed later."""
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    fields, embedding_init = split_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    # built objects are passed to the partial, not through instantiate (which would turn the
    # search's dataclass back into a config node)
    module = instantiate(cfg.module, _partial_=True, _convert_="all")
    return module(
        transformer=fields,
        embedding_init=embedding_init.to_dict(),
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        search=instantiate(cfg.decoding),
        seed=cfg.seed,
        src_lang=OmegaConf.select(cfg, "data.corpus.src_lang"),
        tgt_lang=OmegaConf.select(cfg, "data.corpus.tgt_lang"),
    )


@task_wrapper
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test when the data has a test split); return the logged metrics."""
    print_config_tree(cfg, Path(cfg.paths.output_dir) / "config_tree.log")
    check(cfg)
    if "wandb" in (cfg.get("logger") or {}):
        default_wandb_offline()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer, callbacks=instantiate_callbacks(cfg.get("callbacks")), logger=loggers or False
    )
    log_hyperparameters(loggers, cfg)
    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test and datamodule.has_split("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    log.info("output directory: %s", cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``optimized_metric`` for sweepers."""
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged: {sorted(metrics)}")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
