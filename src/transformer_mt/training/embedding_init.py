"""Start the token embeddings from Word2Vec vectors, optionally frozen for the first updates.

The ``model.embeddings`` config node: ``init=random`` (the model's own N(0, d_model^-0.5)) or
``init=word2vec`` with ``path`` the folder ``pretrain_embeddings.py`` wrote. A joint vocabulary
gives ``shared.npy`` (one matrix for both tables), separate vocabularies ``src.npy`` and
``tgt.npy``. Special tokens and pieces Word2Vec did not cover keep the random init. With a tied
output layer the target table is also the pre-softmax matrix, so freezing it freezes both.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from transformer_mt.model import Transformer
from transformer_mt.word2vec.matrix import (
    PretrainedEmbeddings,
    copy_into_embedding_,
    load_pretrained,
)

INIT_CHOICES = ("random", "word2vec")


@dataclass(frozen=True)
class EmbeddingInit:
    """How the token embedding tables start."""

    init: str = "random"
    """random | word2vec."""
    path: str | None = None
    """Folder written by pretrain_embeddings.py (needed for word2vec)."""
    freeze_steps: int = 0
    """The pretrained rows get no gradient for this many updates (0 = never frozen)."""
    match_scale: bool = True
    """Rescale the Word2Vec rows to the RMS of the random rows they replace."""

    def __post_init__(self) -> None:
        if self.init not in INIT_CHOICES:
            raise ValueError(
                f"model.embeddings.init={self.init!r}: expected one of {', '.join(INIT_CHOICES)}"
            )
        if self.init == "word2vec" and not self.path:
            raise ValueError(
                "model.embeddings.init=word2vec needs model.embeddings.path: the folder "
                "pretrain_embeddings.py wrote (with shared.npy, or src.npy and tgt.npy)"
            )
        if self.freeze_steps < 0:
            raise ValueError(f"model.embeddings.freeze_steps={self.freeze_steps}: expected >= 0")
        if self.freeze_steps and self.init == "random":
            raise ValueError("model.embeddings.freeze_steps needs init=word2vec")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_model_config(model: Mapping[str, Any]) -> tuple[dict[str, Any], EmbeddingInit]:
    """The ``model`` config node -> (TransformerConfig fields, EmbeddingInit)."""
    fields = dict(model)
    return fields, EmbeddingInit(**(fields.pop("embeddings", None) or {}))


@dataclass
class PretrainedTable:
    """One embedding table, the Word2Vec matrix meant for it and the ids that matrix covers."""

    name: str
    weight: nn.Parameter
    pretrained: PretrainedEmbeddings
    rows: Tensor = field(init=False)
    """Token ids with a Word2Vec vector: the rows a freeze keeps fixed."""

    def __post_init__(self) -> None:
        covered = torch.from_numpy(self.pretrained.covered).nonzero().squeeze(1)
        self.rows = covered.to(self.weight.device)


def pretrained_tables(
    model: Transformer, init: EmbeddingInit, tokenizer_fingerprint: str | None = None
) -> list[PretrainedTable]:
    """Match the model's embedding tables with the matrices in ``init.path``; check shapes.

    A matrix that records the tokenizer it was trained with must come from this tokenizer:
    the same vocabulary size with different pieces would silently scramble the rows.
    """
    folder = Path(init.path).expanduser()
    encoder_weight = model.encoder.embedding.weight
    decoder_weight = model.decoder.embedding.weight
    if model.config.share_embeddings:
        if not (folder / "shared.json").is_file() and (folder / "src.json").is_file():
            raise ValueError(
                f"{folder}: matrices of two separate vocabularies (src, tgt), but the model "
                "shares one table; pretrain with a joint vocabulary or set share_embeddings=false"
            )
        wanted = [("shared", encoder_weight, "shared")]
    elif (folder / "shared.json").is_file():  # a joint vocabulary, two tables
        wanted = [("src", encoder_weight, "shared"), ("tgt", decoder_weight, "shared")]
    else:
        wanted = [("src", encoder_weight, "src"), ("tgt", decoder_weight, "tgt")]
    tables = []
    for name, weight, stem in wanted:
        source = folder / f"{stem}.json"
        pretrained = load_pretrained(folder / stem)
        vocab_size, d_model = weight.shape
        pretrained.check_shape(vocab_size, d_model, source=str(source))
        trained_with = pretrained.settings.get("tokenizer")
        if tokenizer_fingerprint and trained_with and trained_with != tokenizer_fingerprint:
            raise ValueError(
                f"{source}: trained with SentencePiece models {trained_with[:12]}…, "
                f"but this run's are {tokenizer_fingerprint[:12]}…; rerun pretrain_embeddings.py "
                "with this run's data settings"
            )
        tables.append(PretrainedTable(name, weight, pretrained))
    return tables


def load_into_(tables: list[PretrainedTable], match_scale: bool = True) -> dict[str, int]:
    """Copy each matrix's covered rows into its table; returns rows written per table."""
    return {t.name: copy_into_embedding_(t.weight, t.pretrained, match_scale) for t in tables}


@torch.no_grad()
def zero_frozen_grads_(tables: list[PretrainedTable]) -> None:
    """No gradient for the pretrained rows (called between backward and the optimizer step).

    Adam then leaves them exactly as they are (zero moments, zero update); AdamW's decoupled
    weight decay would still shrink them: freeze with optimizer=adam (no weight decay).
    """
    for table in tables:
        if table.weight.grad is not None:
            table.weight.grad[table.rows] = 0
