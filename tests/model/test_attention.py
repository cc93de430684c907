"""Multi-head attention against torch.nn.MultiheadAttention, and SDPA path == explicit path."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from transformer_mt.model.attention import MultiHeadAttention, record_attention

D_MODEL, HEADS = 32, 4


def pair() -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """Our module and torch's, with the same weights copied across."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(D_MODEL, HEADS).eval()
    for param in ours.parameters():
        nn.init.normal_(param, std=0.3)
    ref = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        ref.out_proj.weight.copy_(ours.w_o.weight)
        ref.out_proj.bias.copy_(ours.w_o.bias)
    return ours, ref


def padding(batch: int, length: int) -> torch.Tensor:
    """(B, S) bool, True = pad: sentence b has length - b real positions."""
    return torch.arange(length)[None, :] >= (length - torch.arange(batch))[:, None]


@pytest.mark.parametrize("trace", [False, True], ids=["sdpa", "explicit"])
def test_self_attention_with_key_padding_matches_torch(trace):
    ours, ref = pair()
    x = torch.randn(3, 7, D_MODEL)
    pad = padding(3, 7)
    expected, expected_probs = ref(
        x, x, x, key_padding_mask=pad, need_weights=True, average_attn_weights=False
    )
    result = ours(x, attn_mask=~pad[:, None, None, :], trace=trace)
    if trace:
        result, record = result
        assert_close(record.probs, expected_probs)
    assert_close(result, expected)


@pytest.mark.parametrize("trace", [False, True], ids=["sdpa", "explicit"])
def test_causal_self_attention_matches_torch(trace):
    ours, ref = pair()
    x = torch.randn(2, 6, D_MODEL)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = not allowed
    expected, expected_probs = ref(
        x, x, x, attn_mask=future, need_weights=True, average_attn_weights=False
    )
    result = ours(x, is_causal=True, trace=trace)
    if trace:
        result, record = result
        assert_close(record.probs, expected_probs)
        assert torch.all(record.probs.masked_select(future) == 0)
    assert_close(result, expected)


def test_cross_attention_with_padding_matches_torch():
    ours, ref = pair()
    x, memory = torch.randn(3, 4, D_MODEL), torch.randn(3, 9, D_MODEL)
    pad = padding(3, 9)
    expected, _ = ref(x, memory, memory, key_padding_mask=pad)
    assert_close(ours(x, memory, attn_mask=~pad[:, None, None, :]), expected)
    static_kv = ours.precompute_kv(memory)
    assert_close(ours(x, attn_mask=~pad[:, None, None, :], static_kv=static_kv), expected)


def test_explicit_path_equals_sdpa_with_additive_bias():
    ours, _ = pair()
    x = torch.randn(2, 5, D_MODEL)
    bias = torch.randn(1, HEADS, 5, 5)
    fast = ours(x, attn_mask=bias)
    slow, record = ours(x, attn_mask=bias, trace=True)
    assert_close(fast, slow)
    manual = torch.softmax(
        record.q @ record.k.transpose(-1, -2) / (D_MODEL // HEADS) ** 0.5 + bias, -1
    )
    assert_close(record.probs, manual)
    assert_close(record.concat, (record.probs @ record.v).transpose(1, 2).reshape(2, 5, D_MODEL))
    assert_close(record.output, slow)


def test_record_attention_collects_every_module_and_restores_fast_path():
    block = nn.ModuleDict(
        {"a": MultiHeadAttention(D_MODEL, HEADS), "b": MultiHeadAttention(D_MODEL, HEADS)}
    )
    x = torch.randn(1, 3, D_MODEL)
    with record_attention(block) as traces:
        block["a"](x)
        block["a"](x)
        block["b"](x)
    assert {name: len(t) for name, t in traces.items()} == {"a": 2, "b": 1}
    assert traces["a"][0].probs.shape == (1, HEADS, 3, 3)
    assert block["a"].trace_sink is None
