"""Position tables are never rebuilt: a long input under inference mode (validation), then a
training step, works for every kind, and no buffer changes shape (the DDP broadcast needs
that). Positions past a table equal the formula; learned positions past theirs are refused."""

import pytest
import torch

from transformer_mt.model import Transformer, TransformerConfig
from transformer_mt.model.positional import sinusoid_table

KINDS = ["sinusoidal", "learned", "rope", "alibi", "relative", "none"]


def model(pos_enc: str) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=16, d_ff=32,
                               num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                               dropout=0.1, pos_enc=pos_enc, max_positions=8)  # fmt: skip
    return Transformer(config)


def buffers(m: Transformer) -> dict[str, tuple]:
    return {name: tuple(b.shape) for name, b in m.named_buffers()}


@pytest.mark.parametrize("pos_enc", KINDS)
def test_a_long_validation_sentence_then_a_training_step(pos_enc):
    m = model(pos_enc)
    before = buffers(m)
    long_src = torch.randint(4, 20, (2, 13))  # past the 8-row tables
    m.eval()
    with torch.inference_mode():
        if pos_enc == "learned":
            with pytest.raises(ValueError, match="max_positions=8"):
                m(long_src, long_src[:, :5])
        else:
            m(long_src, long_src)  # validation-time pass over 13 positions
    assert buffers(m) == before
    m.train()
    src = torch.randint(4, 20, (2, 6))
    loss = m(src, src).logsumexp(-1).mean()
    loss.backward()  # failed with rope after the validation pass: inference tensors saved
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad and p.dim() > 1)
    assert buffers(m) == before


def test_sinusoids_and_rotations_past_the_table_are_the_formula():
    m = model("sinusoidal")
    x = torch.zeros(1, 13, 16)
    torch.testing.assert_close(m.encoder.positional(x)[0], sinusoid_table(13, 16))
    rope = model("rope").encoder.positional
    far, near = rope.rotary(3, 10), rope.rotary(3, 0)  # positions 10-12 vs 0-2
    assert far.cos.shape == near.cos.shape == (3, 8)
    angles = torch.arange(10, 13, dtype=torch.float32)[:, None] * rope.inv_freq
    torch.testing.assert_close(far.cos, torch.cat([angles, angles], -1).cos())
