"""What generation carries between steps: the encoder output and the decoder's K/V caches.

Follows fairseq's incremental-decoding contract: beams are reordered (and finished sentences
dropped) by `index_select` on the batch dimension; nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """memory (B, S, D) and src_key_padding_mask (B, S) bool, True = padding.

    `source_index` (B,) long says which encoded sentence each row holds (`encode` numbers them
    0..B-1; `index_select` carries it along). Adjacent rows with equal index hold identical
    memory: `init_incremental_state` computes their cross-attention K/V once and shares it.
    """

    memory: Tensor
    src_key_padding_mask: Tensor
    source_index: Tensor | None = None

    def __post_init__(self) -> None:
        if self.source_index is None:
            self.source_index = torch.arange(self.memory.size(0), device=self.memory.device)

    def index_select(self, new_order: Tensor) -> EncoderOutput:
        """Rows `new_order` (B',) of the batch, e.g. each sentence repeated beam-size times."""
        return EncoderOutput(
            self.memory.index_select(0, new_order),
            self.src_key_padding_mask.index_select(0, new_order),
            self.source_index.index_select(0, new_order),
        )


class KVStore:
    """Self-attention keys and values of every decoder layer, time-major:
    (capacity, L, 2, B, h, d_k) over a flat storage.

    Built for generation speed: appending a step writes that step only (capacity doubles when
    full); `reorder` gathers the filled steps, which are one contiguous block, into a spare
    storage and swaps the two, so steady-state decoding allocates nothing and copies each cached
    step once per reorder. Both storages hold `capacity` steps of the largest batch seen (beams
    expanded from one row per sentence) and are reused as the batch shrinks. All layers append
    at position `length`; the decoder calls `advance` once per step.
    """

    def __init__(
        self, num_layers: int, batch: int, num_heads: int, d_k: int, like: Tensor, capacity: int
    ) -> None:
        self._layers, self._heads, self._d_k = num_layers, num_heads, d_k
        self.batch, self.length, self.capacity = batch, 0, capacity
        self._storage = like.new_empty(capacity * self._step_size(batch))
        self._spare = torch.empty_like(self._storage)
        self._buffer = self._view(self._storage, batch)

    def _step_size(self, batch: int) -> int:
        return self._layers * 2 * batch * self._heads * self._d_k

    def _view(self, storage: Tensor, batch: int, steps: int | None = None) -> Tensor:
        """`storage` as (steps, L, 2, B, h, d_k); all the steps that fit when `steps` is None."""
        step_size = self._step_size(batch)
        steps = storage.numel() // step_size if steps is None else steps
        shape = (steps, self._layers, 2, batch, self._heads, self._d_k)
        return storage[: steps * step_size].view(shape)

    def append(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Write new steps `kv` (B, n, 2, h, d_k) (keys, values) of `layer` with one copy;
        returns its keys and values so far (B, h, length + n, d_k)."""
        end = self.length + kv.size(1)
        if end > self._buffer.size(0):
            self._grow(max(end, 2 * self._buffer.size(0)))
        cached = self._buffer[:end, layer]  # (t + n, 2, B, h, d_k)
        cached[self.length :] = kv.permute(1, 2, 0, 3, 4)
        return cached[:, 0].permute(1, 2, 0, 3), cached[:, 1].permute(
            1, 2, 0, 3
        )  # (B, h, t+n, d_k)

    def advance(self, steps: int = 1) -> None:
        """Commit the steps every layer has appended."""
        self.length += steps

    def _grow(self, capacity: int) -> None:
        self.capacity = capacity
        storage = self._storage.new_empty(capacity * self._step_size(self.batch))
        grown = self._view(storage, self.batch)
        grown[: self.length] = self._buffer[: self.length]
        self._storage, self._spare, self._buffer = storage, torch.empty_like(storage), grown

    def reorder(self, new_order: Tensor) -> None:
        """Keep batch rows `new_order` (B',) of the filled steps."""
        batch = new_order.numel()
        if self.capacity * self._step_size(batch) > self._spare.numel():
            self._spare = self._storage.new_empty(self.capacity * self._step_size(batch))
        rows, width = self.length * self._layers * 2, self._heads * self._d_k
        # flat (t * L * 2 * B, h * d_k) rows and one flat index: index_select copies whole rows
        # and splits the index among threads (~3x faster than per-element copies, and the
        # split over the long flat index is what makes a second thread pay)
        filled = self._buffer[: self.length].view(rows * self.batch, width)
        target = self._spare[: rows * batch * width].view(rows * batch, width)
        offsets = torch.arange(0, rows * self.batch, self.batch, device=new_order.device)
        flat_order = (offsets[:, None] + new_order).view(-1)  # (t * L * 2 * B',)
        torch.index_select(filled, 0, flat_order, out=target)
        self._storage, self._spare = self._spare, self._storage
        self._buffer = self._view(self._storage, batch)
        self.batch = batch


@dataclass
class LayerKV:
    """One decoder layer's handle on the shared `KVStore` (what its self-attention appends to).

    qkv: that self-attention's stacked W_Q|W_K|W_V and biases (`stacked_qkv`), concatenated
    once per generation (weights do not change while decoding); None: stack them per call.
    """

    store: KVStore
    layer: int
    qkv: tuple[Tensor, Tensor] | None = None

    def append(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """New steps (B, n, 2, h, d_k) -> all keys and values so far (B, h, t + n, d_k)."""
        return self.store.append(self.layer, kv)


@dataclass
class IncrementalState:
    """Everything `Transformer.decode_step` needs between steps.

    Rows of the decoder batch (R = Bs * group) come in runs of `group` adjacent rows that decode
    the same source sentence (beams of one sentence); the Bs sentences keep one copy each of
    their cross-attention K/V, which the decoder's grouped cross-attention reads for every row
    of the run. Reorders that keep each row within its sentence therefore move nothing but the
    self-attention cache.

    encoder_out: the Bs sentences' encoder output (memory (Bs, S, D)).
    self_attn: every decoder layer's cached self-attention K/V for the R rows (one `KVStore`).
    cross_k, cross_v: (L, Bs, h, S, d_k) cross-attention K and V, computed once from the
        memory; K is stored transposed ((L, Bs, h, d_k, S) in memory) for the q K^T matmul.
    cross_mask: (Bs, 1, 1, S) bool (True = attend, the SDPA convention), from the padding mask.
    group: rows per sentence; row r decodes sentence r // group.
    step: tokens decoded so far, i.e. the position of the next token.
    layer_caches: each decoder layer's handle on `self_attn`, with its stacked self-attention
        weights (made once per generation).
    """

    encoder_out: EncoderOutput
    self_attn: KVStore
    cross_k: Tensor
    cross_v: Tensor
    cross_mask: Tensor
    group: int = 1
    step: int = 0
    layer_caches: list[LayerKV] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        """Rows currently in the active batch."""
        return self.self_attn.batch

    def reorder(self, new_order: Tensor) -> None:
        """Row i becomes old row new_order[i] (fairseq contract; new_order (R',) long).

        The self-attention cache is index_selected; the per-sentence tensors only when the set
        or the order of sentences changes (e.g. finished sentences leave the batch).
        """
        new_order = new_order.to(self.cross_mask.device)
        self.self_attn.reorder(new_order)
        sentences, group = sentence_runs(torch.div(new_order, self.group, rounding_mode="floor"))
        self.group = group
        if sentences.numel() == self.cross_mask.size(0) and torch.equal(
            sentences, torch.arange(sentences.numel(), device=sentences.device)
        ):
            return
        self.encoder_out = self.encoder_out.index_select(sentences)
        self.cross_mask = self.cross_mask.index_select(0, sentences)
        self.cross_k = self.cross_k.transpose(-2, -1).index_select(1, sentences).transpose(-2, -1)
        self.cross_v = self.cross_v.index_select(1, sentences)


def sentence_runs(ids: Tensor) -> tuple[Tensor, int]:
    """Split rows (R,) into equal runs of one value: (value of each run (R / g,), g).

    Rows whose runs differ in length are not grouped: (ids, 1). E.g. [4, 4, 7, 7] -> ([4, 7], 2)
    and [4, 4, 7] -> ([4, 4, 7], 1).
    """
    if ids.numel() == 0:
        return ids, 1
    values, counts = torch.unique_consecutive(ids, return_counts=True)
    if bool((counts == counts[0]).all()):
        return values, int(counts[0])
    return ids, 1


def attend_mask(src_key_padding_mask: Tensor) -> Tensor:
    """(B, S) bool, True = pad -> (B, 1, 1, S) bool, True = attend (SDPA's convention)."""
    return torch.logical_not(src_key_padding_mask)[:, None, None, :]
