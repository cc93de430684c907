"""Translate lines from stdin (or a file, or one text=) to stdout with a checkpoint, a release
folder or an exported CTranslate2 model.

Examples:
  echo "A dog runs on the beach." | python translate.py model_dir=models/multi30k-en-de-tiny
  python translate.py ckpt_path=<run dir> average_last=10 input=test.en output=test.hyp
  python translate.py model_dir=<dir> text=我喜欢小狗。 decoding=sample decoding.nbest=3
"""

import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.inference.run import translate_command
from transformer_mt.utils.cli import quote_free_text
from transformer_mt.utils.config_check import check_config
from transformer_mt.utils.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="translate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Hydra entry point: open the model with the chosen backend, then stream."""
    check_config(OmegaConf.to_container(cfg, resolve=True), {})
    ckpt = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else cfg.ckpt_path
    opened = instantiate(cfg.backend)(
        search=instantiate(cfg.decoding),
        ckpt_path=ckpt,
        model_dir=cfg.model_dir,
        average_last=cfg.average_last,
    )
    translate_command(
        opened, text=cfg.text, input=cfg.input, output=cfg.output, scores=cfg.scores,
        max_tokens=cfg.max_tokens, buffer_size=cfg.buffer_size,
    )  # fmt: skip


if __name__ == "__main__":
    sys.argv = quote_free_text(sys.argv, ["text", "input", "output"])
    main()
