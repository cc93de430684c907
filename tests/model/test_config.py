"""Config validation, presets, and parameter counts against the paper's Table 3."""

import pytest
import torch

from transformer_mt.model import Transformer, TransformerConfig

from .conftest import small_config


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        (dict(d_model=30, num_heads=4), "num_heads"),
        (dict(pos_enc="absolute"), "pos_enc"),
        (dict(activation="tanh"), "activation"),
        (dict(pos_enc="rope", d_model=36, num_heads=4), "rope"),
        (dict(share_embeddings=True), "share_embeddings"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention_dropout=-0.1), "attention_dropout"),
        (dict(num_decoder_layers=0), "num_decoder_layers"),
        (dict(pos_enc="relative", relative_num_buckets=7), "relative_num_buckets"),
        (dict(pos_enc="relative", relative_max_distance=3), "relative_max_distance"),
        (dict(pad_id=40), "pad_id"),
    ],
)
def test_invalid_config_names_the_option(overrides, option):
    with pytest.raises(ValueError, match=option):
        small_config(**overrides)


def test_enum_errors_list_the_valid_choices():
    with pytest.raises(ValueError, match="sinusoidal, learned, rope, alibi, relative, none"):
        small_config(pos_enc="absolute")
    with pytest.raises(ValueError, match="tiny, small, base, big"):
        TransformerConfig.preset("huge", src_vocab_size=10, tgt_vocab_size=10)


def test_presets():
    tiny = TransformerConfig.preset("tiny", src_vocab_size=100, tgt_vocab_size=120, dropout=0.0)
    assert (tiny.num_encoder_layers, tiny.num_decoder_layers, tiny.d_model) == (4, 4, 128)
    assert (tiny.d_ff, tiny.num_heads, tiny.dropout, tiny.tgt_vocab_size) == (256, 4, 0.0, 120)
    big = TransformerConfig.preset("big", src_vocab_size=10, tgt_vocab_size=10)
    assert (big.d_model, big.d_ff, big.num_heads, big.dropout) == (1024, 4096, 16, 0.3)


def expected_parameters(vocab: int, d_model: int, d_ff: int, layers: int) -> int:
    """Shared embedding + tied output, post-norm, by formula: weights and biases of W_Q, W_K,
    W_V, W_O; two FFN linears; two LayerNorm vectors each."""
    attention = 4 * (d_model * d_model + d_model)
    ffn = d_model * d_ff + d_ff + d_ff * d_model + d_model
    norm = 2 * d_model
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    return vocab * d_model + layers * (encoder_layer + decoder_layer)


@pytest.mark.parametrize(("name", "paper"), [("base", 65e6), ("big", 213e6)])
def test_parameter_counts_match_the_paper(name, paper):
    config = TransformerConfig.preset(
        name, src_vocab_size=37000, tgt_vocab_size=37000, share_embeddings=True, tie_output=True
    )
    with torch.device("meta"):  # shapes only, no memory or init time
        model = Transformer(config)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(37000, config.d_model, config.d_ff, 6)
    assert abs(count / paper - 1) < 0.04
