"""Translate a split or any text file with a checkpoint (or an average of several), a release
folder or a CTranslate2 model; score it.

Examples:
  python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt data=multi30k_en_de split=val
  python evaluate.py ckpt_path=<run> average_last=10 input=src.txt reference=ref.txt
  python evaluate.py model_dir=<ct2 dir> backend=ctranslate2 input=src.txt reference=ref.txt
"""

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.inference.scoring import read_inputs, report, score
from transformer_mt.inference.streaming import format_translation
from transformer_mt.inference.translator import Translator
from transformer_mt.utils.config_check import check_config
from transformer_mt.utils.errors import exit_on_user_error
from transformer_mt.utils.io import write_text_atomic
from transformer_mt.utils.startup import check_evaluate

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Write hypotheses (input order) and, given references, scores.json; return the scores."""
    check_config(OmegaConf.to_container(cfg, resolve=True), {})
    check_evaluate(OmegaConf.to_container(cfg, resolve=True))
    ckpt = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else cfg.ckpt_path
    opened = instantiate(cfg.backend)(
        search=instantiate(cfg.decoding), ckpt_path=ckpt, model_dir=cfg.model_dir,
        average_last=cfg.average_last,
    )  # fmt: skip
    data = cfg.get("data")
    sources, references = read_inputs(
        split=cfg.split, input=cfg.input, reference=cfg.reference,
        datamodule=None if data is None else lambda: instantiate(data),
    )  # fmt: skip
    translator = Translator(opened.tokenizer, opened.backend, max_tokens=cfg.max_tokens,
                            source_name=cfg.input or f"{cfg.split} split")  # fmt: skip
    translations = translator.translate(sources)
    out = Path(cfg.output_dir)
    hypotheses = [t.text for t in translations]
    write_text_atomic(out / "hypotheses.txt", "".join(h + "\n" for h in hypotheses))
    if opened.backend.nbest > 1:
        rows = "".join(format_translation(t, with_scores=True) for t in translations)
        write_text_atomic(out / "nbest.tsv", rows)
    log.info("hypotheses: %s", out / "hypotheses.txt")
    if references is None:
        return {}
    scores = score(hypotheses, references, cfg.bleu_tokenize or opened.info.bleu_tokenize)
    report(scores, len(sources))
    summary = {
        **scores,
        "num_sentences": len(sources),
        "checkpoints": None if cfg.model_dir else opened.info.provenance.get("checkpoints"),
        "model_dir": cfg.model_dir,
        "direction": [opened.info.src_lang, opened.info.tgt_lang],
        "backend": OmegaConf.to_container(cfg.backend, resolve=True),
        "decoding": OmegaConf.to_container(cfg.decoding, resolve=True),
        "input": cfg.input or f"{cfg.split} split",
    }
    write_text_atomic(out / "scores.json", json.dumps(summary, indent=2, ensure_ascii=False))
    log.info("scores: %s", out / "scores.json")
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns BLEU when references are given."""
    return evaluate(cfg).get("bleu")


if __name__ == "__main__":
    main()
