"""What every model format carries beside the weights: the architecture, the direction and
how it was scored, as plain JSON-able values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.model import Transformer, TransformerConfig


@dataclass(frozen=True)
class ModelInfo:
    """The model's metadata, the same whichever format holds the weights."""

    config: TransformerConfig
    """The architecture; `Transformer(config)` rebuilds the model."""
    src_lang: str | None = None
    tgt_lang: str | None = None
    bleu_tokenize: str = "13a"
    """sacreBLEU tokenizer for this target language (zh for Chinese)."""
    decoding: dict[str, Any] | None = None
    """Decoding defaults of the recipe (a ``decoding`` config node), or None for the CLI's."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where the weights came from: checkpoints, their step, averaging."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "transformer": dataclasses.asdict(self.config),
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "bleu_tokenize": self.bleu_tokenize,
            "decoding": self.decoding,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ModelInfo:
        """Inverse of `to_dict`; `source` names the file in errors."""
        fields = data.get("transformer")
        if not isinstance(fields, dict):
            raise ValueError(f"{source}: no 'transformer' object with the model's fields")
        try:
            config = TransformerConfig(**fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: invalid 'transformer' fields: {err}") from None
        return cls(
            config=config,
            src_lang=data.get("src_lang"),
            tgt_lang=data.get("tgt_lang"),
            bleu_tokenize=data.get("bleu_tokenize") or "13a",
            decoding=data.get("decoding"),
            provenance=data.get("provenance") or {},
        )

    @property
    def direction(self) -> str:
        """e.g. "en-de" (or "?-?" when the languages are unknown)."""
        return f"{self.src_lang or '?'}-{self.tgt_lang or '?'}"


@dataclass
class LoadedModel:
    """A model read from any format: the eval-mode Transformer, its tokenizer, its metadata."""

    model: Transformer
    tokenizer: Tokenizer
    info: ModelInfo
