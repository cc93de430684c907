"""Positional encodings behind one interface, chosen by `TransformerConfig.pos_enc`.

Every kind is a `PositionalEncoding` with three hooks; each stack (encoder, decoder) owns one
and calls all three once per forward pass (or per cached decoding step, with `offset` = number
of tokens already decoded):

- `forward(x, offset)`: added to the scaled token embeddings (absolute kinds);
- `attention_bias(q_len, k_len, offset)`: (h, q_len, k_len) added to QK^T/sqrt(d_k) in every
  self-attention of the stack (alibi, relative);
- `rotary(q_len, offset)`: rotation applied to Q and K in every self-attention (rope).

Kinds:

- `sinusoidal`: the paper's PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),
  PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)); a fixed, non-persistent buffer of
  `max_positions` rows, built once. Positions past it are computed on the fly for that call
  and never stored: a buffer that changed shape (or was rebuilt under `torch.inference_mode`
  during validation) would break DDP's buffer broadcast and every later backward pass.
- `learned`: an absolute (max_positions, d_model) table; positions past it are an error.
- `rope`: rotary embeddings (Su et al., 2021) on Q and K of every self-attention, so q.k depends
  on the relative offset only. Keys are cached already rotated. The cos/sin tables are built
  once, like the sinusoids; positions past them are computed on the fly.
- `alibi`: bias -m_h * |i - j| with head slopes m_h from Press et al. (2022). In the decoder the
  causal mask hides j > i, so this is exactly the paper's causal ALiBi; in the encoder the same
  symmetric |i - j| penalises both directions equally (our choice, as in bidirectional ALiBi
  variants).
- `relative`: T5 bucketed relative bias (Raffel et al., 2020): one learned scalar per head and
  distance bucket. As in T5 the table is shared by all layers of a stack (one per stack, not per
  layer); buckets are bidirectional in the encoder and unidirectional (past only) in the decoder.
- `none`: no position signal (the decoder still sees order through its causal mask).

Cross-attention gets no position signal from any kind: queries (target positions) and keys
(source positions) live in different sequences, so there is no meaningful distance between them.
Absolute kinds reach it only through the hidden states they were added to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from transformer_mt.model.config import POS_ENC_CHOICES, TransformerConfig


@dataclass
class Rotary:
    """cos/sin tables (T, d_k) for the positions of one call; rotates (B, h, T, d_k) tensors."""

    cos: Tensor
    sin: Tensor

    def rotate(self, x: Tensor) -> Tensor:
        """Rotate each pair (x_i, x_{i + d_k/2}) by its position's angle (rotate-half layout)."""
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos + torch.cat((-x2, x1), dim=-1) * self.sin


class PositionalEncoding(nn.Module):
    """Base class and the `none` kind: every hook is a no-op."""

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """(B, T, D) embeddings of positions offset..offset+T-1 -> (B, T, D)."""
        return x

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0) -> Tensor | None:
        """Additive self-attention bias (h, q_len, k_len); queries sit at offset..offset+q_len-1,
        keys at 0..k_len-1."""
        return None

    def rotary(self, q_len: int, offset: int = 0) -> Rotary | None:
        """Rotation for queries (and new keys) at positions offset..offset+q_len-1."""
        return None


def sinusoid_table(num_positions: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(num_positions, dim): sin on even dims, cos on odd dims, wavelengths 2pi..10000*2pi."""
    position = torch.arange(num_positions, dtype=torch.float32, device=device)[:, None]
    inv_freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )
    angles = position * inv_freq  # (P, dim/2)
    table = torch.empty(num_positions, dim, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


class SinusoidalPositionalEncoding(PositionalEncoding):
    """The paper's fixed sinusoids (section 3.5): a table built once, positions past it
    computed on the fly (the same formula) without changing the table."""

    def __init__(self, d_model: int, initial_positions: int = 1024) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", sinusoid_table(initial_positions, d_model), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.size(1)
        if end <= self.table.size(0):
            return x + self.table[offset:end].to(x.dtype)
        table = sinusoid_table(end, self.d_model, x.device)  # this call only
        return x + table[offset:end].to(x.dtype)


class LearnedPositionalEncoding(PositionalEncoding):
    """An absolute position table (as BERT/fairseq's learned positions), N(0, d_model^-0.5)."""

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.empty(max_positions, d_model))
        nn.init.normal_(self.weight, mean=0.0, std=d_model**-0.5)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.size(1)
        if end > self.max_positions:
            raise ValueError(
                f"position {end - 1} is past the learned position table "
                f"(max_positions={self.max_positions}); raise max_positions or use sinusoidal"
            )
        return x + self.weight[offset:end]


class RotaryPositionalEncoding(PositionalEncoding):
    """RoPE: frequencies base^(-2i/d_k); cos/sin tables built once, positions past them
    computed on the fly without changing the tables."""

    def __init__(self, d_k: int, base: float = 10000.0, initial_positions: int = 1024) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, d_k, 2, dtype=torch.float32) / d_k)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos, sin = self._angles(0, initial_positions)
        self.register_buffer("cos_table", cos, persistent=False)
        self.register_buffer("sin_table", sin, persistent=False)

    def _angles(self, start: int, end: int) -> tuple[Tensor, Tensor]:
        """cos and sin (end - start, d_k) of positions start..end-1, rotate-half layout."""
        position = torch.arange(start, end, dtype=torch.float32, device=self.inv_freq.device)
        angles = position[:, None] * self.inv_freq  # (P, d_k/2)
        angles = torch.cat((angles, angles), dim=-1)  # (P, d_k)
        return angles.cos(), angles.sin()

    def rotary(self, q_len: int, offset: int = 0) -> Rotary:
        end = offset + q_len
        if end <= self.cos_table.size(0):
            return Rotary(self.cos_table[offset:end], self.sin_table[offset:end])
        return Rotary(*self._angles(offset, end))  # this call only


def alibi_slopes(num_heads: int) -> list[float]:
    """Head slopes of Press et al.: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power
    of two; otherwise those of the nearest lower power of two followed by every other slope of
    the next power of two."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(closest)
    if closest < num_heads:
        slopes += power_of_two(2 * closest)[0::2][: num_heads - closest]
    return slopes


class ALiBiPositionalEncoding(PositionalEncoding):
    """Attention bias -m_h * |i - j| (linear in distance, one slope per head)."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        slopes = torch.tensor(alibi_slopes(num_heads), dtype=torch.float32)
        self.register_buffer("slopes", slopes[:, None, None], persistent=False)  # (h, 1, 1)

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0) -> Tensor:
        device = self.slopes.device
        q_pos = torch.arange(offset, offset + q_len, device=device)
        k_pos = torch.arange(k_len, device=device)
        distance = (q_pos[:, None] - k_pos[None, :]).abs()  # (q, k)
        return -self.slopes * distance  # (h, q, k)


def relative_position_bucket(
    relative_position: Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """T5's bucketing of relative_position = key_pos - query_pos.

    Half the buckets (per direction) hold exact small distances, the rest are logarithmically
    spaced up to max_distance; farther distances share the last bucket. Bidirectional: keys after
    the query use the upper half of the buckets. Unidirectional: future keys map to bucket 0
    (they are masked anyway).
    """
    distance = -relative_position  # > 0 for keys in the past
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (distance < 0).long() * num_buckets
        distance = distance.abs()
    else:
        distance = distance.clamp(min=0)
    max_exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(
        max_distance / max_exact
    )
    far = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < max_exact, distance, far)


class RelativePositionBias(PositionalEncoding):
    """T5 relative attention bias: a learned scalar per (bucket, head), shared by the stack."""

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int, causal: bool) -> None:
        super().__init__()
        self.num_buckets, self.max_distance, self.causal = num_buckets, max_distance, causal
        self.bias = nn.Embedding(num_buckets, num_heads)
        nn.init.normal_(self.bias.weight, mean=0.0, std=num_heads**-0.5)

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0) -> Tensor:
        device = self.bias.weight.device
        q_pos = torch.arange(offset, offset + q_len, device=device)
        k_pos = torch.arange(k_len, device=device)
        buckets = relative_position_bucket(
            k_pos[None, :] - q_pos[:, None],
            bidirectional=not self.causal,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )  # (q, k)
        return self.bias(buckets).permute(2, 0, 1)  # (h, q, k)


def build_positional_encoding(config: TransformerConfig, causal: bool) -> PositionalEncoding:
    """The kind named by `config.pos_enc` for one stack (`causal` = decoder)."""
    kind = config.pos_enc
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(config.d_model, config.max_positions)
    if kind == "learned":
        return LearnedPositionalEncoding(config.d_model, config.max_positions)
    if kind == "rope":
        return RotaryPositionalEncoding(config.d_k, initial_positions=config.max_positions)
    if kind == "alibi":
        return ALiBiPositionalEncoding(config.num_heads)
    if kind == "relative":
        return RelativePositionBias(
            config.num_heads, config.relative_num_buckets, config.relative_max_distance, causal
        )
    if kind == "none":
        return PositionalEncoding()
    raise ValueError(f"pos_enc={kind!r}; valid choices: {', '.join(POS_ENC_CHOICES)}")
