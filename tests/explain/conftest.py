"""A tutorial-sized model (d_model = 4, two heads) whose every parameter is perturbed, so that
LayerNorm gains, biases and position tables all matter in the recomputations."""

import torch

from transformer_mt.decoding import GreedySearch
from transformer_mt.explain import tiny_model

PE_KINDS = ["sinusoidal", "learned", "rope", "alibi", "relative", "none"]
TEXT = "我喜欢小狗"
SHORT_GREEDY = GreedySearch(max_len_a=0.0, max_len_b=4)
"""At most 4 output tokens with EOS: an untrained model rarely stops by itself."""


def perturbed_tiny(pos_enc: str = "sinusoidal", norm_first: bool = False, layers: int = 2):
    """(model, tokenizer) of the tutorial size, eval mode, no parameter left at its init value."""
    model, tokenizer = tiny_model(
        TEXT,
        target_text="I like puppies",
        d_model=4,
        num_heads=2,
        d_ff=8,
        num_encoder_layers=layers,
        num_decoder_layers=layers,
        dropout=0.0,
        pos_enc=pos_enc,
        norm_first=norm_first,
        max_positions=64,
        relative_num_buckets=8,
        relative_max_distance=16,
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model, tokenizer
