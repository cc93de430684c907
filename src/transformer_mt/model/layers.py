"""Encoder and decoder layers: sublayers wrapped in residual + dropout + LayerNorm.

Post-norm (`norm_first=False`) is the paper's LayerNorm(x + Dropout(Sublayer(x))) (section 5.4).
Pre-norm (`norm_first=True`) is x + Dropout(Sublayer(LayerNorm(x))) (Wang et al., 2019), which
trains stably without warm-up tricks; its stacks end with a final LayerNorm.
"""

from __future__ import annotations

from torch import Tensor, nn

from transformer_mt.model.attention import MultiHeadAttention
from transformer_mt.model.config import TransformerConfig
from transformer_mt.model.dropout import Dropout
from transformer_mt.model.feed_forward import PositionwiseFeedForward
from transformer_mt.model.positional import Rotary
from transformer_mt.model.state import LayerKV


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(d_model, config.num_heads, config.attention_dropout)
        self.ffn = PositionwiseFeedForward(d_model, config.d_ff, config.dropout, config.activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None, rotary: Rotary | None) -> Tensor:
        """x (B, S, D); attn_mask broadcastable to (B, h, S, S) -> (B, S, D)."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, attn_mask=attn_mask, rotary=rotary))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, attn_mask=attn_mask, rotary=rotary)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder memory, then feed-forward."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(d_model, config.num_heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(d_model, config.num_heads, config.attention_dropout)
        self.ffn = PositionwiseFeedForward(d_model, config.d_ff, config.dropout, config.activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        *,
        self_mask: Tensor | None,
        is_causal: bool,
        cross_mask: Tensor,
        rotary: Rotary | None,
        self_cache: LayerKV | None = None,
        cross_kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x (B, T, D), memory (B, S, D) (None when cross_kv holds its K/V) -> (B, T, D).

        self_mask / is_causal: the decoder's causal self-attention (mask when a positional bias
        is folded in); cross_mask (B, 1, 1, S) bool hides source padding.
        cross_kv: K/V (Bs, h, S, d_k) of Bs sentences whose rows are adjacent in x (B = Bs * g,
        g rows each, e.g. beams); cross_mask is then (Bs, 1, 1, S).
        """

        def self_block(h: Tensor) -> Tensor:
            out = self.self_attn(
                h, attn_mask=self_mask, is_causal=is_causal, rotary=rotary, cache=self_cache
            )
            return self.dropout(out)

        def cross_block(h: Tensor) -> Tensor:
            if cross_kv is None:
                return self.dropout(self.cross_attn(h, memory, attn_mask=cross_mask))
            # rows of one sentence are adjacent: its queries attend to one copy of its K/V
            grouped = h.reshape(cross_kv[0].size(0), -1, h.size(-1))  # (Bs, R / Bs * T, D)
            out = self.cross_attn(grouped, attn_mask=cross_mask, static_kv=cross_kv)
            return self.dropout(out.view(h.shape))

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self.dropout(self.ffn(self.norm3(x)))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self.dropout(self.ffn(x)))
