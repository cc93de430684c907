"""Export a checkpoint (or the average of a run's last N) as a release folder or a CTranslate2
model, with a model card.

Examples:
  python export.py ckpt_path=<run dir> average_last=10 out=models/my-en-de dtype=float16
  python export.py model_dir=models/my-en-de format=ctranslate2 quantization=int8 out=ct2/en-de
"""

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.formats import load_model
from transformer_mt.formats.card import model_card, run_directory, with_measured_decoding
from transformer_mt.utils.config_check import check_config
from transformer_mt.utils.errors import exit_on_user_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Load, write the chosen format with its card, log where it went."""
    check_config(OmegaConf.to_container(cfg, resolve=True), {})
    scores = [Path(p) for p in cfg.scores]
    missing = [str(p) for p in scores if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"scores=: no such file(s): {', '.join(missing)}")
    ckpt = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else cfg.ckpt_path
    loaded = load_model(ckpt_path=ckpt, model_dir=cfg.model_dir, average_last=cfg.average_last)
    if scores:  # the decoding the card's scores were measured with, kept with the model
        loaded.info = with_measured_decoding(loaded.info, scores[0])
    checkpoints = loaded.info.provenance.get("checkpoints") or []
    run_dir = run_directory(checkpoints[-1]) if checkpoints else None
    name = cfg.name or Path(cfg.out).name
    usage = f'echo "..." | python translate.py model_dir={cfg.out}'
    if cfg.format._target_.endswith("to_ctranslate2"):
        usage += " backend=ctranslate2"
    card = model_card(loaded, name, run_dir=run_dir, score_files=scores, usage=usage)
    out = instantiate(cfg.format)(loaded, cfg.out, card=card, force=cfg.force)
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
