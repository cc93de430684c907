"""Pretrain the input embeddings with Word2Vec on the training split's SentencePiece pieces.

python pretrain_embeddings.py data=<corpus> embeddings=skipgram d_model=512
python pretrain_embeddings.py explain=true embeddings=cbow
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console

from transformer_mt.word2vec import explain_toy, pretrain_embeddings


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain_embeddings")
def main(cfg: DictConfig) -> None:
    settings = hydra.utils.instantiate(cfg.embeddings)
    if cfg.explain:
        explain_toy(Console(), skip_gram=settings.skip_gram)
        return
    if cfg.get("data") is None:
        raise ValueError("choose a corpus: pretrain_embeddings.py data=<name> (or explain=true)")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    pretrain_embeddings(
        datamodule.tokenizer,
        datamodule.sources("train"),
        datamodule.references("train"),
        settings,
        Path(cfg.out_dir),
        probes=list(cfg.probes),
        console=Console(record=True),
        tokenizer_fingerprint=datamodule.tokenizer.fingerprint(),
    )


if __name__ == "__main__":
    main()
