"""Small model builders shared by the model tests."""

import pytest
import torch

from transformer_mt.model import Transformer, TransformerConfig

PE_KINDS = ["sinusoidal", "learned", "rope", "alibi", "relative", "none"]


def small_config(**overrides) -> TransformerConfig:
    """A model small enough to run in milliseconds, big enough to have 4 heads and 2 layers."""
    fields = dict(
        src_vocab_size=40,
        tgt_vocab_size=50,
        d_model=32,
        d_ff=64,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.0,
        max_positions=64,
        relative_num_buckets=8,
        relative_max_distance=16,
    )
    fields.update(overrides)
    return TransformerConfig(**fields)


def random_model(**overrides) -> Transformer:
    """An eval-mode model whose every parameter (LayerNorms, biases, bias tables too) is
    perturbed, so that no sublayer is an identity by accident."""
    torch.manual_seed(0)
    model = Transformer(small_config(**overrides))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return model.eval()


@pytest.fixture(params=PE_KINDS)
def pos_enc(request) -> str:
    """Every positional-encoding kind."""
    return request.param
