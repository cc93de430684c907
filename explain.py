"""Follow one sentence through every matrix of the Transformer (the tutorial's 我喜欢小狗).

Examples:
  python explain.py                                        # tiny seeded model, d_model = 4
  python explain.py text="我 喜欢 小狗" tiny.src_level=word pos_enc=alibi step=encoder.0
  python explain.py ckpt_path=<run>/checkpoints/last.ckpt text=我喜欢小狗。 decoding=beam
  python explain.py model_dir=models/tatoeba-zh-en-small text=我喜欢小狗。
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.explain import explain, render, tiny_model, write_dump, write_html
from transformer_mt.formats import load_model
from transformer_mt.training.embedding_init import split_model_config
from transformer_mt.utils.cli import quote_free_text
from transformer_mt.utils.errors import exit_on_user_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="explain")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Trace `text`, print the steps, write explain.npz/.json and explain.html."""
    if cfg.ckpt_path or cfg.model_dir:
        loaded = load_model(ckpt_path=cfg.ckpt_path, model_dir=cfg.model_dir)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        fields, _ = split_model_config(OmegaConf.to_container(cfg.model, resolve=True))
        model, tokenizer = tiny_model(cfg.text, **cfg.tiny, **fields)
    model.to(cfg.device)
    explanation = explain(
        model, tokenizer, cfg.text, search=instantiate(cfg.decoding), top_k=cfg.top_k
    )
    view = dict(decimals=cfg.decimals, max_rows=cfg.max_rows, max_cols=cfg.max_cols)
    if cfg.print:
        render(explanation, step=cfg.step, **view)
    out = Path(cfg.output_dir)
    index = write_dump(explanation, out)
    report = write_html(explanation, out / "explain.html", **view)
    log.info("translation: %s", explanation.translation)
    log.info("tensors: %s (+ %s), report: %s", index.with_suffix(".npz"), index.name, report)


if __name__ == "__main__":
    sys.argv = quote_free_text(sys.argv, ["text"])
    main()
