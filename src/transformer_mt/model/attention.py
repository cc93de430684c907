"""Multi-head attention (section 3.2.2): MultiHead(Q, K, V) = Concat(head_1..head_h) W_O.

Two paths compute the same function:

- the fast path, `torch.nn.functional.scaled_dot_product_attention` (fused flash /
  memory-efficient kernels on GPU, the fused CPU kernel otherwise);
- the explicit path, softmax(QK^T / sqrt(d_k) + mask) V written out, which returns every
  intermediate as an `AttentionTrace`. Ask for it with `forward(..., trace=True)` on one module,
  or for a whole model with the `record_attention(model)` context manager (the hook the
  `explain` feature uses to show each matrix for a sentence from the real code).

Masks follow SDPA's convention: a bool `attn_mask` is True where attention is allowed; a float
`attn_mask` is added to the scaled scores (positional biases, -inf where masked).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_mt.model.positional import Rotary
from transformer_mt.model.state import LayerKV


@dataclass
class AttentionTrace:
    """Every intermediate of one attention call (B batch, h heads, T queries, S keys)."""

    q: Tensor
    """(B, h, T, d_k) queries x W_Q split into heads (rotated, for rope)."""
    k: Tensor
    """(B, h, S, d_k) keys (rotated, for rope; the whole cache when decoding step by step)."""
    v: Tensor
    """(B, h, S, d_k) values."""
    scores: Tensor
    """(B, h, T, S) QK^T / sqrt(d_k)."""
    mask: Tensor | None
    """Additive mask broadcastable to scores: positional bias, -inf where masked; None if none."""
    probs: Tensor
    """(B, h, T, S) softmax(scores + mask), before attention dropout."""
    context: Tensor
    """(B, h, T, d_k) per-head output probs V."""
    concat: Tensor
    """(B, T, D) heads concatenated."""
    output: Tensor
    """(B, T, D) concat W_O, the module's result."""


class MultiHeadAttention(nn.Module):
    """h parallel scaled dot-product attentions over d_k = d_model / h dimensions each."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.d_k = num_heads, d_model // num_heads
        self.dropout = dropout
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.trace_sink: list[AttentionTrace] | None = None  # set by record_attention

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, h, T, d_k)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def precompute_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values (B, h, S, d_k) from the memory (B, S, D), once."""
        return self.split_heads(self.w_k(memory)), self.split_heads(self.w_v(memory))

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: Rotary | None = None,
        cache: LayerKV | None = None,
        static_kv: tuple[Tensor, Tensor] | None = None,
        trace: bool = False,
    ) -> Tensor | tuple[Tensor, AttentionTrace]:
        """query (B, T, D) attends to key_value (B, S, D) (itself when None) -> (B, T, D).

        attn_mask: bool (True = attend) or additive float, broadcastable to (B, h, T, S).
        is_causal: query i sees keys j <= i (T == S; not combined with attn_mask).
        rotary: rotation for self-attention Q and the new K (rope).
        cache: self-attention K/V of earlier steps; the new K/V are appended to it.
        static_kv: cross-attention K/V (B, h, S, d_k) computed once (key_value is ignored).
        trace: also return the `AttentionTrace` of the explicit path.
        """
        inspect = trace or self.trace_sink is not None
        # inference only: in training, three matmuls backpropagate no slower (measured)
        if key_value is None and static_kv is None and not inspect and not self.training:
            q, k, v = self._self_attention_qkv(query, rotary, cache)
        else:
            q, k, v = self._separate_qkv(query, key_value, rotary, cache, static_kv)
        if attn_mask is not None and attn_mask.dtype != torch.bool and attn_mask.dtype != q.dtype:
            attn_mask = attn_mask.to(q.dtype)
        if inspect:
            out, record = self._explicit(q, k, v, attn_mask, is_causal)
            if self.trace_sink is not None:
                self.trace_sink.append(record)
            return (out, record) if trace else out
        if q.size(2) <= FEW_QUERIES and not is_causal and not self.training and q.is_cpu:
            context = few_query_attention(q, k, v, attn_mask)  # cached decoding step
        else:
            dropout_p = self.dropout if self.training else 0.0
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
            )  # (B, h, T, d_k)
        return self.w_o(self._merge_heads(context))

    def stacked_qkv(self) -> tuple[Tensor, Tensor]:
        """W_Q, W_K, W_V stacked (3 D, D) with their biases (3 D,): self-attention at inference
        projects with one matmul instead of three (fewer, larger kernels; the same parameters)."""
        weight = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
        return weight, torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])

    def _self_attention_qkv(
        self, x: Tensor, rotary: Rotary | None, cache: LayerKV | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V (B, h, ., d_k) of self-attention over x (B, T, D) with the stacked weights
        (the decoding cache holds them for the whole generation); K, V include the cache."""
        weight, bias = self.stacked_qkv() if cache is None or cache.qkv is None else cache.qkv
        batch, length, _ = x.shape
        qkv = F.linear(x, weight, bias).view(batch, length, 3, self.num_heads, self.d_k)
        q = qkv[:, :, 0].transpose(1, 2)  # (B, h, T, d_k)
        kv = qkv[:, :, 1:]  # (B, T, 2, h, d_k)
        if rotary is not None:
            q = rotary.rotate(q)
            k = rotary.rotate(kv[:, :, 0].transpose(1, 2)).transpose(1, 2)  # (B, T, h, d_k)
            kv = torch.stack([k, kv[:, :, 1]], dim=2)  # (B, T, 2, h, d_k)
        if cache is not None:
            return q, *cache.append(kv)
        return q, kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, h, T, d_k)

    def _separate_qkv(
        self,
        query: Tensor,
        key_value: Tensor | None,
        rotary: Rotary | None,
        cache: LayerKV | None,
        static_kv: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V (B, h, ., d_k) through W_Q, W_K, W_V one by one (cross-attention, and the
        explicit path, whose inspection hooks see each projection)."""
        q = self.split_heads(self.w_q(query))  # (B, h, T, d_k)
        if rotary is not None:
            q = rotary.rotate(q)
        if static_kv is not None:
            return q, *static_kv
        source = query if key_value is None else key_value
        k = self.split_heads(self.w_k(source))  # (B, h, S, d_k)
        v = self.split_heads(self.w_v(source))  # (B, h, S, d_k)
        if rotary is not None:
            k = rotary.rotate(k)
        if cache is not None:
            kv = torch.stack([k, v], dim=1).permute(0, 3, 1, 2, 4)  # (B, S, 2, h, d_k)
            return q, *cache.append(kv)
        return q, k, v

    def _merge_heads(self, context: Tensor) -> Tensor:
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, -1)  # (B, T, D)

    def _explicit(
        self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, AttentionTrace]:
        """softmax(QK^T / sqrt(d_k) + mask) V, keeping every intermediate."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, h, T, S)
        mask = additive_mask(attn_mask, is_causal, scores)
        probs = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        dropped = F.dropout(probs, self.dropout, self.training)
        context = dropped @ v  # (B, h, T, d_k)
        concat = self._merge_heads(context)
        output = self.w_o(concat)
        return output, AttentionTrace(q, k, v, scores, mask, probs, context, concat, output)


FEW_QUERIES = 16
"""Up to this many queries per row, CPU inference skips the fused SDPA kernel (see below)."""


def few_query_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(d_k) + mask) v for a few queries per row, q (B, h, T, d_k).

    A cached decoding step on CPU (one query per row, or the beams of a sentence sharing its
    cross-attention K/V): two small batched matmuls read K and V once, 2-7x faster than the
    fused CPU kernel, which is tuned for long query blocks.
    """
    scores = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5  # (B, h, T, S)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores, dim=-1) @ v  # (B, h, T, d_k)


def additive_mask(attn_mask: Tensor | None, is_causal: bool, scores: Tensor) -> Tensor | None:
    """The float mask SDPA adds to `scores` (B, h, T, S): bias values, -inf where masked."""
    mask = attn_mask
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device).masked_fill(
            ~mask, float("-inf")
        )
    if is_causal:
        length, source_length = scores.shape[-2:]
        future = torch.ones(length, source_length, dtype=torch.bool, device=scores.device)
        causal = torch.zeros(length, source_length, dtype=scores.dtype, device=scores.device)
        causal = causal.masked_fill(future.triu(1), float("-inf"))  # (T, S)
        mask = causal if mask is None else mask + causal
    return mask


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, list[AttentionTrace]]]:
    """Within the block every `MultiHeadAttention` in `model` takes the explicit path and
    appends its `AttentionTrace` (one per call) under its qualified module name, e.g.
    ``traces["encoder.layers.0.self_attn"]``."""
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    traces: dict[str, list[AttentionTrace]] = {name: [] for name, _ in modules}
    for name, module in modules:
        module.trace_sink = traces[name]
    try:
        yield traces
    finally:
        for _, module in modules:
            module.trace_sink = None
