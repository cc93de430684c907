"""Translate a split or any text file with a checkpoint (or an average of several); score it.

Examples:
  python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt data=multi30k_en_de split=val
  python evaluate.py ckpt_path=<run> average_last=10 input=src.txt reference=ref.txt
"""

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from transformer_mt.training.averaging import (
    average_checkpoints,
    load_checkpoint,
    resolve_checkpoints,
)
from transformer_mt.training.metrics import corpus_scores
from transformer_mt.training.module import TranslationModule
from transformer_mt.utils.config_check import check_config
from transformer_mt.utils.io import read_lines, write_text_atomic

log = logging.getLogger(__name__)


def load_module(cfg: DictConfig) -> tuple[TranslationModule, list[Path]]:
    """The checkpoint (averaged when several) in eval mode on the chosen device, and its files."""
    ckpt = cfg.ckpt_path
    ckpt = list(ckpt) if OmegaConf.is_list(ckpt) else ckpt
    paths = resolve_checkpoints(ckpt, cfg.average_last)
    log.info("checkpoints: %s", ", ".join(map(str, paths)))
    checkpoint = average_checkpoints(paths) if len(paths) > 1 else load_checkpoint(paths[0])
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    module = TranslationModule.from_checkpoint(checkpoint, search=instantiate(cfg.decoding))
    return module.to(torch.device(device)), paths


def read_inputs(cfg: DictConfig) -> tuple[list[str], list[str] | None]:
    """Source lines and (if known) their references, from a data split or text files."""
    if (cfg.split is None) == (cfg.input is None):
        raise ValueError("give exactly one of split=<val|test> (with data=...) or input=<file>")
    if cfg.input is not None:
        sources = read_lines(cfg.input)
        if cfg.reference is None:
            return sources, None
        references = read_lines(cfg.reference)
        if len(references) != len(sources):
            raise ValueError(
                f"{cfg.input} has {len(sources)} lines but {cfg.reference} has {len(references)}"
            )
        return sources, references
    if cfg.get("data") is None:
        raise ValueError(f"split={cfg.split} needs a data config, e.g. data=multi30k_en_de")
    datamodule = instantiate(cfg.data)
    if not datamodule.has_split(cfg.split):
        raise ValueError(f"the data config has no {cfg.split!r} split")
    return datamodule.sources(cfg.split), datamodule.references(cfg.split)


def score(
    hypotheses: list[str], references: list[str], tokenize: str
) -> dict[str, float | int | str]:
    """Cased detokenized BLEU, chrF and TER, and tokenized-lowercased BLEU beside them.

    Papers on Multi30k (and WMT before sacreBLEU) report BLEU on tokenized, lowercased text;
    sacrebleu's own tokenizer (13a, or `tokenize` as chosen) with lowercase=True is the
    reproducible stand-in, and its signature (`case:lc`) says so.
    """
    cased = corpus_scores(hypotheses, references, bleu_tokenize=tokenize)
    lowercased = corpus_scores(hypotheses, references, bleu_tokenize=tokenize, lowercase=True)
    return {
        **cased.as_dict(),
        "bleu_lc": lowercased.bleu,
        "bleu_lc_signature": lowercased.bleu_signature,
    }


def report(scores: dict[str, float | int | str], n: int) -> None:
    table = Table(title=f"{n} sentences")
    for column in ("metric", "score", "sacrebleu signature"):
        table.add_column(column)
    rows = {"BLEU": "bleu", "BLEU lowercased": "bleu_lc", "chrF": "chrf", "TER": "ter"}
    for name, key in rows.items():
        table.add_row(name, f"{scores[key]:.2f}", str(scores[f"{key}_signature"]))
    hyp_len, ref_len = scores["hyp_len"], scores["ref_len"]
    table.add_row(
        "BLEU brevity penalty",
        f"{scores['bleu_brevity_penalty']:.3f}",
        f"ratio {hyp_len / max(ref_len, 1):.3f} (hyp_len {hyp_len}, ref_len {ref_len})",
    )
    Console().print(table)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Write hypotheses (input order) and, given references, scores.json; return the scores."""
    check_config(OmegaConf.to_container(cfg, resolve=True), {})
    module, paths = load_module(cfg)
    sources, references = read_inputs(cfg)
    hypotheses = module.translate(sources, max_tokens=cfg.max_tokens)
    out = Path(cfg.output_dir)
    write_text_atomic(out / "hypotheses.txt", "".join(h + "\n" for h in hypotheses))
    log.info("hypotheses: %s", out / "hypotheses.txt")
    if references is None:
        return {}
    tokenize = cfg.bleu_tokenize or module.hparams.bleu_tokenize
    scores = score(hypotheses, references, tokenize)
    report(scores, len(sources))
    summary = {
        **scores,
        "num_sentences": len(sources),
        "checkpoints": [str(p) for p in paths],
        "direction": [module.hparams.src_lang, module.hparams.tgt_lang],
        "decoding": OmegaConf.to_container(cfg.decoding, resolve=True),
        "input": cfg.input or f"{cfg.split} split",
    }
    write_text_atomic(out / "scores.json", json.dumps(summary, indent=2, ensure_ascii=False))
    log.info("scores: %s", out / "scores.json")
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns BLEU when references are given."""
    return evaluate(cfg).get("bleu")


if __name__ == "__main__":
    main()
