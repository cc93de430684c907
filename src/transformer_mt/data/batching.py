"""Batches: padding from flat arrays, and token-budget batch sampling (fairseq style).

`max_tokens` bounds B * max(S, T), the padded size of the larger side. Pairs are sorted by
(max(S, T), S, T) after a seeded shuffle, so ties are broken differently each epoch while each
batch holds pairs of nearly equal lengths on both sides; the batch order is then shuffled.
Under DDP the batch list is made a multiple of the world size by halving the largest batches
(never by repeating pairs), and rank r takes batches r, r + W, r + 2W, ...: shares are
disjoint, all ranks run the same number of steps, and val/test BLEU sees every pair once.

The training sampler is resumable mid-epoch: `state_dict()` records the epoch and how many of
this rank's batches were consumed, and a sampler given that state by `load_state_dict()` yields
exactly the remaining batches of that epoch, in the same order. Every rank consumes the same
number of batches, so rank 0's state (the one a checkpoint holds) is every rank's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """One padded batch; shapes (B, S) and (B, T)."""

    src_ids: torch.Tensor  # (B, S) long, PAD_ID-padded, each row ends with EOS_ID
    tgt_in_ids: torch.Tensor  # (B, T) long, [BOS_ID] + target pieces
    tgt_out_ids: torch.Tensor  # (B, T) long, target pieces + [EOS_ID]
    indices: torch.Tensor  # (B,) long, position of each pair in its split (original order)
    num_tgt_tokens: int  # non-pad tokens of tgt_out_ids

    def __len__(self) -> int:
        return self.src_ids.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(
            move(self.src_ids), move(self.tgt_in_ids), move(self.tgt_out_ids),
            move(self.indices), self.num_tgt_tokens,
        )  # fmt: skip

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) for custom batch types."""
        pin = lambda t: t.pin_memory()  # noqa: E731
        return Batch(
            pin(self.src_ids), pin(self.tgt_in_ids), pin(self.tgt_out_ids),
            pin(self.indices), self.num_tgt_tokens,
        )  # fmt: skip


def clip_to_positions(batch: Batch, limit: int) -> tuple[Batch, list[int]]:
    """`batch` with every sequence cut to `limit` positions (a source keeps its final EOS),
    and the line numbers of the pairs that were cut. Validation is never filtered by length
    (BLEU covers every line), but a model with a learned position table cannot represent more
    than `limit` positions: its over-long lines are scored on what fits."""
    src_len = batch.src_ids.ne(PAD_ID).sum(dim=1)  # (B,)
    tgt_len = batch.tgt_out_ids.ne(PAD_ID).sum(dim=1)
    cut = (src_len > limit) | (tgt_len > limit)
    if not bool(cut.any()):
        return batch, []
    src = batch.src_ids[:, :limit].clone()
    src[src_len > limit, limit - 1] = EOS_ID
    tgt_out = batch.tgt_out_ids[:, :limit]
    clipped = Batch(src, batch.tgt_in_ids[:, :limit], tgt_out, batch.indices,
                    int(tgt_out.ne(PAD_ID).sum()))  # fmt: skip
    return clipped, batch.indices[cut].tolist()


def _gather_padded(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int):
    """Rows tokens[starts[i] : starts[i] + lengths[i]] padded with PAD_ID to `width`."""
    cols = np.arange(width)
    mask = cols[None, :] < lengths[:, None]  # (B, width)
    positions = np.where(mask, starts[:, None] + cols[None, :], 0)
    out = np.where(mask, tokens[positions] if len(tokens) else 0, PAD_ID)
    return out.astype(np.int64), mask


def collate(
    src_tokens: np.ndarray,
    src_offsets: np.ndarray,
    tgt_tokens: np.ndarray,
    tgt_offsets: np.ndarray,
    indices: np.ndarray,
) -> Batch:
    """Build the `Batch` of pairs `indices` from flat arrays (no Python loop over pairs)."""
    src_len = src_offsets[indices + 1] - src_offsets[indices]
    tgt_len = tgt_offsets[indices + 1] - tgt_offsets[indices]
    src, _ = _gather_padded(src_tokens, src_offsets[indices], src_len, int(src_len.max()))
    width = int(tgt_len.max()) + 1
    pieces, _ = _gather_padded(tgt_tokens, tgt_offsets[indices], tgt_len, width)
    rows = np.arange(len(indices))
    tgt_in = np.concatenate([np.full((len(indices), 1), BOS_ID), pieces[:, :-1]], axis=1)
    tgt_out = pieces.copy()
    tgt_out[rows, tgt_len] = EOS_ID  # (B, T): pieces + </s>
    return Batch(
        src_ids=torch.from_numpy(src),
        tgt_in_ids=torch.from_numpy(tgt_in.astype(np.int64)),
        tgt_out_ids=torch.from_numpy(tgt_out),
        indices=torch.from_numpy(indices.astype(np.int64)),
        num_tgt_tokens=int(tgt_len.sum()) + len(indices),
    )


def length_sorted_batches(
    order: np.ndarray, sizes: np.ndarray, max_tokens: int, max_sentences: int | None
) -> list[np.ndarray]:
    """Cut `order` (sorted by non-decreasing `sizes[order]`) into greedy token-budget batches.

    A batch [i, i + k) is valid while k * sizes[order[i + k - 1]] <= max_tokens and
    k <= max_sentences; a single pair larger than the budget forms a batch of its own.
    """
    sorted_sizes = sizes[order]
    cap = max_sentences or len(order)
    batches, start = [], 0
    while start < len(order):
        upper = min(cap, len(order) - start, max(1, max_tokens // int(sorted_sizes[start])))
        costs = np.arange(1, upper + 1) * sorted_sizes[start : start + upper]
        k = max(1, int(np.searchsorted(costs, max_tokens, side="right")))
        batches.append(order[start : start + k])
        start += k
    return batches


def split_to_multiple(batches: list[np.ndarray], world_size: int) -> list[np.ndarray]:
    """Halve the largest batches until the count is a multiple of `world_size`.

    Pairs are never repeated or dropped. Only impossible when there are fewer pairs than ranks
    (then some ranks get one batch fewer).
    """
    batches = list(batches)
    while len(batches) % world_size:
        largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
        if len(batches[largest]) < 2:
            break
        half = len(batches[largest]) // 2
        batch = batches.pop(largest)
        batches[largest:largest] = [batch[:half], batch[half:]]
    return batches


class TokenBatchSampler(Sampler[np.ndarray]):
    """Yields this rank's batches (arrays of pair indices) for the current epoch.

    shuffle=True (training): seeded per epoch via `set_epoch` (Lightning calls it);
    shuffle=False (val/test): one fixed length-sorted order, identical every epoch.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        max_sentences: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        keep: np.ndarray | None = None,
    ) -> None:
        if max_tokens < 1 or (max_sentences is not None and max_sentences < 1):
            raise ValueError(f"max_tokens={max_tokens}, max_sentences={max_sentences} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.src_lengths, self.tgt_lengths = np.asarray(src_lengths), np.asarray(tgt_lengths)
        self.keep = np.arange(len(self.src_lengths)) if keep is None else np.asarray(keep)
        self.max_tokens, self.max_sentences = max_tokens, max_sentences
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size
        self._cache: tuple[int, list[np.ndarray]] | None = None
        self.position = 0  # batches of this epoch's share yielded (or skipped) so far
        self._resume: tuple[int, int] | None = None  # (epoch, position) from load_state_dict

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """Where this epoch stands: `position` of this rank's `len(self)` batches consumed."""
        return {
            "epoch": self.epoch, "position": self.position, "num_batches": len(self),
            "seed": self.seed, "world_size": self.world_size,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state`: the next iteration of its epoch skips the consumed batches."""
        self.set_epoch(int(state["epoch"]))
        saved = (state["num_batches"], state["seed"], state["world_size"])
        ours = (len(self), self.seed, self.world_size)
        if tuple(saved) != ours:
            raise ValueError(
                "cannot resume mid-epoch: the checkpoint's train batches (num_batches, seed, "
                f"world_size) = {saved} differ from this run's {ours}; resume with the same "
                "data settings and devices, or from an end-of-epoch checkpoint"
            )
        self._resume = (self.epoch, int(state["position"]))

    def start_position(self) -> int:
        """Where the next iteration starts: the restored position in its epoch, else 0."""
        if self._resume is not None and self._resume[0] == self.epoch:
            return self._resume[1]
        return 0

    def all_batches(self) -> list[np.ndarray]:
        """Every rank's batches of this epoch, in order (cached per epoch)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        src, tgt = self.src_lengths[self.keep], self.tgt_lengths[self.keep]
        sizes = np.maximum(src, tgt)
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.keep)) if self.shuffle else np.arange(len(self.keep))
        order = perm[np.lexsort((tgt[perm], src[perm], sizes[perm]))]  # stable: ties stay shuffled
        batches = length_sorted_batches(order, sizes, self.max_tokens, self.max_sentences)
        batches = split_to_multiple(batches, self.world_size)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        batches = [self.keep[b] for b in batches]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        # A generator: the epoch is read at the first batch, after Lightning's set_epoch.
        share = self.all_batches()[self.rank :: self.world_size]
        start, self._resume = self.start_position(), None
        self.position = start
        for index in range(start, len(share)):
            self.position = index + 1
            yield share[index]

    def __len__(self) -> int:
        return len(self.all_batches()[self.rank :: self.world_size])
