"""What generation carries between steps: the encoder output and the decoder's K/V caches.

Follows fairseq's incremental-decoding contract: beams are reordered (and finished sentences
dropped) by `index_select` on the batch dimension; nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """memory (B, S, D) and src_key_padding_mask (B, S) bool, True = padding."""

    memory: Tensor
    src_key_padding_mask: Tensor

    def index_select(self, new_order: Tensor) -> EncoderOutput:
        """Rows `new_order` (B',) of the batch."""
        return EncoderOutput(
            self.memory.index_select(0, new_order),
            self.src_key_padding_mask.index_select(0, new_order),
        )


class KVCache:
    """Keys and values (B, h, t, d_k) seen so far by one attention module.

    Self-attention caches grow by one step per call: they live in a buffer whose capacity
    doubles when full, so appending a step copies that step only, not the whole history.
    Cross-attention caches are `static`: computed once from the encoder memory.
    """

    def __init__(self, k: Tensor, v: Tensor, static: bool = False) -> None:
        self._k, self._v, self.static = k, v, static
        self.length = k.size(2)

    @classmethod
    def empty(cls, batch: int, num_heads: int, d_k: int, like: Tensor, capacity: int = 32):
        """A self-attention cache with room for `capacity` steps before it grows."""
        buffer = like.new_empty(2, batch, num_heads, capacity, d_k)
        cache = cls(buffer[0], buffer[1])
        cache.length = 0
        return cache

    @property
    def k(self) -> Tensor:
        """(B, h, t, d_k) cached keys."""
        return self._k[:, :, : self.length]

    @property
    def v(self) -> Tensor:
        """(B, h, t, d_k) cached values."""
        return self._v[:, :, : self.length]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new steps (B, h, n, d_k); returns all keys and values (B, h, t + n, d_k)."""
        end = self.length + k.size(2)
        if end > self._k.size(2):
            self._grow(max(end, 2 * self._k.size(2)))
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self.k, self.v

    def _grow(self, capacity: int) -> None:
        batch, heads, _, d_k = self._k.shape
        k = self._k.new_empty(batch, heads, capacity, d_k)
        v = self._v.new_empty(batch, heads, capacity, d_k)
        k[:, :, : self.length] = self.k
        v[:, :, : self.length] = self.v
        self._k, self._v = k, v

    def reorder(self, new_order: Tensor) -> None:
        """Keep batch rows `new_order` (B',), B' may be smaller than B."""
        self._k = self._k.index_select(0, new_order)
        self._v = self._v.index_select(0, new_order)


@dataclass
class IncrementalState:
    """Everything `Transformer.decode_step` needs between steps.

    `self_attn[l]` / `cross_attn[l]` are decoder layer l's caches; `cross_mask` (B, 1, 1, S) bool
    (True = attend, the SDPA convention) is built once from the encoder padding mask; `step` is
    the number of tokens decoded so far, i.e. the position of the next token.
    """

    encoder_out: EncoderOutput
    self_attn: list[KVCache]
    cross_attn: list[KVCache]
    cross_mask: Tensor
    step: int = 0

    @property
    def batch_size(self) -> int:
        """Rows currently in the active batch."""
        return self.cross_mask.size(0)

    def reorder(self, new_order: Tensor) -> None:
        """index_select every cached tensor on the batch dimension (fairseq contract)."""
        new_order = new_order.to(self.cross_mask.device)
        self.encoder_out = self.encoder_out.index_select(new_order)
        self.cross_mask = self.cross_mask.index_select(0, new_order)
        for cache in (*self.self_attn, *self.cross_attn):
            cache.reorder(new_order)


def attend_mask(src_key_padding_mask: Tensor) -> Tensor:
    """(B, S) bool, True = pad -> (B, 1, 1, S) bool, True = attend (SDPA's convention)."""
    return torch.logical_not(src_key_padding_mask)[:, None, None, :]
