"""The fast CPU dropout against the definition of inverted dropout (Srivastava et al. 2014)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_mt.model import Transformer, TransformerConfig
from transformer_mt.model.dropout import Dropout, cpu_keep_mask, dropout, keep_threshold

N = 1 << 20


def exact_keep(p: float) -> float:
    return (keep_threshold(p) + 2**31) / 2**32


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_each_element_is_zero_or_scaled_and_the_drop_rate_is_p(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(N) + 0.5  # nonzero
    y = dropout(x, p, training=True)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / exact_keep(p), rtol=1e-6, atol=0)
    sigma = math.sqrt(p * (1 - p) / N)
    assert abs((~kept).float().mean().item() - p) < 5 * sigma
    assert abs(exact_keep(p) - (1 - p)) <= 2**-32  # the threshold's rounding


def test_unbiased_with_the_variance_of_a_bernoulli_mask() -> None:
    torch.manual_seed(1)
    p, ones = 0.3, torch.ones(N)
    y = dropout(ones, p, training=True)
    variance = p / (1 - p)  # of x * Bernoulli(1 - p) / (1 - p) with x = 1
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(variance / N)
    assert abs(y.var().item() - variance) < 0.01


def test_the_two_halves_of_a_random_word_are_independent() -> None:
    """Neighbouring elements share one 64-bit word: both kept with probability (1 - p)^2."""
    torch.manual_seed(2)
    p = 0.5
    kept = cpu_keep_mask(torch.Size([N]), p).view(-1, 2).float()
    both = (kept[:, 0] * kept[:, 1]).mean().item()
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / (N // 2))
    # and successive calls draw fresh masks
    again = cpu_keep_mask(torch.Size([N]), p).view(-1, 2).float()
    agreement = (kept == again).float().mean().item()
    assert abs(agreement - 0.5) < 5 * math.sqrt(0.25 / N)


def test_torch_manual_seed_fixes_the_mask() -> None:
    x = torch.ones(3, 5, 7)  # odd element count: half of the last word is unused
    torch.manual_seed(7)
    a = dropout(x, 0.5, training=True)
    torch.manual_seed(7)
    b = dropout(x, 0.5, training=True)
    torch.manual_seed(8)
    c = dropout(x, 0.5, training=True)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gradient_is_the_mask_times_the_scale() -> None:
    """d dropout(x) / dx = dropout(x) / x elementwise (the mask times 1 / P(keep))."""
    torch.manual_seed(3)
    x = (torch.rand(64, 33, dtype=torch.float64) + 0.5).requires_grad_()
    upstream = torch.randn(64, 33, dtype=torch.float64)
    y = dropout(x, 0.3, training=True)
    (y * upstream).sum().backward()
    torch.testing.assert_close(x.grad, upstream * y.detach() / x.detach())


def test_eval_mode_and_p_zero_are_the_identity_and_p_one_drops_all() -> None:
    x = torch.randn(4, 6)
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_keeps_the_dtype_and_matches_torch_dropout_rate_in_bfloat16() -> None:
    torch.manual_seed(4)
    x = torch.ones(N, dtype=torch.bfloat16)
    ours = dropout(x, 0.1, training=True)
    theirs = F.dropout(x, 0.1, training=True)
    assert ours.dtype == torch.bfloat16
    assert abs((ours == 0).float().mean().item() - (theirs == 0).float().mean().item()) < 0.003


def test_invalid_probability_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Dropout(1.5)


def test_the_transformer_uses_it_everywhere() -> None:
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=8, d_ff=16,
                               num_heads=2, num_encoder_layers=1, num_decoder_layers=1)  # fmt: skip
    model = Transformer(config)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    # the two embedding dropouts, and per layer the residual one and the feed-forward one
    assert sum(isinstance(m, Dropout) for m in model.modules()) == 2 + 2 + 2
