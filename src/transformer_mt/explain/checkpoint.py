"""Rebuild a trained model and its tokenizer from a training checkpoint, for explaining.

The training module (`transformer_mt.training.module.TranslationModule`) saves the Transformer's
fields under ``hyper_parameters["transformer"]``, its weights under ``state_dict`` with the
prefix ``model.``, and the SentencePiece models under ``tokenizer`` (`Tokenizer.to_state()`).
Only those three keys are read, so no Lightning module (optimizer, metrics) is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.model import Transformer, TransformerConfig

MODEL_PREFIX = "model."


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """A checkpoint file as a dict, on the CPU, tensors and plain values only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(
    checkpoint: dict[str, Any], source: str = "checkpoint"
) -> tuple[Transformer, Tokenizer]:
    """The eval-mode Transformer and the Tokenizer saved in `checkpoint` (`source` names it in
    errors)."""
    for key in ("hyper_parameters", "state_dict", "tokenizer"):
        if key not in checkpoint:
            raise KeyError(
                f"{source}: no {key!r} entry; expected a checkpoint written by "
                "transformer_mt.training (keys hyper_parameters, state_dict, tokenizer)"
            )
    fields = checkpoint["hyper_parameters"].get("transformer")
    if not isinstance(fields, dict) or "src_vocab_size" not in fields:
        raise KeyError(
            f"{source}: hyper_parameters['transformer'] must hold the TransformerConfig fields "
            "including the vocabulary sizes"
        )
    model = Transformer(TransformerConfig(**fields))
    weights = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(MODEL_PREFIX)
    }
    if not weights:
        raise KeyError(f"{source}: state_dict has no '{MODEL_PREFIX}*' weights")
    model.load_state_dict(weights)
    return model.eval(), Tokenizer.from_state(checkpoint["tokenizer"])


def load_model(path: str | Path) -> tuple[Transformer, Tokenizer]:
    """Model and tokenizer of the checkpoint file at `path`."""
    return model_from_checkpoint(load_checkpoint_file(path), source=str(path))
